#include "kernels/common.cuh"
#include "kernels/launch.h"
#include "kernels/router.cuh"
#include "kernels/router.h"
#include "runtime/check.h"

namespace flashserve {
namespace {

constexpr int WARPS = 4;

__global__ void router_kernel(RouterParams p) {
  __shared__ float score_s[WARPS][ROUTER_MAX_EXPERTS];
  __shared__ float choice_s[WARPS][ROUTER_MAX_EXPERTS];
  pdl_wait();
  pdl_launch_dependents();
  const int warp = threadIdx.x >> 5;
  const int t = blockIdx.x * WARPS + warp;
  if (t >= p.num_tokens) return;
  const int64_t at = static_cast<int64_t>(t) * p.top_k;
  route_token(p, t, score_s[warp], choice_s[warp], p.topk_ids + at, p.topk_weights + at);
}

}  // namespace

void check_router(const RouterParams& p) {
  require(p.num_experts <= ROUTER_MAX_EXPERTS, "moeRoute: more than 256 experts is not supported");
  require(p.top_k >= 1 && p.top_k <= p.num_experts, "moeRoute: top_k must be in [1, num_experts]");
  if (p.n_group > 1 && p.topk_group < p.n_group) {
    require(p.n_group <= 32, "moeRoute: n_group must be at most 32");
    require(p.num_experts % p.n_group == 0, "moeRoute: num_experts must be a multiple of n_group");
  }
}

void run_router(RouterParams& p) {
  if (p.num_tokens == 0) return;
  check_router(p);
  launch_pdl("moeRoute", router_kernel, dim3((p.num_tokens + WARPS - 1) / WARPS), dim3(WARPS * 32), 0, p.stream, p);
}

}  // namespace flashserve
