// Standalone GPU correctness suite for the MLA decode kernels; runs without Node.
//   mla_test [seed]
// Against an fp32 reference computed on the GPU by a deliberately simple kernel: relative L2 error
// of out < 1e-2 and of lse < 1e-4; b 1..300; lengths 1..20000 (multiples of 64 and not); s_q 1..4;
// h_q 8..128; shuffled block tables; NaN in every slot past a length and in unowned blocks; outputs
// and partial buffers poisoned with NaN before each run and checked fully written; the schedule's
// cover checked on the host; fresh random inputs every run (the seed is printed to reproduce one).
// Then, on Hopper, the decode kernel with the combine fused into W_UV (fused_uv_checks).
#include <chrono>
#include <map>
#include <set>

#include "tests/harness.h"

using namespace flashserve::mla;
using namespace flashserve::mla::harness;

namespace {

__device__ float block_reduce(float v, bool is_max, float* red) {
  for (int o = 16; o > 0; o >>= 1) {
    const float w = __shfl_xor_sync(0xffffffffu, v, o);
    v = is_max ? fmaxf(v, w) : v + w;
  }
  __syncthreads();
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  float r = red[0];
  for (int i = 1; i < (int)blockDim.x / 32; ++i) r = is_max ? fmaxf(r, red[i]) : r + red[i];
  return r;
}

// One block per (request, query row), 256 threads; plain fp32 online softmax over 256-token chunks.
__global__ void __launch_bounds__(256) reference_kernel(DecodeParams p, float* out_ref, float* lse_ref) {
  __shared__ float qs[HEAD_DIM_QK];
  __shared__ float ps[256];
  __shared__ float red[8];
  const int r = blockIdx.x / p.q_rows, g = blockIdx.x % p.q_rows, t = threadIdx.x;
  const __nv_bfloat16* q = static_cast<const __nv_bfloat16*>(p.q) + r * p.q_batch_stride + g * p.q_row_stride;
  const __nv_bfloat16* kc = static_cast<const __nv_bfloat16*>(p.kcache);
  for (int d = t; d < HEAD_DIM_QK; d += 256) qs[d] = __bfloat162float(q[d]);
  __syncthreads();
  const int len = p.cache_seqlens[r];
  const int n = max(0, len - (p.s_q - 1 - g / p.h_q));
  float m = -INFINITY, l = 0.f, o0 = 0.f, o1 = 0.f;
  for (int base = 0; base < n; base += 256) {
    const int tok = base + t;
    float sc = -INFINITY;
    if (tok < n) {
      const int blk = p.block_table[r * p.block_table_stride + tok / PAGE_SIZE];
      const __nv_bfloat16* k = kc + blk * p.k_block_stride + (tok % PAGE_SIZE) * p.k_row_stride;
      float acc = 0.f;
      for (int d = 0; d < HEAD_DIM_QK; ++d) acc += qs[d] * __bfloat162float(k[d]);
      sc = acc * p.softmax_scale;
    }
    const float mn = fmaxf(m, block_reduce(sc, true, red));
    const float e = tok < n ? expf(sc - mn) : 0.f;
    ps[t] = e;
    const float alpha = m == -INFINITY ? 0.f : expf(m - mn);
    l = l * alpha + block_reduce(e, false, red);
    o0 *= alpha;
    o1 *= alpha;
    m = mn;
    __syncthreads();
    for (int j = 0; j < min(256, n - base); ++j) {
      const int tk = base + j;
      const int blk = p.block_table[r * p.block_table_stride + tk / PAGE_SIZE];
      const __nv_bfloat16* v = kc + blk * p.k_block_stride + (tk % PAGE_SIZE) * p.k_row_stride;
      o0 += ps[j] * __bfloat162float(v[t]);
      o1 += ps[j] * __bfloat162float(v[t + 256]);
    }
    __syncthreads();
  }
  float* out = out_ref + ((size_t)r * p.q_rows + g) * HEAD_DIM_V;
  out[t] = l > 0.f ? o0 / l : 0.f;
  out[t + 256] = l > 0.f ? o1 / l : 0.f;
  if (t == 0) lse_ref[(size_t)r * p.q_rows + g] = l > 0.f ? m + logf(l) : -INFINITY;
}

float bf2f(__nv_bfloat16 x) { return __bfloat162float(x); }

struct Result {
  double out_err = 0, lse_err = 0;
  long long unwritten = 0, lse_mismatch = 0;
  std::string meta_error;
};

// Every (request, page) covered exactly once; pieces per request match num_splits; slots unique.
std::string check_schedule(const Case& c) {
  DeviceBuffer<int> dummy;
  std::vector<int> sched(c.sched.count), splits(c.splits.count);
  MLA_CHECK(cudaMemcpy(sched.data(), c.sched.ptr, sched.size() * 4, cudaMemcpyDeviceToHost));
  MLA_CHECK(cudaMemcpy(splits.data(), c.splits.ptr, splits.size() * 4, cudaMemcpyDeviceToHost));
  std::vector<std::vector<int>> cover(c.b);
  std::vector<int> pieces(c.b, 0);
  std::set<int> slots;
  for (int r = 0; r < c.b; ++r) cover[r].assign((c.lens[r] + 63) / 64, 0);
  for (int i = 0; i < c.num_parts; ++i) {
    const SchedPart& pt = reinterpret_cast<const SchedPart*>(sched.data())[i];
    for (int r = pt.begin_req; r <= pt.end_req && r < c.b; ++r) {
      const int pages = (int)cover[r].size();
      const int b = r == pt.begin_req ? pt.begin_page : 0;
      const int e = r == pt.end_req ? pt.end_page : pages;
      if (b >= e) continue;
      for (int pg = b; pg < e; ++pg) cover[r][pg]++;
      const int slot = splits[r] + (r == pt.begin_req ? pt.begin_split : 0);
      if (splits[r + 1] - splits[r] > 1 && !slots.insert(slot).second) return "slot " + std::to_string(slot) + " reused";
      pieces[r]++;
    }
  }
  for (int r = 0; r < c.b; ++r) {
    for (size_t pg = 0; pg < cover[r].size(); ++pg)
      if (cover[r][pg] != 1) return "request " + std::to_string(r) + " page " + std::to_string(pg) + " covered " +
                                     std::to_string(cover[r][pg]) + " times";
    if (splits[r + 1] - splits[r] != pieces[r]) return "request " + std::to_string(r) + " num_splits mismatch";
  }
  if (splits[c.b] > c.b + c.num_parts) return "more splits than b + num_parts";
  return "";
}

Result run_and_check(Case& c, Kernel k, int tuning, const std::vector<float>& out_ref,
                     const std::vector<float>& lse_ref) {
  Result res;
  MLA_CHECK(cudaMemset(c.out.ptr, 0xFF, c.out.count * 2));  // bf16 NaN
  MLA_CHECK(cudaMemset(c.lse.ptr, 0xFF, c.lse.count * 4));  // fp32 NaN
  MLA_CHECK(cudaMemset(c.o_accum.ptr, 0xFF, c.o_accum.count * 4));
  MLA_CHECK(cudaMemset(c.lse_accum.ptr, 0xFF, c.lse_accum.count * 4));
  MLA_CHECK(cudaMemset(c.sched.ptr, 0xFF, c.sched.count * 4));
  MLA_CHECK(run_get_mla_metadata(metadata_params(c, 0)));
  DecodeParams p = decode_params(c, 0);
  p.tuning = tuning;
  MLA_CHECK(run_decode(k, p));
  MLA_CHECK(cudaDeviceSynchronize());
  res.meta_error = check_schedule(c);
  const std::vector<__nv_bfloat16> out = c.out.download();
  const std::vector<float> lse = c.lse.download();
  double num = 0, den = 0, lnum = 0, lden = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    const float v = bf2f(out[i]);
    if (!std::isfinite(v)) { ++res.unwritten; continue; }
    num += (double)(v - out_ref[i]) * (v - out_ref[i]);
    den += (double)out_ref[i] * out_ref[i];
  }
  for (int r = 0; r < c.b; ++r)
    for (int g = 0; g < c.q_rows; ++g) {
      const float v = lse[((size_t)r * c.h_q + g % c.h_q) * c.s_q + g / c.h_q];
      const float ref = lse_ref[(size_t)r * c.q_rows + g];
      if (std::isnan(v)) { ++res.unwritten; continue; }
      if (std::isinf(ref) || std::isinf(v)) { if (v != ref) ++res.lse_mismatch; continue; }
      lnum += (double)(v - ref) * (v - ref);
      lden += (double)ref * ref;
    }
  res.out_err = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  res.lse_err = lden > 0 ? std::sqrt(lnum / lden) : 0;
  return res;
}

struct Spec {
  int b, s_q, h_q;
  std::vector<int> lens;
};

int num_sms() {
  int dev = 0, sms = 0;
  MLA_CHECK(cudaGetDevice(&dev));
  MLA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  return sms;
}

bool layout_probe(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<__nv_bfloat16> v(64 * 256), pm(64 * 64);
  for (auto& x : v) x = __float2bfloat16(u(rng));
  for (auto& x : pm) x = __float2bfloat16(u(rng));
  std::vector<float> ref(64 * 256, 0.f);
  for (int i = 0; i < 64; ++i)
    for (int k = 0; k < 64; ++k)
      for (int j = 0; j < 256; ++j) ref[i * 256 + j] += bf2f(pm[i * 64 + k]) * bf2f(v[k * 256 + j]);
  DeviceBuffer<__nv_bfloat16> dv(v.size()), dp(pm.size());
  DeviceBuffer<float> dout(ref.size());
  dv.upload(v);
  dp.upload(pm);
  bool ok0 = false;
  for (int variant = 0; variant < 2; ++variant) {
    MLA_CHECK(sm90::run_wgmma_layout_probe(dv.ptr, dp.ptr, dout.ptr, variant, 0));
    MLA_CHECK(cudaDeviceSynchronize());
    const std::vector<float> o = dout.download();
    double num = 0, den = 0;
    for (size_t i = 0; i < o.size(); ++i) {
      num += (o[i] - ref[i]) * (double)(o[i] - ref[i]);
      den += ref[i] * (double)ref[i];
    }
    const double err = std::sqrt(num / den);
    std::printf("wgmma V-layout probe variant %d (%s): rel err %.2e %s\n", variant,
                variant == 0 ? "LBO=next 64 dims, SBO=next 8 tokens" : "swapped", err, err < 1e-5 ? "MATCH" : "no");
    if (variant == 0) ok0 = err < 1e-5;
  }
  return ok0;
}

// The decode kernel followed by the combine fused into W_UV (run_mla_decode_uv), at the token counts
// it takes (b * s_q <= 4) with one and several splits, against
//   (a) the unfused path: decode + combine, its bf16 latent rows times W_UV in fp64; per element
//       within the bf16 rounding of the result plus fp32 summation error;
//   (b) fp64 end to end: the fp32 attention reference times W_UV; relative L2 error < 1e-2 (as above);
//   (c) bit-exactness of the combine: W_UV a 0/1 permutation with v_dim 512, so the result is the
//       latent row itself, which must equal the combine's output bit for bit.
// The result buffer is poisoned with NaN before each run and checked fully written.
bool fused_uv_checks(uint64_t seed, int sms) {
  struct UvSpec {
    int b, s_q, h_q;
    std::vector<int> lens;
  };
  const std::vector<UvSpec> specs = {
      {1, 1, 16, {1024}},  {1, 1, 16, {50}},          {1, 1, 16, {20000}},           {2, 1, 16, {1024, 50}},
      {1, 2, 16, {700}},   {4, 1, 16, {64, 3000, 1, 1024}}, {2, 2, 16, {5000, 65}}, {1, 4, 16, {2048}},
      {1, 1, 128, {1024}}, {2, 1, 64, {4096, 130}},
  };
  constexpr int V_DIM = 128;
  bool all_ok = true;
  std::printf("\n%-9s %3s %4s %3s %4s %6s %6s %6s %9s %9s %6s %s\n", "fused-uv", "tun", "b", "s_q", "h_q", "maxlen",
              "parts", "splits", "vs_comb", "vs_fp64", "exact", "result");
  int case_id = 0;
  for (const UvSpec& sp : specs) {
    ++case_id;
    const int parts_list[2] = {num_sm_parts(sms, sp.s_q * sp.h_q), 1};
    for (int variant = 0; variant < 2; ++variant) {
      const uint64_t cseed = seed + 100003 * case_id + variant;
      Case c;
      build_case(c, sp.b, sp.s_q, sp.h_q, sp.lens, parts_list[variant], cseed, 3, true);
      const int tokens = c.b * c.s_q, h = c.h_q;
      DeviceBuffer<float> out_ref((size_t)c.b * c.q_rows * HEAD_DIM_V), lse_ref((size_t)c.b * c.q_rows);
      reference_kernel<<<c.b * c.q_rows, 256>>>(decode_params(c, 0), out_ref.ptr, lse_ref.ptr);
      MLA_CHECK(cudaGetLastError());
      const std::vector<float> oref = out_ref.download();
      // The unfused path's latent rows [tokens, h, 512].
      MLA_CHECK(run_get_mla_metadata(metadata_params(c, 0)));
      MLA_CHECK(sm90::run_mla_decode<__nv_bfloat16>(decode_params(c, 0)));
      MLA_CHECK(cudaDeviceSynchronize());
      const std::vector<__nv_bfloat16> latent = c.out.download();
      const std::vector<int> splits = c.splits.download();

      DeviceBuffer<__nv_bfloat16> w((size_t)h * V_DIM * HEAD_DIM_V), res((size_t)tokens * h * V_DIM);
      fill_uniform(w.ptr, w.count, cseed ^ 0x77ull, 0.08f);
      const std::vector<__nv_bfloat16> wh = w.download();
      for (const int tuning : {0, 2}) {  // 2: launched plainly, not as a programmatic dependent
        MLA_CHECK(cudaMemset(res.ptr, 0xFF, res.count * 2));
        MLA_CHECK(cudaMemset(c.out.ptr, 0xFF, c.out.count * 2));
        MLA_CHECK(cudaMemset(c.o_accum.ptr, 0xFF, c.o_accum.count * 4));
        MLA_CHECK(cudaMemset(c.lse_accum.ptr, 0xFF, c.lse_accum.count * 4));
        DecodeParams p = decode_params(c, 0);
        p.tuning = tuning;
        MLA_CHECK(sm90::run_mla_decode_uv<__nv_bfloat16>(p, CombineUvParams{w.ptr, V_DIM, res.ptr}));
        MLA_CHECK(cudaDeviceSynchronize());
        const std::vector<__nv_bfloat16> got = res.download();
        long long unwritten = 0, over_tol = 0;
        double num = 0, den = 0, worst = 0;
        for (int t = 0; t < tokens; ++t)
          for (int hh = 0; hh < h; ++hh)
            for (int j = 0; j < V_DIM; ++j) {
              const __nv_bfloat16* wr = &wh[((size_t)hh * V_DIM + j) * HEAD_DIM_V];
              const size_t lrow = ((size_t)t * h + hh) * HEAD_DIM_V;
              double ref_a = 0, mag = 0, ref_b = 0;
              for (int k = 0; k < HEAD_DIM_V; ++k) {
                const double wk = bf2f(wr[k]);
                ref_a += wk * bf2f(latent[lrow + k]);
                mag += std::fabs(wk * bf2f(latent[lrow + k]));
                ref_b += wk * oref[lrow + k];
              }
              const float v = bf2f(got[((size_t)t * h + hh) * V_DIM + j]);
              if (!std::isfinite(v)) { ++unwritten; continue; }
              // bf16 rounding of the result (at most half an ulp, 2^-8 relative: the worst per case sit at
              // 0.90-0.97 of this) + fp32 summation (1e-5 of the sum of |terms|, ~100x its typical size).
              const double err = std::fabs(v - ref_a), tol = std::ldexp(std::fabs(ref_a), -8) + 1e-5 * mag + 1e-30;
              worst = std::max(worst, err / tol);
              if (err > tol) ++over_tol;
              num += (v - ref_b) * (v - ref_b);
              den += ref_b * ref_b;
            }
        const double err_b = den > 0 ? std::sqrt(num / den) : std::sqrt(num);

        // (c) W_UV[h][j][c] = 1 where c = (7 j + h) mod 512: result[t, h, j] = latent[t, h, 7 j + h].
        long long inexact = 0;
        {
          std::vector<__nv_bfloat16> perm((size_t)h * HEAD_DIM_V * HEAD_DIM_V, __float2bfloat16(0.f));
          for (int hh = 0; hh < h; ++hh)
            for (int j = 0; j < HEAD_DIM_V; ++j)
              perm[((size_t)hh * HEAD_DIM_V + j) * HEAD_DIM_V + (7 * j + hh) % HEAD_DIM_V] = __float2bfloat16(1.f);
          DeviceBuffer<__nv_bfloat16> dperm(perm.size()), dres((size_t)tokens * h * HEAD_DIM_V);
          dperm.upload(perm);
          MLA_CHECK(cudaMemset(dres.ptr, 0xFF, dres.count * 2));
          MLA_CHECK(sm90::run_mla_decode_uv<__nv_bfloat16>(p, CombineUvParams{dperm.ptr, HEAD_DIM_V, dres.ptr}));
          MLA_CHECK(cudaDeviceSynchronize());
          const std::vector<__nv_bfloat16> g = dres.download();
          for (int t = 0; t < tokens; ++t)
            for (int hh = 0; hh < h; ++hh)
              for (int j = 0; j < HEAD_DIM_V; ++j) {
                const float a = bf2f(g[((size_t)t * h + hh) * HEAD_DIM_V + j]);
                const float e = bf2f(latent[((size_t)t * h + hh) * HEAD_DIM_V + (7 * j + hh) % HEAD_DIM_V]);
                if (!(a == e)) ++inexact;
              }
        }
        const bool ok = unwritten == 0 && over_tol == 0 && err_b < 1e-2 && inexact == 0;
        all_ok &= ok;
        std::printf("%-9s %3d %4d %3d %4d %6d %6d %6d %9.2e %9.2e %6s %s", "flashmla", tuning, c.b, c.s_q, c.h_q,
                    *std::max_element(c.lens.begin(), c.lens.end()), c.num_parts, splits[c.b], worst, err_b,
                    inexact ? "no" : "yes", ok ? "ok" : "FAIL");
        if (unwritten) std::printf(" unwritten/NaN: %lld", unwritten);
        if (over_tol) std::printf(" over tolerance: %lld", over_tol);
        if (inexact) std::printf(" latent mismatches: %lld", inexact);
        std::printf("\n");
      }
    }
  }
  return all_ok;
}

}  // namespace

int main(int argc, char** argv) {
  const uint64_t seed = argc > 1 ? std::stoull(argv[1])
                                 : (uint64_t)std::chrono::steady_clock::now().time_since_epoch().count();
  std::printf("mla_test seed %llu\n", (unsigned long long)seed);
  try {
    cudaDeviceProp prop{};
    MLA_CHECK(cudaGetDeviceProperties(&prop, 0));
    const bool hopper = prop.major == 9;
    const int sms = num_sms();
    std::printf("device %s (sm_%d%d, %d SMs)\n", prop.name, prop.major, prop.minor, sms);
    bool all_ok = true;
    if (hopper) all_ok &= layout_probe(seed);

    std::mt19937_64 rng(seed);
    auto rand_int = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    auto rand_lens = [&](int b, int lo, int hi) {
      std::vector<int> v(b);
      for (auto& x : v) {
        x = rand_int(lo, hi);
        if (rand_int(0, 3) == 0) x = std::max(64, x / 64 * 64);  // some multiples of 64
      }
      return v;
    };
    std::vector<Spec> specs = {
        {1, 1, 16, {1}},
        {1, 1, 128, {64}},
        {3, 2, 16, {63, 64, 65}},
        {1, 4, 128, {20000}},
        {300, 1, 8, rand_lens(300, 1, 2000)},
        {300, 3, 64, rand_lens(300, 1, 700)},
        {128, 2, 32, rand_lens(128, 1, 8192)},
        {7, 4, 128, {1, 2, 3, 4, 5, 128, 20000}},
        {50, 1, 64, rand_lens(50, 1, 20000)},
        {16, 4, 16, {64, 128, 192, 256, 320, 384, 448, 512, 576, 640, 704, 768, 832, 896, 960, 19968}},
        {132, 1, 128, rand_lens(132, 1, 4096)},
        {2, 2, 64, {12800, 64}},
    };
    const int hs[5] = {8, 16, 32, 64, 128};
    for (int i = 0; i < 12; ++i) {  // random shapes, bounded reference work
      const int h = hs[rand_int(0, 4)], sq = rand_int(1, 4), b = rand_int(1, 300);
      const long long budget = 40'000'000LL / (sq * h);
      const int maxlen = (int)std::max<long long>(1, std::min<long long>(20000, 2 * budget / b));
      specs.push_back({b, sq, h, rand_lens(b, 1, maxlen)});
    }

    std::printf("%-9s %3s %4s %3s %4s %6s %6s %6s %9s %9s %s\n", "kernel", "tun", "b", "s_q", "h_q", "maxlen", "parts",
                "splits", "out_err", "lse_err", "result");
    int case_id = 0;
    for (const Spec& sp : specs) {
      ++case_id;
      const int q_rows = sp.s_q * sp.h_q;
      // The schedule's own part count, and an odd one (more splits, parts with several requests).
      const int parts_list[2] = {num_sm_parts(sms, q_rows), rand_int(1, 300)};
      for (int variant = 0; variant < 2; ++variant) {
        Case c;
        build_case(c, sp.b, sp.s_q, sp.h_q, sp.lens, parts_list[variant], seed + case_id * 7919 + variant,
                   rand_int(0, 64), true);
        DeviceBuffer<float> out_ref((size_t)c.b * c.q_rows * HEAD_DIM_V), lse_ref((size_t)c.b * c.q_rows);
        reference_kernel<<<c.b * c.q_rows, 256>>>(decode_params(c, 0), out_ref.ptr, lse_ref.ptr);
        MLA_CHECK(cudaGetLastError());
        const std::vector<float> oref = out_ref.download(), lref = lse_ref.download();
        // flashmla under each of its schedules (tuning 1: pipelined only, 4: staggered two-page only,
        // 196: staggered as v7 (evict-normal pages, every page masked), 20: the lockstep seesaw only,
        // 0: chosen by shape; 256: the combine's wide layout whatever the grid), then cuda-mla.
        const std::pair<Kernel, int> runs[7] = {{Kernel::FlashMla, 0},  {Kernel::FlashMla, 1},
                                                {Kernel::FlashMla, 4},  {Kernel::FlashMla, 196},
                                                {Kernel::FlashMla, 20}, {Kernel::FlashMla, 256},
                                                {Kernel::Portable, 0}};
        for (const auto& [k, tuning] : runs) {
          if (k == Kernel::FlashMla && !hopper) continue;
          const Result res = run_and_check(c, k, tuning, oref, lref);
          std::vector<int> splits = c.splits.download();
          const bool ok = res.meta_error.empty() && res.unwritten == 0 && res.lse_mismatch == 0 &&
                          res.out_err < 1e-2 && res.lse_err < 1e-4;
          all_ok &= ok;
          std::printf("%-9s %3d %4d %3d %4d %6d %6d %6d %9.2e %9.2e %s", kernel_name(k), tuning, c.b, c.s_q, c.h_q,
                      *std::max_element(c.lens.begin(), c.lens.end()), c.num_parts, splits[c.b], res.out_err,
                      res.lse_err, ok ? "ok" : "FAIL");
          if (!res.meta_error.empty()) std::printf(" schedule: %s", res.meta_error.c_str());
          if (res.unwritten) std::printf(" unwritten/NaN: %lld", res.unwritten);
          if (res.lse_mismatch) std::printf(" lse -inf mismatches: %lld", res.lse_mismatch);
          std::printf("\n");
        }
      }
    }
    if (hopper) all_ok &= fused_uv_checks(seed, sms);
    std::printf("mla_test: %s (seed %llu)\n", all_ok ? "ALL PASSED" : "FAILURES", (unsigned long long)seed);
    return all_ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::printf("mla_test: error: %s\n", e.what());
    return 2;
  }
}
