// Rotary position embedding on the last `rope_dim` dims of each head (DeepSeek's qk_rope_head_dim
// part); the leading dims of each head are copied through unchanged.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace flashserve {

struct RopeParams {
  const void* in;            // [num_tokens, num_heads, head_dim] bf16, contiguous
  void* out;                 // same shape
  const int32_t* positions;  // [num_tokens]
  const void* cos;           // [max_positions, rope_dim / 2] bf16, YaRN's attention factor included
  const void* sin;
  int num_tokens, num_heads, head_dim, rope_dim, max_positions;
  // Pairs are (2j, 2j+1) written in place when interleaved, else (j, j + rope_dim/2).
  bool interleave;
  cudaStream_t stream;
};
void run_rope(RopeParams& p);

}  // namespace flashserve
