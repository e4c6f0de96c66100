// Split-KV combine: out = sum_k w_k o_k with w_k = exp(lse_k - lse) and lse = log(sum_k exp(lse_k)).
// One warp per query row; each lane owns 16 of the 512 output numbers (four float4 loads).
#include <cuda_bf16.h>

#include <cmath>

#include "common/combine.h"

namespace flashserve::mla {
namespace {

constexpr int WARPS = 8;

__global__ void __launch_bounds__(WARPS * 32) combine_kernel(DecodeParams p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");  // no-op unless launched as a dependent
#endif
  const int r = blockIdx.x;
  const int row = blockIdx.y * WARPS + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= p.q_rows) return;
  const int first = p.num_splits[r];
  const int splits = p.num_splits[r + 1] - first;
  if (splits == 1) return;

  float lse_max = -INFINITY;
  for (int k = 0; k < splits; ++k) lse_max = fmaxf(lse_max, p.lse_accum[(int64_t)(first + k) * p.q_rows + row]);
  float acc[16];
#pragma unroll
  for (int i = 0; i < 16; ++i) acc[i] = 0.f;
  float denom = 0.f;
  if (lse_max != -INFINITY) {
    for (int k = 0; k < splits; ++k) {
      const float w = expf(p.lse_accum[(int64_t)(first + k) * p.q_rows + row] - lse_max);
      denom += w;
      const float4* src =
          reinterpret_cast<const float4*>(p.o_accum + ((int64_t)(first + k) * p.q_rows + row) * HEAD_DIM_V);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float4 v = src[i * 32 + lane];
        acc[i * 4 + 0] += w * v.x;
        acc[i * 4 + 1] += w * v.y;
        acc[i * 4 + 2] += w * v.z;
        acc[i * 4 + 3] += w * v.w;
      }
    }
  }
  const float inv = denom > 0.f ? 1.f / denom : 0.f;
  __nv_bfloat16* dst = reinterpret_cast<__nv_bfloat16*>(p.out) + r * p.o_batch_stride + row * p.o_row_stride;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    __nv_bfloat162 lo = __floats2bfloat162_rn(acc[i * 4 + 0] * inv, acc[i * 4 + 1] * inv);
    __nv_bfloat162 hi = __floats2bfloat162_rn(acc[i * 4 + 2] * inv, acc[i * 4 + 3] * inv);
    uint2 packed;
    packed.x = *reinterpret_cast<uint32_t*>(&lo);
    packed.y = *reinterpret_cast<uint32_t*>(&hi);
    *reinterpret_cast<uint2*>(dst + (i * 32 + lane) * 4) = packed;
  }
  if (lane == 0) {
    const int s = row / p.h_q, h = row % p.h_q;
    p.lse[((int64_t)r * p.h_q + h) * p.s_q + s] = denom > 0.f ? lse_max + logf(denom) : -INFINITY;
  }
}

}  // namespace

cudaError_t run_combine(const DecodeParams& params, bool programmatic_launch) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(params.b, (params.q_rows + WARPS - 1) / WARPS);
  cfg.blockDim = dim3(WARPS * 32);
  cfg.stream = params.stream;
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = &attr;
  cfg.numAttrs = programmatic_launch ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, combine_kernel, params);
}

}  // namespace flashserve::mla
