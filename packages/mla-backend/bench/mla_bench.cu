// Benchmark of the MLA decode kernels on FlashMLA's own 48-case grid; runs without Node.
//   mla_bench [anchor-file] [--portable]
// b = 128; s in {4096, 8192, 16384}; h_q in {16, 32, 64, 128}; s_q in {1, 2}; varlen 0/1 (lengths
// ~ normal(s, s/2), at least s_q). FLOPs and bytes by FlashMLA's formulas (total_k = sum of lengths):
//   FLOPs = s_q * total_k * h_q * (576 + 512) * 2
//   bytes = (total_k * 576 + b * s_q * h_q * (576 + 512)) * 2
// Each case: the schedule is built once (as FlashMLA's benchmark does), then decode + combine are
// timed with CUDA events, one launch at a time after warm-up, median of ITERS. The cache (>= 600 MB)
// is far larger than L2, so every launch streams it from HBM. Prints the device-to-device copy
// bandwidth of the same run and the ratio to the anchor (FlashMLA on an H100) per case.
#include <cuda_runtime_api.h>

#include <fstream>
#include <map>
#include <sstream>
#include <tuple>

#include "tests/harness.h"

using namespace flashserve::mla;
using namespace flashserve::mla::harness;

namespace {

constexpr int WARMUP = 3;
constexpr int ITERS = 25;

using Key = std::tuple<int, int, int, int, int>;  // b, s, h_q, s_q, varlen

std::map<Key, double> read_anchor(const std::string& path) {
  std::map<Key, double> m;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ss(line);
    int b, s, h, sq, vl;
    double ms;
    if (ss >> b >> s >> h >> sq >> vl >> ms) m[{b, s, h, sq, vl}] = ms;
  }
  return m;
}

bool first_timing = true;

template <typename F>
double median_ms(F&& launch, int iters) {
  cudaEvent_t a, b;
  MLA_CHECK(cudaEventCreate(&a));
  MLA_CHECK(cudaEventCreate(&b));
  std::vector<float> t(iters);
  // NOTE: the first kernel timed measured ~12% slow after 3 warm-up launches (a later tuning of the
  // same case did not): warm the GPU up on the real kernel once, for ~0.2 s.
  for (int i = 0; i < (first_timing ? 800 : WARMUP); ++i) launch();
  first_timing = false;
  for (int i = 0; i < iters; ++i) {
    MLA_CHECK(cudaEventRecord(a));
    launch();
    MLA_CHECK(cudaEventRecord(b));
    MLA_CHECK(cudaEventSynchronize(b));
    MLA_CHECK(cudaEventElapsedTime(&t[i], a, b));
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[iters / 2];
}

double copy_bandwidth_gbs() {
  const size_t bytes = size_t(2) << 30;
  DeviceBuffer<uint8_t> src(bytes), dst(bytes);
  MLA_CHECK(cudaMemset(src.ptr, 1, bytes));
  // NOTE: ~0.3 s of copies first: an idle H100 sits at a low clock, and the first benchmark case
  // measured 10% slow without this.
  for (int i = 0; i < 200; ++i) MLA_CHECK(cudaMemcpyAsync(dst.ptr, src.ptr, bytes, cudaMemcpyDeviceToDevice));
  const double ms = median_ms([&] { MLA_CHECK(cudaMemcpyAsync(dst.ptr, src.ptr, bytes, cudaMemcpyDeviceToDevice)); }, 9);
  return 2.0 * bytes / (ms * 1e-3) / 1e9;  // bytes read + bytes written
}

}  // namespace

int main(int argc, char** argv) {
  std::string anchor_path = "bench/flashmla-h100.txt";
  bool portable = false;
  std::vector<int> tunings = {0};
  int only[4] = {0, 0, 0, -1};  // --only=s,h_q,s_q,varlen: one case (profiling)
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--portable") portable = true;
    else if (a.rfind("--tuning=", 0) == 0) {
      tunings.clear();
      std::stringstream ss(a.substr(9));
      std::string tok;
      while (std::getline(ss, tok, ',')) tunings.push_back(std::stoi(tok));
    } else if (a.rfind("--only=", 0) == 0) {
      std::sscanf(a.c_str() + 7, "%d,%d,%d,%d", &only[0], &only[1], &only[2], &only[3]);
    } else anchor_path = a;
  }
  try {
    cudaDeviceProp prop{};
    MLA_CHECK(cudaGetDeviceProperties(&prop, 0));
    const auto anchor = read_anchor(anchor_path);
    std::printf("device %s, %d SMs; anchor %s (%zu cases)\n", prop.name, prop.multiProcessorCount,
                anchor_path.c_str(), anchor.size());
    const double copy_gbs = copy_bandwidth_gbs();
    std::printf("device-to-device copy: %.0f GB/s (read + write)\n", copy_gbs);
    const Kernel kernel = portable ? Kernel::Portable : Kernel::FlashMla;
    std::printf("%-9s %4s %6s %4s %3s %3s %3s %9s %6s %7s %10s %6s\n", "kernel", "b", "s", "h_q", "s_q", "var", "tun",
                "ms", "GB/s", "TFLOPS", "anchor_ms", "ratio");
    const size_t nt = tunings.size();
    std::vector<double> log_sum(nt, 0), worst(nt, 1e9);
    std::vector<int> n(nt, 0);
    std::vector<std::string> worst_case(nt);
    std::mt19937_64 rng(20261125);
    int case_index = 0;
    for (int s : {4096, 8192, 16384})
      for (int h : {16, 32, 64, 128})
        for (int sq : {1, 2})
          for (int varlen : {0, 1}) {
            if (portable && (s != 4096 || varlen)) continue;
            if (only[3] >= 0 && (s != only[0] || h != only[1] || sq != only[2] || varlen != only[3])) continue;
            const int b = 128;
            std::vector<int> lens(b, s);
            if (varlen) {
              std::normal_distribution<double> nd(s, s / 2.0);
              for (auto& x : lens) x = std::max<int>(sq, (int)nd(rng));
            }
            Case c;
            build_case(c, b, sq, h, lens, num_sm_parts(prop.multiProcessorCount, sq * h), rng(), 0, false);
            MLA_CHECK(run_get_mla_metadata(metadata_params(c, 0)));
            // NOTE: compute-bound cases slow down ~1% per timed variant within a case (the first one
            // after the case's setup is fastest: NOTES.md, v8 exp), so the order of the variants
            // alternates from case to case, which cancels that drift in an A/B's geomean.
            ++case_index;
            for (size_t k = 0; k < nt; ++k) {
              const size_t ti = case_index % 2 ? k : nt - 1 - k;
              DecodeParams p = decode_params(c, 0);
              p.tuning = tunings[ti];
              const double ms = median_ms([&] { MLA_CHECK(run_decode(kernel, p)); }, ITERS);
              const double tk = (double)c.total_k();
              const double flops = (double)sq * tk * h * (576 + 512) * 2;
              const double bytes = (tk * 576 + (double)b * sq * h * (576 + 512)) * 2;
              const auto it = anchor.find({b, s, h, sq, varlen});
              const double ams = it != anchor.end() ? it->second : 0;
              const double ratio = ams > 0 ? ams / ms : 0;
              if (ratio > 0) {
                log_sum[ti] += std::log(ratio);
                ++n[ti];
                if (ratio < worst[ti]) {
                  worst[ti] = ratio;
                  worst_case[ti] = "s=" + std::to_string(s) + " h_q=" + std::to_string(h) +
                                   " s_q=" + std::to_string(sq) + " varlen=" + std::to_string(varlen);
                }
              }
              std::printf("%-9s %4d %6d %4d %3d %3d %3d %9.4f %6.0f %7.1f %10.4f %6.3f\n", kernel_name(kernel), b, s, h,
                          sq, varlen, tunings[ti], ms, bytes / (ms * 1e-3) / 1e9, flops / (ms * 1e-3) / 1e12, ams,
                          ratio);
              std::fflush(stdout);
            }
          }
    for (size_t ti = 0; ti < nt; ++ti)
      std::printf("SUMMARY %s tuning=%d: %d cases, geomean ratio %.3f, worst %.3f (%s), copy %.0f GB/s\n",
                  kernel_name(kernel), tunings[ti], n[ti], n[ti] ? std::exp(log_sum[ti] / n[ti]) : 0.0, worst[ti],
                  worst_case[ti].c_str(), copy_gbs);
    return 0;
  } catch (const std::exception& e) {
    std::printf("mla_bench: error: %s\n", e.what());
    return 2;
  }
}
