// MoE: the router (top-k over the gate's logits) and the experts.
// moeExpertsSmall (a few tokens: routed and shared experts in two launches, kernels/moe_small.h);
// moeRouteExpertsSmall (the same, routing from the router logits inside those launches);
// moeExperts / moeRouteExperts (grouped work, any count of tokens) run [the router ->] align -> grouped
// gate/up GEMM -> SiLU-and-mul -> grouped down GEMM -> weighted combine, which adds the shared experts'
// output (computed beside them on the aux stream), in one call, with their temporaries from the caching
// allocator (given back at the end: later work on the same stream is ordered after these kernels, so
// reuse is safe).
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "binding/napi_util.h"
#include "kernels/activation.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "kernels/moe.h"
#include "kernels/moe_small.h"
#include "kernels/router.h"
#include "kernels/timeline.h"
#include "runtime/env.h"

namespace flashserve {
namespace {

using Info = const Napi::CallbackInfo&;

// RouterSettingsArgs (native.ts) at info[at .. at + 5]: nGroup, topkGroup, scoring (0 softmax,
// 1 sigmoid), groupScore (0 max, 1 sum of top-2), normTopkProb, scaling.
void read_router_settings(Info info, int at, RouterParams& r) {
  r.n_group = int_arg(info, at);
  r.topk_group = int_arg(info, at + 1);
  r.scoring = static_cast<RouterScoring>(int_arg(info, at + 2));
  r.group_score = static_cast<GroupScore>(int_arg(info, at + 3));
  r.norm_topk_prob = info[at + 4].ToBoolean().Value();
  r.scaling = static_cast<float>(num_arg(info, at + 5));
}

// moeRoute(logits, bias | 0n, ids, weights, tokens, experts, topK, ...RouterSettingsArgs, logitsBf16)
Napi::Value moe_route(Info info) {
  return guarded(info, "moeRoute", [&] {
    RouterParams p{};
    p.logits = ptr_arg(info, 0);
    p.logits_bf16 = info[13].ToBoolean().Value();
    p.bias = static_cast<const float*>(ptr_arg(info, 1));
    p.topk_ids = static_cast<int32_t*>(ptr_arg(info, 2));
    p.topk_weights = static_cast<float*>(ptr_arg(info, 3));
    p.num_tokens = int_arg(info, 4);
    p.num_experts = int_arg(info, 5);
    p.top_k = int_arg(info, 6);
    read_router_settings(info, 7, p);
    p.stream = stream_or_throw();
    run_router(p);
    return info.Env().Undefined();
  });
}

// Gives temporaries back however the op ends.
struct Temps {
  std::vector<void*> ptrs;
  void* take(size_t bytes) {
    ptrs.push_back(runtime().allocator().allocate(bytes));
    return ptrs.back();
  }
  ~Temps() {
    for (void* p : ptrs) runtime().allocator().release(p);
  }
};

#ifdef FLASHSERVE_WITH_CUBLAS
// out[m, n] = a[m, k] @ w[n, k]^T in bf16 through cuBLASLt, as the linear op runs it for more than two
// rows (so the shared MLP here gives what Device.linear + siluAndMul + linear gave, bit for bit).
void linear_bf16(const void* a, const void* w, void* out, int m, int n, int k, cudaStream_t stream) {
  GemmParams g{};
  g.a = a;
  g.b = w;
  g.c = out;
  g.c_dtype = DType::BF16;
  g.m = m;
  g.n = n;
  g.k = k;
  g.lda = k;
  g.ldb = k;
  g.ldc = n;
  g.trans_b = true;
  g.batch = 1;
  g.stream = stream;
  run_gemm(g);
}

constexpr int PREFILL_ROWS_PER_EXPERT = 64;
constexpr int PREFILL_ROW_ROUND = 64;

// One cuBLASLt GEMM per active expert over its rows, gathered contiguously in expert order.
// NOTE: each expert's row count is rounded up to 64 so GEMM plans (and their tuning) are shared
// across steps; the extra rows run into the next expert's rows, which that expert's GEMM rewrites
// afterwards (same stream, increasing expert order), or into slack at the end. They are never read.
void run_experts_prefill(Temps& t, const MoeAlignParams& al, const void* x, const void* gate_up, const void* down,
                         const float* weights, const void* addend, void* out, int tokens, int hidden, int inter,
                         int experts, int top_k, cudaStream_t stream) {
  const int assign = tokens * top_k;
  std::vector<int32_t> offsets(experts + 1);
  check_cuda(cudaMemcpyAsync(offsets.data(), al.expert_offsets, sizeof(int32_t) * (experts + 1), cudaMemcpyDeviceToHost,
                             stream),
             "moeExperts (row counts)");
  check_cuda(cudaStreamSynchronize(stream), "moeExperts (row counts)");
  const size_t rows = static_cast<size_t>(assign) + PREFILL_ROW_ROUND;
  void* xs = t.take(sizeof(uint16_t) * rows * hidden);
  void* h = t.take(sizeof(uint16_t) * rows * 2 * inter);
  void* act = t.take(sizeof(uint16_t) * rows * inter);
  void* y = t.take(sizeof(uint16_t) * rows * hidden);
  GatherRowsParams g{al.sorted_assign, top_k, x, xs, assign, tokens, hidden, 2, stream};
  run_gather_rows(g);
  auto per_expert = [&](const void* a, const void* w, int64_t w_stride, void* c, int n, int k) {
    for (int e = 0; e < experts; ++e) {
      const int begin = offsets[e], count = offsets[e + 1] - begin;
      if (count <= 0) continue;
      linear_bf16(static_cast<const uint16_t*>(a) + static_cast<int64_t>(begin) * k,
                  static_cast<const uint16_t*>(w) + e * w_stride, static_cast<uint16_t*>(c) + static_cast<int64_t>(begin) * n,
                  (count + PREFILL_ROW_ROUND - 1) / PREFILL_ROW_ROUND * PREFILL_ROW_ROUND, n, k, stream);
    }
  };
  per_expert(xs, gate_up, static_cast<int64_t>(2) * inter * hidden, h, 2 * inter, hidden);
  SiluMulParams sm{h, act, assign, inter, stream};
  run_silu_mul(sm);
  per_expert(act, down, static_cast<int64_t>(hidden) * inter, y, hidden, inter);
  MoeCombineParams cb{y, nullptr, 1, al.assign_pos, weights, addend, out, tokens, top_k, hidden, stream};
  run_moe_combine(cb);
}
#endif

// Columns per block of the 16-row (decode) tiles: 64, or 32 with FLASHSERVE_MOE_BLOCK_N=32 (A/B timing;
// on H100 at V2-Lite shapes 32 was no faster: 71.5 against 70.9 us at one token, 276 against 265 at 8).
int decode_block_n() {
  static const int bn = [] {
    const char* v = std::getenv("FLASHSERVE_MOE_BLOCK_N");
    return v && std::string(v) == "32" ? 32 : 64;
  }();
  return bn;
}

// Split-K factor for a decode-tile grouped GEMM: enough blocks for ~8 per SM when the row tiles are
// few (estimated as min(assignments, experts), exact for a token or two), at most 4 splits, each
// keeping at least 4 K tiles of 64.
// NOTE: off unless FLASHSERVE_MOE_SPLIT_K=auto. Measured on H100 at V2-Lite shapes, one token:
// 70.9 us unsplit, 96.8 us with 2 splits, 88.0 us with 4 (the fp32 partials and the shorter K loops
// cost more than the idle SMs did); kept, tested, for other GPUs and shapes.
int pick_split_k(int assign, int experts, int n_tiles, int k, int sms) {
  static const bool on = [] {
    const char* v = std::getenv("FLASHSERVE_MOE_SPLIT_K");
    return v && std::string(v) == "auto";
  }();
  if (!on) return 1;
  const int row_tiles = assign < experts ? assign : experts;
  int split = (8 * sms) / (row_tiles * n_tiles > 0 ? row_tiles * n_tiles : 1);
  if (split > 4) split = 4;
  while (split > 1 && (k / 64) / split < 4) --split;
  return split < 1 ? 1 : split;
}

// The shared experts' MLP, down(silu(gate x) * up x), into a [tokens, hidden] bf16 temporary on
// `stream`.
void* shared_mlp(Temps& t, const MoeSmallParams& p, cudaStream_t stream) {
#ifdef FLASHSERVE_WITH_CUBLAS
  const size_t rows = static_cast<size_t>(p.tokens);
  void* h = t.take(sizeof(uint16_t) * rows * 2 * p.shared_inter);
  void* act = t.take(sizeof(uint16_t) * rows * p.shared_inter);
  void* y = t.take(sizeof(uint16_t) * rows * p.hidden);
  linear_bf16(p.x, p.shared_gate_up, h, p.tokens, 2 * p.shared_inter, p.hidden, stream);
  SiluMulParams sm{h, act, p.tokens, p.shared_inter, stream};
  run_silu_mul(sm);
  linear_bf16(act, p.shared_down, y, p.tokens, p.hidden, p.shared_inter, stream);
  return y;
#else
  (void)t;
  (void)p;
  (void)stream;
  throw std::runtime_error(
      "this addon was built without cuBLAS (no cublasLt.h at build time), which the shared experts of more "
      "than a few tokens need; rebuild on a machine with the CUDA toolkit's cuBLAS");
#endif
}

// Joins the aux stream into the compute stream when it goes out of scope, however the op ends: the
// temporaries the aux stream uses are released after it (Temps is declared first), so no later work can
// be handed memory the aux stream still reads.
struct AuxJoin {
  bool forked = false;
  void join(const char* op) {
    if (!forked) return;
    forked = false;
    runtime().join_aux(op);
  }
  ~AuxJoin() {
    try {
      join("moeExperts (join)");
    } catch (...) {
      // Only reached while the op is failing already; that error is the one reported.
    }
  }
};

// The grouped path: moeExperts (p.route false: ids and weights given) or moeRouteExperts (p.route:
// the router runs here first) for any number of tokens. Routed experts as align -> grouped gate/up
// GEMM -> SiLU-and-mul -> grouped down GEMM -> combine, which adds the shared experts' output.
// NOTE: with cuBLAS, the shared MLP runs on the runtime's aux stream beside the routing, the align and
// the routed GEMMs, and the combine waits for it. At a 32-token decode step on H100 the shared MLP in
// line cost ~20 us a layer (kernel timeline, tenth session: three launches of a few MB each, latency
// bound) against ~12 us of its bytes at copy bandwidth. FLASHSERVE_NO_MOE_FORK=1 (read once; A/B
// timing) runs it in line, before the routing, with the same results bit for bit. The prefill path
// (cuBLASLt per expert) never forks: its GEMMs share the cuBLASLt workspace with the shared MLP's. Nor
// does a kernel-timeline build (timeline.h), whose stamps are named in launch order: work on two
// streams stamps out of that order.
void run_experts_grouped(MoeSmallParams& p, cudaStream_t stream) {
  static const bool no_fork = env_flag("FLASHSERVE_NO_MOE_FORK") || timeline_compiled();
  const int tokens = p.tokens, hidden = p.hidden, inter = p.inter, experts = p.experts, top_k = p.top_k;
  const int assign = tokens * top_k;
  // NOTE: 16-row tiles when experts see few rows each (decode: the weights dominate, padding rows
  // are wasted tensor-core work only); 64-row tiles once a second 16-row tile would re-read the
  // expert's weights.
  // (Measured on H100 at V2-Lite shapes: 24 rows per expert ran at 56% of copy bandwidth with
  // 16-row tiles, which read each expert's weights twice.)
  const int block_m = assign / experts > 12 ? 64 : 16;
  const int max_tiles = moe_max_tiles(assign, experts, block_m);
#ifdef FLASHSERVE_WITH_CUBLAS
  const bool prefill = assign / experts >= PREFILL_ROWS_PER_EXPERT && runtime().graph_state() == GraphState::EAGER;
#else
  const bool prefill = false;
#endif
  const bool has_shared = p.shared_gate_up != nullptr;

  Temps t;
  AuxJoin aux;
  const void* addend = nullptr;
  if (has_shared) {
    if (no_fork || prefill) {
      addend = shared_mlp(t, p, stream);
    } else {
      cudaStream_t side = runtime().fork_aux("moeExperts (fork)");
      aux.forked = true;
      addend = shared_mlp(t, p, side);
    }
  }
  const int32_t* ids = p.topk_ids;
  const float* weights = p.topk_weights;
  if (p.route) {
    RouterParams& r = p.router;
    r.topk_ids = static_cast<int32_t*>(t.take(sizeof(int32_t) * static_cast<size_t>(assign)));
    r.topk_weights = static_cast<float*>(t.take(sizeof(float) * static_cast<size_t>(assign)));
    r.stream = stream;
    run_router(r);
    ids = r.topk_ids;
    weights = r.topk_weights;
  }

  int32_t* idx = static_cast<int32_t*>(t.take(sizeof(int32_t) * moe_align_scratch_ints(assign, experts, max_tiles)));
  MoeAlignParams al = moe_align_params(ids, idx, assign, experts, block_m, max_tiles, stream);
  run_moe_align(al);

#ifdef FLASHSERVE_WITH_CUBLAS
  // Prefill: with a full tile of rows per expert on average, the experts are compute-bound and
  // cuBLASLt's GEMMs beat the grouped kernel; that needs the per-expert row counts on the host, so
  // only outside graph capture (decode graphs keep the sync-free grouped kernel).
  if (prefill) {
    run_experts_prefill(t, al, p.x, p.gate_up, p.down, weights, addend, p.out, tokens, hidden, inter, experts, top_k,
                        stream);
    return;
  }
#endif

  GroupedGemmParams g1{};
  g1.a = p.x;
  g1.gather = al.sorted_assign;
  g1.gather_div = top_k;
  g1.lda = hidden;
  g1.w = p.gate_up;
  g1.w_group_stride = static_cast<int64_t>(2) * inter * hidden;
  g1.n = 2 * inter;
  g1.k = hidden;
  g1.tile_group = al.tile_expert;
  g1.tile_row_begin = al.tile_row_begin;
  g1.group_end = al.expert_offsets;
  g1.num_tiles = al.num_tiles;
  g1.max_tiles = max_tiles;
  g1.m = assign;
  g1.block_m = block_m;
  g1.block_n = block_m == 16 ? decode_block_n() : 64;
  g1.stream = stream;
  const int bn = g1.block_n;
  // At a token or two, the row tiles are at most one per assignment: few blocks per SM. Split K
  // so every SM streams weights (the partial sums are added by the next kernel).
  const int sms = runtime().props().sms;
  const int split1 = block_m == 16 ? pick_split_k(assign, experts, (2 * inter + bn - 1) / bn, hidden, sms) : 1;
  const int split2 = block_m == 16 ? pick_split_k(assign, experts, (hidden + bn - 1) / bn, inter, sms) : 1;
  void* act = t.take(sizeof(uint16_t) * static_cast<size_t>(assign) * inter);
  // SiLU-and-multiply in the gate/up GEMM's epilogue (bit for bit run_silu_mul's act, one launch less);
  // FLASHSERVE_NO_GATED_GEMM=1 (read once; A/B timing) runs it as its own kernel. Tenth session, H100,
  // graph step ms, median of 3 interleaved rounds, batch 8 / 32 / 128: 8.35 / 12.57 / 15.04 apart,
  // 8.20 / 12.55 / 14.86 folded.
  static const bool no_gated = env_flag("FLASHSERVE_NO_GATED_GEMM");
  if (split1 > 1) {
    g1.split_k = split1;
    g1.partial = static_cast<float*>(t.take(sizeof(float) * split1 * static_cast<size_t>(assign) * 2 * inter));
    run_grouped_gemm(g1);
    SiluMulPartialsParams sm{g1.partial, split1, act, assign, inter, stream};
    run_silu_mul_partials(sm);
  } else if (!no_gated) {
    g1.gated = true;
    g1.c = act;
    g1.ldc = inter;
    run_grouped_gemm(g1);
  } else {
    void* h = t.take(sizeof(uint16_t) * static_cast<size_t>(assign) * 2 * inter);
    g1.c = h;
    g1.ldc = 2 * inter;
    run_grouped_gemm(g1);
    SiluMulParams sm{h, act, assign, inter, stream};
    run_silu_mul(sm);
  }

  void* y = t.take(sizeof(uint16_t) * static_cast<size_t>(assign) * hidden);
  GroupedGemmParams g2 = g1;
  g2.gated = false;
  // The tile list is align's, two launches back (the gate/up GEMM is in between): the down blocks request
  // their first weights while the gate/up GEMM drains.
  g2.weights_ready = true;
  g2.split_k = split2;
  g2.partial = split2 > 1
                   ? static_cast<float*>(t.take(sizeof(float) * split2 * static_cast<size_t>(assign) * hidden))
                   : nullptr;
  g2.a = act;
  g2.gather = nullptr;
  g2.gather_div = 1;
  g2.lda = inter;
  g2.w = p.down;
  g2.w_group_stride = static_cast<int64_t>(hidden) * inter;
  g2.n = hidden;
  g2.k = inter;
  g2.c = y;
  g2.ldc = hidden;
  run_grouped_gemm(g2);

  aux.join("moeExperts (join)");
  MoeCombineParams cb{};
  cb.y = y;
  cb.y_partial = split2 > 1 ? g2.partial : nullptr;
  cb.splits = split2;
  cb.assign_pos = al.assign_pos;
  cb.topk_weights = weights;
  cb.addend = addend;
  cb.out = p.out;
  cb.num_tokens = tokens;
  cb.top_k = top_k;
  cb.hidden = hidden;
  cb.stream = stream;
  run_moe_combine(cb);
}

// MoeExpertArgs (native.ts) at info[at .. at + 10]: gateUp, down, sharedGateUp | 0n, sharedDown | 0n, out,
// tokens, hidden, inter, sharedInter, experts, topK.
void read_expert_args(Info info, int at, MoeSmallParams& p) {
  p.gate_up = ptr_arg(info, at);
  p.down = ptr_arg(info, at + 1);
  p.shared_gate_up = ptr_arg(info, at + 2);
  p.shared_down = ptr_arg(info, at + 3);
  p.out = ptr_arg(info, at + 4);
  p.tokens = int_arg(info, at + 5);
  p.hidden = int_arg(info, at + 6);
  p.inter = int_arg(info, at + 7);
  p.shared_inter = int_arg(info, at + 8);
  p.experts = int_arg(info, at + 9);
  p.top_k = int_arg(info, at + 10);
  p.sms = runtime().props().sms;
}

// The arguments of moeExperts / moeExpertsSmall: (x, ids, weights, ...MoeExpertArgs).
MoeSmallParams experts_call(Info info) {
  MoeSmallParams p{};
  p.x = ptr_arg(info, 0);
  p.topk_ids = static_cast<const int32_t*>(ptr_arg(info, 1));
  p.topk_weights = static_cast<const float*>(ptr_arg(info, 2));
  read_expert_args(info, 3, p);
  return p;
}

// The arguments of moeRouteExperts / moeRouteExpertsSmall: (logits, bias | 0n, logitsBf16,
// ...RouterSettingsArgs, x, ...MoeExpertArgs).
MoeSmallParams route_experts_call(Info info) {
  MoeSmallParams p{};
  RouterParams& r = p.router;
  r.logits = ptr_arg(info, 0);
  r.bias = static_cast<const float*>(ptr_arg(info, 1));
  r.logits_bf16 = info[2].ToBoolean().Value();
  read_router_settings(info, 3, r);
  p.x = ptr_arg(info, 9);
  read_expert_args(info, 10, p);
  r.num_tokens = p.tokens;
  r.num_experts = p.experts;
  r.top_k = p.top_k;
  p.route = true;
  return p;
}

// Both launches of the small expert path on the current stream, with the scratch they need.
Napi::Value run_moe_small_op(Info info, MoeSmallParams& p) {
  p.stream = stream_or_throw();
  p.router.stream = p.stream;
  if (p.tokens == 0) return info.Env().Undefined();
  Temps t;
  p.act = t.take(moe_small_act_bytes(p.tokens, p.top_k, p.inter, p.shared_gate_up ? p.shared_inter : 0));
  if (!moe_small_fused_down(p)) p.expert_out = t.take(moe_small_expert_out_bytes(p.tokens, p.top_k, p.hidden));
  run_moe_small(p);
  return info.Env().Undefined();
}

// The grouped path for the arguments `read` takes from the call.
Napi::Value grouped_op(Info info, const char* op, MoeSmallParams (*read)(Info)) {
  return guarded(info, op, [&] {
    MoeSmallParams p = read(info);
    cudaStream_t stream = stream_or_throw();
    if (p.tokens > 0) run_experts_grouped(p, stream);
    return info.Env().Undefined();
  });
}

// moeExperts(x, ids, weights, ...MoeExpertArgs): routed + shared experts, the grouped path (any count of
// tokens).
Napi::Value moe_experts(Info info) { return grouped_op(info, "moeExperts", experts_call); }

// moeRouteExperts(logits, bias | 0n, logitsBf16, ...RouterSettingsArgs, x, ...MoeExpertArgs): moeRoute then
// moeExperts in one call, so the shared experts also run beside the router.
Napi::Value moe_route_experts(Info info) { return grouped_op(info, "moeRouteExperts", route_experts_call); }

// moeExpertsSmall(x, ids, weights, ...MoeExpertArgs): routed + shared experts of at most 8 tokens.
Napi::Value moe_experts_small(Info info) {
  return guarded(info, "moeExperts", [&] {
    MoeSmallParams p = experts_call(info);
    // FLASHSERVE_MOE_SMALL_UNFUSED=1 (read once; A/B timing) runs the down stage and the combine as two
    // kernels, the earlier path (the default at 3-4 tokens, moe_small.h); the output is the same bit for
    // bit. It does not apply to moeRouteExpertsSmall (always fused): add FLASHSERVE_NO_ROUTER_FOLD=1 to
    // A/B it at 1-2 tokens.
    static const bool unfused = env_flag("FLASHSERVE_MOE_SMALL_UNFUSED");
    p.unfused_combine = unfused;
    return run_moe_small_op(info, p);
  });
}

// moeRouteExpertsSmall(logits, bias | 0n, logitsBf16, ...RouterSettingsArgs, x, ...MoeExpertArgs): moeRoute
// (the same router) then moeExpertsSmall in the expert kernels' two launches, which route for themselves
// (moe_small.h, `route`); no ids or weights are written.
Napi::Value moe_route_experts_small(Info info) {
  return guarded(info, "moeRouteExperts", [&] {
    MoeSmallParams p = route_experts_call(info);
    return run_moe_small_op(info, p);
  });
}

}  // namespace

void register_moe_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("moeRoute", Napi::Function::New(env, moe_route, "moeRoute"));
  exports.Set("moeExperts", Napi::Function::New(env, moe_experts, "moeExperts"));
  exports.Set("moeRouteExperts", Napi::Function::New(env, moe_route_experts, "moeRouteExperts"));
  exports.Set("moeExpertsSmall", Napi::Function::New(env, moe_experts_small, "moeExpertsSmall"));
  exports.Set("moeRouteExpertsSmall", Napi::Function::New(env, moe_route_experts_small, "moeRouteExpertsSmall"));
}

}  // namespace flashserve
