// Device self-check of the one layout assumption that no compiler can verify: the wgmma strides of
// the N-major V operand (V_LBO_BYTES / V_SBO_BYTES in decode.cuh). One warpgroup computes
// O [64 x 256] = P [64 x 64] V [64 x 256] from row-major global inputs written into shared memory in
// the kernel's swizzled layouts; variant 1 swaps the two strides. The GPU test runs both, so a wrong
// assumption is named rather than seen only as a wrong attention output.
#include <cuda_bf16.h>

#include "sm90/decode.cuh"

namespace flashserve::mla::sm90 {
namespace {

__global__ void __launch_bounds__(128) layout_probe_kernel(const __nv_bfloat16* v, const __nv_bfloat16* pm, float* out,
                                                         int variant) {
  __shared__ __align__(1024) uint8_t sv[4][64 * 128];
  __shared__ __align__(1024) uint8_t sp[64 * 128];
  const int t = threadIdx.x;
  // v: [64 tokens][256 dims] row-major -> 4 tiles of [64 tokens][64 dims], 16-byte chunk c of row i
  // stored at chunk c ^ (i % 8).
  for (int i = t; i < 64 * 32; i += 128) {
    const int row = i / 32, c = i % 32, tile_c = c / 8, cc = c % 8;
    *reinterpret_cast<uint4*>(sv[tile_c] + row * 128 + ((cc ^ (row % 8)) * 16)) =
        *reinterpret_cast<const uint4*>(v + row * 256 + c * 8);
  }
  for (int i = t; i < 64 * 8; i += 128) {
    const int row = i / 8, cc = i % 8;
    *reinterpret_cast<uint4*>(sp + row * 128 + ((cc ^ (row % 8)) * 16)) =
        *reinterpret_cast<const uint4*>(pm + row * 64 + cc * 8);
  }
  fence_proxy_async();
  __syncthreads();
  float o[128];
#pragma unroll
  for (int i = 0; i < 128; ++i) o[i] = 0.f;
  const uint32_t lbo = variant == 0 ? V_LBO_BYTES : V_SBO_BYTES;
  const uint32_t sbo = variant == 0 ? V_SBO_BYTES : V_LBO_BYTES;
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    const uint64_t da = make_desc_sw128(smem_addr(sp) + kk * 32, 16, KMAJOR_SBO_BYTES);
    const uint64_t db = make_desc_sw128(smem_addr(sv[0]) + kk * 16 * 128, lbo, sbo);
    wgmma_m64n256k16_ss_tb(o, da, db, 1);
  }
  wgmma_commit();
  wgmma_wait<0>();
  const int warp = t / 32, lane = t % 32, r0 = warp * 16 + lane / 4;
#pragma unroll
  for (int j = 0; j < 32; ++j) {
    const int col = 8 * j + 2 * (lane % 4);
    out[r0 * 256 + col] = o[4 * j];
    out[r0 * 256 + col + 1] = o[4 * j + 1];
    out[(r0 + 8) * 256 + col] = o[4 * j + 2];
    out[(r0 + 8) * 256 + col + 1] = o[4 * j + 3];
  }
}

}  // namespace

cudaError_t run_wgmma_layout_probe(const void* v_tile, const void* p_tile, float* out, int variant,
                                   cudaStream_t stream) {
  layout_probe_kernel<<<1, 128, 0, stream>>>(static_cast<const __nv_bfloat16*>(v_tile),
                                             static_cast<const __nv_bfloat16*>(p_tile), out, variant);
  return cudaGetLastError();
}

}  // namespace flashserve::mla::sm90
