#include "kernels/common.cuh"
#include "kernels/launch.h"
#include "kernels/router.h"
#include "runtime/check.h"

namespace flashserve {
namespace {

constexpr int WARPS = 4;

// Warp argmax over (value, index); ties go to the lower index so results are reproducible.
__device__ __forceinline__ void warp_argmax(float& v, int& i) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int oi = __shfl_xor_sync(0xffffffffu, i, o);
    if (ov > v || (ov == v && oi < i)) {
      v = ov;
      i = oi;
    }
  }
}

__global__ void router_kernel(RouterParams p) {
  __shared__ float score_s[WARPS][ROUTER_MAX_EXPERTS];
  __shared__ float choice_s[WARPS][ROUTER_MAX_EXPERTS];
  pdl_wait();
  pdl_launch_dependents();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int t = blockIdx.x * WARPS + warp;
  if (t >= p.num_tokens) return;
  const int E = p.num_experts;
  float* score = score_s[warp];
  float* choice = choice_s[warp];
  const int64_t row = static_cast<int64_t>(t) * E;
  // Reading bf16 logits here saves a cast kernel per MoE layer; the math is fp32 either way.
  auto logit = [&](int e) {
    return p.logits_bf16 ? to_f(static_cast<const bf16*>(p.logits)[row + e]) : static_cast<const float*>(p.logits)[row + e];
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
  int32_t* ids = p.topk_ids + static_cast<int64_t>(t) * p.top_k;
  float* ws = p.topk_weights + static_cast<int64_t>(t) * p.top_k;
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

}  // namespace

void run_router(RouterParams& p) {
  if (p.num_tokens == 0) return;
  require(p.num_experts <= ROUTER_MAX_EXPERTS, "moeRoute: more than 256 experts is not supported");
  require(p.top_k >= 1 && p.top_k <= p.num_experts, "moeRoute: top_k must be in [1, num_experts]");
  if (p.n_group > 1 && p.topk_group < p.n_group) {
    require(p.n_group <= 32, "moeRoute: n_group must be at most 32");
    require(p.num_experts % p.n_group == 0, "moeRoute: num_experts must be a multiple of n_group");
  }
  launch_pdl("moeRoute", router_kernel, dim3((p.num_tokens + WARPS - 1) / WARPS), dim3(WARPS * 32), 0, p.stream, p);
}

}  // namespace flashserve
