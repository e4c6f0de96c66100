// Split-KV combine: out = sum_k w_k o_k with w_k = exp(lse_k - lse) and lse = log(sum_k exp(lse_k)).
// One warp per (query row, slice of the 512 output columns). Two layouts:
//   wide  (8 warps a block, one slice): a lane owns 16 columns (four float4 loads a split); for
//         grids that fill the GPU, e.g. 128 requests;
//   small (2 warps a block, 4 slices): a lane owns 4 columns (one float4 a split). A one-token step
//         (16 rows, its 1k context cut into 17 one-page splits) is otherwise 2 blocks of 8 warps on
//         2 SMs, each warp walking 17 splits x 2 KB; sliced it is 32 blocks.
// The splits' log-sum-exps are read 32 at a time, one per lane, and their weights passed by shuffle,
// so a warp issues its splits' loads back to back instead of one dependent chain per split.
#include <cuda_bf16.h>

#include <cmath>

#include "common/combine.h"
#include "common/launch.h"
#include "kernels/timeline.cuh"  // @flashserve/cuda's kernel timeline (measurement only)

namespace flashserve::mla {
namespace {

constexpr unsigned FULL = 0xffffffffu;
// Below this many blocks in the wide layout, the grid leaves most SMs idle: use the small one.
constexpr int SMALL_GRID_BLOCKS = 128;

template <int WARPS, int SLICES>
__global__ void __launch_bounds__(WARPS * 32) combine_kernel(DecodeParams p) {
  constexpr int VEC = 4 / SLICES;  // float4 loads per lane per split
  constexpr int SLICE_COLS = HEAD_DIM_V / SLICES;
  static_assert(SLICE_COLS == VEC * 32 * 4, "a slice is VEC float4s per lane");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");  // no-op unless launched as a dependent
  flashserve::timeline_stamp(flashserve::TIMELINE_TAG_MLA_COMBINE);
  // The kernel after this one (the W_UV product, a PDL dependent that requests its weights before
  // waiting) may start now: this grid is a few dozen small blocks, so its blocks fit beside them.
  // It still waits for this grid to finish before reading the output. Not under tuning bit 9 (A/B).
  if (!(p.tuning & 512)) asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
  const int r = blockIdx.x;
  const int row = blockIdx.y * WARPS + threadIdx.x / 32;
  const int slice = blockIdx.z;
  const int lane = threadIdx.x % 32;
  if (row >= p.q_rows) return;
  const int first = p.num_splits[r];
  const int splits = p.num_splits[r + 1] - first;
  if (splits == 1) return;
  const float* lse_of = p.lse_accum + (int64_t)first * p.q_rows + row;  // split k at k * q_rows

  float lse_max = -INFINITY;
  for (int k = lane; k < splits; k += 32) lse_max = fmaxf(lse_max, lse_of[(int64_t)k * p.q_rows]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) lse_max = fmaxf(lse_max, __shfl_xor_sync(FULL, lse_max, o));

  float acc[VEC * 4];
#pragma unroll
  for (int i = 0; i < VEC * 4; ++i) acc[i] = 0.f;
  float denom = 0.f;  // this lane's share: the weights of splits lane, lane + 32, ...
  if (lse_max != -INFINITY) {
    const float* src0 = p.o_accum + ((int64_t)first * p.q_rows + row) * HEAD_DIM_V + slice * SLICE_COLS;
    const int64_t split_stride = (int64_t)p.q_rows * HEAD_DIM_V;
    for (int k0 = 0; k0 < splits; k0 += 32) {
      const float my_w = k0 + lane < splits ? expf(lse_of[(int64_t)(k0 + lane) * p.q_rows] - lse_max) : 0.f;
      denom += my_w;
      const int n = splits - k0 < 32 ? splits - k0 : 32;
#pragma unroll 8
      for (int j = 0; j < n; ++j) {
        const float w = __shfl_sync(FULL, my_w, j);
        const float4* src = reinterpret_cast<const float4*>(src0 + (k0 + j) * split_stride);
#pragma unroll
        for (int i = 0; i < VEC; ++i) {
          const float4 v = src[i * 32 + lane];
          acc[i * 4 + 0] += w * v.x;
          acc[i * 4 + 1] += w * v.y;
          acc[i * 4 + 2] += w * v.z;
          acc[i * 4 + 3] += w * v.w;
        }
      }
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) denom += __shfl_xor_sync(FULL, denom, o);
  const float inv = denom > 0.f ? 1.f / denom : 0.f;
  __nv_bfloat16* dst =
      reinterpret_cast<__nv_bfloat16*>(p.out) + r * p.o_batch_stride + row * p.o_row_stride + slice * SLICE_COLS;
#pragma unroll
  for (int i = 0; i < VEC; ++i) {
    __nv_bfloat162 lo = __floats2bfloat162_rn(acc[i * 4 + 0] * inv, acc[i * 4 + 1] * inv);
    __nv_bfloat162 hi = __floats2bfloat162_rn(acc[i * 4 + 2] * inv, acc[i * 4 + 3] * inv);
    uint2 packed;
    packed.x = *reinterpret_cast<uint32_t*>(&lo);
    packed.y = *reinterpret_cast<uint32_t*>(&hi);
    *reinterpret_cast<uint2*>(dst + (i * 32 + lane) * 4) = packed;
  }
  if (lane == 0 && slice == 0) {
    const int s = row / p.h_q, h = row % p.h_q;
    p.lse[((int64_t)r * p.h_q + h) * p.s_q + s] = denom > 0.f ? lse_max + logf(denom) : -INFINITY;
  }
}

template <int WARPS, int SLICES>
cudaError_t launch(const DecodeParams& params, bool programmatic_launch) {
  return launch_kernel(combine_kernel<WARPS, SLICES>, dim3(params.b, (params.q_rows + WARPS - 1) / WARPS, SLICES),
                       dim3(WARPS * 32), 0, params.stream, programmatic_launch, params);
}

}  // namespace

cudaError_t run_combine(const DecodeParams& params, bool programmatic_launch) {
  constexpr int WIDE_WARPS = 8;
  const long long wide_blocks = (long long)params.b * ((params.q_rows + WIDE_WARPS - 1) / WIDE_WARPS);
  if (wide_blocks < SMALL_GRID_BLOCKS && !(params.tuning & 256)) return launch<2, 4>(params, programmatic_launch);
  return launch<WIDE_WARPS, 1>(params, programmatic_launch);
}

}  // namespace flashserve::mla
