#include <cstdint>

#include "kernels/gemv.cuh"
#include "kernels/launch.h"
#include "kernels/moe_small.h"
#include "kernels/router.cuh"
#include "runtime/check.h"

namespace flashserve {
namespace {

constexpr int WARPS = 8;
// Gate/up: as skinny_gemm.cu, 4 blocks per SM (<= 64 registers) at 1-2 tokens; with more tokens the
// per-token sums need more registers than that, and half the warps still keep enough loads in flight.
constexpr int blocks_per_sm(int tokens) { return tokens <= 2 ? 4 : 2; }
constexpr int DOWN_ROWS = 2;  // output columns per down job
// NOTE: a V2-Lite down job (inter 1408) is 2 x 176 chunks, 11 loads a lane: in groups of 8 the second
// group is 3 loads a lane. Groups of 11 (the whole job in one round trip) need more than 64 registers,
// so 3 blocks an SM: measured slower, 23.1 us against 20.4 at one token (66% against 75% of copy
// bandwidth; h100-batch1-pdl-2026-11-25.log). Fewer resident warps cost more than the round trip.
constexpr int PAIR_CHUNKS = GEMV_CHUNKS / 2;  // gate and up: 4 + 4 loads in flight per lane

// The expert of segment s (token s / top_k, slot s % top_k), or -1 when its id is out of range.
// NOTE: the down stage may read topk_ids before its griddepcontrol.wait, to request a routed job's
// weights while the gate/up kernel drains. That is safe: the ids come from the router kernel, and
// the gate/up kernel calls pdl_launch_dependents only after its own pdl_wait, which returns once the
// kernel before it (the router, or a kernel that itself waited for the router: every kernel
// launched with PDL waits before it writes) has completed and its writes are visible. The down
// kernel is launched only when every gate/up block has made that call (or exited), so the router
// has completed before any down thread runs. Without PDL the launches are fully ordered anyway.
// The ids are read through L2 (__ldcg): this SM's L1 may still hold the line from an earlier layer's
// ids at the same address.
__device__ __forceinline__ int read_expert_id(const MoeSmallParams& p, int s) {
  const int e = __ldcg(p.topk_ids + s);
  return e >= 0 && e < p.experts ? e : -1;
}

// The routing a block computes for itself (p.route), in shared memory after the kernel's own part:
// per token a score and a choice scratch of `experts` floats, then the ids [T][top_k], then the weights.
__host__ __device__ constexpr int route_floats(int tokens, int experts, int top_k) {
  return tokens * (2 * experts + 2 * top_k);
}

// Routes the block's T tokens into `area` (route_floats of it), warp w token w, w + warps, ...; the
// caller synchronises the block before reading the result (route_ids / route_weights).
// NOTE: the down + combine kernel calls this before its griddepcontrol.wait: the logits come from
// the router gate GEMV, the kernel before the gate/up kernel, and that is as safe as read_expert_id's
// early read (below): the down kernel is launched only when every gate/up block has passed its
// pdl_wait, so the GEMV has completed and its writes are visible; route_token reads them through L2.
__device__ __forceinline__ void route_block(const MoeSmallParams& p, int T, int warps, float* area) {
  const int warp = threadIdx.x >> 5, E = p.experts, K = p.top_k;
  for (int t = warp; t < T; t += warps)
    route_token(p.router, t, area + t * 2 * E, area + t * 2 * E + E, reinterpret_cast<int32_t*>(area + T * 2 * E) + t * K,
                area + T * 2 * E + T * K + t * K);
}
__device__ __forceinline__ const int32_t* route_ids(const MoeSmallParams& p, int T, const float* area) {
  return reinterpret_cast<const int32_t*>(area + T * 2 * p.experts);
}
__device__ __forceinline__ const float* route_weights(const MoeSmallParams& p, int T, const float* area) {
  return area + T * 2 * p.experts + T * p.top_k;
}

// The expert of segment s from the block's routing (p.route: `ids`, shared memory) or topk_ids
// (read_expert_id), or -1 when its id is out of range.
__device__ __forceinline__ int segment_expert(const MoeSmallParams& p, const int32_t* ids, int s) {
  if (!p.route) return read_expert_id(p, s);
  const int e = ids[s];
  return e >= 0 && e < p.experts ? e : -1;
}

// This lane's chunks base + u * 32 + lane of a gate row and the matching up row.
__device__ __forceinline__ void load_pair_group(uint4 (&gw)[PAIR_CHUNKS], uint4 (&uw)[PAIR_CHUNKS], const bf16* g_row,
                                                const bf16* u_row, int base, int chunks, int lane) {
#pragma unroll
  for (int u = 0; u < PAIR_CHUNKS; ++u) {
    const int c = base + u * 32 + lane;
    if (c < chunks) {
      gw[u] = load_weight_chunk(g_row + static_cast<int64_t>(c) * 8);
      uw[u] = load_weight_chunk(u_row + static_cast<int64_t>(c) * 8);
    }
  }
}

// This lane's share of (gate row . x[t]) and (up row . x[t]) for NT activation rows x + t * hidden.
// `preloaded`: the first group is already in gw/uw (requested before the PDL wait).
template <int NT>
__device__ __forceinline__ void gate_up_dots(uint4 (&gw)[PAIR_CHUNKS], uint4 (&uw)[PAIR_CHUNKS], const bf16* g_row,
                                             const bf16* u_row, const bf16* x, int hidden, int lane, bool& preloaded,
                                             float (&g)[NT], float (&up)[NT]) {
  const int chunks = hidden / 8;
#pragma unroll
  for (int t = 0; t < NT; ++t) g[t] = up[t] = 0.f;
  for (int base = 0; base < chunks; base += 32 * PAIR_CHUNKS) {
    if (!preloaded) load_pair_group(gw, uw, g_row, u_row, base, chunks, lane);
    preloaded = false;
#pragma unroll
    for (int u = 0; u < PAIR_CHUNKS; ++u) {
      const int c = base + u * 32 + lane;
      if (c >= chunks) continue;
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        const uint4 xv = load_act_chunk(x + static_cast<int64_t>(t) * hidden + c * 8);
        g[t] = dot8(gw[u], xv, g[t]);
        up[t] = dot8(uw[u], xv, up[t]);
      }
    }
  }
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    g[t] = warp_sum(g[t]);
    up[t] = warp_sum(up[t]);
  }
}

// Jobs: [0, S) are shared-MLP rows (all T tokens each), then T * top_k * inter routed rows, one
// (assignment, row) each. Shared rows come first because their weights do not depend on the router:
// a warp whose first job is one requests it before the PDL wait.
template <int T>
__global__ void __launch_bounds__(WARPS * 32, blocks_per_sm(T)) moe_small_gate_up_kernel(MoeSmallParams p) {
  const int lane = threadIdx.x & 31;
  const int warps_total = gridDim.x * WARPS;
  const int H = p.hidden, I = p.inter, K = p.top_k;
  const int S = p.shared_gate_up ? p.shared_inter : 0;
  const int64_t act_stride = static_cast<int64_t>(K) * I + S;
  const int jobs = S + T * K * I;
  const bf16* x = static_cast<const bf16*>(p.x);
  const bf16* gate_up = static_cast<const bf16*>(p.gate_up);
  const bf16* shared = static_cast<const bf16*>(p.shared_gate_up);
  bf16* act = static_cast<bf16*>(p.act);
  int job = blockIdx.x * WARPS + (threadIdx.x >> 5);

  uint4 gw[PAIR_CHUNKS], uw[PAIR_CHUNKS];
  bool preloaded = job < S;
  if (preloaded)
    load_pair_group(gw, uw, shared + static_cast<int64_t>(job) * H, shared + static_cast<int64_t>(S + job) * H, 0,
                    H / 8, lane);
  pdl_wait();
  pdl_launch_dependents();
  // Routing (p.route) after the wait: the logits come from the kernel just before. Blocks whose jobs
  // are all shared rows (the first S / WARPS) skip it.
  extern __shared__ float route_area[];
  if (p.route && ((blockIdx.x + 1) * WARPS > S || warps_total < jobs)) {
    route_block(p, T, WARPS, route_area);
    __syncthreads();
  }
  const int32_t* routed_ids = route_ids(p, T, route_area);

  for (; job < jobs; job += warps_total) {
    if (job < S) {
      float g[T], up[T];
      gate_up_dots<T>(gw, uw, shared + static_cast<int64_t>(job) * H, shared + static_cast<int64_t>(S + job) * H, x,
                      H, lane, preloaded, g, up);
      if (lane == 0) {
#pragma unroll
        for (int t = 0; t < T; ++t) act[t * act_stride + static_cast<int64_t>(K) * I + job] = silu_mul_bf16(g[t], up[t]);
      }
      continue;
    }
    const int r = job - S;
    const int a = r / I, i = r - a * I, t = a / K;
    bf16* dst = act + t * act_stride + static_cast<int64_t>(a - t * K) * I + i;
    const int e = segment_expert(p, routed_ids, a);
    if (e < 0) {
      if (lane == 0) *dst = to_bf(0.f);
      continue;
    }
    const bf16* g_row = gate_up + (static_cast<int64_t>(e) * 2 * I + i) * H;
    float g[1], up[1];
    gate_up_dots<1>(gw, uw, g_row, g_row + static_cast<int64_t>(I) * H, x + static_cast<int64_t>(t) * H, H, lane,
                    preloaded, g, up);
    if (lane == 0) *dst = silu_mul_bf16(g[0], up[0]);
  }
}

// One load group of a down job over two adjacent rows (2 * per chunks in a row): this lane's chunks
// base + u * 32 + lane of the first row dot x into a0, of the second into a1.
__device__ __forceinline__ void pair_group_dots(const uint4 (&wv)[GEMV_CHUNKS], const bf16* x, int base, int chunks,
                                                int per, int lane, float& a0, float& a1) {
#pragma unroll
  for (int u = 0; u < GEMV_CHUNKS; ++u) {
    const int c = base + u * 32 + lane;
    if (c >= chunks) continue;
    if (c >= per) {
      a1 = dot8(wv[u], load_act_chunk(x + (c - per) * 8), a1);
    } else {
      a0 = dot8(wv[u], load_act_chunk(x + c * 8), a0);
    }
  }
}

// The unfused down stage (unfused_combine; the fused kernel below is the default).
// Down, stage 1: one warp per job (segment, pair of output columns h, h + 1). Two adjacent rows of a
// down matrix are contiguous, so a job streams 2 * len elements as one chunk list, like a gate/up job.
// Jobs: first the shared MLP's column pairs (all tokens each; their weights do not depend on the
// router, so a warp whose first job is one requests it before the PDL wait), then, segment by segment,
// the routed ones: segment s is (token s / K, slot s % K) through expert topk_ids[s] (a routed first
// job is requested before the PDL wait too: see read_expert_id).
// Writes each expert's output rounded to bf16, as a GEMM's output would be: expert_out[s][h] for a
// routed segment, expert_out[T * K + t][h] for the shared MLP of token t.
// NOTE: this job shape (many independent warp jobs, handed out by the block scheduler) streams at
// gate/up's rate; one warp per output column over all its segments was latency-bound (~50% of copy
// bandwidth with 8 or 16 loads in flight per lane, only ~16 warps per SM).
template <int T>
__global__ void __launch_bounds__(WARPS * 32, blocks_per_sm(T)) moe_small_down_kernel(MoeSmallParams p) {
  const int lane = threadIdx.x & 31;
  const int warps_total = gridDim.x * WARPS;
  const int H = p.hidden, I = p.inter, K = p.top_k;
  const int S = p.shared_down ? p.shared_inter : 0;
  const int segs = T * K, pairs = H / DOWN_ROWS;
  const int shared_jobs = S > 0 ? pairs : 0;
  const int jobs = shared_jobs + segs * pairs;
  const int64_t act_stride = static_cast<int64_t>(K) * I + S;
  const bf16* down = static_cast<const bf16*>(p.down);
  const bf16* shared = static_cast<const bf16*>(p.shared_down);
  const bf16* act = static_cast<const bf16*>(p.act);
  bf16* y = static_cast<bf16*>(p.expert_out);
  int job = blockIdx.x * WARPS + (threadIdx.x >> 5);

  uint4 wv[GEMV_CHUNKS];
  bool preloaded = job < shared_jobs;
  if (preloaded) {
    load_row_group(wv, shared + static_cast<int64_t>(job) * DOWN_ROWS * S, 0, DOWN_ROWS * S / 8, lane);
  } else if (job < jobs) {
    const int r = job - shared_jobs, s = r / pairs, h = (r - s * pairs) * DOWN_ROWS;
    const int e = read_expert_id(p, s);
    if (e >= 0) {
      load_row_group(wv, down + (static_cast<int64_t>(e) * H + h) * I, 0, DOWN_ROWS * (I / 8), lane);
      preloaded = true;
    }
  }
  pdl_wait();
  pdl_launch_dependents();

  for (; job < jobs; job += warps_total) {
    if (job < shared_jobs) {
      const int h = job * DOWN_ROWS, per = S / 8, chunks = DOWN_ROWS * per;
      const bf16* rows = shared + static_cast<int64_t>(h) * S;
      float a0[T], a1[T];
#pragma unroll
      for (int t = 0; t < T; ++t) a0[t] = a1[t] = 0.f;
      for (int base = 0; base < chunks; base += 32 * GEMV_CHUNKS) {
        if (!preloaded) load_row_group(wv, rows, base, chunks, lane);
        preloaded = false;
#pragma unroll
        for (int u = 0; u < GEMV_CHUNKS; ++u) {
          const int c = base + u * 32 + lane;
          if (c >= chunks) continue;
          const bool second = c >= per;
          const int col = second ? c - per : c;
#pragma unroll
          for (int t = 0; t < T; ++t) {
            const uint4 x = load_act_chunk(act + t * act_stride + static_cast<int64_t>(K) * I + col * 8);
            if (second) {
              a1[t] = dot8(wv[u], x, a1[t]);
            } else {
              a0[t] = dot8(wv[u], x, a0[t]);
            }
          }
        }
      }
#pragma unroll
      for (int t = 0; t < T; ++t) {
        const float v0 = warp_sum(a0[t]), v1 = warp_sum(a1[t]);
        if (lane == 0) {
          bf16* out = y + static_cast<int64_t>(segs + t) * H + h;
          out[0] = to_bf(v0);
          out[1] = to_bf(v1);
        }
      }
      continue;
    }
    const int r = job - shared_jobs, s = r / pairs, h = (r - s * pairs) * DOWN_ROWS, t = s / K;
    bf16* out = y + static_cast<int64_t>(s) * H + h;
    const int e = read_expert_id(p, s);
    if (e < 0) {
      if (lane == 0) out[0] = out[1] = to_bf(0.f);
      continue;
    }
    const int per = I / 8, chunks = DOWN_ROWS * per;
    const bf16* rows = down + (static_cast<int64_t>(e) * H + h) * I;
    const bf16* x = act + t * act_stride + static_cast<int64_t>(s - t * K) * I;
    float a0 = 0.f, a1 = 0.f;
    for (int base = 0; base < chunks; base += 32 * GEMV_CHUNKS) {
      if (!preloaded) load_row_group(wv, rows, base, chunks, lane);
      preloaded = false;
      pair_group_dots(wv, x, base, chunks, per, lane, a0, a1);
    }
    a0 = warp_sum(a0);
    a1 = warp_sum(a1);
    if (lane == 0) {
      out[0] = to_bf(a0);
      out[1] = to_bf(a1);
    }
  }
}

// Down, stage 2: out[t, h] = the token's expert outputs weighted and summed in slot order (as the
// grouped path's combine kernel), rounded to bf16, plus the shared MLP's output, rounded again
// (transformers adds the two bf16 tensors).
__global__ void moe_small_combine_kernel(MoeSmallParams p) {
  pdl_wait();
  pdl_launch_dependents();
  const int H = p.hidden, K = p.top_k;
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= p.tokens * H) return;
  const int t = i / H, h = i - t * H;
  const bf16* y = static_cast<const bf16*>(p.expert_out);
  float routed = 0.f;
  for (int j = 0; j < K; ++j) {
    const int s = t * K + j, e = p.topk_ids[s];
    if (e < 0 || e >= p.experts) continue;
    routed += p.topk_weights[s] * to_f(y[static_cast<int64_t>(s) * H + h]);
  }
  const float v = p.shared_down ? to_f(to_bf(routed)) + to_f(y[static_cast<int64_t>(p.tokens * K + t) * H + h]) : routed;
  static_cast<bf16*>(p.out)[i] = to_bf(v);
}

// Loads this lane's chunks base + u * 32 + lane of the chunk list at w that lie in [lo, hi).
__device__ __forceinline__ void load_range_group(uint4 (&wv)[GEMV_CHUNKS], const bf16* w, int base, int lo, int hi,
                                                 int lane) {
#pragma unroll
  for (int u = 0; u < GEMV_CHUNKS; ++u) {
    const int c = base + u * 32 + lane;
    if (c >= lo && c < hi) wv[u] = load_weight_chunk(w + static_cast<int64_t>(c) * 8);
  }
}

// Warps a block at most: 64 registers a thread at 1-2 tokens (up to 16 warps, 2 blocks an SM; 8-warp
// blocks then run 4 to an SM, as the unfused kernel's), 128 with more tokens (the shared rows' per-token
// sums and activation loads), as the unfused kernel there.
// NOTE: measured on H100 (V2-Lite shapes, down stage alone, three calls): fused against the unfused
// pair of kernels 19.7-20.6 against 21.9-22.2 us at 1 token, 32.5-32.9 against 33.9-34.4 at 2,
// 62.6-63.5 against 60.4-60.7 at 4 (26 jobs over 7 warps in 4 rounds, 3 blocks an SM), 69.5-73.4
// against 84.5-85.0 at 5. The batch-1 step did not move beyond its noise (h100-moe-fused-down-2026-11-25.log).
constexpr int fused_max_warps(int tokens) { return tokens <= 2 ? 16 : 8; }

// Fused down + combine: block b owns output columns h = 2b, h + 1 for all tokens. Its jobs, one warp
// each (warp w takes jobs w, w + warps, ...): first the T * top_k routed segments (segment s through
// expert topk_ids[s], both rows of the pair as one chunk list, as the unfused down job), then one job
// per row of the shared MLP's pair for all tokens.
// NOTE: the shared rows are split by row because a shared pair is 2 * shared_inter long against a
// routed job's 2 * inter: with V2-Lite's two shared experts (shared_inter = 2 * inter) a row is
// exactly one routed job, 11 loads a lane, so the block's 8 warps do one equal job each at one token.
// A row job keeps the lane-to-chunk assignment of the unfused shared job (chunk c of the pair's list
// on lane c % 32, in increasing order), so every sum is the unfused path's bit for bit.
// The results, rounded to bf16 as the unfused path writes them to expert_out, meet in shared memory
// ([segment][2] then [token][2], as floats); the block then applies the combine kernel's weighting,
// order and roundings.
// NOTE: tried and dropped (H100, V2-Lite shapes, one token, this kernel alone, same call): a job's
// chunks past its first 8 a lane (3 of 11) fetched early, with one bulk L2 prefetch when the job
// starts (21.3 us against 20.3 without) or through cp.async into shared memory, so that the whole job
// is one round trip at 64 registers (21.7 against 19.7 us). Step: 2.68 ms with the shared-memory
// tail against 2.64 without (medians of 10; h100-moe-fused-down-2026-11-25.log). As with 11 loads a
// lane in registers (DOWN_ROWS' note), more bytes in flight per warp did not make this stage faster.
template <int T>
__global__ void __launch_bounds__(fused_max_warps(T) * 32, 2) moe_small_down_combine_kernel(MoeSmallParams p) {
  extern __shared__ float part[];  // [segs][2] routed, then [T][2] shared, then the routing (p.route)
  const int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  const int H = p.hidden, I = p.inter, K = p.top_k;
  const int S = p.shared_down ? p.shared_inter : 0;
  const int segs = T * K, jobs = segs + (S > 0 ? DOWN_ROWS : 0);
  const int h = blockIdx.x * DOWN_ROWS;
  const int routed_chunks = DOWN_ROWS * (I / 8), shared_per = S / 8;
  const int64_t act_stride = static_cast<int64_t>(K) * I + S;
  const bf16* down = static_cast<const bf16*>(p.down);
  const bf16* shared = static_cast<const bf16*>(p.shared_down) + static_cast<int64_t>(h) * S;
  const bf16* act = static_cast<const bf16*>(p.act);
  int job = threadIdx.x >> 5;
  float* route_area = part + DOWN_ROWS * (segs + T);
  const int32_t* routed_ids = route_ids(p, T, route_area);

  // The warp's first job is requested before the wait (routed ones too, and the routing is computed
  // before it: see read_expert_id and route_block).
  uint4 wv[GEMV_CHUNKS];
  bool started = false;
  // The routing first: a shared row's loads held across it would not fit 64 registers at 2 tokens.
  if (p.route) {
    route_block(p, T, warps, route_area);
    __syncthreads();
  }
  if (job >= segs && job < jobs) {
    const int lo = (job - segs) * shared_per;
    load_range_group(wv, shared, lo & ~31, lo, lo + shared_per, lane);
    started = true;
  }
  if (job < segs) {
    const int e = segment_expert(p, routed_ids, job);
    if (e >= 0) {
      load_range_group(wv, down + (static_cast<int64_t>(e) * H + h) * I, 0, 0, routed_chunks, lane);
      started = true;
    }
  }
  pdl_wait();
  pdl_launch_dependents();

  for (; job < segs; job += warps) {
    const int e = segment_expert(p, routed_ids, job);
    if (e < 0) continue;  // the combine skips the slot
    const bf16* rows = down + (static_cast<int64_t>(e) * H + h) * I;
    if (!started) load_range_group(wv, rows, 0, 0, routed_chunks, lane);
    started = false;
    const int t = job / K, per = I / 8;
    const bf16* x = act + t * act_stride + static_cast<int64_t>(job - t * K) * I;
    float a0 = 0.f, a1 = 0.f;
    for (int base = 0; base < routed_chunks; base += 32 * GEMV_CHUNKS) {
      if (base > 0) load_range_group(wv, rows, base, 0, routed_chunks, lane);
      pair_group_dots(wv, x, base, routed_chunks, per, lane, a0, a1);
    }
    a0 = warp_sum(a0);
    a1 = warp_sum(a1);
    if (lane == 0) {
      part[job * 2] = to_f(to_bf(a0));
      part[job * 2 + 1] = to_f(to_bf(a1));
    }
  }
  for (; job < jobs; job += warps) {
    const int r = job - segs, lo = r * shared_per, hi = lo + shared_per, first = lo & ~31;
    if (!started) load_range_group(wv, shared, first, lo, hi, lane);
    started = false;
    const bf16* x = act + static_cast<int64_t>(K) * I;  // chunk c of the list: x[(c - lo) * 8]
    float a[T];
#pragma unroll
    for (int t = 0; t < T; ++t) a[t] = 0.f;
    for (int base = first; base < hi; base += 32 * GEMV_CHUNKS) {
      if (base > first) load_range_group(wv, shared, base, lo, hi, lane);
#pragma unroll
      for (int u = 0; u < GEMV_CHUNKS; ++u) {
        const int c = base + u * 32 + lane;
        if (c < lo || c >= hi) continue;
#pragma unroll
        for (int t = 0; t < T; ++t) a[t] = dot8(wv[u], load_act_chunk(x + t * act_stride + (c - lo) * 8), a[t]);
      }
    }
#pragma unroll
    for (int t = 0; t < T; ++t) {
      const float v = warp_sum(a[t]);
      if (lane == 0) part[(segs + t) * 2 + r] = to_f(to_bf(v));
    }
  }
  __syncthreads();

  // The combine kernel's arithmetic, for this block's columns.
  const int i = threadIdx.x;
  if (i >= T * DOWN_ROWS) return;
  const int t = i / DOWN_ROWS, c = i - t * DOWN_ROWS;
  const float* weights = p.route ? route_weights(p, T, route_area) : p.topk_weights;
  float routed = 0.f;
  for (int k = 0; k < K; ++k) {
    const int s = t * K + k;
    if (segment_expert(p, routed_ids, s) < 0) continue;
    routed += weights[s] * part[s * 2 + c];
  }
  const float v = S > 0 ? to_f(to_bf(routed)) + part[(segs + t) * 2 + c] : routed;
  static_cast<bf16*>(p.out)[static_cast<int64_t>(t) * H + h + c] = to_bf(v);
}

// Warps a fused down block: the fewest rounds of jobs with at most `most` warps, then the fewest warps
// that do them in that many rounds (8 warps, one job each, for V2-Lite at one token).
int fused_down_warps(int jobs, int most) {
  const int rounds = (jobs + most - 1) / most;
  return (jobs + rounds - 1) / rounds;
}

template <int T>
void launch_gate_up(MoeSmallParams& p) {
  // NOTE: one job per warp and no grid-stride cap: the block scheduler then hands out the ~1400
  // blocks of a one-token step as SMs free up, instead of warps doing 2 or 3 jobs each.
  const int S = p.shared_gate_up ? p.shared_inter : 0;
  const int64_t jobs = S + static_cast<int64_t>(T) * p.top_k * p.inter;
  const int64_t blocks = (jobs + WARPS - 1) / WARPS;
  require(blocks < (int64_t{1} << 31), "moeExperts (small): too many rows");
  const size_t smem = p.route ? sizeof(float) * route_floats(T, p.experts, p.top_k) : 0;
  launch_pdl("moeExperts (small: gate/up)", moe_small_gate_up_kernel<T>, dim3(static_cast<unsigned>(blocks)),
             dim3(WARPS * 32), smem, p.stream, p);
}

// NOTE: at 3-4 tokens the unfused pair (down, then combine) is the default: measured on H100 (V2-Lite
// shapes, three calls), the fused kernel alone took 62.6-63.5 us against 60.4-60.7 at 4 tokens (its
// 26 jobs a block run in 4 rounds of 7 warps), and the batch-4 step 6.31 against 6.26 ms (4 runs
// each; h100-moe-fused-down-2026-11-25.log). 3 tokens (20 jobs, 3 rounds) was not measured apart and
// goes with 4. At 1-2 tokens (one round) and 5 (15 us faster) the fused kernel wins.
constexpr bool fused_down_pays(int tokens) { return tokens <= 2 || tokens >= 5; }

template <int T>
void launch_down(MoeSmallParams& p) {
  const int S = p.shared_down ? p.shared_inter : 0;
  if (moe_small_fused_down(p)) {
    const int jobs = T * p.top_k + (S > 0 ? DOWN_ROWS : 0);
    const size_t smem = sizeof(float) * (DOWN_ROWS * (jobs + T) + (p.route ? route_floats(T, p.experts, p.top_k) : 0));
    launch_pdl("moeExperts (small: down + combine)", moe_small_down_combine_kernel<T>,
               dim3(static_cast<unsigned>(p.hidden / DOWN_ROWS)), dim3(fused_down_warps(jobs, fused_max_warps(T)) * 32),
               smem, p.stream, p);
    return;
  }
  const int pairs = p.hidden / DOWN_ROWS;
  const int64_t jobs = (S > 0 ? pairs : 0) + static_cast<int64_t>(T) * p.top_k * pairs;
  const int64_t blocks = (jobs + WARPS - 1) / WARPS;
  launch_pdl("moeExperts (small: down)", moe_small_down_kernel<T>, dim3(static_cast<unsigned>(blocks)),
             dim3(WARPS * 32), 0, p.stream, p);
  const int outputs = p.tokens * p.hidden;
  launch_pdl("moeExperts (small: combine)", moe_small_combine_kernel, dim3((outputs + 255) / 256), dim3(256), 0,
             p.stream, p);
}

// Calls fn<T>(p) for the runtime token count.
template <template <int> class F>
void dispatch_tokens(MoeSmallParams& p) {
  switch (p.tokens) {
    case 1: F<1>::run(p); break;
    case 2: F<2>::run(p); break;
    case 3: F<3>::run(p); break;
    case 4: F<4>::run(p); break;
    case 5: F<5>::run(p); break;
    case 6: F<6>::run(p); break;
    case 7: F<7>::run(p); break;
    default: F<8>::run(p); break;
  }
}
template <int T>
struct GateUp {
  static void run(MoeSmallParams& p) { launch_gate_up<T>(p); }
};
template <int T>
struct Down {
  static void run(MoeSmallParams& p) { launch_down<T>(p); }
};

void check(const MoeSmallParams& p) {
  require(p.tokens >= 1 && p.tokens <= MOE_SMALL_MAX_TOKENS, "moeExperts (small): at most 8 tokens");
  require(p.top_k >= 1, "moeExperts (small): top_k must be at least 1");
  require(p.hidden % 8 == 0 && p.hidden % DOWN_ROWS == 0 && p.inter % 8 == 0 && (p.shared_gate_up == nullptr || p.shared_inter % 8 == 0),
          "moeExperts (small): hidden and intermediate sizes must be multiples of 8");
  require((p.shared_gate_up == nullptr) == (p.shared_down == nullptr),
          "moeExperts (small): shared gate/up and down come together");
  if (p.route) {
    check_router(p.router);
    require(p.router.num_tokens == p.tokens && p.router.num_experts == p.experts && p.router.top_k == p.top_k,
            "moeExperts (small): the router's tokens, experts and top_k must be the experts'");
    require(!p.unfused_combine, "moeExperts (small): routing needs the fused down + combine");
  }
}

}  // namespace

bool moe_small_fused_down(const MoeSmallParams& p) {
  return p.route || (!p.unfused_combine && fused_down_pays(p.tokens));
}

void run_moe_small_gate_up(MoeSmallParams& p) {
  if (p.tokens == 0) return;
  check(p);
  dispatch_tokens<GateUp>(p);
}

void run_moe_small_down(MoeSmallParams& p) {
  if (p.tokens == 0) return;
  check(p);
  dispatch_tokens<Down>(p);
}

void run_moe_small(MoeSmallParams& p) {
  run_moe_small_gate_up(p);
  run_moe_small_down(p);
}

}  // namespace flashserve
