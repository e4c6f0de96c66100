#include <cstdint>

#include "kernels/common.cuh"
#include "kernels/skinny_gemm.h"
#include "runtime/check.h"

namespace flashserve {
namespace {

constexpr int WARPS = 8;

union Pack8 {
  uint4 u;
  __nv_bfloat162 h[4];
};

// Weights are read exactly once: skip L1 so they do not evict the activations every warp re-reads.
__device__ __forceinline__ uint4 load_stream(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

template <int M>
__global__ void __launch_bounds__(WARPS * 32) skinny_gemm_kernel(SkinnyGemmParams p) {
  const int lane = threadIdx.x & 31;
  const int warps_total = gridDim.x * WARPS;
  const int chunks = p.k / 8;
  const bf16* a = static_cast<const bf16*>(p.a);
  for (int n = blockIdx.x * WARPS + (threadIdx.x >> 5); n < p.n; n += warps_total) {
    const bf16* wrow = static_cast<const bf16*>(p.w) + static_cast<int64_t>(n) * p.k;
    float acc[M];
#pragma unroll
    for (int r = 0; r < M; ++r) acc[r] = 0.f;
#pragma unroll 4
    for (int c = lane; c < chunks; c += 32) {
      Pack8 w;
      w.u = load_stream(wrow + c * 8);
      float2 wf[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) wf[j] = __bfloat1622float2(w.h[j]);
#pragma unroll
      for (int r = 0; r < M; ++r) {
        if (r < p.m) {
          Pack8 x;
          x.u = *reinterpret_cast<const uint4*>(a + r * p.lda + c * 8);
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            const float2 xf = __bfloat1622float2(x.h[j]);
            acc[r] = fmaf(xf.x, wf[j].x, fmaf(xf.y, wf[j].y, acc[r]));
          }
        }
      }
    }
#pragma unroll
    for (int r = 0; r < M; ++r) acc[r] = warp_sum(acc[r]);
    if (lane == 0) {
      const float b = p.bias ? to_f(static_cast<const bf16*>(p.bias)[n]) : 0.f;
      for (int r = 0; r < p.m; ++r) {
        // Like cuBLAS with a bias epilogue: the GEMM result rounds to bf16 before the bias is added.
        const float v = p.bias ? to_f(to_bf(acc[r])) + b : acc[r];
        if (p.c_dtype == DType::F32) {
          static_cast<float*>(p.c)[r * p.ldc + n] = v;
        } else {
          static_cast<bf16*>(p.c)[r * p.ldc + n] = to_bf(v);
        }
      }
    }
  }
}

}  // namespace

bool skinny_gemm_applies(const SkinnyGemmParams& p) {
  const auto aligned = [](const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; };
  return p.m >= 1 && p.m <= SKINNY_GEMM_MAX_M && p.k % 8 == 0 && p.lda % 8 == 0 && aligned(p.a) && aligned(p.w);
}

void run_skinny_gemm(SkinnyGemmParams& p) {
  if (p.n == 0 || p.m == 0) return;
  require(skinny_gemm_applies(p), "linear (skinny): shape or alignment not supported");
  // Enough warps for several rows in flight per SM, no more blocks than rows need.
  const int want = (p.n + WARPS - 1) / WARPS;
  const int cap = (p.sms > 0 ? p.sms : 132) * 8;
  const int blocks = want < cap ? want : cap;
  if (p.m <= 1) {
    skinny_gemm_kernel<1><<<blocks, WARPS * 32, 0, p.stream>>>(p);
  } else if (p.m <= 2) {
    skinny_gemm_kernel<2><<<blocks, WARPS * 32, 0, p.stream>>>(p);
  } else if (p.m <= 4) {
    skinny_gemm_kernel<4><<<blocks, WARPS * 32, 0, p.stream>>>(p);
  } else if (p.m <= 8) {
    skinny_gemm_kernel<8><<<blocks, WARPS * 32, 0, p.stream>>>(p);
  } else {
    skinny_gemm_kernel<16><<<blocks, WARPS * 32, 0, p.stream>>>(p);
  }
  check_launch("linear (skinny)");
}

}  // namespace flashserve
