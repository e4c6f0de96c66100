// Memory-shaped kernels: embedding lookup, row gathers, strided 2-D copies, casts, adds, random fill,
// the paged latent-cache write and the merge of a step's token ids. Each launcher enqueues on `stream`
// and throws naming its op.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace flashserve {

// Host-side f16 only appears as upload input; device tensors are f32, bf16 or i32.
enum class DType : int { F32 = 0, BF16 = 1, I32 = 2, F16 = 3 };

// Strided bf16 copies a GEMM launch does on the side, after its PDL wait (skinny_gemm.h, moe.h; device
// side: copy_share in side_copy.cuh): dst[row(r), c] = src[r, c] for r < rows, c < cols, strides in
// elements, with row(r) = dst_index[r] when dst_index is set (an index outside [0, dst_rows) skips the
// row: the padding slots of a captured decode graph), else r. The absorbed MLA query uses them to put
// q_pe beside the latent part and to write the step's latent rows into the paged KV cache, saving two
// launches.
struct SideCopy {
  const void* src = nullptr;
  void* dst = nullptr;
  int rows = 0, cols = 0;
  int64_t src_stride = 0, dst_stride = 0;
  const int32_t* dst_index = nullptr;
  int64_t dst_rows = 0;
};
// Whether any of a launch's side copies has rows to copy.
template <int N>
inline bool has_side_copies(const SideCopy (&copies)[N]) {
  for (const SideCopy& cp : copies)
    if (cp.rows > 0) return true;
  return false;
}

struct EmbeddingParams {
  const int32_t* ids;  // [num_tokens]
  const void* table;   // [vocab, hidden] bf16
  void* out;           // [num_tokens, hidden] bf16
  int num_tokens, hidden, vocab;
  cudaStream_t stream;
};
void run_embedding(EmbeddingParams& p);

// out[r, :] = in[index[r] / index_div, :] for row-major matrices of `cols` elements of `elem_bytes`
// bytes (index_div turns MoE assignment ids t * top_k + j into token rows).
struct GatherRowsParams {
  const int32_t* index;  // [rows]
  int index_div;         // 1 for a plain gather
  const void* in;        // [in_rows, cols]
  void* out;             // [rows, cols]
  int rows, in_rows, cols, elem_bytes;
  cudaStream_t stream;
};
void run_gather_rows(GatherRowsParams& p);

// 2-D strided copy with dtype conversion: out[r, c] = in[r, c], strides in elements.
// Slices, concatenations along the last dim and casts are all this one kernel.
struct Copy2dParams {
  const void* in;
  void* out;
  DType in_dtype, out_dtype;
  int rows, cols;
  int64_t in_stride, out_stride;
  cudaStream_t stream;
};
void run_copy2d(Copy2dParams& p);

// out[g, j, i] = in[g, i, j]: [groups, rows, cols] -> [groups, cols, rows], 2-byte elements (bf16).
struct TransposeParams {
  const void* in;
  void* out;
  int groups, rows, cols;
  cudaStream_t stream;
};
void run_transpose(TransposeParams& p);

// out = a * alpha + b * beta, elementwise over n elements (bf16 or f32 each, chosen per operand).
struct AxpbyParams {
  const void* a;
  const void* b;  // may be null: out = a * alpha
  void* out;
  DType a_dtype, b_dtype, out_dtype;
  int64_t n;
  float alpha, beta;
  cudaStream_t stream;
};
void run_axpby(AxpbyParams& p);

// c[r, :] += bias[:] in place (a Linear's bias after the GEMM).
struct AddBiasParams {
  void* c;           // [rows, cols] bf16
  const void* bias;  // [cols] bf16
  int rows, cols;
  cudaStream_t stream;
};
void run_add_bias(AddBiasParams& p);

// Deterministic uniform numbers in [lo, hi) from (seed, index): --load-format dummy weights.
struct FillRandomParams {
  void* out;
  DType dtype;
  int64_t n;
  uint64_t seed;
  float lo, hi;
  cudaStream_t stream;
};
void run_fill_random(FillRandomParams& p);

// Writes each new token's latent row [c_kv ; k_pe] into the paged cache at its slot; slot < 0 skips
// (padding rows of a captured decode graph).
struct KvCacheWriteParams {
  const void* c_kv;         // [num_tokens, kv_rank] bf16, row stride c_kv_stride
  const void* k_pe;         // [num_tokens, rope_dim] bf16, row stride k_pe_stride
  const int32_t* slots;     // [num_tokens]
  void* cache;              // [num_slots, kv_rank + rope_dim] bf16
  int num_tokens, kv_rank, rope_dim;
  int64_t c_kv_stride, k_pe_stride, num_slots;
  cudaStream_t stream;
};
void run_kv_cache_write(KvCacheWriteParams& p);

// Async scheduling's input ids: out[i] = prev[rows[i]] when rows[i] >= 0, else ids[i]. A decode step is
// launched before the previous step's sampled ids reach the host; those stay on the device (prev, one per
// sampling row of that step) and `rows` says which of them each token takes, the other tokens' ids
// coming from the host. A row outside prev takes ids[i] too (rows are not checked on the host).
struct MergeTokenIdsParams {
  int32_t* out;          // [n]
  const int32_t* ids;    // [n]
  const int32_t* prev;   // [prev_n]
  const int32_t* rows;   // [n]
  int n, prev_n;
  cudaStream_t stream;
};
void run_merge_token_ids(MergeTokenIdsParams& p);

}  // namespace flashserve
