#include "kernels/activation.h"
#include "kernels/common.cuh"
#include "kernels/launch.h"
#include "runtime/check.h"

namespace flashserve {
namespace {

__global__ void silu_mul_kernel(SiluMulParams p) {
  pdl_wait();
  pdl_launch_dependents();
  const int64_t n = static_cast<int64_t>(p.rows) * p.inter;
  const bf16* in = static_cast<const bf16*>(p.in);
  bf16* out = static_cast<bf16*>(p.out);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / p.inter, c = i % p.inter;
    const float g = to_f(in[r * 2 * p.inter + c]);
    const float u = to_f(in[r * 2 * p.inter + p.inter + c]);
    // transformers rounds silu(gate) to bf16 before the product.
    out[i] = to_bf(to_f(to_bf(g / (1.f + __expf(-g)))) * u);
  }
}

__global__ void silu_mul_partials_kernel(SiluMulPartialsParams p) {
  pdl_wait();
  pdl_launch_dependents();
  const int64_t n = static_cast<int64_t>(p.rows) * p.inter;
  const int64_t split_stride = static_cast<int64_t>(p.rows) * 2 * p.inter;
  bf16* out = static_cast<bf16*>(p.out);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / p.inter, c = i % p.inter;
    float g = 0.f, u = 0.f;
    for (int s = 0; s < p.splits; ++s) {
      g += p.partial[s * split_stride + r * 2 * p.inter + c];
      u += p.partial[s * split_stride + r * 2 * p.inter + p.inter + c];
    }
    g = to_f(to_bf(g));
    u = to_f(to_bf(u));
    out[i] = to_bf(to_f(to_bf(g / (1.f + __expf(-g)))) * u);
  }
}

}  // namespace

void run_silu_mul_partials(SiluMulPartialsParams& p) {
  const int64_t n = static_cast<int64_t>(p.rows) * p.inter;
  if (n == 0) return;
  int64_t blocks = (n + 255) / 256;
  if (blocks > 4096) blocks = 4096;
  launch_pdl("moeExperts (silu of partials)", silu_mul_partials_kernel, dim3(static_cast<int>(blocks)), dim3(256), 0,
             p.stream, p);
}

void run_silu_mul(SiluMulParams& p) {
  const int64_t n = static_cast<int64_t>(p.rows) * p.inter;
  if (n == 0) return;
  int64_t blocks = (n + 255) / 256;
  if (blocks > 4096) blocks = 4096;
  launch_pdl("siluMul", silu_mul_kernel, dim3(static_cast<int>(blocks)), dim3(256), 0, p.stream, p);
}

}  // namespace flashserve
