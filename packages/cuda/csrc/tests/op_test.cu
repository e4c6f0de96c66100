// C++ op test of the addon's kernels against plain fp64 references on the host, plus micro-benchmarks
// (copy bandwidth, grouped expert GEMM at decode shapes, cuBLASLt GEMMs). Runs without Node on the GPU
// machine: `flashserve_cuda_optest [--bench]`. Exit code 0 only if every check passed.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/activation.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "kernels/moe.h"
#include "kernels/norm.h"
#include "kernels/rope.h"
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
  Buf idx(E + 1 + 2 * A + 2 * max_tiles + 1, DType::I32), h((size_t)A * 2 * I, DType::BF16),
      act((size_t)A * I, DType::BF16), y((size_t)A * H, DType::BF16);
  MoeAlignParams al{};
  al.topk_ids = di.as<int32_t>();
  al.expert_offsets = idx.as<int32_t>();
  al.sorted_assign = al.expert_offsets + E + 1;
  al.assign_pos = al.sorted_assign + A;
  al.tile_expert = al.assign_pos + A;
  al.tile_row_begin = al.tile_expert + max_tiles;
  al.num_tiles = al.tile_row_begin + max_tiles;
  al.num_assign = A, al.num_experts = E, al.block_m = block_m, al.stream = S();
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
  }
  GroupedGemmParams g2 = g1;
  g2.a = act.p, g2.gather = nullptr, g2.gather_div = 1, g2.lda = I, g2.w = ddn.p, g2.w_group_stride = (int64_t)H * I;
  g2.n = H, g2.k = I, g2.c = y.p, g2.ldc = H;
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
  SkinnyGemmParams p{da.p, dw.p, bias ? db.p : nullptr, dc.p, c_dtype, m, n, k, k, n, runtime().props().sms, S()};
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

void bench() {
  std::printf("\n--- micro-benchmarks ---\n");
  const size_t bytes = size_t{1} << 30;
  void* a = runtime().allocator().allocate(bytes);
  void* b = runtime().allocator().allocate(bytes);
  cudaMemsetAsync(a, 1, bytes, S());
  const float ms = time_ms([&] { cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, S()); }, 20);
  const double bw = 2.0 * bytes / (ms * 1e-3) / 1e9;
  std::printf("copy bandwidth (read+write)             %8.0f GB/s\n", bw);
  runtime().allocator().release(a);
  runtime().allocator().release(b);

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
    Buf idx(E + 1 + 2 * A + 2 * max_tiles + 1, DType::I32), h((size_t)A * 2 * I, DType::BF16),
        act((size_t)A * I, DType::BF16), y((size_t)A * H, DType::BF16);
    MoeAlignParams al{};
    al.topk_ids = di.as<int32_t>();
    al.expert_offsets = idx.as<int32_t>();
    al.sorted_assign = al.expert_offsets + E + 1;
    al.assign_pos = al.sorted_assign + A;
    al.tile_expert = al.assign_pos + A;
    al.tile_row_begin = al.tile_expert + max_tiles;
    al.num_tiles = al.tile_row_begin + max_tiles;
    al.num_assign = A, al.num_experts = E, al.block_m = block_m, al.stream = S();
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
        SkinnyGemmParams sp{x.p, w.p, nullptr, c.p, DType::BF16, m, s.n, s.k, s.k, s.n, runtime().props().sms, S()};
        const float ts = time_ms([&] { run_skinny_gemm(sp); }, 50);
        std::printf("   skinny %7.1f us  %6.0f GB/s", ts * 1e3, by / (ts * 1e-3) / 1e9);
      }
      std::printf("\n");
    }
  }
#endif
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
    test_sampling();
    test_graph();
    test_errors();
    if (argc > 1 && std::strcmp(argv[1], "--bench") == 0) bench();
  } catch (const std::exception& e) {
    std::printf("FATAL: %s\n", e.what());
    return 2;
  }
  std::printf("\n%s: %d failure(s)\n", failures ? "FAILED" : "ALL OK", failures);
  return failures ? 1 : 0;
}
