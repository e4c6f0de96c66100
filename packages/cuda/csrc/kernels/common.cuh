// Small device helpers shared by the kernels: bf16 conversion, warp and block reductions.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/timeline.cuh"

namespace flashserve {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float to_f(bf16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ bf16 to_bf(float v) { return __float2bfloat16_rn(v); }

// SiLU-and-mul of one gate/up pair as transformers computes it in bf16: the GEMM outputs round to
// bf16, silu(gate) rounds to bf16, and so does the product. (Inputs already in bf16 round to themselves.)
__device__ __forceinline__ bf16 silu_mul_bf16(float gate, float up) {
  const float g = to_f(to_bf(gate)), u = to_f(to_bf(up));
  return to_bf(to_f(to_bf(g / (1.f + __expf(-g)))) * u);
}

// Programmatic dependent launch (kernels/launch.h). pdl_wait(): block until the kernels this one
// depends on have finished and their writes are visible; every thread calls it before reading what an
// earlier kernel wrote and before writing anything (an earlier kernel may still read the memory this
// one reuses). pdl_launch_dependents(): the next kernel may start launching (its blocks fill SMs as
// this one's retire). Both are no-ops for a kernel launched without the attribute, and before sm_90.
// pdl_wait() also stamps the kernel timeline when one is on (timeline.h; measurement only).
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
  timeline_stamp();
}
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// One element of RMSNorm's output as transformers' DeepseekV2RMSNorm computes it in bf16: x * inv
// (inv = rsqrt(mean of squares + eps)) rounds to bf16, and its product with the bf16 weight w rounds
// again. norm.cu and skinny_gemm.cu's norm form both use it, so they agree bit for bit.
__device__ __forceinline__ bf16 rms_scale(float x, float inv, float w) { return to_bf(w * to_f(to_bf(x * inv))); }

// Warp argmax over (value, index); ties go to the lower index, so results are reproducible.
__device__ __forceinline__ void warp_argmax(float& v, int& i) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int oi = __shfl_xor_sync(0xffffffffu, i, o);
    if (ov > v || (ov == v && oi < i)) {
      v = ov;
      i = oi;
    }
  }
}

// Block-wide sum; `scratch` holds at least 32 floats. Every thread gets the result.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : 0.f;
  return warp_sum(v);
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : -INFINITY;
  return warp_max(v);
}

}  // namespace flashserve
