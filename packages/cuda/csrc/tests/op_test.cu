// C++ op test of the addon's kernels against plain fp64 references on the host, plus micro-benchmarks
// (copy bandwidth, grouped expert GEMM at decode shapes, cuBLASLt GEMMs). Runs without Node on the GPU
// machine: `flashserve_cuda_optest [--bench]`. Exit code 0 only if every check passed.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/activation.h"
#include "kernels/common.cuh"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "kernels/launch.h"
#include "kernels/mla_inputs.h"
#include "kernels/mla_query.h"
#include "kernels/moe.h"
#include "kernels/moe_small.h"
#include "kernels/norm.h"
#include "kernels/rope.h"
#include "kernels/router.cuh"
#include "kernels/router.h"
#include "kernels/sampling.h"
#include "kernels/skinny_gemm.h"
#include "runtime/check.h"
#include "runtime/runtime.h"

using namespace flashserve;

namespace {

int failures = 0;
std::mt19937 rng(1234);

void report(const char* name, double err, double tol) {
  const bool ok = std::isfinite(err) && err <= tol;
  if (!ok) ++failures;
  std::printf("%-44s rel_err %.3e (tol %.0e) %s\n", name, err, tol, ok ? "ok" : "FAIL");
}

float bf(float x) {  // round through bf16 like the device does
  return __bfloat162float(__float2bfloat16_rn(x));
}

std::vector<float> randv(size_t n, float lo = -1.f, float hi = 1.f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = bf(d(rng));
  return v;
}

double rel_l2(const std::vector<float>& got, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = got[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / (den > 0 ? den : 1));
}

// Device buffers from the runtime's allocator.
struct Buf {
  void* p = nullptr;
  size_t n = 0;
  DType t = DType::BF16;
  Buf(size_t n_, DType t_) : n(n_), t(t_) { p = runtime().allocator().allocate(n * (t == DType::BF16 ? 2 : 4)); }
  ~Buf() { runtime().allocator().release(p); }
  Buf(const Buf&) = delete;
  void set(const std::vector<float>& v) { runtime().upload(p, v.data(), DType::F32, t, v.size()); }
  void set_i(const std::vector<int32_t>& v) { runtime().upload(p, v.data(), DType::I32, DType::I32, v.size()); }
  std::vector<float> get() {
    std::vector<float> v(n);
    runtime().download(v.data(), p, t, n);
    return v;
  }
  std::vector<int32_t> get_i() {
    std::vector<int32_t> v(n);
    runtime().download(v.data(), p, DType::I32, n);
    return v;
  }
  template <typename T>
  T* as() { return static_cast<T*>(p); }
};

cudaStream_t S() { return runtime().stream(); }

void test_rms_norm() {
  const int rows = 7, cols = 2048;
  auto x = randv(rows * cols), r = randv(rows * cols), w = randv(cols, 0.5f, 1.5f);
  Buf dx(rows * cols, DType::BF16), dr(rows * cols, DType::BF16), dw(cols, DType::BF16), dout(rows * cols, DType::BF16),
      dres(rows * cols, DType::BF16);
  dx.set(x), dr.set(r), dw.set(w);
  RmsNormParams p{dx.p, dr.p, dw.p, dout.p, dres.p, rows, cols, cols, cols, cols, 1e-6f, S()};
  run_rms_norm(p);
  std::vector<double> ref(rows * cols), ref_res(rows * cols);
  for (int i = 0; i < rows; ++i) {
    double ss = 0;
    for (int c = 0; c < cols; ++c) {
      const double h = bf(x[i * cols + c] + r[i * cols + c]);
      ref_res[i * cols + c] = h;
      ss += h * h;
    }
    const double inv = 1.0 / std::sqrt(ss / cols + 1e-6);
    for (int c = 0; c < cols; ++c) ref[i * cols + c] = ref_res[i * cols + c] * inv * w[c];
  }
  report("addRmsNorm out", rel_l2(dout.get(), ref), 8e-3);
  report("addRmsNorm residual", rel_l2(dres.get(), ref_res), 1e-6);
}

void test_rope(bool interleave) {
  const int T = 5, H = 3, D = 192, R = 64, P = 64;
  auto x = randv(T * H * D);
  std::vector<float> cs(P * R / 2), sn(P * R / 2);
  for (int pos = 0; pos < P; ++pos)
    for (int j = 0; j < R / 2; ++j) {
      const double f = pos * std::pow(10000.0, -2.0 * j / R);
      cs[pos * R / 2 + j] = bf(std::cos(f) * 1.1);
      sn[pos * R / 2 + j] = bf(std::sin(f) * 1.1);
    }
  std::vector<int32_t> positions = {0, 3, 17, 63, 9};
  Buf dx(x.size(), DType::BF16), dout(x.size(), DType::BF16), dc(cs.size(), DType::BF16), ds(sn.size(), DType::BF16),
      dp(T, DType::I32);
  dx.set(x), dc.set(cs), ds.set(sn), dp.set_i(positions);
  RopeParams p{dx.p, dout.p, dp.as<int32_t>(), dc.p, ds.p, T, H, D, R, P, interleave, S()};
  run_rope(p);
  std::vector<double> ref(x.begin(), x.end());
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h)
      for (int j = 0; j < R / 2; ++j) {
        const int base = (t * H + h) * D + D - R;
        const int i1 = base + (interleave ? 2 * j : j), i2 = base + (interleave ? 2 * j + 1 : j + R / 2);
        const double c = cs[positions[t] * R / 2 + j], s = sn[positions[t] * R / 2 + j];
        ref[i1] = x[i1] * c - x[i2] * s;
        ref[i2] = x[i2] * c + x[i1] * s;
      }
  report(interleave ? "rope interleave" : "rope half", rel_l2(dout.get(), ref), 8e-3);
}

void test_silu_mul() {
  const int rows = 9, inter = 1408;
  auto x = randv(rows * 2 * inter, -4.f, 4.f);
  Buf dx(x.size(), DType::BF16), dout(rows * inter, DType::BF16);
  dx.set(x);
  SiluMulParams p{dx.p, dout.p, rows, inter, S()};
  run_silu_mul(p);
  std::vector<double> ref(rows * inter);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < inter; ++c) {
      const double g = x[r * 2 * inter + c], u = x[r * 2 * inter + inter + c];
      ref[r * inter + c] = g / (1 + std::exp(-g)) * u;
    }
  report("siluAndMul", rel_l2(dout.get(), ref), 8e-3);
}

// Host reference of both routers.
void ref_router(const std::vector<float>& logits, const std::vector<float>* bias, int T, int E, int k, int ng, int tg,
                bool sigmoid, bool sum2, bool norm, float scale, std::vector<int>& ids, std::vector<double>& ws) {
  ids.assign(T * k, 0);
  ws.assign(T * k, 0);
  for (int t = 0; t < T; ++t) {
    std::vector<double> s(E), c(E);
    double mx = -1e30, sum = 0;
    for (int e = 0; e < E; ++e) mx = std::max(mx, (double)logits[t * E + e]);
    for (int e = 0; e < E; ++e) {
      s[e] = sigmoid ? 1 / (1 + std::exp(-(double)logits[t * E + e])) : std::exp(logits[t * E + e] - mx);
      sum += s[e];
    }
    for (int e = 0; e < E; ++e) {
      if (!sigmoid) s[e] /= sum;
      c[e] = s[e] + (bias ? (*bias)[e] : 0);
    }
    if (ng > 1 && tg < ng) {
      const int gs = E / ng;
      std::vector<std::pair<double, int>> g(ng);
      for (int q = 0; q < ng; ++q) {
        std::vector<double> v(c.begin() + q * gs, c.begin() + (q + 1) * gs);
        std::sort(v.rbegin(), v.rend());
        g[q] = {sum2 ? v[0] + v[1] : v[0], q};
      }
      std::stable_sort(g.begin(), g.end(), [](auto a, auto b) { return a.first > b.first; });
      std::vector<bool> keep(ng, false);
      for (int q = 0; q < tg; ++q) keep[g[q].second] = true;
      for (int e = 0; e < E; ++e)
        if (!keep[e / gs]) c[e] = 0;
    }
    double wsum = 0;
    for (int j = 0; j < k; ++j) {
      int best = 0;
      for (int e = 1; e < E; ++e)
        if (c[e] > c[best]) best = e;
      ids[t * k + j] = best;
      ws[t * k + j] = s[best];
      wsum += s[best];
      c[best] = -1e30;
    }
    for (int j = 0; j < k; ++j) ws[t * k + j] = ws[t * k + j] / (norm ? wsum + 1e-20 : 1.0) * scale;
  }
}

void test_router(bool v3) {
  const int T = 33, E = v3 ? 256 : 64, k = v3 ? 8 : 6, ng = v3 ? 8 : 1, tg = v3 ? 4 : 1;
  auto logits = randv(T * E, -3.f, 3.f);
  auto bias = randv(E, -0.1f, 0.1f);
  Buf dl(logits.size(), DType::F32), db(E, DType::F32), di(T * k, DType::I32), dw(T * k, DType::F32);
  dl.set(logits), db.set(bias);
  RouterParams p{dl.p, false, v3 ? db.as<float>() : nullptr, di.as<int32_t>(), dw.as<float>(), T, E, k, ng, tg,
                 v3 ? RouterScoring::SIGMOID : RouterScoring::SOFTMAX, v3 ? GroupScore::SUM_TOP2 : GroupScore::MAX,
                 v3, v3 ? 2.5f : 1.f, S()};
  run_router(p);
  std::vector<int> ids;
  std::vector<double> ws;
  ref_router(logits, v3 ? &bias : nullptr, T, E, k, ng, tg, v3, v3, v3, v3 ? 2.5f : 1.f, ids, ws);
  auto gi = di.get_i();
  int mismatched = 0;
  for (int i = 0; i < T * k; ++i) mismatched += gi[i] != ids[i];
  report(v3 ? "moeRoute v3 ids (mismatch fraction)" : "moeRoute v2 ids (mismatch fraction)",
         (double)mismatched / (T * k), 0);
  report(v3 ? "moeRoute v3 weights" : "moeRoute v2 weights", rel_l2(dw.get(), ws), 1e-5);
}

// route_token as it was before its registers + redux rewrite (router.cuh), kept as the reference the
// new one must match bit for bit.
__device__ __forceinline__ void route_token_before(const RouterParams& p, int t, float* score, float* choice, int32_t* ids,
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
    // The group selection is the new code's own helper, moved there unchanged.
    const int gs = E / p.n_group;
    const unsigned keep_mask = router_detail::keep_groups(p, choice, lane);
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


template <bool NEW>
__global__ void route_cmp_kernel(RouterParams p) {
  __shared__ float score_s[4][ROUTER_MAX_EXPERTS];
  __shared__ float choice_s[4][ROUTER_MAX_EXPERTS];
  const int warp = threadIdx.x >> 5, t = blockIdx.x * 4 + warp;
  if (t >= p.num_tokens) return;
  const int64_t at = static_cast<int64_t>(t) * p.top_k;
  if (NEW)
    route_token(p, t, score_s[warp], choice_s[warp], p.topk_ids + at, p.topk_weights + at);
  else
    route_token_before(p, t, score_s[warp], choice_s[warp], p.topk_ids + at, p.topk_weights + at);
}

// route_token against route_token_before on the same logits, ids and weight bits exactly; the tokens
// cycle through kinds: random, few distinct values (ties), -inf entries, one NaN, all -inf, all NaN,
// all equal, +inf, signed zeros / sigmoid underflow values.
void test_route_token_bits(int E, int k, int ng, int tg, bool v3, bool logits_bf16) {
  const int T = 257;
  auto logits = randv((size_t)T * E, -3.f, 3.f);
  auto bias = randv(E, -0.1f, 0.1f);
  std::uniform_int_distribution<int> pick(0, E - 1);
  for (int t = 0; t < T; ++t) {
    float* l = &logits[(size_t)t * E];
    switch (t % 10) {
      case 1:
        for (int e = 0; e < E; ++e) l[e] = std::round(l[e] * 1.5f) / 2.f;
        break;
      case 2:
        for (int j = 0; j < E / 3; ++j) l[pick(rng)] = -INFINITY;
        break;
      case 3:
        l[pick(rng)] = NAN;
        for (int j = 0; j < E / 8; ++j) l[pick(rng)] = l[pick(rng)];
        break;
      case 4:
        for (int e = 0; e < E; ++e) l[e] = -INFINITY;
        break;
      case 5:
        for (int e = 0; e < E; ++e) l[e] = NAN;
        break;
      case 6:
        for (int e = 0; e < E; ++e) l[e] = 0.75f;
        break;
      case 7:
        l[pick(rng)] = INFINITY;
        break;
      case 8:
        for (int e = 0; e < E; ++e) {
          const int r = pick(rng) % 8;
          l[e] = r == 0 ? -0.f : r == 1 ? 0.f : r == 2 ? -87.5f : r == 3 ? -88.5f : r == 4 ? -100.f : -l[e] * l[e];
        }
        break;
      case 9:
        for (int j = 0; j < E / 2; ++j) l[pick(rng)] = l[pick(rng)];
        for (int j = 0; j < E / 4; ++j) l[pick(rng)] = -INFINITY;
        break;
      default:
        break;
    }
  }
  Buf dl(logits.size(), logits_bf16 ? DType::BF16 : DType::F32), db(E, DType::F32);
  Buf i0((size_t)T * k, DType::I32), w0((size_t)T * k, DType::F32), i1((size_t)T * k, DType::I32),
      w1((size_t)T * k, DType::F32);
  dl.set(logits), db.set(bias);
  RouterParams p{dl.p, logits_bf16, v3 ? db.as<float>() : nullptr, i0.as<int32_t>(), w0.as<float>(), T, E, k, ng, tg,
                 v3 ? RouterScoring::SIGMOID : RouterScoring::SOFTMAX, v3 ? GroupScore::SUM_TOP2 : GroupScore::MAX,
                 v3, v3 ? 2.5f : 1.f, S()};
  check_router(p);
  route_cmp_kernel<false><<<(T + 3) / 4, 128, 0, S()>>>(p);
  p.topk_ids = i1.as<int32_t>(), p.topk_weights = w1.as<float>();
  route_cmp_kernel<true><<<(T + 3) / 4, 128, 0, S()>>>(p);
  check_launch("route_cmp_kernel");
  const auto a = i0.get_i(), b = i1.get_i();
  const auto wa = w0.get(), wb = w1.get();
  int diff = 0;
  for (size_t j = 0; j < a.size(); ++j)
    diff += a[j] != b[j] || std::memcmp(&wa[j], &wb[j], sizeof(float)) != 0;
  char name[96];
  std::snprintf(name, sizeof name, "route_token = before, bits (E=%d k=%d g=%d/%d %s %s)", E, k, tg, ng,
                v3 ? "sigmoid" : "softmax", logits_bf16 ? "bf16" : "f32");
  report(name, (double)diff / a.size(), 0);
}

void test_route_token_bits_all() {
  for (bool bf : {true, false}) {
    test_route_token_bits(64, 6, 1, 1, false, bf);    // V2-Lite softmax greedy
    test_route_token_bits(64, 6, 8, 3, false, bf);    // V2 group-limited
    test_route_token_bits(256, 8, 8, 4, true, bf);    // V3 sigmoid + bias, noaux_tc
  }
  test_route_token_bits(160, 6, 1, 1, false, false);  // partly filled register slots
  test_route_token_bits(96, 8, 4, 2, true, false);
  test_route_token_bits(16, 16, 1, 1, false, true);   // fewer experts than lanes, top_k = E
}

void test_moe(int T, int block_m, int I = 128, int block_n = 64, int split = 1) {
  const int H = 256, E = 16, k = 4;
  auto x = randv(T * H), gu = randv((size_t)E * 2 * I * H, -0.1f, 0.1f), dn = randv((size_t)E * H * I, -0.1f, 0.1f);
  std::vector<int32_t> ids(T * k);
  std::vector<float> w(T * k);
  for (int t = 0; t < T; ++t) {
    std::vector<int> perm(E);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int j = 0; j < k; ++j) {
      ids[t * k + j] = perm[j];
      w[t * k + j] = 0.1f + 0.2f * j;
    }
  }
  Buf dx(x.size(), DType::BF16), dgu(gu.size(), DType::BF16), ddn(dn.size(), DType::BF16), di(ids.size(), DType::I32),
      dw(w.size(), DType::F32), dout(T * H, DType::BF16);
  dx.set(x), dgu.set(gu), ddn.set(dn), di.set_i(ids), dw.set(w);
  const int A = T * k, max_tiles = moe_max_tiles(A, E, block_m);
  Buf idx(moe_align_scratch_ints(A, E, max_tiles), DType::I32), h((size_t)A * 2 * I, DType::BF16),
      act((size_t)A * I, DType::BF16), y((size_t)A * H, DType::BF16);
  MoeAlignParams al = moe_align_params(di.as<int32_t>(), idx.as<int32_t>(), A, E, block_m, max_tiles, S());
  run_moe_align(al);
  GroupedGemmParams g1{};
  g1.a = dx.p, g1.gather = al.sorted_assign, g1.gather_div = k, g1.lda = H;
  g1.w = dgu.p, g1.w_group_stride = (int64_t)2 * I * H, g1.n = 2 * I, g1.k = H;
  g1.tile_group = al.tile_expert, g1.tile_row_begin = al.tile_row_begin, g1.group_end = al.expert_offsets;
  g1.num_tiles = al.num_tiles, g1.max_tiles = max_tiles, g1.m = A, g1.c = h.p, g1.ldc = 2 * I, g1.block_m = block_m;
  g1.block_n = block_n;
  g1.stream = S();
  Buf p1((size_t)split * A * 2 * I, DType::F32), p2((size_t)split * A * H, DType::F32);
  if (split > 1) g1.split_k = split, g1.partial = p1.as<float>();
  run_grouped_gemm(g1);
  if (split > 1) {
    SiluMulPartialsParams sm{p1.as<float>(), split, act.p, A, I, S()};
    run_silu_mul_partials(sm);
  } else {
    SiluMulParams sm{h.p, act.p, A, I, S()};
    run_silu_mul(sm);
    // The gated epilogue (SiLU-and-multiply in the gate/up GEMM) gives the same act bit for bit.
    Buf act_gated((size_t)A * I, DType::BF16);
    GroupedGemmParams gg = g1;
    gg.gated = true, gg.c = act_gated.p, gg.ldc = I;
    run_grouped_gemm(gg);
    const auto want = act.get(), got = act_gated.get();  // bf16 -> f32 is exact: equal floats, equal bits
    size_t differ = 0;
    for (size_t i = 0; i < want.size(); ++i) differ += want[i] != got[i];
    char gname[96];
    std::snprintf(gname, sizeof gname, "groupedGemm gated == gate/up + siluMul T=%d bm=%d I=%d bn=%d (differing)", T,
                  block_m, I, block_n);
    report(gname, static_cast<double>(differ), 0);
  }
  GroupedGemmParams g2 = g1;
  g2.a = act.p, g2.gather = nullptr, g2.gather_div = 1, g2.lda = I, g2.w = ddn.p, g2.w_group_stride = (int64_t)H * I;
  g2.n = H, g2.k = I, g2.c = y.p, g2.ldc = H;
  g2.weights_ready = true;  // align's tile list is two launches back (as in ops_moe.cc)
  if (split > 1) g2.partial = p2.as<float>();
  run_grouped_gemm(g2);
  MoeCombineParams cb{y.p, split > 1 ? p2.as<float>() : nullptr, split, al.assign_pos, dw.as<float>(), nullptr, dout.p,
                      T, k, H, S()};
  run_moe_combine(cb);
  std::vector<double> ref((size_t)T * H, 0.0);
  for (int t = 0; t < T; ++t)
    for (int j = 0; j < k; ++j) {
      const int e = ids[t * k + j];
      std::vector<double> a(I);
      for (int i = 0; i < I; ++i) {
        double g = 0, u = 0;
        for (int c = 0; c < H; ++c) {
          g += (double)x[t * H + c] * gu[((size_t)e * 2 * I + i) * H + c];
          u += (double)x[t * H + c] * gu[((size_t)e * 2 * I + I + i) * H + c];
        }
        a[i] = g / (1 + std::exp(-g)) * u;
      }
      for (int c = 0; c < H; ++c) {
        double o = 0;
        for (int i = 0; i < I; ++i) o += a[i] * dn[((size_t)e * H + c) * I + i];
        ref[t * H + c] += w[t * k + j] * o;
      }
    }
  char name[64];
  std::snprintf(name, sizeof name, "moeExperts T=%d bm=%d I=%d bn=%d split=%d", T, block_m, I, block_n, split);
  report(name, rel_l2(dout.get(), ref), 2e-2);
}

#ifdef FLASHSERVE_WITH_CUBLAS
void test_gemm(bool trans_b, int batch, DType c_dtype) {
  const int m = 37, n = 96, k = 128;
  auto a = randv((size_t)batch * m * k), b = randv((size_t)batch * n * k);
  Buf da(a.size(), DType::BF16), dbb(b.size(), DType::BF16), dc((size_t)batch * m * n, c_dtype);
  da.set(a), dbb.set(b);
  GemmParams p{};
  p.a = da.p, p.b = dbb.p, p.c = dc.p, p.c_dtype = c_dtype, p.m = m, p.n = n, p.k = k;
  p.lda = k, p.ldb = trans_b ? k : n, p.ldc = n, p.trans_b = trans_b, p.batch = batch;
  p.stride_a = (int64_t)m * k, p.stride_b = (int64_t)n * k, p.stride_c = (int64_t)m * n, p.stream = S();
  run_gemm(p);
  std::vector<double> ref((size_t)batch * m * n);
  for (int q = 0; q < batch; ++q)
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) {
        double s = 0;
        for (int l = 0; l < k; ++l) {
          const double bv = trans_b ? b[(size_t)q * n * k + (size_t)j * k + l] : b[(size_t)q * n * k + (size_t)l * n + j];
          s += (double)a[(size_t)q * m * k + (size_t)i * k + l] * bv;
        }
        ref[(size_t)q * m * n + (size_t)i * n + j] = s;
      }
  char name[64];
  std::snprintf(name, sizeof name, "gemm trans_b=%d batch=%d c=%s", trans_b, batch, c_dtype == DType::F32 ? "f32" : "bf16");
  report(name, rel_l2(dc.get(), ref), c_dtype == DType::F32 ? 1e-5 : 8e-3);
}
#endif

void test_skinny(int m, bool bias, DType c_dtype) {
  const int n = 300, k = 2048;
  auto a = randv((size_t)m * k), w = randv((size_t)n * k, -0.05f, 0.05f), bv = randv(n);
  Buf da(a.size(), DType::BF16), dw(w.size(), DType::BF16), db(n, DType::BF16), dc((size_t)m * n, c_dtype);
  da.set(a), dw.set(w), db.set(bv);
  SkinnyGemmParams p{};
  p.a = da.p, p.w = dw.p, p.bias = bias ? db.p : nullptr, p.c = dc.p, p.c_dtype = c_dtype;
  p.m = m, p.n = n, p.k = k, p.lda = k, p.ldc = n, p.sms = runtime().props().sms, p.stream = S();
  run_skinny_gemm(p);
  std::vector<double> ref((size_t)m * n);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double s = bias ? bv[j] : 0.0;
      for (int l = 0; l < k; ++l) s += (double)a[(size_t)i * k + l] * w[(size_t)j * k + l];
      ref[(size_t)i * n + j] = s;
    }
  char name[64];
  std::snprintf(name, sizeof name, "skinny gemm m=%d bias=%d c=%s", m, bias, c_dtype == DType::F32 ? "f32" : "bf16");
  report(name, rel_l2(dc.get(), ref), c_dtype == DType::F32 && !bias ? 1e-5 : 8e-3);
}

// The skinny kernel's norm form (RMSNorm(x + residual), or of x alone, folded into the GEMV): against
// fp64 and bit for bit against run_rms_norm followed by the plain skinny GEMM, outputs poisoned first.
void test_norm_linear(int m, int k, bool residual, bool bias) {
  const int n = 300;
  auto x = randv((size_t)m * k, -3.f, 3.f), r = randv((size_t)m * k), nw = randv(k, 0.5f, 1.5f),
       w = randv((size_t)n * k, -0.05f, 0.05f), bv = randv(n);
  Buf dx(x.size(), DType::BF16), dr(r.size(), DType::BF16), dnw(k, DType::BF16), dw(w.size(), DType::BF16),
      db(n, DType::BF16), dc((size_t)m * n, DType::BF16), dres(x.size(), DType::BF16), dnormed(x.size(), DType::BF16),
      uc((size_t)m * n, DType::BF16), ures(x.size(), DType::BF16), unormed(x.size(), DType::BF16);
  dx.set(x), dr.set(r), dnw.set(nw), dw.set(w), db.set(bv);
  const std::vector<float> poison_mk((size_t)m * k, 777.f), poison_mn((size_t)m * n, 777.f);
  dres.set(poison_mk), dnormed.set(poison_mk), dc.set(poison_mn);
  SkinnyGemmParams p{};
  p.w = dw.p, p.bias = bias ? db.p : nullptr, p.c = dc.p, p.c_dtype = DType::BF16;
  p.m = m, p.n = n, p.k = k, p.lda = k, p.ldc = n, p.sms = runtime().props().sms, p.stream = S();
  p.norm.x = dx.p, p.norm.residual = residual ? dr.p : nullptr, p.norm.weight = dnw.p;
  p.norm.residual_out = residual ? dres.p : nullptr, p.norm.normed_out = dnormed.p, p.norm.eps = 1e-6f;
  run_skinny_gemm(p);
  // The unfused kernels.
  RmsNormParams np{dx.p, residual ? dr.p : nullptr, dnw.p, unormed.p, residual ? ures.p : nullptr, m, k, k, k, k, 1e-6f,
                   S()};
  run_rms_norm(np);
  SkinnyGemmParams up{};
  up.a = unormed.p, up.w = dw.p, up.bias = p.bias, up.c = uc.p, up.c_dtype = DType::BF16;
  up.m = m, up.n = n, up.k = k, up.lda = k, up.ldc = n, up.sms = p.sms, up.stream = S();
  run_skinny_gemm(up);
  // fp64: the residual sum rounded to bf16 as the kernels store it, the rest exact.
  std::vector<double> ref_h((size_t)m * k), ref_normed((size_t)m * k), ref((size_t)m * n);
  for (int i = 0; i < m; ++i) {
    double ss = 0;
    for (int c = 0; c < k; ++c) {
      const size_t e = (size_t)i * k + c;
      ref_h[e] = residual ? bf(x[e] + r[e]) : x[e];
      ss += ref_h[e] * ref_h[e];
    }
    const double inv = 1.0 / std::sqrt(ss / k + 1e-6);
    for (int c = 0; c < k; ++c) ref_normed[(size_t)i * k + c] = ref_h[(size_t)i * k + c] * inv * nw[c];
    for (int j = 0; j < n; ++j) {
      double acc = bias ? bv[j] : 0.0;
      for (int c = 0; c < k; ++c) acc += ref_normed[(size_t)i * k + c] * w[(size_t)j * k + c];
      ref[(size_t)i * n + j] = acc;
    }
  }
  char name[80];
  std::snprintf(name, sizeof name, "normLinear m=%d k=%d res=%d bias=%d out", m, k, residual, bias);
  report(name, rel_l2(dc.get(), ref), 1e-2);
  std::snprintf(name, sizeof name, "normLinear m=%d k=%d res=%d normed", m, k, residual);
  report(name, rel_l2(dnormed.get(), ref_normed), 8e-3);
  if (residual) {
    std::snprintf(name, sizeof name, "normLinear m=%d k=%d residual", m, k);
    report(name, rel_l2(dres.get(), ref_h), 1e-6);
  }
  // Bit for bit against the two kernels (as floats: every bf16 converts exactly).
  const auto differing = [](const std::vector<float>& a, const std::vector<float>& b) {
    size_t d = 0;
    for (size_t i = 0; i < a.size(); ++i) d += std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
    return (double)d;
  };
  double diff = differing(dc.get(), uc.get()) + differing(dnormed.get(), unormed.get());
  if (residual) diff += differing(dres.get(), ures.get());
  std::snprintf(name, sizeof name, "normLinear m=%d k=%d res=%d vs 2 kernels (#diff)", m, k, residual);
  report(name, diff, 0);
}

// The absorbed MLA query: [q_nope @ W_UK ; q_pe] per head, through the skinny kernel's grouped form and
// side copies (1-2 tokens) and through the grouped GEMM + copies (more), with the cache write: token t
// goes to slot 3 * t + 1, except the last, whose slot is -1 (a padding row: nothing written).
void test_mla_query(int T) {
  const int heads = 4, nope = 32, rope = 16, latent = 48, qw = nope + rope, ow = latent + rope;
  auto q = randv((size_t)T * heads * qw), w = randv((size_t)heads * nope * latent, -0.2f, 0.2f);
  std::vector<float> wt((size_t)heads * latent * nope);  // [heads, latent, nope]
  for (int h = 0; h < heads; ++h)
    for (int c = 0; c < nope; ++c)
      for (int j = 0; j < latent; ++j) wt[((size_t)h * latent + j) * nope + c] = w[((size_t)h * nope + c) * latent + j];
  Buf dq(q.size(), DType::BF16), dwt(wt.size(), DType::BF16), dout((size_t)T * heads * ow, DType::BF16);
  dq.set(q), dwt.set(wt);
  dout.set(std::vector<float>(dout.n, 1e30f));  // poison: every element must be written
  const int slots_n = 3 * T + 2;
  auto ckv = randv((size_t)T * latent), kpe = randv((size_t)T * rope);
  std::vector<int32_t> slots(T);
  for (int t = 0; t < T; ++t) slots[t] = t == T - 1 && T > 1 ? -1 : 3 * t + 1;
  std::vector<float> cache0((size_t)slots_n * ow, 7.f);
  Buf dckv(ckv.size(), DType::BF16), dkpe(kpe.size(), DType::BF16), dslots(T, DType::I32), dcache(cache0.size(), DType::BF16);
  dckv.set(ckv), dkpe.set(kpe), dslots.set_i(slots), dcache.set(cache0);
  MlaQueryParams p{dq.p, dwt.p, dout.p, T, heads, nope, rope, latent, dckv.p, dkpe.p, dslots.as<int32_t>(), dcache.p,
                   slots_n, runtime().props().sms, S()};
  run_mla_query(p);
  std::vector<double> cref(cache0.begin(), cache0.end());
  for (int t = 0; t < T; ++t) {
    if (slots[t] < 0) continue;
    for (int c = 0; c < latent; ++c) cref[(size_t)slots[t] * ow + c] = ckv[(size_t)t * latent + c];
    for (int c = 0; c < rope; ++c) cref[(size_t)slots[t] * ow + latent + c] = kpe[(size_t)t * rope + c];
  }
  std::vector<double> ref(dout.n);
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < heads; ++h) {
      const float* qh = &q[((size_t)t * heads + h) * qw];
      double* o = &ref[((size_t)t * heads + h) * ow];
      for (int j = 0; j < latent; ++j) {
        double s = 0;
        for (int c = 0; c < nope; ++c) s += (double)qh[c] * w[((size_t)h * nope + c) * latent + j];
        o[j] = s;
      }
      for (int r = 0; r < rope; ++r) o[latent + r] = qh[nope + r];
    }
  char name[64];
  std::snprintf(name, sizeof name, "mlaAbsorbQuery T=%d", T);
  report(name, rel_l2(dout.get(), ref), 8e-3);
  std::snprintf(name, sizeof name, "mlaAbsorbQuery T=%d cache rows", T);
  report(name, rel_l2(dcache.get(), cref), 0);
  // An L2 prefetch hint (taken by the skinny launch at 1-2 tokens) changes nothing, bit for bit: a size
  // that is no multiple of 16 bytes a block, and a start off 16-byte alignment (the hint is dropped).
  const std::vector<float> plain = dout.get();
  Buf pf((1 << 20) + 24, DType::BF16);
  for (int off : {0, 2}) {
    dout.set(std::vector<float>(dout.n, 1e30f));
    MlaQueryParams q = p;
    q.l2_prefetch = static_cast<const char*>(pf.p) + off;
    q.l2_prefetch_bytes = static_cast<int64_t>(pf.n) * 2 - off;
    run_mla_query(q);
    const std::vector<float> got = dout.get();
    double diff = 0;
    for (size_t i = 0; i < got.size(); ++i)
      if (!(got[i] == plain[i])) diff = std::max(diff, std::isnan(got[i] - plain[i]) ? 1e30 : std::fabs((double)got[i] - plain[i]));
    std::snprintf(name, sizeof name, "  with an L2 prefetch (start +%d bytes), bits (T=%d)", off, T);
    report(name, diff, 0);
  }
}

// Routed + shared experts of a few tokens (moe_small.h), with an out-of-range expert id that must
// contribute nothing. I = 1408 (V2-Lite's): a down job is two groups of loads, the second partial; a
// shared_inter of 2816 or more: a shared row of the fused down kernel is two groups too (2824: its
// second row starts off a warp's 32 chunks). The fused down kernel (the default) against fp64, and the
// unfused path (down, then combine) against it, bit for bit.
void test_moe_small(int T, bool shared, bool bad_id, int I = 136, int shared_inter = 200) {
  const int H = 256, E = 16, k = 4, Sh = shared ? shared_inter : 0, Smax = std::max(shared_inter, 208);
  auto x = randv(T * H), gu = randv((size_t)E * 2 * I * H, -0.1f, 0.1f), dn = randv((size_t)E * H * I, -0.1f, 0.1f);
  auto sgu = randv((size_t)2 * Smax * H, -0.1f, 0.1f), sdn = randv((size_t)H * Smax, -0.1f, 0.1f);
  std::vector<int32_t> ids(T * k);
  std::vector<float> w(T * k);
  for (int t = 0; t < T; ++t) {
    std::vector<int> perm(E);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int j = 0; j < k; ++j) ids[t * k + j] = perm[j], w[t * k + j] = 0.1f + 0.2f * j;
  }
  if (bad_id) ids[T * k - 1] = -1;
  Buf dx(x.size(), DType::BF16), dgu(gu.size(), DType::BF16), ddn(dn.size(), DType::BF16), di(ids.size(), DType::I32),
      dw(w.size(), DType::F32), dsgu(sgu.size(), DType::BF16), dsdn(sdn.size(), DType::BF16), dout(T * H, DType::BF16),
      act(moe_small_act_bytes(T, k, I, Sh) / 2, DType::BF16), eo(moe_small_expert_out_bytes(T, k, H) / 2, DType::BF16);
  dx.set(x), dgu.set(gu), ddn.set(dn), di.set_i(ids), dw.set(w);
  // The shared MLP is [2 * Sh, H] / [H, Sh]: take its rows / columns from the larger random matrices.
  std::vector<float> sg((size_t)2 * std::max(Sh, 1) * H), sd((size_t)H * std::max(Sh, 1));
  for (int r = 0; r < 2 * Sh; ++r)
    for (int c = 0; c < H; ++c) sg[(size_t)r * H + c] = sgu[(size_t)r * H + c];
  for (int r = 0; r < H; ++r)
    for (int c = 0; c < Sh; ++c) sd[(size_t)r * Sh + c] = sdn[(size_t)r * Smax + c];
  dsgu.set(sg), dsdn.set(sd);
  dout.set(std::vector<float>(dout.n, 1e30f));
  MoeSmallParams p{};
  p.x = dx.p, p.topk_ids = di.as<int32_t>(), p.topk_weights = dw.as<float>(), p.gate_up = dgu.p, p.down = ddn.p;
  p.shared_gate_up = shared ? dsgu.p : nullptr, p.shared_down = shared ? dsdn.p : nullptr;
  p.act = act.p, p.expert_out = eo.p, p.out = dout.p, p.tokens = T, p.hidden = H, p.inter = I, p.shared_inter = Sh, p.experts = E;
  p.top_k = k, p.sms = runtime().props().sms, p.stream = S();
  run_moe_small(p);
  const std::vector<float> fused = dout.get();
  dout.set(std::vector<float>(dout.n, 1e30f));
  MoeSmallParams q = p;
  q.unfused_combine = true;
  run_moe_small(q);
  const std::vector<float> unfused = dout.get();
  double diff = 0;  // largest difference between the two paths
  for (size_t i = 0; i < fused.size(); ++i)
    if (!(unfused[i] == fused[i])) diff = std::max(diff, std::isnan(unfused[i] - fused[i]) ? 1e30 : std::fabs((double)unfused[i] - fused[i]));
  auto mlp = [&](const float* xr, const float* g_w, const float* d_w, int inter, int d_stride, double* out, double scale) {
    std::vector<double> a(inter);
    for (int i = 0; i < inter; ++i) {
      double g = 0, u = 0;
      for (int c = 0; c < H; ++c) g += (double)xr[c] * g_w[(size_t)i * H + c], u += (double)xr[c] * g_w[(size_t)(inter + i) * H + c];
      a[i] = g / (1 + std::exp(-g)) * u;
    }
    for (int c = 0; c < H; ++c) {
      double o = 0;
      for (int i = 0; i < inter; ++i) o += a[i] * d_w[(size_t)c * d_stride + i];
      out[c] += scale * o;
    }
  };
  std::vector<double> ref((size_t)T * H, 0.0);
  for (int t = 0; t < T; ++t) {
    for (int j = 0; j < k; ++j) {
      const int e = ids[t * k + j];
      if (e < 0) continue;
      mlp(&x[(size_t)t * H], &gu[(size_t)e * 2 * I * H], &dn[(size_t)e * H * I], I, I, &ref[(size_t)t * H], w[t * k + j]);
    }
    if (shared) mlp(&x[(size_t)t * H], sg.data(), sd.data(), Sh, Sh, &ref[(size_t)t * H], 1.0);
  }
  char name[80];
  std::snprintf(name, sizeof name, "moeExperts small T=%d I=%d shared=%d bad_id=%d", T, I, Sh, bad_id);
  report(name, rel_l2(fused, ref), 2e-2);
  std::snprintf(name, sizeof name, "  = unfused, bits (T=%d I=%d shared=%d)", T, I, Sh);
  report(name, diff, 0);
}

// The small-batch experts routing for themselves (MoeSmallParams::route) against the router kernel
// followed by the experts (fused and unfused down + combine), bit for bit: V2 softmax greedy (bf16
// logits, as the model's gate GEMV writes them), V2 group-limited, V3 sigmoid + bias (noaux_tc).
void test_moe_small_route(int T, int config) {
  const bool v3 = config == 2;
  const int H = 256, I = 136, Sh = 200, E = 64, k = v3 ? 8 : 6, ng = config == 0 ? 1 : 8, tg = v3 ? 4 : 3;
  const bool logits_bf16 = config == 0;
  auto logits = randv((size_t)T * E, -3.f, 3.f), bias = randv(E, -0.1f, 0.1f), x = randv((size_t)T * H);
  auto gu = randv((size_t)E * 2 * I * H, -0.1f, 0.1f), dn = randv((size_t)E * H * I, -0.1f, 0.1f);
  auto sgu = randv((size_t)2 * Sh * H, -0.1f, 0.1f), sdn = randv((size_t)H * Sh, -0.1f, 0.1f);
  Buf dl(logits.size(), logits_bf16 ? DType::BF16 : DType::F32), db(E, DType::F32), di((size_t)T * k, DType::I32),
      dw((size_t)T * k, DType::F32), dx(x.size(), DType::BF16), dgu(gu.size(), DType::BF16), ddn(dn.size(), DType::BF16),
      dsgu(sgu.size(), DType::BF16), dsdn(sdn.size(), DType::BF16), dout((size_t)T * H, DType::BF16),
      act(moe_small_act_bytes(T, k, I, Sh) / 2, DType::BF16), eo(moe_small_expert_out_bytes(T, k, H) / 2, DType::BF16);
  dl.set(logits), db.set(bias), dx.set(x), dgu.set(gu), ddn.set(dn), dsgu.set(sgu), dsdn.set(sdn);
  RouterParams rp{dl.p, logits_bf16, v3 ? db.as<float>() : nullptr, di.as<int32_t>(), dw.as<float>(), T, E, k, ng, tg,
                  v3 ? RouterScoring::SIGMOID : RouterScoring::SOFTMAX, v3 ? GroupScore::SUM_TOP2 : GroupScore::MAX,
                  v3, v3 ? 2.5f : 1.f, S()};
  MoeSmallParams p{};
  p.x = dx.p, p.topk_ids = di.as<int32_t>(), p.topk_weights = dw.as<float>(), p.gate_up = dgu.p, p.down = ddn.p;
  p.shared_gate_up = dsgu.p, p.shared_down = dsdn.p, p.act = act.p, p.expert_out = eo.p, p.out = dout.p;
  p.tokens = T, p.hidden = H, p.inter = I, p.shared_inter = Sh, p.experts = E, p.top_k = k;
  p.sms = runtime().props().sms, p.stream = S();
  auto run = [&](bool route, bool unfused) {
    dout.set(std::vector<float>(dout.n, 1e30f));
    MoeSmallParams q = p;
    q.unfused_combine = unfused;
    if (route) {
      q.route = true, q.router = rp, q.topk_ids = nullptr, q.topk_weights = nullptr;
    } else {
      run_router(rp);
    }
    run_moe_small(q);
    return dout.get();
  };
  const auto routed = run(true, false), fused = run(false, false), unfused = run(false, true);
  auto bits = [](const std::vector<float>& a, const std::vector<float>& b) {
    double d = 0;
    for (size_t i = 0; i < a.size(); ++i)
      if (!(a[i] == b[i])) d = std::max(d, std::isnan(a[i] - b[i]) ? 1e30 : std::fabs((double)a[i] - b[i]));
    return d;
  };
  static const char* names[] = {"v2 greedy", "v2 group-limited", "v3 noaux_tc"};
  char name[96];
  std::snprintf(name, sizeof name, "moeExperts small routing itself T=%d %s = router + fused, bits", T, names[config]);
  report(name, bits(routed, fused), 0);
  std::snprintf(name, sizeof name, "  = router + unfused, bits (T=%d %s)", T, names[config]);
  report(name, bits(routed, unfused), 0);
}

void test_mla_inputs(bool interleave) {
  const int T = 3, h = 4, D = 48, R = 16, L = 64, P = 40;
  auto q = randv((size_t)T * h * D), kv = randv((size_t)T * (L + R), -2.f, 2.f), w = randv(L, 0.5f, 1.5f);
  std::vector<float> cs(P * R / 2), sn(P * R / 2);
  for (int pos = 0; pos < P; ++pos)
    for (int j = 0; j < R / 2; ++j) {
      const double f = pos * std::pow(10000.0, -2.0 * j / R);
      cs[pos * R / 2 + j] = bf(std::cos(f) * 1.1), sn[pos * R / 2 + j] = bf(std::sin(f) * 1.1);
    }
  std::vector<int32_t> positions = {0, 17, 39};
  Buf dq(q.size(), DType::BF16), dkv(kv.size(), DType::BF16), dw(L, DType::BF16), dc(cs.size(), DType::BF16),
      ds(sn.size(), DType::BF16), dp(T, DType::I32), qo(q.size(), DType::BF16), ckv((size_t)T * L, DType::BF16),
      kpe((size_t)T * R, DType::BF16);
  dq.set(q), dkv.set(kv), dw.set(w), dc.set(cs), ds.set(sn), dp.set_i(positions);
  MlaInputsParams p{dq.p, dkv.p, dp.as<int32_t>(), dc.p, ds.p, dw.p, qo.p, ckv.p, kpe.p, T, h, D, R, L, P, 1e-6f,
                    interleave, S()};
  run_mla_inputs(p);
  auto rot = [&](const float* x, double* y, int pos) {
    for (int j = 0; j < R / 2; ++j) {
      const int i1 = interleave ? 2 * j : j, i2 = interleave ? 2 * j + 1 : j + R / 2;
      const double c = cs[pos * R / 2 + j], s = sn[pos * R / 2 + j];
      y[i1] = x[i1] * c - x[i2] * s;
      y[i2] = x[i2] * c + x[i1] * s;
    }
  };
  std::vector<double> rq(q.begin(), q.end()), rc((size_t)T * L), rk((size_t)T * R);
  for (int t = 0; t < T; ++t) {
    for (int hh = 0; hh < h; ++hh) rot(&q[((size_t)t * h + hh) * D + D - R], &rq[((size_t)t * h + hh) * D + D - R], positions[t]);
    double ss = 0;
    for (int c = 0; c < L; ++c) ss += (double)kv[t * (L + R) + c] * kv[t * (L + R) + c];
    const double inv = 1.0 / std::sqrt(ss / L + 1e-6);
    for (int c = 0; c < L; ++c) rc[t * L + c] = kv[t * (L + R) + c] * inv * w[c];
    rot(&kv[t * (L + R) + L], &rk[t * R], positions[t]);
  }
  const char* s = interleave ? "interleave" : "half";
  char name[64];
  std::snprintf(name, sizeof name, "mlaInputs q (%s)", s);
  report(name, rel_l2(qo.get(), rq), 8e-3);
  std::snprintf(name, sizeof name, "mlaInputs cKv (%s)", s);
  report(name, rel_l2(ckv.get(), rc), 8e-3);
  std::snprintf(name, sizeof name, "mlaInputs kPe (%s)", s);
  report(name, rel_l2(kpe.get(), rk), 8e-3);
}

// mlaInputs folded into the absorbed query (MlaQueryParams::inputs): one launch at 1-2 tokens, the
// two launches above it (T = 3). Every output of both ops (RoPE'd q, c_kv, k_pe, the absorbed query,
// the cache rows) bit for bit against run_mla_inputs followed by run_mla_query, outputs poisoned
// first; the last token's slot is -1 (a padding row: no cache row written).
void test_mla_inputs_fold(int T, bool interleave, int h, int nope, int R, int L) {
  const int D = nope + R, P = 40, slots_n = 3 * T + 2;
  auto q = randv((size_t)T * h * D), kv = randv((size_t)T * (L + R), -2.f, 2.f), nw = randv(L, 0.5f, 1.5f);
  auto wt = randv((size_t)h * L * nope, -0.2f, 0.2f), cs = randv(P * R / 2), sn = randv(P * R / 2);
  std::vector<int32_t> positions(T), slots(T);
  for (int t = 0; t < T; ++t) positions[t] = (17 * t + 5) % P, slots[t] = t == T - 1 && T > 1 ? -1 : 3 * t + 1;
  Buf dq(q.size(), DType::BF16), dkv(kv.size(), DType::BF16), dnw(L, DType::BF16), dwt(wt.size(), DType::BF16),
      dc(cs.size(), DType::BF16), ds(sn.size(), DType::BF16), dp(T, DType::I32), dslots(T, DType::I32);
  dq.set(q), dkv.set(kv), dnw.set(nw), dwt.set(wt), dc.set(cs), ds.set(sn), dp.set_i(positions), dslots.set_i(slots);
  std::vector<float> outs[2][5];  // [unfused, folded][q_out, c_kv, k_pe, absorbed, cache]
  for (int v = 0; v < 2; ++v) {
    Buf qo(q.size(), DType::BF16), ckv((size_t)T * L, DType::BF16), kpe((size_t)T * R, DType::BF16),
        out((size_t)T * h * (L + R), DType::BF16), cache((size_t)slots_n * (L + R), DType::BF16);
    for (Buf* b : {&qo, &ckv, &kpe, &out, &cache}) b->set(std::vector<float>(b->n, 1e30f));
    MlaInputsParams in{dq.p, dkv.p, dp.as<int32_t>(), dc.p, ds.p, dnw.p, qo.p, ckv.p, kpe.p, T, h, D, R, L, P, 1e-6f,
                       interleave, S()};
    MlaQueryParams mq{qo.p, dwt.p, out.p, T, h, nope, R, L, ckv.p, kpe.p, dslots.as<int32_t>(), cache.p, slots_n,
                      runtime().props().sms, S()};
    if (v == 0) {
      run_mla_inputs(in);
    } else {
      mq.inputs = &in;
    }
    run_mla_query(mq);
    outs[v][0] = qo.get(), outs[v][1] = ckv.get(), outs[v][2] = kpe.get(), outs[v][3] = out.get();
    outs[v][4] = cache.get();
  }
  double diff = 0;
  for (int i = 0; i < 5; ++i)
    for (size_t j = 0; j < outs[0][i].size(); ++j) diff += std::memcmp(&outs[0][i][j], &outs[1][i][j], sizeof(float)) != 0;
  char name[96];
  std::snprintf(name, sizeof name, "mlaInputs folded T=%d h=%d L=%d (%s) vs 2 ops (#diff)", T, h, L,
                interleave ? "interleave" : "half");
  report(name, diff, 0);
}

void test_sampling() {
  const int rows = 6, V = 5000;
  // NOTE: not rounded to bf16: ties at a top-k or top-p boundary are all kept by the kernel (a
  // threshold) but cut by index in this reference, so the test draws tie-free logits.
  std::vector<float> logits((size_t)rows * V);
  std::uniform_real_distribution<float> dist(-5.f, 5.f);
  for (auto& x : logits) x = dist(rng);
  std::vector<float> temp = {0.f, 1.f, 0.7f, 1.f, 1.f, 1.3f}, top_p = {1.f, 1.f, 0.9f, 1.f, 0.5f, 0.8f},
                     min_p = {0.f, 0.f, 0.f, 0.1f, 0.f, 0.05f}, uni = {0.5f, 0.3f, 0.77f, 0.12f, 0.999f, 0.01f};
  std::vector<int32_t> top_k = {0, 1, 50, 0, 0, 20};
  Buf dl(logits.size(), DType::F32), dt(rows, DType::F32), dk(rows, DType::I32), dp(rows, DType::F32),
      dm(rows, DType::F32), du(rows, DType::F32), tok(rows, DType::I32), lp(rows, DType::F32), tid(rows * 3, DType::I32),
      tlp(rows * 3, DType::F32);
  dl.set(logits), dt.set(temp), dk.set_i(top_k), dp.set(top_p), dm.set(min_p), du.set(uni);
  SamplingParams p{dl.p, false, rows, V, dt.as<float>(), dk.as<int32_t>(), dp.as<float>(), dm.as<float>(),
                   du.as<float>(), tok.as<int32_t>(), lp.as<float>(), 3, tid.as<int32_t>(), tlp.as<float>(), S()};
  run_sampling(p);
  auto got = tok.get_i();
  auto glp = lp.get();
  auto gtid = tid.get_i();
  int bad = 0;
  double lp_err = 0;
  for (int r = 0; r < rows; ++r) {
    const float* l = &logits[(size_t)r * V];
    std::vector<int> order(V);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return l[a] > l[b]; });
    const double mx = l[order[0]];
    double z = 0;
    for (int i = 0; i < V; ++i) z += std::exp(l[i] - mx);
    int expect = order[0];
    if (temp[r] > 0) {
      std::vector<double> pr(V);
      for (int i = 0; i < V; ++i) pr[i] = std::exp((l[i] - mx) / temp[r]);
      std::vector<bool> keep(V, true);
      const int kk = top_k[r] > 0 ? top_k[r] : V;
      for (int q = kk; q < V; ++q) keep[order[q]] = false;
      double mass = 0;
      for (int i = 0; i < V; ++i) mass += keep[i] ? pr[i] : 0;
      if (top_p[r] < 1) {
        double acc = 0;
        bool past = false;
        for (int q = 0; q < V; ++q) {
          const int i = order[q];
          if (!keep[i]) continue;
          if (past) keep[i] = false;
          acc += pr[i];
          if (acc >= top_p[r] * mass) past = true;
        }
      }
      for (int i = 0; i < V; ++i)
        if (pr[i] < min_p[r]) keep[i] = false;
      double total = 0;
      for (int i = 0; i < V; ++i) total += keep[i] ? pr[i] : 0;
      double acc = 0;
      for (int i = 0; i < V; ++i)
        if (keep[i]) {
          acc += pr[i];
          if (acc > uni[r] * total) {
            expect = i;
            break;
          }
        }
    }
    bad += got[r] != expect;
    lp_err = std::max(lp_err, std::fabs(glp[r] - (l[got[r]] - mx - std::log(z))));
    bad += gtid[r * 3] != order[0] || gtid[r * 3 + 1] != order[1] || gtid[r * 3 + 2] != order[2];
  }
  report("sample tokens + top-3 ids (mismatches)", bad, 0);
  report("sample logprob (abs err)", lp_err, 1e-4);
}

// Greedy rows of bf16 logits at a real vocabulary size, read by the vectorised one-pass scan: the
// argmax (ties to the lower index, -inf entries) and the logprob against a float64 log-softmax.
void test_sampling_greedy_bf16() {
  const int rows = 3, V = 102400;
  std::vector<float> logits((size_t)rows * V);
  std::uniform_real_distribution<float> dist(-8.f, 8.f);
  for (auto& x : logits) x = dist(rng);
  logits[70001] = logits[1234] = 9.f;  // row 0: a tie for the max, the lower index wins
  for (int i = 0; i < V; i += 3) logits[(size_t)V + i] = -INFINITY;  // row 1: a third of it masked
  logits[(size_t)2 * V + V - 1] = 12.f;  // row 2: the max in the last 16-byte chunk
  Buf dl(logits.size(), DType::BF16), zero(rows, DType::F32), one(rows, DType::F32), k(rows, DType::I32),
      tok(rows, DType::I32), lp(rows, DType::F32), tid(rows * 2, DType::I32), tlp(rows * 2, DType::F32);
  dl.set(logits), zero.set(std::vector<float>(rows, 0.f)), one.set(std::vector<float>(rows, 1.f));
  k.set_i(std::vector<int32_t>(rows, 0));
  const auto l = dl.get();  // the bf16-rounded logits the kernel sees
  SamplingParams p{dl.p, true, rows, V, zero.as<float>(), k.as<int32_t>(), one.as<float>(), zero.as<float>(),
                   zero.as<float>(), tok.as<int32_t>(), lp.as<float>(), 2, tid.as<int32_t>(), tlp.as<float>(), S()};
  run_sampling(p);
  const auto got = tok.get_i(), gtid = tid.get_i();
  const auto glp = lp.get(), gtlp = tlp.get();
  int bad = 0;
  double lp_err = 0;
  for (int r = 0; r < rows; ++r) {
    const float* row = &l[(size_t)r * V];
    int best = 0;
    for (int i = 1; i < V; ++i)
      if (row[i] > row[best]) best = i;
    double z = 0;
    for (int i = 0; i < V; ++i) z += std::exp((double)row[i] - row[best]);
    bad += got[r] != best || gtid[r * 2] != best;
    const double want = -std::log(z);
    lp_err = std::max({lp_err, std::fabs(glp[r] - want), std::fabs(gtlp[r * 2] - want)});
  }
  bad += got[0] != 1234;
  report("sample greedy bf16 V=102400 (mismatches)", bad, 0);
  report("sample greedy bf16 logprob (abs err)", lp_err, 1e-4);

  // The split path (several blocks a row; no top logprobs), twice on one scratch (its counters must
  // come back to zero), against the one-block path: the same tokens, logprobs within rounding.
  Buf scratch(sampling_split_bytes(rows, V) / 4 + 1, DType::F32);
  scratch.set(std::vector<float>(scratch.n, 0.f));
  SamplingParams q = p;
  q.num_top = 0, q.top_ids = nullptr, q.top_logprobs = nullptr, q.split_scratch = scratch.p;
  int split_bad = 0;
  double split_err = 0;
  for (int call = 0; call < 2; ++call) {
    tok.set_i(std::vector<int32_t>(rows, -1)), lp.set(std::vector<float>(rows, 1e30f));
    run_sampling(q);
    const auto st = tok.get_i();
    const auto sl = lp.get();
    for (int r = 0; r < rows; ++r) {
      split_bad += st[r] != got[r];
      split_err = std::max(split_err, (double)std::fabs(sl[r] - glp[r]));
    }
  }
  report("sample greedy bf16 split = one block (token mismatches)", split_bad, 0);
  report("sample greedy bf16 split logprob vs one block (abs)", split_err, 1e-5);
}

void test_graph() {
  // Capture: upload -> axpby(*2) ; replay with new host data must see the new data.
  Runtime& rt = runtime();
  Buf in(1000, DType::F32);
  std::vector<float> h1(1000), h2(1000);
  for (int i = 0; i < 1000; ++i) h1[i] = i, h2[i] = -3.f * i;
  rt.begin_capture();
  void* out = rt.allocator().allocate(4000);
  rt.upload(in.p, h1.data(), DType::F32, DType::F32, 1000);
  AxpbyParams ap{in.p, nullptr, out, DType::F32, DType::F32, DType::F32, 1000, 2.f, 0.f, S()};
  run_axpby(ap);
  const int g = rt.end_capture();
  rt.launch_graph(g);
  std::vector<float> o1(1000), o2(1000);
  rt.download(o1.data(), out, DType::F32, 1000);
  rt.begin_replay(g);
  rt.upload(in.p, h2.data(), DType::F32, DType::F32, 1000);
  rt.launch_graph(g);
  rt.download(o2.data(), out, DType::F32, 1000);
  std::vector<double> r1(1000), r2(1000);
  for (int i = 0; i < 1000; ++i) r1[i] = 2.0 * h1[i], r2[i] = 2.0 * h2[i];
  report("graph capture + launch", rel_l2(o1, r1), 0);
  report("graph replay with new uploads", rel_l2(o2, r2), 0);
  rt.allocator().release(out);
}

void test_errors() {
  bool oom = false;
  try {
    runtime().allocator().allocate(size_t{1} << 46);  // 64 TiB
  } catch (const OutOfMemory& e) {
    oom = std::strstr(e.what(), "asked for") != nullptr;
    std::printf("  (oom message: %s)\n", e.what());
  }
  report("OOM throws with sizes", oom ? 0 : 1, 0);
  bool bad = false;
  try {
    RmsNormParams p{};
    p.rows = 1, p.cols = 100000, p.stream = S();
    run_rms_norm(p);
  } catch (const std::exception& e) {
    bad = std::strstr(e.what(), "rmsNorm") != nullptr;
  }
  report("bad op arguments throw naming the op", bad ? 0 : 1, 0);
}

float time_ms(const std::function<void()>& f, int iters) {
  cudaEvent_t a, b;
  cudaEventCreate(&a), cudaEventCreate(&b);
  f();
  cudaEventRecord(a, S());
  for (int i = 0; i < iters; ++i) f();
  cudaEventRecord(b, S());
  cudaEventSynchronize(b);
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  return ms / iters;
}

SkinnyGemmParams gemv(const void* a, const void* w, void* c, int m, int n, int k) {
  SkinnyGemmParams p{};
  p.a = a, p.w = w, p.c = c, p.c_dtype = DType::BF16, p.m = m, p.n = n, p.k = k, p.lda = k, p.ldc = n;
  p.sms = runtime().props().sms, p.stream = S();
  return p;
}

double copy_bandwidth() {
  const size_t bytes = size_t{1} << 30;
  void* a = runtime().allocator().allocate(bytes);
  void* b = runtime().allocator().allocate(bytes);
  cudaMemsetAsync(a, 1, bytes, S());
  const float ms = time_ms([&] { cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, S()); }, 20);
  runtime().allocator().release(a);
  runtime().allocator().release(b);
  const double bw = 2.0 * bytes / (ms * 1e-3) / 1e9;
  std::printf("copy bandwidth (read+write)             %8.0f GB/s\n", bw);
  return bw;
}

// Returns the copy bandwidth it measured (GB/s).
double bench() {
  std::printf("\n--- micro-benchmarks ---\n");
  const double bw = copy_bandwidth();

  // V2-Lite routed experts: E=64, top-6, H=2048, I=1408, at decode batch sizes.
  const int H = 2048, I = 1408, E = 64, k = 6;
  Buf gu((size_t)E * 2 * I * H, DType::BF16), dn((size_t)E * H * I, DType::BF16);
  FillRandomParams f1{gu.p, DType::BF16, (int64_t)gu.n, 1, -0.01f, 0.01f, S()};
  FillRandomParams f2{dn.p, DType::BF16, (int64_t)dn.n, 2, -0.01f, 0.01f, S()};
  run_fill_random(f1), run_fill_random(f2);
  for (int T : {1, 8, 32, 128, 256}) {
    std::vector<int32_t> ids(T * k);
    for (int t = 0; t < T; ++t) {
      std::vector<int> perm(E);
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), rng);
      for (int j = 0; j < k; ++j) ids[t * k + j] = perm[j];
    }
    std::vector<bool> active(E, false);
    for (int v : ids) active[v] = true;
    const int n_active = (int)std::count(active.begin(), active.end(), true);
    Buf x((size_t)T * H, DType::BF16), di(ids.size(), DType::I32), w(ids.size(), DType::F32), out((size_t)T * H, DType::BF16);
    FillRandomParams f3{x.p, DType::BF16, (int64_t)x.n, 3, -1.f, 1.f, S()};
    run_fill_random(f3);
    di.set_i(ids);
    std::vector<float> ones(ids.size(), 1.f);
    w.set(ones);
    const int A = T * k;
    const int block_m = A / E > 12 ? 64 : 16;
    const int max_tiles = moe_max_tiles(A, E, block_m);
    Buf idx(moe_align_scratch_ints(A, E, max_tiles), DType::I32), h((size_t)A * 2 * I, DType::BF16),
        act((size_t)A * I, DType::BF16), y((size_t)A * H, DType::BF16);
    MoeAlignParams al = moe_align_params(di.as<int32_t>(), idx.as<int32_t>(), A, E, block_m, max_tiles, S());
    GroupedGemmParams g1{};
    g1.a = x.p, g1.gather = al.sorted_assign, g1.gather_div = k, g1.lda = H;
    g1.w = gu.p, g1.w_group_stride = (int64_t)2 * I * H, g1.n = 2 * I, g1.k = H;
    g1.tile_group = al.tile_expert, g1.tile_row_begin = al.tile_row_begin, g1.group_end = al.expert_offsets;
    g1.num_tiles = al.num_tiles, g1.max_tiles = max_tiles, g1.m = A, g1.c = h.p, g1.ldc = 2 * I, g1.block_m = block_m;
    g1.stream = S();
    GroupedGemmParams g2 = g1;
    g2.a = act.p, g2.gather = nullptr, g2.gather_div = 1, g2.lda = I, g2.w = dn.p, g2.w_group_stride = (int64_t)H * I;
    g2.n = H, g2.k = I, g2.c = y.p, g2.ldc = H;
    SiluMulParams sm{h.p, act.p, A, I, S()};
    MoeCombineParams cb{y.p, nullptr, 1, al.assign_pos, w.as<float>(), nullptr, out.p, T, k, H, S()};
    Buf p1((size_t)4 * A * 2 * I, DType::F32), p2((size_t)4 * A * H, DType::F32);
    for (int variant = 0; variant < 4; ++variant) {
      const int bn = variant == 1 ? 32 : 64;
      const int split = variant == 2 ? 2 : variant == 3 ? 4 : 1;
      if (block_m != 16 && variant > 0) continue;
      g1.block_n = g2.block_n = bn;
      g1.split_k = g2.split_k = split;
      g1.partial = p1.as<float>(), g2.partial = p2.as<float>();
      SiluMulPartialsParams smp{p1.as<float>(), split, act.p, A, I, S()};
      MoeCombineParams cbp{y.p, p2.as<float>(), split, al.assign_pos, w.as<float>(), nullptr, out.p, T, k, H, S()};
      const float t_all = time_ms([&] {
        run_moe_align(al);
        run_grouped_gemm(g1);
        if (split > 1) {
          run_silu_mul_partials(smp);
        } else {
          run_silu_mul(sm);
        }
        run_grouped_gemm(g2);
        if (split > 1) {
          run_moe_combine(cbp);
        } else {
          run_moe_combine(cb);
        }
      }, 50);
      const double wbytes = (double)n_active * 3 * I * H * 2;
      std::printf("moeExperts T=%-4d active=%-2d bn=%d split=%d %7.1f us  weights %6.1f MB -> %6.0f GB/s (%.0f%% of copy)\n",
                  T, n_active, bn, split, t_all * 1e3, wbytes / 1e6, wbytes / (t_all * 1e-3) / 1e9,
                  100.0 * wbytes / (t_all * 1e-3) / 1e9 / bw);
    }
  }
#ifdef FLASHSERVE_WITH_CUBLAS
  // Dense decode GEMMs of V2-Lite: q_proj (3072x2048), kv_a (576x2048), o_proj (2048x2048), lm_head.
  struct Shape {
    int n, k;
    const char* name;
  };
  for (Shape s : {Shape{3072, 2048, "q_proj"}, Shape{576, 2048, "kv_a_proj"}, Shape{2048, 2048, "o_proj"},
                  Shape{5632, 2048, "shared_gu"}, Shape{2048, 2816, "shared_dn"}, Shape{102400, 2048, "lm_head"}}) {
    for (int m : {1, 8, 16, 32, 256}) {
      Buf x((size_t)m * s.k, DType::BF16), w((size_t)s.n * s.k, DType::BF16), c((size_t)m * s.n, DType::BF16);
      FillRandomParams fw{w.p, DType::BF16, (int64_t)w.n, 5, -0.01f, 0.01f, S()};
      FillRandomParams fx{x.p, DType::BF16, (int64_t)x.n, 6, -1.f, 1.f, S()};
      run_fill_random(fw), run_fill_random(fx);
      GemmParams p{};
      p.a = x.p, p.b = w.p, p.c = c.p, p.c_dtype = DType::BF16, p.m = m, p.n = s.n, p.k = s.k;
      p.lda = s.k, p.ldb = s.k, p.ldc = s.n, p.trans_b = true, p.batch = 1, p.stream = S();
      const float t = time_ms([&] { run_gemm(p); }, 50);
      const double by = (double)s.n * s.k * 2;
      std::printf("gemm %-10s m=%-4d %7.1f us  %6.0f GB/s (weights)", s.name, m, t * 1e3, by / (t * 1e-3) / 1e9);
      if (m <= SKINNY_GEMM_MAX_M) {
        SkinnyGemmParams sp = gemv(x.p, w.p, c.p, m, s.n, s.k);
        const float ts = time_ms([&] { run_skinny_gemm(sp); }, 50);
        std::printf("   skinny %7.1f us  %6.0f GB/s", ts * 1e3, by / (ts * 1e-3) / 1e9);
      }
      std::printf("\n");
    }
  }
#endif
  return bw;
}

// --- decode-sized kernels as a decode step's graph sees them ---------------------------------------

__device__ __forceinline__ unsigned long long global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// PDL probe: a one-block primary spins 20 us and records when it ends; the secondary records when it
// started, before its wait. With PDL in effect the secondary starts well before the primary ends.
__global__ void pdl_probe_primary(unsigned long long* t) {
  pdl_wait();
  pdl_launch_dependents();
  const unsigned long long t0 = global_ns();
  while (global_ns() - t0 < 20000) {
  }
  if (threadIdx.x == 0) t[0] = global_ns();
}
__global__ void pdl_probe_secondary(unsigned long long* t) {
  // NOTE: a write before the wait, against launch.h's contract: only this probe touches the buffer.
  if (threadIdx.x == 0 && blockIdx.x == 0) t[1] = global_ns();
  pdl_wait();
}

void probe_pdl() {
  Buf t(4, DType::I32);  // two u64 slots
  auto* tp = reinterpret_cast<unsigned long long*>(t.p);
  std::vector<double> lead;
  for (int graph = 0; graph < 2; ++graph) {
    cudaGraph_t g = nullptr;
    cudaGraphExec_t e = nullptr;
    if (graph) check_cuda(cudaStreamBeginCapture(S(), cudaStreamCaptureModeRelaxed), "pdl probe capture");
    launch_pdl("pdl probe", pdl_probe_primary, dim3(1), dim3(32), 0, S(), tp);
    launch_pdl("pdl probe", pdl_probe_secondary, dim3(8), dim3(32), 0, S(), tp);
    if (graph) {
      check_cuda(cudaStreamEndCapture(S(), &g), "pdl probe capture");
      check_cuda(cudaGraphInstantiate(&e, g, 0), "pdl probe instantiate");
      check_cuda(cudaGraphLaunch(e, S()), "pdl probe launch");
    }
    unsigned long long h[2];
    check_cuda(cudaMemcpyAsync(h, tp, sizeof h, cudaMemcpyDeviceToHost, S()), "pdl probe read");
    check_cuda(cudaStreamSynchronize(S()), "pdl probe");
    lead.push_back((static_cast<double>(h[0]) - static_cast<double>(h[1])) * 1e-3);
    if (e) cudaGraphExecDestroy(e);
    if (g) cudaGraphDestroy(g);
  }
  std::printf("PDL (%s): the dependent kernel started %.1f us (eager) / %.1f us (graph) before its primary ended\n",
              pdl_enabled() ? "on" : "off", lead[0], lead[1]);
}

// Per-call time of `f(i)` for calls i = 0..reps-1 captured back to back into one CUDA graph (so no
// host launch gaps, as in a decode step's graph), median of 5 replays.
float graph_us(const std::function<void(int)>& f, int reps) {
  cudaStream_t s = S();
  f(0);
  check_cuda(cudaStreamSynchronize(s), "bench warm-up");
  cudaGraph_t g = nullptr;
  cudaGraphExec_t e = nullptr;
  check_cuda(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed), "bench capture");
  for (int i = 0; i < reps; ++i) f(i);
  check_cuda(cudaStreamEndCapture(s, &g), "bench capture end");
  check_cuda(cudaGraphInstantiate(&e, g, 0), "bench instantiate");
  cudaEvent_t a, b;
  cudaEventCreate(&a), cudaEventCreate(&b);
  std::vector<float> t;
  for (int r = 0; r < 6; ++r) {
    cudaEventRecord(a, s);
    cudaGraphLaunch(e, s);
    cudaEventRecord(b, s);
    check_cuda(cudaEventSynchronize(b), "bench replay");
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    if (r > 0) t.push_back(ms);
  }
  std::sort(t.begin(), t.end());
  cudaGraphExecDestroy(e);
  cudaGraphDestroy(g);
  cudaEventDestroy(a), cudaEventDestroy(b);
  return t[t.size() / 2] * 1e3f / reps;
}

// A pool of random bf16 larger than L2, read at rotating offsets so repeated calls stream from HBM.
struct WeightPool {
  Buf buf;
  size_t elems;
  explicit WeightPool(size_t bytes) : buf(bytes / 2, DType::BF16), elems(bytes / 2) {
    FillRandomParams f{buf.p, DType::BF16, (int64_t)elems, 77, -0.02f, 0.02f, S()};
    run_fill_random(f);
    check_cuda(cudaStreamSynchronize(S()), "weight pool");  // complete before PDL kernels read it early
  }
  // The i-th of consecutive regions of `n` elements (16-byte aligned), wrapping around the pool.
  const uint16_t* at(int i, size_t n) const {
    const size_t step = (n + 63) / 64 * 64, slots = elems / step;
    return static_cast<const uint16_t*>(buf.p) + (static_cast<size_t>(i) % slots) * step;
  }
};


// Greedy sampling of one row of V2-Lite's vocabulary, as every batch-1 decode step ends.
void bench_sampling() {
  const int V = 102400;
  Buf dl(V, DType::BF16), zero(1, DType::F32), one(1, DType::F32), k(1, DType::I32), tok(1, DType::I32),
      lp(1, DType::F32);
  FillRandomParams f{dl.p, DType::BF16, V, 13, -8.f, 8.f, S()};
  run_fill_random(f);
  zero.set({0.f}), one.set({1.f}), k.set_i({0});
  Buf scratch(sampling_split_bytes(1, V) / 4 + 1, DType::F32);
  scratch.set(std::vector<float>(scratch.n, 0.f));
  float us[2];
  for (int split = 0; split < 2; ++split)
    us[split] = graph_us([&](int) {
      SamplingParams p{dl.p, true, 1, V, zero.as<float>(), k.as<int32_t>(), one.as<float>(), zero.as<float>(),
                       zero.as<float>(), tok.as<int32_t>(), lp.as<float>(), 0, nullptr, nullptr, S()};
      p.split_scratch = split ? scratch.p : nullptr;
      run_sampling(p);
    }, 100);
  std::printf("sample greedy 1 x %d bf16 %8.2f us per launch one block, %8.2f us split\n", V, us[0], us[1]);
}

void bench_decode_kernels(double bw) {
  std::printf("\n--- decode kernels at 1 token, inside a graph, weights streamed from HBM ---\n");
  WeightPool pool(size_t{3} << 30);
  Buf x(16 * 16384, DType::BF16), y(16 * 131072, DType::F32);
  FillRandomParams fx{x.p, DType::BF16, (int64_t)x.n, 9, -1.f, 1.f, S()};
  run_fill_random(fx);
  struct Shape {
    int n, k, group_rows;
    const char* name;
  };
  for (Shape s : {Shape{3648, 2048, 0, "q_proj+kv_a"}, Shape{2048, 2048, 0, "o_proj"}, Shape{64, 2048, 0, "moe gate"},
                  Shape{21888, 2048, 0, "dense gate_up"}, Shape{2048, 10944, 0, "dense down"},
                  Shape{2048, 512, 128, "W_UV (16 heads)"}, Shape{102400, 2048, 0, "lm_head"}}) {
    const size_t n_el = (size_t)s.n * s.k;
    const int reps = n_el * 2 > (size_t{64} << 20) ? 4 : 40;
    const float us = graph_us([&](int i) {
      SkinnyGemmParams p = gemv(x.p, pool.at(i, n_el), y.p, 1, s.n, s.k);
      if (s.group_rows) {
        p.group_rows = s.group_rows, p.a_group_stride = s.k, p.c_group_stride = s.group_rows;
        p.lda = (int64_t)s.k * (s.n / s.group_rows);
      }
      run_skinny_gemm(p);
    }, reps);
    const double gbs = n_el * 2 / (us * 1e-6) / 1e9;
    std::printf("gemv %-16s %6d x %-6d %8.2f us %6.0f GB/s (%3.0f%% of copy)\n", s.name, s.n, s.k, us, gbs, 100 * gbs / bw);
  }
  {
    const int heads = 16, nope = 128, rope = 64, latent = 512;
    const size_t n_el = (size_t)heads * latent * nope;
    const float us = graph_us([&](int i) {
      MlaQueryParams p{x.p, pool.at(i, n_el), y.p, 1, heads, nope, rope, latent, nullptr, nullptr, nullptr, nullptr, 0,
                       runtime().props().sms, S()};
      run_mla_query(p);
    }, 40);
    const double gbs = n_el * 2 / (us * 1e-6) / 1e9;
    std::printf("mlaAbsorbQuery 16 heads x 512 x 128     %8.2f us %6.0f GB/s (%3.0f%% of copy)\n", us, gbs, 100 * gbs / bw);
  }
  {
    Buf w(2048, DType::BF16), res(2048, DType::BF16), o(2048, DType::BF16), r(2048, DType::BF16),
        cs(8192 * 32, DType::BF16), pos(1, DType::I32), qo(16 * 192, DType::BF16), ckv(512, DType::BF16),
        kpe(64, DType::BF16);
    FillRandomParams f{w.p, DType::BF16, 2048, 3, 0.5f, 1.5f, S()};
    run_fill_random(f);
    FillRandomParams fc{cs.p, DType::BF16, (int64_t)cs.n, 5, -1.f, 1.f, S()};
    run_fill_random(fc);
    res.set(std::vector<float>(2048, 0.1f));
    pos.set_i({100});
    const float us_norm = graph_us([&](int) {
      RmsNormParams p{x.p, res.p, w.p, o.p, r.p, 1, 2048, 2048, 2048, 2048, 1e-6f, S()};
      run_rms_norm(p);
    }, 100);
    const float us_in = graph_us([&](int) {
      MlaInputsParams p{x.p, static_cast<uint16_t*>(x.p) + 16 * 192, pos.as<int32_t>(), cs.p, cs.p, w.p, qo.p, ckv.p,
                        kpe.p, 1, 16, 192, 64, 512, 8192, 1e-6f, true, S()};
      run_mla_inputs(p);
    }, 100);
    std::printf("addRmsNorm 1 x 2048 %8.2f us per launch; mlaInputs 1 token %8.2f us\n", us_norm, us_in);
    // The norm folded into the GEMV after it (skinny_gemm.h's norm form) against the two launches.
    for (Shape s : {Shape{3648, 2048, 0, "q_proj+kv_a"}, Shape{64, 2048, 0, "moe gate"},
                    Shape{102400, 2048, 0, "lm_head"}}) {
      const size_t n_el = (size_t)s.n * s.k;
      const int reps = n_el * 2 > (size_t{64} << 20) ? 4 : 40;
      const float us_two = graph_us([&](int i) {
        RmsNormParams p{x.p, res.p, w.p, o.p, r.p, 1, 2048, 2048, 2048, 2048, 1e-6f, S()};
        run_rms_norm(p);
        SkinnyGemmParams g = gemv(o.p, pool.at(i, n_el), y.p, 1, s.n, s.k);
        run_skinny_gemm(g);
      }, reps);
      const float us_fused = graph_us([&](int i) {
        SkinnyGemmParams g = gemv(nullptr, pool.at(i, n_el), y.p, 1, s.n, s.k);
        g.norm.x = x.p, g.norm.residual = res.p, g.norm.weight = w.p, g.norm.residual_out = r.p, g.norm.eps = 1e-6f;
        run_skinny_gemm(g);
      }, reps);
      std::printf("addRmsNorm + gemv %-12s %8.2f us as 2 launches, %8.2f us as 1 (norm form)\n", s.name, us_two,
                  us_fused);
    }
  }
}

// A Linear as the addon runs it: the skinny kernel at 1-2 rows, cuBLASLt beyond (when built with it).
void dense_linear(const void* a, const void* w, void* c, int m, int n, int k) {
#ifdef FLASHSERVE_WITH_CUBLAS
  if (m > 2) {
    GemmParams g{};
    g.a = a, g.b = w, g.c = c, g.c_dtype = DType::BF16, g.m = m, g.n = n, g.k = k, g.lda = k, g.ldb = k, g.ldc = n;
    g.trans_b = true, g.batch = 1, g.stream = S();
    run_gemm(g);
    return;
  }
#endif
  SkinnyGemmParams p = gemv(a, w, c, m, n, k);
  run_skinny_gemm(p);
}

// Routed (top-6 of 64) + 2 shared experts of V2-Lite at decode sizes: the grouped path (align, grouped
// gate/up, SiLU, grouped down, combine) plus the shared MLP (skinny gate/up, SiLU, skinny down, added by
// the combine) against the small-batch path (two launches). Bytes: distinct experts + shared.
void bench_moe_small(double bw) {
  std::printf("\n--- MoE experts (64 routed top-6 + shared 2816) inside a graph ---\n");
  const int H = 2048, I = 1408, E = 64, k = 6, Sh = 2816, reps = 8;
  Buf gu((size_t)E * 2 * I * H, DType::BF16), dn((size_t)E * H * I, DType::BF16);
  WeightPool spool(size_t{3} * reps * Sh * H * 2 + 4096);
  FillRandomParams f1{gu.p, DType::BF16, (int64_t)gu.n, 1, -0.01f, 0.01f, S()};
  FillRandomParams f2{dn.p, DType::BF16, (int64_t)dn.n, 2, -0.01f, 0.01f, S()};
  run_fill_random(f1), run_fill_random(f2);
  check_cuda(cudaStreamSynchronize(S()), "moe weights");
  for (int T : {1, 2, 4, 5}) {
    const int A = T * k;
    // A different expert choice per call, so consecutive calls do not hit L2.
    std::vector<int32_t> ids((size_t)reps * A);
    double distinct = 0;
    for (int r = 0; r < reps; ++r) {
      std::vector<bool> used(E, false);
      for (int t = 0; t < T; ++t) {
        std::vector<int> perm(E);
        std::iota(perm.begin(), perm.end(), 0);
        std::shuffle(perm.begin(), perm.end(), rng);
        for (int j = 0; j < k; ++j) ids[(size_t)r * A + t * k + j] = perm[j], used[perm[j]] = true;
      }
      distinct += std::count(used.begin(), used.end(), true);
    }
    distinct /= reps;
    Buf x((size_t)T * H, DType::BF16), di(ids.size(), DType::I32), w(ids.size(), DType::F32), out((size_t)T * H, DType::BF16);
    FillRandomParams fx{x.p, DType::BF16, (int64_t)x.n, 3, -1.f, 1.f, S()};
    run_fill_random(fx);
    di.set_i(ids);
    w.set(std::vector<float>(ids.size(), 0.2f));
    const int block_m = 16, max_tiles = moe_max_tiles(A, E, block_m);
    Buf idx(moe_align_scratch_ints(A, E, max_tiles), DType::I32), h((size_t)A * 2 * I, DType::BF16), act((size_t)A * I, DType::BF16),
        yb((size_t)A * H, DType::BF16), sh_h((size_t)T * 2 * Sh, DType::BF16), sh_a((size_t)T * Sh, DType::BF16),
        sh_y((size_t)T * H, DType::BF16), sact(moe_small_act_bytes(T, k, I, Sh) / 2, DType::BF16),
        seo(moe_small_expert_out_bytes(T, k, H) / 2, DType::BF16);
    const size_t sgu_el = (size_t)2 * Sh * H, sdn_el = (size_t)H * Sh;
    const float us_old = graph_us([&](int r) {
      const uint16_t* sgu = spool.at(2 * r, sgu_el);
      const uint16_t* sdn = spool.at(2 * r + 1, sgu_el);
      dense_linear(x.p, sgu, sh_h.p, T, 2 * Sh, H);
      SiluMulParams sm{sh_h.p, sh_a.p, T, Sh, S()};
      run_silu_mul(sm);
      dense_linear(sh_a.p, sdn, sh_y.p, T, H, Sh);
      MoeAlignParams al =
          moe_align_params(di.as<int32_t>() + (size_t)r * A, idx.as<int32_t>(), A, E, block_m, max_tiles, S());
      run_moe_align(al);
      GroupedGemmParams g1{};
      g1.a = x.p, g1.gather = al.sorted_assign, g1.gather_div = k, g1.lda = H;
      g1.w = gu.p, g1.w_group_stride = (int64_t)2 * I * H, g1.n = 2 * I, g1.k = H;
      g1.tile_group = al.tile_expert, g1.tile_row_begin = al.tile_row_begin, g1.group_end = al.expert_offsets;
      g1.num_tiles = al.num_tiles, g1.max_tiles = max_tiles, g1.m = A, g1.c = h.p, g1.ldc = 2 * I, g1.block_m = block_m;
      g1.block_n = 64, g1.stream = S();
      run_grouped_gemm(g1);
      SiluMulParams sm2{h.p, act.p, A, I, S()};
      run_silu_mul(sm2);
      GroupedGemmParams g2 = g1;
      g2.a = act.p, g2.gather = nullptr, g2.gather_div = 1, g2.lda = I, g2.w = dn.p, g2.w_group_stride = (int64_t)H * I;
      g2.n = H, g2.k = I, g2.c = yb.p, g2.ldc = H;
      run_grouped_gemm(g2);
      MoeCombineParams cb{yb.p, nullptr, 1, al.assign_pos, w.as<float>() + (size_t)r * A, sh_y.p, out.p, T, k, H, S()};
      run_moe_combine(cb);
    }, reps);
    const float us_new = graph_us([&](int r) {
      MoeSmallParams p{};
      p.x = x.p, p.topk_ids = di.as<int32_t>() + (size_t)r * A, p.topk_weights = w.as<float>() + (size_t)r * A;
      p.gate_up = gu.p, p.down = dn.p, p.shared_gate_up = spool.at(2 * r, sgu_el), p.shared_down = spool.at(2 * r + 1, sgu_el);
      p.act = sact.p, p.expert_out = seo.p, p.out = out.p, p.tokens = T, p.hidden = H, p.inter = I;
      p.shared_inter = Sh, p.experts = E, p.top_k = k, p.sms = runtime().props().sms, p.stream = S();
      run_moe_small(p);
    }, reps);
    auto small = [&](int r) {
      MoeSmallParams p{};
      p.x = x.p, p.topk_ids = di.as<int32_t>() + (size_t)r * A, p.topk_weights = w.as<float>() + (size_t)r * A;
      p.gate_up = gu.p, p.down = dn.p, p.shared_gate_up = spool.at(2 * r, sgu_el), p.shared_down = spool.at(2 * r + 1, sgu_el);
      p.act = sact.p, p.expert_out = seo.p, p.out = out.p, p.tokens = T, p.hidden = H, p.inter = I;
      p.shared_inter = Sh, p.experts = E, p.top_k = k, p.sms = runtime().props().sms, p.stream = S();
      return p;
    };
    const float us_gu = graph_us([&](int r) {
      MoeSmallParams p = small(r);
      run_moe_small_gate_up(p);
    }, reps);
    const float us_dn = graph_us([&](int r) {
      MoeSmallParams p = small(r);
      run_moe_small_down(p);
    }, reps);
    // The down stage as two kernels (down, combine).
    const float us_unfused = graph_us([&](int r) {
      MoeSmallParams p = small(r);
      p.unfused_combine = true;
      run_moe_small(p);
    }, reps);
    const float us_dn_unfused = graph_us([&](int r) {
      MoeSmallParams p = small(r);
      p.unfused_combine = true;
      run_moe_small_down(p);
    }, reps);
    const double by = (distinct * 3 * I + 3.0 * Sh) * H * 2;
    const double by_small = ((double)A * 3 * I + 3.0 * Sh) * H * 2;
    (void)sdn_el;
    std::printf("moe T=%d: grouped+shared %7.1f us (%3.0f%% of copy)   small %7.1f us (%3.0f%% of copy on distinct; "
                "reads %.0f MB)\n",
                T, us_old, 100 * by / (us_old * 1e-6) / 1e9 / bw, us_new, 100 * by / (us_new * 1e-6) / 1e9 / bw,
                by_small / 1e6);
    const double gu_by = ((double)A * 2 * I + 2.0 * Sh) * H * 2, dn_by = ((double)A * I + Sh) * H * 2;
    std::printf("        small stages alone: gate/up %7.1f us (%3.0f%% of copy)   down + combine %7.1f us (%3.0f%% of copy)\n", us_gu,
                100 * gu_by / (us_gu * 1e-6) / 1e9 / bw, us_dn, 100 * dn_by / (us_dn * 1e-6) / 1e9 / bw);
    std::printf("        unfused (down, combine): down + combine %7.1f us (%3.0f%% of copy), whole small path %7.1f us\n",
                us_dn_unfused, 100 * dn_by / (us_dn_unfused * 1e-6) / 1e9 / bw, us_unfused);
    if (T <= 2) {
      // The router kernel then the small path, against the small path routing for itself (random bf16
      // logits per call, as the gate GEMV writes them; V2-Lite's greedy softmax router).
      Buf lg((size_t)reps * T * E, DType::BF16);
      FillRandomParams fl{lg.p, DType::BF16, (int64_t)lg.n, 5, -3.f, 3.f, S()};
      run_fill_random(fl);
      auto rparams = [&](int r) {
        return RouterParams{static_cast<uint16_t*>(lg.p) + (size_t)r * T * E, true, nullptr,
                            di.as<int32_t>() + (size_t)r * A, w.as<float>() + (size_t)r * A, T, E, k, 1, 1,
                            RouterScoring::SOFTMAX, GroupScore::MAX, false, 1.f, S()};
      };
      const float us_router = graph_us([&](int r) {
        RouterParams rp = rparams(r);
        run_router(rp);
        MoeSmallParams p = small(r);
        run_moe_small(p);
      }, reps);
      const float us_route = graph_us([&](int r) {
        MoeSmallParams p = small(r);
        p.route = true, p.router = rparams(r);
        run_moe_small(p);
      }, reps);
      const float us_route_gu = graph_us([&](int r) {
        MoeSmallParams p = small(r);
        p.route = true, p.router = rparams(r);
        run_moe_small_gate_up(p);
      }, reps);
      const float us_route_dn = graph_us([&](int r) {
        MoeSmallParams p = small(r);
        p.route = true, p.router = rparams(r);
        run_moe_small_down(p);
      }, reps);
      std::printf("        router + small path %7.1f us   small path routing itself %7.1f us (gate/up %7.1f, down + "
                  "combine %7.1f)\n",
                  us_router, us_route, us_route_gu, us_route_dn);
    }
  }
}

// A synthetic batch-1 decode step without attention: per layer addRmsNorm -> [q|kv_a] GEMV ->
// mlaInputs -> absorbed query (+ cache write) -> W_UV GEMV -> o_proj GEMV -> addRmsNorm -> gate GEMV ->
// router -> small-batch experts; 26 such layers (V2-Lite's MoE layers, each with its own weights but one pool
// of 64 experts, routed to different experts per layer) and lm_head. Its time over its bytes shows
// what launches and per-kernel ramps cost beside streaming the weights; run with and without
// FLASHSERVE_NO_PDL=1 to see what PDL buys.
void bench_chain(double bw) {
  const int H = 2048, heads = 16, nope = 128, rope = 64, L = 512, V = 128, E = 64, k = 6, I = 1408, Sh = 2816;
  const int layers = 26, vocab = 102400, qkv = heads * (nope + rope) + L + rope;
  struct Layer {
    const uint16_t *qkv, *wuk, *wuv, *o, *gate, *sgu, *sdn;
  };
  const size_t per_layer = (size_t)qkv * H + (size_t)heads * L * nope * 2 + (size_t)H * heads * V + (size_t)E * H +
                           (size_t)3 * Sh * H + 64 * 8;
  WeightPool pool(per_layer * 2 * layers + (size_t)vocab * H * 2 + (size_t{1} << 20));
  Buf gu((size_t)E * 2 * I * H, DType::BF16), dn((size_t)E * H * I, DType::BF16), norm_w(2048, DType::BF16);
  FillRandomParams f1{gu.p, DType::BF16, (int64_t)gu.n, 1, -0.01f, 0.01f, S()};
  FillRandomParams f2{dn.p, DType::BF16, (int64_t)dn.n, 2, -0.01f, 0.01f, S()};
  FillRandomParams f3{norm_w.p, DType::BF16, 2048, 3, 0.5f, 1.5f, S()};
  run_fill_random(f1), run_fill_random(f2), run_fill_random(f3);
  check_cuda(cudaStreamSynchronize(S()), "chain weights");
  std::vector<Layer> ws(layers);
  size_t at = 0;
  const uint16_t* base = pool.buf.as<uint16_t>();
  auto take = [&](size_t n) {
    const uint16_t* p = base + at;
    at += (n + 63) / 64 * 64;
    return p;
  };
  for (auto& l : ws) {
    l.qkv = take((size_t)qkv * H), l.wuk = take((size_t)heads * L * nope), l.wuv = take((size_t)heads * V * L);
    l.o = take((size_t)H * heads * V), l.gate = take((size_t)E * H), l.sgu = take((size_t)2 * Sh * H);
    l.sdn = take((size_t)H * Sh);
  }
  const uint16_t* lm = take((size_t)vocab * H);
  Buf hbuf(H, DType::BF16), res(H, DType::BF16), res2(H, DType::BF16), xn(H, DType::BF16), proj(qkv, DType::BF16),
      qo(heads * (nope + rope), DType::BF16), ckv(L, DType::BF16), kpe(rope, DType::BF16), qabs(heads * (L + rope), DType::BF16),
      olat(heads * L, DType::BF16), ov(heads * V, DType::BF16), logits(E, DType::BF16), ids(k, DType::I32), wts(k, DType::F32),
      act(moe_small_act_bytes(1, k, I, Sh) / 2, DType::BF16), eo(moe_small_expert_out_bytes(1, k, H) / 2, DType::BF16),
      cs(8192 * 32, DType::BF16), pos(1, DType::I32),
      out_logits(vocab, DType::F32), kvcache((size_t)8192 * (L + rope), DType::BF16);
  FillRandomParams fh{hbuf.p, DType::BF16, H, 4, -1.f, 1.f, S()};
  run_fill_random(fh);
  res.set(std::vector<float>(H, 0.1f));
  olat.set(std::vector<float>(heads * L, 0.01f));
  pos.set_i({1000});
  const int sms = runtime().props().sms;
  // As CudaDevice: FLASHSERVE_NO_MLA_INPUTS_FOLD=1 launches mlaInputs on its own.
  const char* no_fold = std::getenv("FLASHSERVE_NO_MLA_INPUTS_FOLD");
  const bool fold_inputs = !(no_fold && std::strcmp(no_fold, "1") == 0);
  // As CudaDevice: FLASHSERVE_NO_ROUTER_FOLD=1 launches the router on its own.
  const char* no_route = std::getenv("FLASHSERVE_NO_ROUTER_FOLD");
  const bool fold_router = !(no_route && std::strcmp(no_route, "1") == 0);
  const float us = graph_us([&](int) {
    for (int li = 0; li < layers; ++li) {
      const Layer& l = ws[li];
      RmsNormParams n1{hbuf.p, res.p, norm_w.p, xn.p, res2.p, 1, H, H, H, H, 1e-6f, S()};
      run_rms_norm(n1);
      SkinnyGemmParams p = gemv(xn.p, l.qkv, proj.p, 1, qkv, H);
      run_skinny_gemm(p);
      MlaInputsParams mi{proj.p, static_cast<uint16_t*>(proj.p) + heads * (nope + rope), pos.as<int32_t>(), cs.p, cs.p,
                         norm_w.p, qo.p, ckv.p, kpe.p, 1, heads, nope + rope, rope, L, 8192, 1e-6f, true, S()};
      MlaQueryParams mq{qo.p, l.wuk, qabs.p, 1, heads, nope, rope, L, ckv.p, kpe.p, pos.as<int32_t>(), kvcache.p, 8192,
                        sms, S()};
      if (fold_inputs) {
        mq.inputs = &mi;  // one launch for both
      } else {
        run_mla_inputs(mi);
      }
      run_mla_query(mq);
      SkinnyGemmParams pv = gemv(olat.p, l.wuv, ov.p, 1, heads * V, L);
      pv.group_rows = V, pv.a_group_stride = L, pv.lda = (int64_t)heads * L, pv.c_group_stride = V;
      run_skinny_gemm(pv);
      SkinnyGemmParams po = gemv(ov.p, l.o, hbuf.p, 1, H, heads * V);
      run_skinny_gemm(po);
      RmsNormParams n2{hbuf.p, res2.p, norm_w.p, xn.p, res.p, 1, H, H, H, H, 1e-6f, S()};
      run_rms_norm(n2);
      SkinnyGemmParams pg = gemv(xn.p, l.gate, logits.p, 1, E, H);
      run_skinny_gemm(pg);
      RouterParams rp{logits.p, true, nullptr, ids.as<int32_t>(), wts.as<float>(), 1, E, k, 1, 1,
                      RouterScoring::SOFTMAX, GroupScore::MAX, false, 1.f, S()};
      if (!fold_router) run_router(rp);
      MoeSmallParams mp{};
      mp.x = xn.p, mp.topk_ids = ids.as<int32_t>(), mp.topk_weights = wts.as<float>(), mp.gate_up = gu.p, mp.down = dn.p;
      mp.shared_gate_up = l.sgu, mp.shared_down = l.sdn, mp.act = act.p, mp.expert_out = eo.p, mp.out = hbuf.p, mp.tokens = 1, mp.hidden = H;
      mp.inter = I, mp.shared_inter = Sh, mp.experts = E, mp.top_k = k, mp.sms = sms, mp.stream = S();
      mp.route = fold_router, mp.router = rp;
      run_moe_small(mp);
    }
    SkinnyGemmParams pl = gemv(xn.p, lm, out_logits.p, 1, vocab, H);
    pl.c_dtype = DType::F32;
    run_skinny_gemm(pl);
  }, 1);
  const double bytes = (double)layers * (per_layer - 64 * 8 + (double)k * 3 * I * H) * 2 + (double)vocab * H * 2;
  std::printf("\nchain: 26 MoE layers + lm_head at 1 token, no attention (PDL %s, mlaInputs %s, router %s): %.3f ms for "
              "%.0f MB = %.2f ms at copy bandwidth (%.2fx); %d launches\n",
              pdl_enabled() ? "on" : "off", fold_inputs ? "folded" : "apart", fold_router ? "folded" : "apart", us * 1e-3,
              bytes / 1e6, bytes / (bw * 1e9) * 1e3, us * 1e-3 / (bytes / (bw * 1e9) * 1e3),
              layers * (9 + (fold_inputs ? 0 : 1) + (fold_router ? 0 : 1)) + 1);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    runtime().init(0);
    std::printf("device: %s (sm_%d%d, %d SMs)\n", runtime().props().name.c_str(), runtime().props().major,
                runtime().props().minor, runtime().props().sms);
    test_rms_norm();
    test_rope(false);
    test_rope(true);
    test_silu_mul();
    test_router(false);
    test_router(true);
    test_route_token_bits_all();
    test_moe(1, 16);
    test_moe(7, 16);
    test_moe(300, 64);
    test_moe(300, 16);
    test_moe(5, 16, 24);
    test_moe(70, 64, 40);
    test_moe(1, 16, 128, 32);
    test_moe(9, 16, 24, 32);
    test_moe(1, 16, 128, 64, 4);
    test_moe(2, 16, 128, 32, 3);
    test_moe(3, 16, 128, 64, 8);  // more splits than K tiles: empty splits write zero partials
#ifdef FLASHSERVE_WITH_CUBLAS
    test_gemm(true, 1, DType::BF16);
    test_gemm(false, 1, DType::BF16);
    test_gemm(true, 3, DType::BF16);
    test_gemm(false, 4, DType::F32);
#endif
    test_skinny(1, false, DType::BF16);
    test_skinny(3, true, DType::BF16);
    test_skinny(16, false, DType::F32);
    for (int m : {1, 2}) {
      test_norm_linear(m, 2048, true, false);
      test_norm_linear(m, 2048, false, true);
    }
    test_norm_linear(2, 7168, true, true);  // DeepSeek-V3's hidden: several columns a thread
    test_norm_linear(1, 200, true, false);  // fewer chunks than threads
    for (int T : {1, 2, 5, 20}) test_mla_query(T);
    for (int T : {1, 2, 3, 4, 8}) test_moe_small(T, true, false);
    for (int T : {1, 2, 4, 8}) test_moe_small(T, false, T >= 4);
    test_moe_small(3, true, true);
    for (int T : {1, 2, 3, 8}) test_moe_small(T, true, T >= 3, 1408);
    test_moe_small(1, true, false, 1408, 2816);
    test_moe_small(2, true, true, 1408, 2824);
    for (int T : {1, 2})
      for (int config : {0, 1, 2}) test_moe_small_route(T, config);
    test_mla_inputs(false);
    test_mla_inputs(true);
    for (int T : {1, 2, 3})
      for (bool il : {false, true}) test_mla_inputs_fold(T, il, 4, 32, 16, 64);
    test_mla_inputs_fold(1, true, 16, 128, 64, 512);  // V2-Lite's shapes
    test_mla_inputs_fold(2, false, 16, 128, 64, 512);
    test_sampling();
    test_sampling_greedy_bf16();
    test_graph();
    test_errors();
    if (argc > 1 && std::strcmp(argv[1], "--bench") == 0) {
      const double bw = bench();
      probe_pdl();
      bench_decode_kernels(bw);
      bench_sampling();
      bench_moe_small(bw);
      bench_chain(bw);
    }
    if (argc > 1 && std::strcmp(argv[1], "--chain") == 0) {
      probe_pdl();
      bench_chain(copy_bandwidth());
    }
  } catch (const std::exception& e) {
    std::printf("FATAL: %s\n", e.what());
    return 2;
  }
  std::printf("\n%s: %d failure(s)\n", failures ? "FAILED" : "ALL OK", failures);
  return failures ? 1 : 0;
}
