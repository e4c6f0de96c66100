// Dense GEMMs through cuBLASLt (bf16 operands, fp32 accumulation), row-major in our terms:
//   C[m, n] = A[m, k] @ op(B),  op(B) = B^T for B [n, k] (trans_b, the HF Linear layout) or B [k, n],
// optionally batched with element strides between batches (absorbed-MLA per-head projections).
// Defined in gemm_cublas.cc, which only the GPU machine compiles (CI has no cuBLAS headers).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/elementwise.h"

namespace flashserve {

struct GemmParams {
  const void* a;  // bf16 [m, k], row stride lda
  const void* b;  // bf16 [n, k] (trans_b) or [k, n], row stride ldb
  void* c;        // [m, n] of c_dtype (bf16 or f32), row stride ldc
  DType c_dtype;
  int m, n, k;
  int64_t lda, ldb, ldc;
  bool trans_b;
  int batch;  // 1 for a plain GEMM
  int64_t stride_a, stride_b, stride_c;
  cudaStream_t stream;
};
void run_gemm(GemmParams& p);

}  // namespace flashserve
