// The split-KV combine fused with the value projection W_UV, for steps of a few tokens:
//   result[t, h, :] = W_UV[h] @ bf16(combine(partials of (t, h)))   [tokens, h_q, v_dim] bf16
// in one launch instead of the combine, then a GEMV over the latent output. At one decode token those
// two launches (the combine ~3.7 us a layer, W_UV 2.4 us) are mostly latency: the combine's output had
// to reach global memory and the next kernel had to wait for it. Fused, the batch-1 step of
// DeepSeek-V2-Lite (27 layers, 1k context) took 0.05-0.13 ms less (NOTES.md, "Combine + W_UV").
#pragma once

#include "params.h"

namespace flashserve::mla {

// Query tokens (b * s_q) the fused kernel takes; more tokens re-combine each head in every block of
// its rows too often to pay, and take the unfused path.
constexpr int COMBINE_UV_MAX_TOKENS = 4;
// Output rows of W_UV per block (one head's group of rows): 8 warps x 4 rows.
constexpr int COMBINE_UV_ROWS = 32;

struct CombineUvParams {
  const void* w_uv;  // bf16 [h_q, v_dim, 512], contiguous: W_UV[h] maps a latent row to v_dim values
  int v_dim;         // vHeadDim
  void* result;      // bf16 [b * s_q, h_q, v_dim], contiguous; token b_i * s_q + s
};

inline bool combine_uv_applies(const DecodeParams& p, int v_dim) {
  return (int64_t)p.b * p.s_q <= COMBINE_UV_MAX_TOKENS && v_dim > 0 && v_dim % COMBINE_UV_ROWS == 0;
}

// Reads what the decode kernel wrote (o_accum / lse_accum of split requests, out of the ones in one
// piece) and num_splits; writes uv.result, and neither params.out nor params.lse. Each (token, head)
// is combined exactly as run_combine does, rounded to bf16 as run_combine stores it, then multiplied
// by W_UV[head] in fp32 and rounded to bf16. With programmatic_launch (sm_90+) it is a programmatic
// dependent of the decode kernel queued just before: it requests its W_UV rows, then waits.
cudaError_t run_combine_uv(const DecodeParams& params, const CombineUvParams& uv, bool programmatic_launch = false);

}  // namespace flashserve::mla
