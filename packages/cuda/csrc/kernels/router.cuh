// The router's per-token body (router.h describes the math) as a device function, so the router
// kernel and the small-batch expert kernels (moe_small.cu, which route for themselves at a token or
// two) run one implementation and agree bit for bit.
#pragma once
#include "kernels/common.cuh"
#include "kernels/router.h"

namespace flashserve {

// Routes token t of p (p.topk_ids and p.topk_weights are not used): one whole warp calls it; score and
// choice are this warp's scratch of p.num_experts floats each (shared memory); lane 0 writes the
// token's top_k ids and final weights to ids[0, top_k) and ws[0, top_k) (global or shared memory).
// The logits are read through L2 (__ldcg): a caller may run before its PDL wait, after the kernel
// that wrote them completed (moe_small.cu), when its SM's L1 could still hold an earlier layer's
// logits at the same address.
__device__ __forceinline__ void route_token(const RouterParams& p, int t, float* score, float* choice, int32_t* ids,
                                            float* ws) {
  const int lane = threadIdx.x & 31;
  const int E = p.num_experts;
  const int64_t row = static_cast<int64_t>(t) * E;
  // Reading bf16 logits here saves a cast kernel per MoE layer; the math is fp32 either way.
  auto logit = [&](int e) {
    return p.logits_bf16 ? to_f(__ldcg(static_cast<const bf16*>(p.logits) + row + e))
                         : __ldcg(static_cast<const float*>(p.logits) + row + e);
  };

  if (p.scoring == RouterScoring::SOFTMAX) {
    float m = -INFINITY;
    for (int e = lane; e < E; e += 32) m = fmaxf(m, logit(e));
    m = warp_max(m);
    float sum = 0.f;
    for (int e = lane; e < E; e += 32) {
      const float v = __expf(logit(e) - m);
      score[e] = v;
      sum += v;
    }
    sum = warp_sum(sum);
    for (int e = lane; e < E; e += 32) score[e] /= sum;
  } else {
    for (int e = lane; e < E; e += 32) score[e] = 1.f / (1.f + __expf(-logit(e)));
  }
  for (int e = lane; e < E; e += 32) choice[e] = score[e] + (p.bias ? p.bias[e] : 0.f);
  __syncwarp();

  if (p.n_group > 1 && p.topk_group < p.n_group) {
    const int gs = E / p.n_group;
    // Each lane scores one group (n_group <= 32 is checked on the host).
    float gscore = -INFINITY;
    if (lane < p.n_group) {
      float best = -INFINITY, second = -INFINITY;
      for (int e = lane * gs; e < (lane + 1) * gs; ++e) {
        const float v = choice[e];
        if (v > best) {
          second = best;
          best = v;
        } else if (v > second) {
          second = v;
        }
      }
      gscore = p.group_score == GroupScore::MAX ? best : best + second;
    }
    bool keep = false;
    for (int k = 0; k < p.topk_group; ++k) {
      float v = gscore;
      int i = lane < p.n_group ? lane : 1 << 30;
      warp_argmax(v, i);
      if (lane == i) {
        keep = true;
        gscore = -INFINITY;
      }
    }
    const unsigned keep_mask = __ballot_sync(0xffffffffu, keep);
    for (int e = lane; e < E; e += 32)
      if (!((keep_mask >> (e / gs)) & 1u)) choice[e] = 0.f;  // transformers masks with 0, not -inf
    __syncwarp();
  }

  float wsum = 0.f;
  for (int k = 0; k < p.top_k; ++k) {
    float v = -INFINITY;
    int i = 1 << 30;
    for (int e = lane; e < E; e += 32) {
      const float c = choice[e];
      if (c > v || (c == v && e < i)) {
        v = c;
        i = e;
      }
    }
    warp_argmax(v, i);
    if (i >= E) i = 0;  // fewer finite choices than top_k: cannot happen for valid configs
    if (lane == 0) {
      ids[k] = i;
      ws[k] = score[i];
    }
    wsum += score[i];
    if (lane == (i & 31)) choice[i] = -INFINITY;
    __syncwarp();
  }
  if (lane == 0) {
    const float norm = p.norm_topk_prob ? 1.f / (wsum + 1e-20f) : 1.f;
    for (int k = 0; k < p.top_k; ++k) ws[k] = ws[k] * norm * p.scaling;
  }
}

}  // namespace flashserve
