// The one plain struct every MLA decode launcher takes. Strides are in elements, never bytes.
//
// Shapes (h_kv = 1, the single latent "KV head" every DeepSeek model caches):
//   q             [b, s_q, h_q, 576]            bf16, rows (s, h) packed: the query tile row of
//                                               (s, h) is s * h_q + h, so q_rows = s_q * h_q
//   kcache        [num_blocks, 64, 1, 576]      bf16, [c_kv ; k_pe]; V is its first 512 numbers
//   block_table   [b, max_blocks_per_seq]       int32
//   cache_seqlens [b]                           int32
//   out           [b, s_q, h_q, 512]            bf16
//   lse           [b, h_q, s_q]                 fp32, natural log of the softmax denominator
//   o_accum       [b + num_parts, q_rows, 512]  fp32 partial outputs of split requests
//   lse_accum     [b + num_parts, q_rows]       fp32 their log-sum-exp
//   sched_meta    [num_parts, SCHED_META_INTS]  int32, from get_mla_metadata
//   num_splits    [b + 1]                       int32 prefix sum of splits per request
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace flashserve::mla {

constexpr int HEAD_DIM_QK = 576;  // kv_lora_rank 512 + qk_rope_head_dim 64
constexpr int HEAD_DIM_V = 512;   // kv_lora_rank
constexpr int PAGE_SIZE = 64;     // tokens per cache block; one K tile and one V tile
// Pages' worth of fixed cost charged to each request when balancing work across SMs: a request
// costs its Q load, its output write and (when split) a combine, whatever its length.
constexpr int SCHED_FIXED_COST_PAGES = 5;
constexpr int SCHED_META_INTS = 8;

// One part of the flattened (request, page) work list. A part covers the pages from
// (begin_req, begin_page) up to, not including, (end_req, end_page).
struct SchedPart {
  int begin_req;
  int begin_page;
  int end_req;
  int end_page;
  int begin_split;  // index of the part's first piece among the pieces of begin_req
  int pad[3];
};
static_assert(sizeof(SchedPart) == SCHED_META_INTS * sizeof(int), "SchedPart is SCHED_META_INTS ints");

struct MetadataParams {
  const int* cache_seqlens;  // [b]
  int b;
  int q_rows;     // s_q * h_q / h_kv: query rows sharing one KV head per request
  int num_parts;  // from num_sm_parts()
  int* sched_meta;  // [num_parts, SCHED_META_INTS]
  int* num_splits;  // [b + 1]
  cudaStream_t stream;
};

struct DecodeParams {
  int b;
  int s_q;
  int h_q;
  int q_rows;  // s_q * h_q
  int num_blocks;
  int max_blocks_per_seq;
  int num_parts;
  float softmax_scale;

  const void* q;  // bf16 [b, s_q, h_q, 576]
  int64_t q_batch_stride;
  int64_t q_row_stride;  // between consecutive heads; consecutive s are h_q rows apart
  const void* kcache;    // bf16 [num_blocks, 64, 1, 576]
  int64_t k_block_stride;
  int64_t k_row_stride;
  const int* block_table;  // [b, max_blocks_per_seq]
  int64_t block_table_stride;
  const int* cache_seqlens;  // [b]

  void* out;  // bf16 [b, s_q, h_q, 512]
  int64_t o_batch_stride;
  int64_t o_row_stride;
  float* lse;        // [b, h_q, s_q]
  float* o_accum;    // [b + num_parts, q_rows, 512]
  float* lse_accum;  // [b + num_parts, q_rows]

  const int* sched_meta;  // [num_parts, SCHED_META_INTS]
  const int* num_splits;  // [b + 1]

  cudaStream_t stream;
  // Experiment switches for the benchmark's A/B runs; 0, the tuned default, everywhere else.
  // Bit 0: never a two-page schedule (sm90). Bit 1: launch the combine plainly (no programmatic
  // dependent launch). Bit 2: always a two-page schedule. Bit 3: wait for a whole page before
  // its Q K^T (instead of piece by piece). Bit 4: the two-page schedule in lockstep (v6's seesaw)
  // instead of staggered. Bit 5: reload a staged page only once all of it is free (not its left
  // half of V first). Bit 8 (256): the combine's wide layout (8-row blocks, a warp over all 512
  // columns) even for a small grid. Bit 9 (512): launch the sm90 decode kernel plainly (no
  // programmatic dependent launch) and let the combine's dependents start only once it exits.
  // Bit 11 (2048): the sm90 producer waits for the kernel before at the start, not just before it
  // first loads something that kernel writes (Q, a page holding a token of this step).
  int tuning;
};

// Number of parts the flattened work is cut into: one CTA per (part, 64-row query tile), so that
// the whole grid is one wave on num_sms multiprocessors.
inline int num_sm_parts(int num_sms, int q_rows) {
  const int tiles = (q_rows + 63) / 64;
  const int parts = num_sms / tiles;
  return parts > 0 ? parts : 1;
}

}  // namespace flashserve::mla
