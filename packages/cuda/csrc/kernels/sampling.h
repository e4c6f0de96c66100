// Token sampling on the GPU, one block per row of logits, so only token ids (and the logprobs asked
// for) cross to the host. Per row: greedy when temperature is 0; otherwise softmax(logits / T)
// filtered by top-k, then top-p over what top-k kept, then min-p, sampled with a host-drawn uniform
// number (so seeded requests are reproducible). Thresholds are found by radix selection over the
// 32-bit keys of the scaled logits: four 8-bit passes, exact, no sorting.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace flashserve {

constexpr int SAMPLING_MAX_TOP_LOGPROBS = 20;

struct SamplingParams {
  const void* logits;  // [rows, vocab], f32 or bf16 (logits_bf16)
  bool logits_bf16;
  int rows, vocab;
  const float* temperature;  // [rows]; 0 = greedy
  const int32_t* top_k;      // [rows]; <= 0 or >= vocab = off
  const float* top_p;        // [rows]; >= 1 = off
  const float* min_p;        // [rows]; <= 0 = off
  const float* uniform;      // [rows] in [0, 1)
  int32_t* out_tokens;       // [rows]
  float* out_logprobs;       // [rows] log-softmax of the raw logits at the chosen token
  int num_top;               // top logprobs per row (<= 20), written to top_ids / top_logprobs
  int32_t* top_ids;          // [rows, num_top] or null
  float* top_logprobs;       // [rows, num_top] or null
  cudaStream_t stream;
  // Scratch of sampling_split_bytes(rows, vocab) bytes whose counters are zero, or null. With it,
  // greedy rows (temperature 0) of a long bf16 vocabulary without top logprobs are read by several
  // blocks a row, each a slice, the last one to finish merging their partial results in slice order
  // (deterministic) and setting the counters back to zero: at one row a step a single block reading
  // 100k logits was ~14 us of the step.
  void* split_scratch;
};
// Bytes of SamplingParams::split_scratch for `rows` rows (0: the split never applies to this vocabulary).
size_t sampling_split_bytes(int rows, int vocab);
void run_sampling(SamplingParams& p);

}  // namespace flashserve
