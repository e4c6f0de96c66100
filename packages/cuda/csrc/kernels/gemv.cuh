// Device helpers of the decode-sized matrix-vector kernels (skinny_gemm.cu, moe_small.cu): 16-byte
// chunks of 8 bf16, streamed weight loads, fp32 dot products.
//
// Why they look the way they do: at batch 1 a Linear is bound by reading its weight once, and a warp
// only keeps the loads it has issued before its first use in flight. So each lane issues a group of
// GEMV_CHUNKS independent 16-byte weight loads (4 KiB per warp) before any arithmetic.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/common.cuh"

namespace flashserve {

// Weight chunks a lane requests before it multiplies.
constexpr int GEMV_CHUNKS = 8;

union Bf16x8 {
  uint4 u;
  __nv_bfloat162 h[4];
};

// Weights are read exactly once per step: skip L1 so they do not evict the activations every warp
// re-reads.
__device__ __forceinline__ uint4 load_weight_chunk(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// Activations: written by an earlier kernel (visible after pdl_wait), re-read by many warps.
__device__ __forceinline__ uint4 load_act_chunk(const void* p) { return *static_cast<const uint4*>(p); }

// acc + sum_j w[j] * x[j] over one chunk, in fp32.
__device__ __forceinline__ float dot8(const uint4& w, const uint4& x, float acc) {
  Bf16x8 a, b;
  a.u = w;
  b.u = x;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 wf = __bfloat1622float2(a.h[j]);
    const float2 xf = __bfloat1622float2(b.h[j]);
    acc = fmaf(xf.x, wf.x, fmaf(xf.y, wf.y, acc));
  }
  return acc;
}

// Loads this lane's chunks base + u * LANES + lane (u < GEMV_CHUNKS, below `chunks`) of the bf16 row
// at `row`, LANES lanes sharing the row; chunks past the end are left unset and must not be used.
template <int LANES = 32>
__device__ __forceinline__ void load_row_group(uint4 (&w)[GEMV_CHUNKS], const bf16* row, int base, int chunks,
                                               int lane) {
#pragma unroll
  for (int u = 0; u < GEMV_CHUNKS; ++u) {
    const int c = base + u * LANES + lane;
    if (c < chunks) w[u] = load_weight_chunk(row + static_cast<int64_t>(c) * 8);
  }
}

}  // namespace flashserve
