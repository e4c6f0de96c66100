#include "kernels/common.cuh"
#include "kernels/launch.h"
#include "kernels/norm.h"
#include "runtime/check.h"

namespace flashserve {
namespace {

constexpr int THREADS = 256;
// Rows up to PER_THREAD * 256 wide stay in registers between the two passes: 8 for hidden sizes up to
// 2048 (V2-Lite), 32 up to 8192 (DeepSeek-V3's hidden is 7168).
constexpr int SMALL_PER_THREAD = 8;
constexpr int MAX_PER_THREAD = 32;

// NOTE: numerics follow transformers' DeepseekV2RMSNorm in bf16: the residual add rounds to bf16,
// the variance is an fp32 mean of squares, x * rsqrt(var + eps) rounds to bf16, and the product with
// the bf16 weight rounds again.
// NOTE: all loads (x, residual, weight) are issued before the first store: the compiler cannot prove
// the outputs alias none of the inputs, so interleaved, each element cost a dependent round trip
// (a one-token norm took ~5 us in a graph).
template <int PER_THREAD>
__global__ void __launch_bounds__(THREADS) rms_norm_kernel(RmsNormParams p) {
  __shared__ float scratch[32];
  pdl_wait();
  pdl_launch_dependents();
  const int64_t r = blockIdx.x;
  const bf16* x = static_cast<const bf16*>(p.x) + r * p.x_stride;
  const bf16* res = p.residual ? static_cast<const bf16*>(p.residual) + r * p.residual_stride : nullptr;
  bf16* out = static_cast<bf16*>(p.out) + r * p.out_stride;
  bf16* res_out = p.residual_out ? static_cast<bf16*>(p.residual_out) + r * p.cols : nullptr;
  const bf16* w = static_cast<const bf16*>(p.weight);

  float vals[PER_THREAD], adds[PER_THREAD], ws[PER_THREAD];
#pragma unroll
  for (int i = 0; i < PER_THREAD; ++i) {
    const int c = threadIdx.x + i * THREADS;
    const bool in = c < p.cols;
    vals[i] = in ? to_f(x[c]) : 0.f;
    adds[i] = res && in ? to_f(res[c]) : 0.f;
    ws[i] = in ? to_f(w[c]) : 0.f;
  }
  float sq = 0.f;
#pragma unroll
  for (int i = 0; i < PER_THREAD; ++i) {
    const int c = threadIdx.x + i * THREADS;
    if (res) {
      const bf16 h = to_bf(vals[i] + adds[i]);
      if (res_out && c < p.cols) res_out[c] = h;
      vals[i] = c < p.cols ? to_f(h) : 0.f;
    }
    sq = fmaf(vals[i], vals[i], sq);  // spelled out: skinny_gemm.cu's norm form must match it bit for bit
  }
  const float inv = rsqrtf(block_sum(sq, scratch) / static_cast<float>(p.cols) + p.eps);
#pragma unroll
  for (int i = 0; i < PER_THREAD; ++i) {
    const int c = threadIdx.x + i * THREADS;
    if (c < p.cols) out[c] = rms_scale(vals[i], inv, ws[i]);
  }
}

}  // namespace

void run_rms_norm(RmsNormParams& p) {
  if (p.rows == 0) return;
  require(p.cols <= THREADS * MAX_PER_THREAD, "rmsNorm: rows wider than 8192 are not supported");
  if (p.cols <= THREADS * SMALL_PER_THREAD) {
    launch_pdl("rmsNorm", rms_norm_kernel<SMALL_PER_THREAD>, dim3(p.rows), dim3(THREADS), 0, p.stream, p);
  } else {
    launch_pdl("rmsNorm", rms_norm_kernel<MAX_PER_THREAD>, dim3(p.rows), dim3(THREADS), 0, p.stream, p);
  }
}

}  // namespace flashserve
