// The absorbed MLA query of decode-sized steps: out[t, h] = [q_nope[t, h] @ W_UK[h] ; q_pe[t, h]],
// [T, heads, latent + rope] from q [T, heads, nope + rope], read in place (no slices, no concat), and
// optionally the step's latent rows [c_kv ; k_pe] written into the paged cache at their slots.
//   tokens <= 2:  one launch: the grouped skinny GEMM (one warp per latent column of a head) with q_pe
//                 and the cache rows copied by the same launch;
//   tokens <= 64: the grouped GEMM over heads with strided operands, then the copies.
// Larger steps use cuBLASLt from TypeScript (CudaDevice.mlaAbsorbQuery).
//
// With `inputs` (mlaInputs folded in): q, c_kv and k_pe are mlaInputs' outputs, not yet computed, and
// `inputs` computes them from the raw projection. At <= 2 tokens one launch does both (the skinny
// GEMV's MLA-inputs form, skinny_gemm.h); otherwise run_mla_inputs, then the above. Either way every
// output of both ops is written, bit for bit as the two calls write it.
#pragma once
#include <cuda_runtime_api.h>

#include "kernels/mla_inputs.h"

namespace flashserve {

constexpr int MLA_QUERY_MAX_TOKENS = 64;

struct MlaQueryParams {
  const void* q;       // [tokens, heads, nope + rope] bf16
  const void* w_uk_t;  // [heads, latent, nope] bf16: W_UK transposed per head
  void* out;           // [tokens, heads, latent + rope] bf16
  int tokens, heads, nope, rope, latent;
  // Optional cache write (cache null: none): row slots[t] of cache [num_slots, latent + rope] gets
  // [c_kv[t] ; k_pe[t]]; a slot outside [0, num_slots) is skipped.
  const void* c_kv;        // [tokens, latent] bf16
  const void* k_pe;        // [tokens, rope] bf16
  const int32_t* slots;    // [tokens]
  void* cache;
  int64_t num_slots;
  int sms;
  cudaStream_t stream;
  // Optional: mlaInputs to fold in (q == inputs->q_out, c_kv == inputs->c_kv, k_pe == inputs->k_pe).
  const MlaInputsParams* inputs = nullptr;
  // Optional: a weight the skinny launch requests into L2 (SkinnyGemmParams::l2_prefetch).
  const void* l2_prefetch = nullptr;
  int64_t l2_prefetch_bytes = 0;
};
void run_mla_query(MlaQueryParams& p);

}  // namespace flashserve
