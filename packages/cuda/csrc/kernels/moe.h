// MoE experts as grouped work, with no host synchronisation (so decode can be graph-captured):
//   1. moe_align: count the (token, k) assignments per expert, sort them by expert, and cut each
//      expert's rows into M-tiles; the tile list lives on the GPU;
//   2. grouped_gemm: one launch covers every active expert: block (n_tile, tile) multiplies the
//      tile's gathered rows by that expert's weight; blocks beyond the tile count exit at once;
//   3. moe_combine: out[t] = sum_j w[t, j] * y[pos(t, j)] in a fixed j order (deterministic).
// The grouped GEMM also serves as the dense GEMM when the addon is built without cuBLAS.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/elementwise.h"

namespace flashserve {


struct MoeAlignParams {
  const int32_t* topk_ids;  // [num_assign] = [num_tokens * top_k]
  int32_t* expert_offsets;  // [num_experts + 1] out: prefix sums of rows per expert
  int32_t* sorted_assign;   // [num_assign] out: assignment index per sorted row
  int32_t* assign_pos;      // [num_assign] out: sorted row of each assignment
  int32_t* tile_expert;     // [max_tiles] out
  int32_t* tile_row_begin;  // [max_tiles] out
  int32_t* num_tiles;       // [1] out
  int num_assign, num_experts, block_m;
  cudaStream_t stream;
};
void run_moe_align(MoeAlignParams& p);
// Upper bound of the tile count, for sizing the tile arrays and the grid. Every tile holds at least
// one row, so there are never more tiles than rows: at one token that keeps the grid at top_k row
// tiles instead of ~num_experts mostly-empty ones.
inline int moe_max_tiles(int num_assign, int num_experts, int block_m) {
  const int bound = (num_assign + block_m - 1) / block_m + num_experts;
  return bound < num_assign ? bound : num_assign;
}
// run_moe_align's outputs as consecutive parts of one i32 scratch buffer of this many elements...
inline int moe_align_scratch_ints(int num_assign, int num_experts, int max_tiles) {
  return num_experts + 1 + 2 * num_assign + 2 * max_tiles + 1;
}
// ...and the params that lay them out over `scratch`, in the order of MoeAlignParams.
inline MoeAlignParams moe_align_params(const int32_t* topk_ids, int32_t* scratch, int num_assign, int num_experts,
                                       int block_m, int max_tiles, cudaStream_t stream) {
  MoeAlignParams al{};
  al.topk_ids = topk_ids;
  al.expert_offsets = scratch;
  al.sorted_assign = al.expert_offsets + num_experts + 1;
  al.assign_pos = al.sorted_assign + num_assign;
  al.tile_expert = al.assign_pos + num_assign;
  al.tile_row_begin = al.tile_expert + max_tiles;
  al.num_tiles = al.tile_row_begin + max_tiles;
  al.num_assign = num_assign;
  al.num_experts = num_experts;
  al.block_m = block_m;
  al.stream = stream;
  return al;
}

struct GroupedGemmParams {
  // A rows: row p of the product reads a[gather ? gather[p] / gather_div : p].
  const void* a;  // bf16, row stride lda
  const int32_t* gather;
  int gather_div;
  int64_t lda;
  // Weights: group g's matrix is row-major [n, k] bf16 at w + g * w_group_stride (stacked experts).
  const void* w;
  int64_t w_group_stride;
  int n, k;
  // Tiles: tile i covers rows [tile_row_begin[i], min(+block_m, group_end[tile_group[i]+1])).
  // With tile_group null: dense batches (per-head projections): dense_groups groups (0 means 1) of m
  // rows each; group g reads A at a + g * a_group_stride and writes C at c + g * c_group_stride.
  const int32_t* tile_group;
  const int32_t* tile_row_begin;
  const int32_t* group_end;  // expert_offsets
  const int32_t* num_tiles;  // device scalar, or null with tile_group null
  int max_tiles, m;
  int dense_groups;
  int64_t a_group_stride, c_group_stride;
  void* c;  // [m, n] bf16, row stride ldc
  int64_t ldc;
  int block_m;  // 16 or 64
  int block_n;  // 64, or 32 with block_m 16 (0 means 64)
  // Split-K (decode: few row tiles leave SMs idle): split_k > 1 splits K over blockIdx.z and writes
  // unrounded fp32 partial sums to partial [split_k, m, n] instead of c; the next kernel (SiLU-and-mul
  // or the combine) adds them up, so splitting costs no extra launch.
  int split_k;  // 0 or 1: no split
  float* partial;
  // W, and with tile_group the tile list, may be read before the PDL wait: no kernel of this step writes
  // W, and the tile list was written at least two launches back (so it is complete by the time this
  // launch can start: its predecessor only lets it launch after passing its own wait). The blocks then
  // request their first stages of weights while the previous kernel drains. FLASHSERVE_NO_EARLY_WEIGHTS=1
  // (read once; A/B timing) ignores it.
  bool weights_ready;
  // SiLU-and-multiply in the epilogue (the experts' gate/up): W is [n, k] with gate rows [0, n/2) and up
  // rows [n/2, n), and C receives act [m, n/2] (ldc its row stride) instead of the product: the block of
  // columns [n0, n0 + BN) multiplies gate rows [n0/2, n0/2 + BN/2) and the matching up rows, and writes
  // silu(g) * u rounded as run_silu_mul does (bit for bit the same act). No split-K.
  bool gated;
  // Strided copies the launch does after its PDL wait (dense groups only: the absorbed query's q_pe and
  // its cache rows); unused ones have rows == 0.
  SideCopy copies[3];
  cudaStream_t stream;
};
void run_grouped_gemm(GroupedGemmParams& p);

// Row tile of a dense-groups grouped GEMM (the absorbed-MLA per-head projections) over `rows` rows:
// 16 (decode tiles: 64-wide K, 5 stages, weight-bandwidth bound) up to 64 rows, else 64 (prefill
// tiles, bound by the tensor cores). FLASHSERVE_DECODE_TILE_MAX_ROWS overrides the 64 (A/B timing;
// 16 was the threshold before the ninth session).
int dense_groups_block_m(int rows);

struct MoeCombineParams {
  const void* y;               // [num_assign, hidden] bf16, sorted rows (or null with y_partial)
  const float* y_partial;      // [splits, num_assign, hidden] fp32 split-K partials, or null
  int splits;
  const int32_t* assign_pos;   // [num_tokens * top_k]
  const float* topk_weights;   // [num_tokens * top_k]
  const void* addend;          // [num_tokens, hidden] bf16 or null (the shared experts' output)
  void* out;                   // [num_tokens, hidden] bf16
  int num_tokens, top_k, hidden;
  cudaStream_t stream;
};
void run_moe_combine(MoeCombineParams& p);

}  // namespace flashserve
