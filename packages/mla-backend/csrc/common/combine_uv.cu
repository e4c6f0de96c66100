// Split-KV combine + W_UV in one launch (combine_uv.h). Grid: (v_dim / 32 row groups, h_q heads),
// 8 warps a block. A block
//   1. requests its 32 rows of W_UV[head] (32 KB, four rows a warp, two 16-byte loads a lane a row)
//      before the PDL wait, so they stream in while the decode kernel drains;
//   2. combines the head's latent row (512 columns) of every token into shared memory: a thread owns
//      two columns, a warp 64; the per-split arithmetic and its order are run_combine's, so the bf16
//      latent rows are bit-identical to the unfused path's;
//   3. multiplies them by its rows: each lane takes 16 of a row's 512 columns, a warp sums by shuffle.
// Every block of a head repeats step 2 (v_dim / 32 = 4 blocks at vHeadDim 128): ~35 KB of partials a
// token from L2 at 17 splits, which costs less than a second launch and a round trip through memory.
#include <cuda_bf16.h>

#include <cmath>

#include "common/combine_uv.h"
#include "common/launch.h"
#include "kernels/timeline.cuh"  // @flashserve/cuda's kernel timeline (measurement only)

namespace flashserve::mla {
namespace {

constexpr unsigned FULL = 0xffffffffu;
constexpr int WARPS = 8;
constexpr int THREADS = WARPS * 32;
constexpr int ROWS_PER_WARP = COMBINE_UV_ROWS / WARPS;
constexpr int ROW_CHUNKS = HEAD_DIM_V / 8;          // 16-byte chunks of a W_UV row
constexpr int CHUNKS_PER_LANE = ROW_CHUNKS / 32;    // of each row, per lane
static_assert(COMBINE_UV_ROWS % WARPS == 0, "whole rows per warp");
static_assert(HEAD_DIM_V == 2 * THREADS, "the combine gives each thread two columns");
static_assert(ROWS_PER_WARP * COMBINE_UV_MAX_TOKENS <= 32, "one lane stores each (row, token) sum");

__device__ __forceinline__ float dot8(uint4 w, uint4 x, float acc) {
  const __nv_bfloat162* wp = reinterpret_cast<const __nv_bfloat162*>(&w);
  const __nv_bfloat162* xp = reinterpret_cast<const __nv_bfloat162*>(&x);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 a = __bfloat1622float2(wp[i]), b = __bfloat1622float2(xp[i]);
    acc = fmaf(a.x, b.x, acc);
    acc = fmaf(a.y, b.y, acc);
  }
  return acc;
}

// Columns (col, col + 1) of query row `row` of request r, combined over its splits as run_combine
// does (same weights, same order of accumulation, same rounding), or the decode kernel's own output
// when the request is in one piece. The first EARLY_SPLITS partials are requested together with the
// log-sum-exps (one L2 round trip after num_splits instead of two; a one-token step has ~17 splits).
constexpr int EARLY_SPLITS = 24;

__device__ __forceinline__ __nv_bfloat162 combined_pair(const DecodeParams& p, int r, int row, int col, int lane) {
  const int first = p.num_splits[r];
  const int splits = p.num_splits[r + 1] - first;
  if (splits == 1)
    return *reinterpret_cast<const __nv_bfloat162*>(static_cast<const __nv_bfloat16*>(p.out) + r * p.o_batch_stride +
                                                     row * p.o_row_stride + col);
  const float* lse_of = p.lse_accum + (int64_t)first * p.q_rows + row;  // split k at k * q_rows
  const float* src0 = p.o_accum + ((int64_t)first * p.q_rows + row) * HEAD_DIM_V + col;
  const int64_t split_stride = (int64_t)p.q_rows * HEAD_DIM_V;
  // The first 32 splits' log-sum-exps are kept for their weights (run_combine reads them twice).
  const float lse_lane = lane < splits ? lse_of[(int64_t)lane * p.q_rows] : -INFINITY;
  float2 early[EARLY_SPLITS];
#pragma unroll
  for (int j = 0; j < EARLY_SPLITS; ++j)
    early[j] = j < splits ? *reinterpret_cast<const float2*>(src0 + j * split_stride) : make_float2(0.f, 0.f);
  float lse_max = lse_lane;
  for (int k = lane + 32; k < splits; k += 32) lse_max = fmaxf(lse_max, lse_of[(int64_t)k * p.q_rows]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) lse_max = fmaxf(lse_max, __shfl_xor_sync(FULL, lse_max, o));

  float acc0 = 0.f, acc1 = 0.f, denom = 0.f;
  if (lse_max != -INFINITY) {
    for (int k0 = 0; k0 < splits; k0 += 32) {
      float my_w = 0.f;
      if (k0 + lane < splits) my_w = expf((k0 == 0 ? lse_lane : lse_of[(int64_t)(k0 + lane) * p.q_rows]) - lse_max);
      denom += my_w;
      const int n = splits - k0 < 32 ? splits - k0 : 32;
      int j = 0;
      if (k0 == 0) {
#pragma unroll
        for (; j < EARLY_SPLITS; ++j) {
          if (j >= n) break;
          const float w = __shfl_sync(FULL, my_w, j);
          acc0 += w * early[j].x;
          acc1 += w * early[j].y;
        }
      }
#pragma unroll 8
      for (; j < n; ++j) {
        const float w = __shfl_sync(FULL, my_w, j);
        const float2 v = *reinterpret_cast<const float2*>(src0 + (k0 + j) * split_stride);
        acc0 += w * v.x;
        acc1 += w * v.y;
      }
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) denom += __shfl_xor_sync(FULL, denom, o);
  const float inv = denom > 0.f ? 1.f / denom : 0.f;
  return __floats2bfloat162_rn(acc0 * inv, acc1 * inv);
}

__global__ void __launch_bounds__(THREADS) combine_uv_kernel(DecodeParams p, CombineUvParams uv) {
  __shared__ __align__(16) __nv_bfloat16 latent[COMBINE_UV_MAX_TOKENS][HEAD_DIM_V];
  const int head = blockIdx.y;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row0 = blockIdx.x * COMBINE_UV_ROWS + warp * ROWS_PER_WARP;

  // W_UV is a weight no kernel of the step writes: read before the wait.
  const uint4* w = reinterpret_cast<const uint4*>(uv.w_uv) + ((int64_t)head * uv.v_dim + row0) * ROW_CHUNKS;
  uint4 wv[ROWS_PER_WARP][CHUNKS_PER_LANE];
#pragma unroll
  for (int i = 0; i < ROWS_PER_WARP; ++i)
#pragma unroll
    for (int c = 0; c < CHUNKS_PER_LANE; ++c) wv[i][c] = __ldg(w + i * ROW_CHUNKS + c * 32 + lane);

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");  // no-op unless launched as a dependent
  flashserve::timeline_stamp(flashserve::TIMELINE_TAG_MLA_COMBINE_UV);
  // The kernel after this one (o_proj) requests its weights before its own wait; the grid here is a
  // few dozen blocks, so its blocks fit beside them. Not under tuning bit 9 (A/B, as run_combine).
  if (!(p.tuning & 512)) asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif

  const int tokens = p.b * p.s_q;
  const int col = threadIdx.x * 2;
  for (int t = 0; t < tokens; ++t) {
    const int r = t / p.s_q, s = t - r * p.s_q;
    *reinterpret_cast<__nv_bfloat162*>(&latent[t][col]) = combined_pair(p, r, s * p.h_q + head, col, lane);
  }
  __syncthreads();

  float acc[ROWS_PER_WARP][COMBINE_UV_MAX_TOKENS];
#pragma unroll
  for (int t = 0; t < COMBINE_UV_MAX_TOKENS; ++t) {
#pragma unroll
    for (int i = 0; i < ROWS_PER_WARP; ++i) acc[i][t] = 0.f;
    if (t >= tokens) continue;
    const uint4* x = reinterpret_cast<const uint4*>(latent[t]);
#pragma unroll
    for (int c = 0; c < CHUNKS_PER_LANE; ++c) {
      const uint4 xc = x[c * 32 + lane];
#pragma unroll
      for (int i = 0; i < ROWS_PER_WARP; ++i) acc[i][t] = dot8(wv[i][c], xc, acc[i][t]);
    }
  }
  __nv_bfloat16* out = static_cast<__nv_bfloat16*>(uv.result);
#pragma unroll
  for (int t = 0; t < COMBINE_UV_MAX_TOKENS; ++t) {
    if (t >= tokens) break;
#pragma unroll
    for (int i = 0; i < ROWS_PER_WARP; ++i) {
      float v = acc[i][t];
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL, v, o);
      if (lane == t * ROWS_PER_WARP + i)
        out[((int64_t)t * p.h_q + head) * uv.v_dim + row0 + i] = __float2bfloat16_rn(v);
    }
  }
}

}  // namespace

cudaError_t run_combine_uv(const DecodeParams& params, const CombineUvParams& uv, bool programmatic_launch) {
  if (!combine_uv_applies(params, uv.v_dim)) return cudaErrorInvalidValue;
  return launch_kernel(combine_uv_kernel, dim3(uv.v_dim / COMBINE_UV_ROWS, params.h_q), dim3(THREADS), 0,
                       params.stream, programmatic_launch, params, uv);
}

}  // namespace flashserve::mla
