// The router's per-token body (router.h describes the math) as a device function, so the router
// kernel and the small-batch expert kernels (moe_small.cu, which route for themselves at a token or
// two) run one implementation and agree bit for bit.
#pragma once
#include "kernels/common.cuh"
#include "kernels/router.h"

namespace flashserve {

namespace router_detail {

// An order-preserving key of a float, compared as an unsigned integer: a > b (as floats) exactly
// when key(a) > key(b), and a == b exactly when key(a) == key(b) (so -0 and +0 share a key). NaN,
// which never wins a float comparison, gets 0, below -inf's key.
__device__ __forceinline__ uint32_t order_key(float x) {
  const uint32_t u = __float_as_uint(x);
  uint32_t k = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  if (x == 0.f) k = 0x80000000u;
  if (isnan(x)) k = 0u;
  return k;
}
constexpr uint32_t KEY_NEG_INF = 0x007fffffu;  // order_key(-INFINITY)

// The float of a key (the +0 of the zeros' key); 0 (only NaN, or nothing) gives -inf, as fmaxf over
// such values from -INFINITY does.
__device__ __forceinline__ float key_float(uint32_t k) {
  if (k == 0u) return -INFINITY;
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// The group-limited selection (n_group > 1, topk_group < n_group): choice_s holds every expert's
// choice (and the warp has synchronised since it was written); returns the mask of kept groups.
__device__ __forceinline__ unsigned keep_groups(const RouterParams& p, const float* choice_s, int lane) {
  const int gs = p.num_experts / p.n_group;
  // Each lane scores one group (n_group <= 32 is checked on the host).
  float gscore = -INFINITY;
  if (lane < p.n_group) {
    float best = -INFINITY, second = -INFINITY;
    for (int e = lane * gs; e < (lane + 1) * gs; ++e) {
      const float v = choice_s[e];
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
  return __ballot_sync(0xffffffffu, keep);
}

// route_token for E <= 32 * NS: lane l holds experts l + 32 j (j < NS), their logits read once (all
// of a lane's loads in flight together: one L2 round trip) and their top-k keys in registers. With
// NS <= 2 (up to 64 experts: V2-Lite) the scores and choices stay in registers too; with more, the
// scores go through the shared scratch and the divisions run in a rolled loop, as few registers as
// the small-batch expert kernels allow (they hold preloaded weights across the routing, under 64
// registers a thread: unrolled divisions there spill).
template <int NS>
__device__ __forceinline__ void route_token_regs(const RouterParams& p, int t, float* score_s, float* choice_s,
                                                 int32_t* ids, float* ws) {
  constexpr bool IN_REGS = NS <= 2;
  const int lane = threadIdx.x & 31;
  const int E = p.num_experts;
  const int64_t row = static_cast<int64_t>(t) * E;
  // Reading bf16 logits here saves a cast kernel per MoE layer; the math is fp32 either way.
  float x[NS];
  if (p.logits_bf16) {
    const bf16* l = static_cast<const bf16*>(p.logits) + row;
#pragma unroll
    for (int j = 0; j < NS; ++j) x[j] = lane + 32 * j < E ? to_f(__ldcg(l + lane + 32 * j)) : 0.f;
  } else {
    const float* l = static_cast<const float*>(p.logits) + row;
#pragma unroll
    for (int j = 0; j < NS; ++j) x[j] = lane + 32 * j < E ? __ldcg(l + lane + 32 * j) : 0.f;
  }

  float s[NS];  // the scores (IN_REGS; else score_s[e])
  if (p.scoring == RouterScoring::SOFTMAX) {
    // The maximum through order keys; it may differ from a fmaxf reduction only in the sign of a zero
    // maximum, which leaves every x - m (and so every score) unchanged.
    uint32_t mk = 0u;
#pragma unroll
    for (int j = 0; j < NS; ++j)
      if (lane + 32 * j < E) mk = max(mk, order_key(x[j]));
    const float m = key_float(__reduce_max_sync(0xffffffffu, mk));
    float sum = 0.f;
#pragma unroll
    for (int j = 0; j < NS; ++j) {
      s[j] = 0.f;
      if (lane + 32 * j < E) {
        s[j] = __expf(x[j] - m);
        sum += s[j];
        if (!IN_REGS) score_s[lane + 32 * j] = s[j];
      }
    }
    sum = warp_sum(sum);
    if (IN_REGS) {
#pragma unroll
      for (int j = 0; j < NS; ++j) s[j] = s[j] / sum;
    } else {
#pragma unroll 1
      for (int e = lane; e < E; e += 32) score_s[e] = score_s[e] / sum;
    }
  } else if (IN_REGS) {
#pragma unroll
    for (int j = 0; j < NS; ++j) s[j] = 1.f / (1.f + __expf(-x[j]));
  } else {
#pragma unroll
    for (int j = 0; j < NS; ++j)
      if (lane + 32 * j < E) score_s[lane + 32 * j] = x[j];
#pragma unroll 1
    for (int e = lane; e < E; e += 32) score_s[e] = 1.f / (1.f + __expf(-score_s[e]));
  }
  auto score = [&](int j) { return IN_REGS ? s[j] : score_s[lane + 32 * j]; };

  // The choices (score + bias) as top-k keys. The group-limited path reads other lanes' choices,
  // through the shared scratch; experts of dropped groups choose 0 (transformers masks with 0, not -inf).
  uint32_t key[NS];
  if (p.n_group > 1 && p.topk_group < p.n_group) {
#pragma unroll
    for (int j = 0; j < NS; ++j)
      if (lane + 32 * j < E) choice_s[lane + 32 * j] = score(j) + (p.bias ? p.bias[lane + 32 * j] : 0.f);
    __syncwarp();
    const unsigned keep = keep_groups(p, choice_s, lane);
    const int gs = E / p.n_group;
#pragma unroll
    for (int j = 0; j < NS; ++j) {
      const int e = lane + 32 * j;
      key[j] = e < E ? order_key((keep >> (e / gs)) & 1u ? choice_s[e] : 0.f) : 0u;
    }
  } else {
#pragma unroll
    for (int j = 0; j < NS; ++j) {
      const int e = lane + 32 * j;
      key[j] = e < E ? order_key(score(j) + (p.bias ? p.bias[e] : 0.f)) : 0u;
    }
  }
  // Every lane's scratch writes before the rounds read (score_s) or the next token writes (choice_s).
  if (!IN_REGS || (p.n_group > 1 && p.topk_group < p.n_group)) __syncwarp();

  // Top-k rounds: the best choice is the highest key; ties go to the lower expert index; a chosen
  // expert's choice becomes -inf. No key above 0 (every choice NaN): expert 0, as a failed argmax
  // (fewer finite choices than top_k) always chose.
  auto round = [&](int k) {  // the k-th choice: lane 0 writes its id; every lane gets its score
    uint32_t best = key[0];
#pragma unroll
    for (int j = 1; j < NS; ++j) best = max(best, key[j]);
    best = __reduce_max_sync(0xffffffffu, best);
    int i = 0;
#pragma unroll
    for (int j = NS - 1; j >= 0; --j) {
      const unsigned hit = __ballot_sync(0xffffffffu, key[j] == best);
      if (hit) i = 32 * j + __ffs(hit) - 1;
    }
    if (best == 0u) i = 0;
    const int src = i & 31, slot = i >> 5;
    float v;
    if (IN_REGS) {
      v = s[0];
#pragma unroll
      for (int j = 1; j < NS; ++j)
        if (slot == j) v = s[j];
      v = __shfl_sync(0xffffffffu, v, src);
    } else {
      v = score_s[i];
    }
    if (lane == 0) ids[k] = i;
#pragma unroll
    for (int j = 0; j < NS; ++j)
      if (lane == src && slot == j) key[j] = KEY_NEG_INF;
    return v;
  };
  // The first KR rounds keep their weights in registers (no read back of ws before the scaling).
  constexpr int KR = 8;
  float w[KR];
  float wsum = 0.f;
#pragma unroll
  for (int k = 0; k < KR; ++k) {
    w[k] = 0.f;
    if (k < p.top_k) {
      w[k] = round(k);
      wsum += w[k];
    }
  }
  for (int k = KR; k < p.top_k; ++k) {
    const float v = round(k);
    if (lane == 0) ws[k] = v;
    wsum += v;
  }
  if (lane == 0) {
    const float norm = p.norm_topk_prob ? 1.f / (wsum + 1e-20f) : 1.f;
#pragma unroll
    for (int k = 0; k < KR; ++k)
      if (k < p.top_k) ws[k] = w[k] * norm * p.scaling;
    for (int k = KR; k < p.top_k; ++k) ws[k] = ws[k] * norm * p.scaling;
  }
}

}  // namespace router_detail

// Routes token t of p (p.topk_ids and p.topk_weights are not used): one whole warp calls it; score and
// choice are this warp's scratch of p.num_experts floats each (shared memory; only the group-limited
// path uses choice, and score is spare); lane 0 writes the token's top_k ids and final weights to
// ids[0, top_k) and ws[0, top_k) (global or shared memory).
// The logits are read through L2 (__ldcg): a caller may run before its PDL wait, after the kernel
// that wrote them completed (moe_small.cu), when its SM's L1 could still hold an earlier layer's
// logits at the same address.
// The scores, choices and top-k keys live in registers (at most 8 experts a lane); each top-k round
// is a redux max over order-preserving keys plus ballots for the lowest index among ties.
__device__ __forceinline__ void route_token(const RouterParams& p, int t, float* score, float* choice, int32_t* ids,
                                            float* ws) {
  if (p.num_experts <= 64)
    router_detail::route_token_regs<2>(p, t, score, choice, ids, ws);
  else
    router_detail::route_token_regs<8>(p, t, score, choice, ids, ws);
}

}  // namespace flashserve
