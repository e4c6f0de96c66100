#include "kernels/common.cuh"
#include "kernels/norm.h"
#include "runtime/check.h"

namespace flashserve {
namespace {

constexpr int THREADS = 256;
// Rows up to this width stay in registers between the two passes (DeepSeek-V3's hidden is 7168).
constexpr int MAX_PER_THREAD = 32;

// NOTE: numerics follow transformers' DeepseekV2RMSNorm in bf16: the residual add rounds to bf16,
// the variance is an fp32 mean of squares, x * rsqrt(var + eps) rounds to bf16, and the product with
// the bf16 weight rounds again.
__global__ void rms_norm_kernel(RmsNormParams p) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const bf16* x = static_cast<const bf16*>(p.x) + r * p.x_stride;
  const bf16* res = p.residual ? static_cast<const bf16*>(p.residual) + r * p.residual_stride : nullptr;
  bf16* out = static_cast<bf16*>(p.out) + r * p.out_stride;
  bf16* res_out = p.residual_out ? static_cast<bf16*>(p.residual_out) + r * p.cols : nullptr;
  const bf16* w = static_cast<const bf16*>(p.weight);

  float vals[MAX_PER_THREAD];
  float sq = 0.f;
#pragma unroll
  for (int i = 0; i < MAX_PER_THREAD; ++i) {
    const int c = threadIdx.x + i * THREADS;
    vals[i] = 0.f;
    if (c < p.cols) {
      float v = to_f(x[c]);
      if (res) {
        const bf16 h = to_bf(v + to_f(res[c]));
        if (res_out) res_out[c] = h;
        v = to_f(h);
      }
      vals[i] = v;
      sq += v * v;
    }
  }
  const float inv = rsqrtf(block_sum(sq, scratch) / static_cast<float>(p.cols) + p.eps);
#pragma unroll
  for (int i = 0; i < MAX_PER_THREAD; ++i) {
    const int c = threadIdx.x + i * THREADS;
    if (c < p.cols) out[c] = to_bf(to_f(w[c]) * to_f(to_bf(vals[i] * inv)));
  }
}

}  // namespace

void run_rms_norm(RmsNormParams& p) {
  if (p.rows == 0) return;
  require(p.cols <= THREADS * MAX_PER_THREAD, "rmsNorm: rows wider than 8192 are not supported");
  rms_norm_kernel<<<p.rows, THREADS, 0, p.stream>>>(p);
  check_launch("rmsNorm");
}

}  // namespace flashserve
