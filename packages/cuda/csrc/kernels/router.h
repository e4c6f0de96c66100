// The MoE gate's top-k selection for both DeepSeek routers, one warp per token:
//   V2: softmax scores; greedy top-k, or group-limited (groups ranked by their best score);
//   V3: sigmoid scores + e_score_correction_bias for the choice only; groups ranked by the sum of
//       their two best biased scores (noaux_tc); weights are the unbiased scores.
// Experts of dropped groups score 0 for the final top-k (transformers' masked_fill value).
// Then optional renormalisation (norm_topk_prob) and the routed scaling factor.
// The per-token body is route_token (router.cuh), which the small-batch expert kernels call too.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace flashserve {

constexpr int ROUTER_MAX_EXPERTS = 256;

enum class RouterScoring : int { SOFTMAX = 0, SIGMOID = 1 };
enum class GroupScore : int { MAX = 0, SUM_TOP2 = 1 };

struct RouterParams {
  const void* logits;    // [num_tokens, num_experts] fp32, or bf16 when logits_bf16
  bool logits_bf16;
  const float* bias;     // [num_experts] fp32 or null (e_score_correction_bias)
  int32_t* topk_ids;     // [num_tokens, top_k]
  float* topk_weights;   // [num_tokens, top_k]
  int num_tokens, num_experts, top_k;
  int n_group, topk_group;  // n_group <= 1 or topk_group >= n_group: no group limit
  RouterScoring scoring;
  GroupScore group_score;
  bool norm_topk_prob;
  float scaling;  // multiplies the final weights (routed_scaling_factor, or 1)
  cudaStream_t stream;
};
void run_router(RouterParams& p);
// Throws unless p's shape and group settings are ones the router supports (run_router checks them;
// so do kernels that route for themselves, moe_small.h).
void check_router(const RouterParams& p);

}  // namespace flashserve
