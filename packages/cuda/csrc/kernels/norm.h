// RMSNorm, optionally fused with the residual add that precedes it in every decoder layer.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace flashserve {

struct RmsNormParams {
  const void* x;         // [rows, cols] bf16, row stride x_stride
  const void* residual;  // [rows, cols] bf16 or null; when set, h = x + residual is normalised
  const void* weight;    // [cols] bf16
  void* out;             // [rows, cols] bf16, row stride out_stride
  void* residual_out;    // [rows, cols] bf16 (contiguous) or null: receives h when residual is set
  int rows, cols;
  int64_t x_stride, residual_stride, out_stride;
  float eps;
  cudaStream_t stream;
};
void run_rms_norm(RmsNormParams& p);

}  // namespace flashserve
