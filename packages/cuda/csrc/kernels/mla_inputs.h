// MLA's per-layer inputs in one launch, from the query and the latent projection of the step:
//   q    [T, heads, head_dim] -> RoPE on the last rope_dim dims of each head (the rest copied);
//   kv   [T, kv_rank + rope_dim] -> c_kv = RMSNorm(kv[:, :kv_rank]) [T, kv_rank]
//                                   k_pe = RoPE(kv[:, kv_rank:])    [T, rope_dim]
// which is rope + slice + rmsNorm + slice + rope: five launches at a decode step, one here. Numerics
// are those of rope.cu and norm.cu (bf16 cos/sin table, fp32 mean of squares, bf16 roundings).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace flashserve {

struct MlaInputsParams {
  const void* q;             // [T, heads, head_dim] bf16, contiguous
  const void* kv;            // [T, kv_rank + rope_dim] bf16, contiguous
  const int32_t* positions;  // [T]
  const void* cos;           // [max_positions, rope_dim / 2] bf16, YaRN's attention factor included
  const void* sin;
  const void* kv_norm;  // [kv_rank] bf16
  void* q_out;          // [T, heads, head_dim] bf16
  void* c_kv;           // [T, kv_rank] bf16
  void* k_pe;           // [T, rope_dim] bf16
  int num_tokens, num_heads, head_dim, rope_dim, kv_rank, max_positions;
  float eps;
  bool interleave;  // rope pairs (2j, 2j+1) when set, else (j, j + rope_dim / 2)
  cudaStream_t stream;
};
void run_mla_inputs(MlaInputsParams& p);

}  // namespace flashserve
