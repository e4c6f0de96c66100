// Decode-sized GEMM: C[m, n] = A[m, k] @ W[n, k]^T (+ bias) for m <= 16, the shape of every Linear in
// a decode step at small batch. Bound by reading W once; one warp per output column walks W's row
// with 16-byte loads and keeps m partial sums, so a 2.4 MB weight is a 2-3 us kernel instead of a
// ~10 us library GEMM tuned for larger m.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/elementwise.h"

namespace flashserve {

constexpr int SKINNY_GEMM_MAX_M = 16;

struct SkinnyGemmParams {
  const void* a;     // [m, k] bf16, row stride lda (multiple of 8)
  const void* w;     // [n, k] bf16, contiguous rows
  const void* bias;  // [n] bf16 or null
  void* c;           // [m, n] of c_dtype, row stride ldc
  DType c_dtype;
  int m, n, k;
  int64_t lda, ldc;
  int sms;  // multiprocessors, to size the grid
  cudaStream_t stream;
};
// True when the shape suits the kernel (m <= 16, k and lda multiples of 8, 16-byte aligned rows).
bool skinny_gemm_applies(const SkinnyGemmParams& p);
void run_skinny_gemm(SkinnyGemmParams& p);

}  // namespace flashserve
