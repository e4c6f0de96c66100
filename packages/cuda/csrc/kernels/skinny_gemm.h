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
//
// Norm form (SkinnyNorm, 1-2 rows): A = RMSNorm(x + residual) is computed by the launch itself. At
// batch 1 the decoder's residual add + RMSNorm was a kernel of its own before [q | kv_a], the router
// gate (the dense layer's gate_up) and lm_head; folded in, every block re-derives the normed rows from
// x and residual (a few KiB, from L2) into shared memory and dots its weight rows against them, so no
// block waits for another and the weights are still requested before the PDL wait.
//
// MLA-inputs form (SkinnyMlaInputs, the grouped absorbed query at 1-2 tokens): A is the RAW query
// projection (before RoPE), whose nope part RoPE leaves alone; the launch also does mlaInputs' work
// (mla_inputs.cuh): q_out (RoPE'd q), c_kv and k_pe as run_mla_inputs writes them, the RoPE'd q_pe
// into each head's columns [group_rows, group_rows + rope) of C, and [c_kv ; k_pe] into the paged
// cache at the slots. Blocks t < m do token t's latent row (a 512-element norm), every block a share
// of the query's pairs; one launch less per layer at a decode step.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/elementwise.h"
#include "kernels/mla_inputs.h"

namespace flashserve {

constexpr int SKINNY_GEMM_MAX_M = 16;

constexpr int SKINNY_SIDE_COPIES = 3;

// The norm form's inputs. Bitwise what run_rms_norm (norm.cu) writes, i.e. its residual sum rounded to
// bf16, its sum of squares in the same order (thread t of 256 adds columns t, t + 256, ..., then the
// block reduction) and its roundings; the GEMV then reads those bf16 rows as it would read A.
struct SkinnyNorm {
  const void* x = nullptr;         // [m, k] bf16, contiguous; null: a plain GEMM reading A
  const void* residual = nullptr;  // [m, k] bf16, contiguous, or null (RMSNorm of x alone)
  const void* weight = nullptr;    // [k] bf16
  void* residual_out = nullptr;    // [m, k] bf16 or null: receives x + residual (block 0 writes it)
  void* normed_out = nullptr;      // [m, k] bf16 or null: receives the normed rows (block 0 writes them)
  float eps = 0.f;
};
constexpr int SKINNY_NORM_MAX_M = 2;
// The rows live in shared memory: m * k * 2 bytes a block (32 KiB at the limits).
constexpr int SKINNY_NORM_MAX_K = 8192;

// The MLA-inputs form's inputs (in.kv null: not this form). in.q is the GEMM's A (its rows: tokens,
// its groups: heads of in.head_dim with the nope part first); cache rows are [kv_rank + rope_dim].
struct SkinnyMlaInputs {
  MlaInputsParams in{};
  const int32_t* slots = nullptr;  // [m]; a slot outside [0, num_slots) writes no cache row
  void* cache = nullptr;           // null: no cache write
  int64_t num_slots = 0;
};

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
  SkinnyNorm norm;  // norm.x set: the norm form (a, lda unused; no groups, no side copies)
  SkinnyMlaInputs mla;  // mla.in.kv set: the MLA-inputs form (no side copies)
  // Optional: bytes the blocks request into L2 before their PDL wait, a slice each (a weight a later
  // kernel reads, fetched while this and the kernels after it leave memory bandwidth idle). A start
  // that is not 16-byte aligned drops the hint (run_skinny_gemm).
  const void* l2_prefetch;
  int64_t l2_prefetch_bytes;
};
// True when the shape suits the kernel (m <= 16; k, lda and a_group_stride multiples of 8; 16-byte
// aligned A and W). The norm form: m <= SKINNY_NORM_MAX_M, k <= SKINNY_NORM_MAX_K, a plain Linear, and
// x, residual, the norm weight and both outputs 16-byte aligned. The MLA-inputs form: m <= 2, a grouped
// product over in.num_heads heads reading in.q, and mlaInputs' limits (kv_rank <= 1024, rope_dim even).
bool skinny_gemm_applies(const SkinnyGemmParams& p);
void run_skinny_gemm(SkinnyGemmParams& p);

}  // namespace flashserve
