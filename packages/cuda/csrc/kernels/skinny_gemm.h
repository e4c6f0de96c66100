// Decode-sized GEMM: C[m, n] = A[m, k] @ W[n, k]^T (+ bias) for m <= 16, the shape of every Linear in
// a decode step at small batch. Bound by reading W once: one warp per output column walks W's row
// with batches of 16-byte loads, keeping m partial sums.
//
// Grouped form (the absorbed-MLA per-head products at a token or two): output column j belongs to
// group g = j / group_rows and reads its activations at a + g * a_group_stride; it is written at
// c + g * c_group_stride + j % group_rows. One launch covers all heads.
//
// Launched with programmatic dependent launch (kernels/launch.h): each warp requests its first weight
// row before waiting for the kernel that produces A.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/elementwise.h"

namespace flashserve {

constexpr int SKINNY_GEMM_MAX_M = 16;

// Strided bf16 copies done by the same launch (after its PDL wait): dst[row(r), c] = src[r, c] for
// r < rows, c < cols, strides in elements, with row(r) = dst_index[r] when dst_index is set (an index
// outside [0, dst_rows) skips the row: the padding slots of a captured decode graph), else r. The
// absorbed MLA query uses them to put q_pe beside the latent part and to write the step's latent rows
// into the paged KV cache, saving two launches.
struct SideCopy {
  const void* src = nullptr;
  void* dst = nullptr;
  int rows = 0, cols = 0;
  int64_t src_stride = 0, dst_stride = 0;
  const int32_t* dst_index = nullptr;
  int64_t dst_rows = 0;
};
constexpr int SKINNY_SIDE_COPIES = 3;

struct SkinnyGemmParams {
  const void* a;     // [m, k] bf16, row stride lda (multiple of 8)
  const void* w;     // [n, k] bf16, contiguous rows
  const void* bias;  // [n] bf16 or null
  void* c;           // [m, n] of c_dtype, row stride ldc
  DType c_dtype;
  int m, n, k;
  int64_t lda, ldc;
  int group_rows;  // 0: one group (a plain Linear)
  int64_t a_group_stride, c_group_stride;
  SideCopy copies[SKINNY_SIDE_COPIES];  // unused ones have rows == 0
  int sms;  // multiprocessors, to size the grid
  cudaStream_t stream;
};
// True when the shape suits the kernel (m <= 16; k, lda and a_group_stride multiples of 8; 16-byte
// aligned A and W).
bool skinny_gemm_applies(const SkinnyGemmParams& p);
void run_skinny_gemm(SkinnyGemmParams& p);

}  // namespace flashserve
