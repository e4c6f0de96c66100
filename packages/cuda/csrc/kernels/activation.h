// SiLU-and-multiply: the gated MLP's activation, for dense MLPs and MoE experts alike.
#pragma once
#include <cuda_runtime_api.h>

namespace flashserve {

struct SiluMulParams {
  const void* in;  // [rows, 2 * inter] bf16: gate columns then up columns
  void* out;       // [rows, inter] bf16
  int rows, inter;
  cudaStream_t stream;
};
void run_silu_mul(SiluMulParams& p);

// SiLU-and-multiply reading split-K partial sums of the gate/up GEMM: each value is the sum over
// splits, rounded to bf16 as the GEMM's own output would have been.
struct SiluMulPartialsParams {
  const float* partial;  // [splits, rows, 2 * inter]
  int splits;
  void* out;  // [rows, inter] bf16
  int rows, inter;
  cudaStream_t stream;
};
void run_silu_mul_partials(SiluMulPartialsParams& p);

}  // namespace flashserve
