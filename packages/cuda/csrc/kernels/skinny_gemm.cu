#include <cstdint>

#include "kernels/gemv.cuh"
#include "kernels/launch.h"
#include "kernels/skinny_gemm.h"
#include "runtime/check.h"

namespace flashserve {
namespace {

constexpr int WARPS = 8;
// NOTE: 4 blocks of 8 warps per SM (registers capped at 64 per thread by the launch bounds) keep
// 32 warps x 4 KiB of weight loads in flight per SM, several times what copy bandwidth needs; a grid
// of at most one such wave lets every warp request its first row before the PDL wait.
constexpr int BLOCKS_PER_SM = 4;

// Lanes per output row: a warp covers 32 / LANES rows at once. Rows of 128 or 256 elements (the
// absorbed query's K = 128) would leave half a warp idle with 32 lanes per row.
template <int LANES>
__device__ __forceinline__ float row_sum(float v) {
#pragma unroll
  for (int o = LANES / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <int M, int LANES>
__global__ void __launch_bounds__(WARPS * 32, BLOCKS_PER_SM) skinny_gemm_kernel(SkinnyGemmParams p) {
  constexpr int ROWS_PER_WARP = 32 / LANES;
  const int lane = threadIdx.x & (LANES - 1);
  const int rows_total = gridDim.x * WARPS * ROWS_PER_WARP;
  const int chunks = p.k / 8;
  const int group_rows = p.group_rows > 0 ? p.group_rows : p.n;
  const bf16* w = static_cast<const bf16*>(p.w);
  int n = (blockIdx.x * WARPS + (threadIdx.x >> 5)) * ROWS_PER_WARP + (threadIdx.x & 31) / LANES;

  uint4 wv[GEMV_CHUNKS];
  if (n < p.n) load_row_group<LANES>(wv, w + static_cast<int64_t>(n) * p.k, 0, chunks, lane);
  pdl_wait();
  pdl_launch_dependents();

#pragma unroll
  for (int k = 0; k < SKINNY_SIDE_COPIES; ++k) {
    const SideCopy& cp = p.copies[k];
    const int total = cp.rows * cp.cols;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
      const int r = i / cp.cols, col = i - r * cp.cols;
      const int64_t dst_row = cp.dst_index ? cp.dst_index[r] : r;
      if (cp.dst_index && (dst_row < 0 || dst_row >= cp.dst_rows)) continue;
      static_cast<bf16*>(cp.dst)[dst_row * cp.dst_stride + col] = static_cast<const bf16*>(cp.src)[r * cp.src_stride + col];
    }
  }

  // NOTE: every lane of a warp runs the same number of iterations (rows_total is a multiple of the
  // rows per warp), so the shuffles below always see the whole warp; lanes past the end compute on
  // nothing and store nothing.
  bool preloaded = true;
  const int first = n - (threadIdx.x & 31) / LANES;  // the warp's first row this iteration
  for (int base_row = first; base_row < p.n; base_row += rows_total, n += rows_total) {
    const bool live = n < p.n;
    const bf16* wrow = w + static_cast<int64_t>(live ? n : 0) * p.k;
    const int g = live ? n / group_rows : 0, j = live ? n - g * group_rows : 0;
    const bf16* a = static_cast<const bf16*>(p.a) + g * p.a_group_stride;
    float acc[M];
#pragma unroll
    for (int r = 0; r < M; ++r) acc[r] = 0.f;
    for (int base = 0; base < chunks; base += LANES * GEMV_CHUNKS) {
      if (!preloaded && live) load_row_group<LANES>(wv, wrow, base, chunks, lane);
      preloaded = false;
#pragma unroll
      for (int u = 0; u < GEMV_CHUNKS; ++u) {
        const int c = base + u * LANES + lane;
        if (!live || c >= chunks) continue;
#pragma unroll
        for (int r = 0; r < M; ++r)
          if (r < p.m) acc[r] = dot8(wv[u], load_act_chunk(a + r * p.lda + c * 8), acc[r]);
      }
    }
#pragma unroll
    for (int r = 0; r < M; ++r) acc[r] = row_sum<LANES>(acc[r]);
    if (live && lane == 0) {
      const float b = p.bias ? to_f(static_cast<const bf16*>(p.bias)[n]) : 0.f;
      const int64_t col = g * p.c_group_stride + j;
#pragma unroll
      for (int r = 0; r < M; ++r) {
        if (r >= p.m) break;
        // Like cuBLAS with a bias epilogue: the GEMM result rounds to bf16 before the bias is added.
        const float v = p.bias ? to_f(to_bf(acc[r])) + b : acc[r];
        if (p.c_dtype == DType::F32) {
          static_cast<float*>(p.c)[r * p.ldc + col] = v;
        } else {
          static_cast<bf16*>(p.c)[r * p.ldc + col] = to_bf(v);
        }
      }
    }
  }
}

template <int LANES>
void launch_skinny(SkinnyGemmParams& p) {
  const int rows_per_block = WARPS * (32 / LANES);
  const int want = (p.n + rows_per_block - 1) / rows_per_block;
  const int cap = (p.sms > 0 ? p.sms : 132) * BLOCKS_PER_SM;
  const dim3 grid(want < cap ? want : cap), block(WARPS * 32);
  const char* op = "linear (skinny)";
  if (p.m <= 1) {
    launch_pdl(op, skinny_gemm_kernel<1, LANES>, grid, block, 0, p.stream, p);
  } else if (p.m <= 2) {
    launch_pdl(op, skinny_gemm_kernel<2, LANES>, grid, block, 0, p.stream, p);
  } else if (p.m <= 4) {
    launch_pdl(op, skinny_gemm_kernel<4, LANES>, grid, block, 0, p.stream, p);
  } else if (p.m <= 8) {
    launch_pdl(op, skinny_gemm_kernel<8, LANES>, grid, block, 0, p.stream, p);
  } else {
    launch_pdl(op, skinny_gemm_kernel<16, LANES>, grid, block, 0, p.stream, p);
  }
}

}  // namespace

bool skinny_gemm_applies(const SkinnyGemmParams& p) {
  const auto aligned = [](const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; };
  return p.m >= 1 && p.m <= SKINNY_GEMM_MAX_M && p.k % 8 == 0 && p.lda % 8 == 0 && p.a_group_stride % 8 == 0 &&
         aligned(p.a) && aligned(p.w);
}

void run_skinny_gemm(SkinnyGemmParams& p) {
  if (p.n == 0 || p.m == 0) return;
  require(skinny_gemm_applies(p), "linear (skinny): shape or alignment not supported");
  require(p.group_rows == 0 || p.n % p.group_rows == 0, "linear (skinny): n must be a multiple of group_rows");
  const int chunks = p.k / 8;
  if (chunks <= 8) {
    launch_skinny<8>(p);
  } else if (chunks <= 16) {
    launch_skinny<16>(p);
  } else {
    launch_skinny<32>(p);
  }
}

}  // namespace flashserve
