// The MoE experts of a decode step with a few tokens (<= MOE_SMALL_MAX_TOKENS), routed and shared,
// in two launches and with no host synchronisation (graph-safe):
//   1. gate/up: act[t] = [silu(g) * u for each of the token's top_k experts | for the shared MLP],
//      one warp per (assignment, intermediate row) reading that expert's gate and up rows; expert ids
//      are read from the router's device output, so only the chosen experts' weights are streamed;
//   2. down + combine: one block per pair of output columns (h, h + 1): its warps compute that pair
//      for every (token, slot) through the slot's expert (down_e(act[t, j])) and for the shared MLP
//      (one warp per shared row, all tokens), the results meet in shared memory and the block writes
//      out[t] = sum_j w[t, j] * expert_out[t, j] + shared output, in slot order (deterministic).
// `unfused_combine` restores the earlier three launches (down into the expert_out scratch, then a
// separate combine kernel), bit for bit the same output; ops_moe.cc sets it from
// FLASHSERVE_MOE_SMALL_UNFUSED=1 (A/B timing). At 3-4 tokens that is the default (moe_small_fused_down).
// `route` folds the router in (router.h): no router launch and no topk_ids / topk_weights in memory;
// every block that needs the routing computes it from the router logits itself (route_token,
// router.cuh: the router kernel's own code, so the same ids and weights bit for bit): a gate/up block
// after its PDL wait (the logits come from the kernel just before), a down block before it (see the
// NOTE at route_block in moe_small.cu).
// Unlike the grouped path (moe.h), tokens that share an expert read its weights once each: at a few
// tokens that costs little, and it needs no sort, and no separate launches for the shared MLP.
//
// Numerics: those of the grouped path and of transformers in bf16: gate/up outputs, silu(g) * u and
// each expert's down output round to bf16; the weighted sum over the token's experts is fp32 in slot
// order and rounds to bf16; the shared MLP's output (bf16) is added and the sum rounds again.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/router.h"

namespace flashserve {

constexpr int MOE_SMALL_MAX_TOKENS = 8;

struct MoeSmallParams {
  const void* x;              // [tokens, hidden] bf16
  const int32_t* topk_ids;    // [tokens, top_k]; an id outside [0, experts) contributes nothing
  const float* topk_weights;  // [tokens, top_k]
  const void* gate_up;        // [experts, 2 * inter, hidden] bf16: gate rows then up rows
  const void* down;           // [experts, hidden, inter] bf16
  const void* shared_gate_up;  // [2 * shared_inter, hidden] bf16, or null (no shared experts)
  const void* shared_down;     // [hidden, shared_inter] bf16
  void* act;                   // scratch [tokens, top_k * inter + shared_inter] bf16
  void* expert_out;            // scratch [tokens * top_k + tokens, hidden] bf16 (unless moe_small_fused_down)
  void* out;                   // [tokens, hidden] bf16
  int tokens, hidden, inter, shared_inter, experts, top_k;
  int sms;
  cudaStream_t stream;
  bool unfused_combine;  // down, then a separate combine kernel through expert_out (A/B)
  // Routes from router.logits (router.num_tokens = tokens; its topk_ids / topk_weights and stream are
  // not used) instead of reading topk_ids / topk_weights; fused down + combine only.
  bool route;
  RouterParams router;
};
// Bytes of the `act` scratch buffer.
inline size_t moe_small_act_bytes(int tokens, int top_k, int inter, int shared_inter) {
  return sizeof(uint16_t) * static_cast<size_t>(tokens) * (static_cast<size_t>(top_k) * inter + shared_inter);
}
// Whether the down stage runs as the fused down + combine kernel: always when routing (`route`), never
// with unfused_combine, else at 1-2 and 5-8 tokens (moe_small.cu, NOTE at fused_down_pays). Otherwise
// it needs the expert_out scratch.
bool moe_small_fused_down(const MoeSmallParams& p);
// Bytes of the `expert_out` scratch buffer.
inline size_t moe_small_expert_out_bytes(int tokens, int top_k, int hidden) {
  return sizeof(uint16_t) * static_cast<size_t>(tokens) * (top_k + 1) * hidden;
}
// All launches; the gate/up stage and the down stage (down + combine, fused or not) are also exposed
// alone (benchmarks).
void run_moe_small(MoeSmallParams& p);
void run_moe_small_gate_up(MoeSmallParams& p);
void run_moe_small_down(MoeSmallParams& p);

}  // namespace flashserve
