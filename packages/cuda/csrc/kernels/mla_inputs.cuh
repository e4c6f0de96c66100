// Device code shared by mla_inputs.cu and the skinny GEMV's MLA-inputs form (skinny_gemm.cu), which
// folds mlaInputs into the absorbed query at 1-2 tokens: both compute every output through these
// functions, so the folded launch writes bit for bit what the two launches write.
#pragma once
#include "kernels/common.cuh"
#include "kernels/mla_inputs.h"

namespace flashserve {

// The latent row is one block's work: thread i normalises columns i, i + 256, ... of c_kv.
constexpr int MLA_INPUTS_THREADS = 256;
constexpr int MLA_INPUTS_MAX_PER_THREAD = 4;  // kv_rank up to 1024 stays in registers (512 in every DeepSeek)

// Token t's rows of the cos / sin tables.
__device__ __forceinline__ void mla_rope_rows(const MlaInputsParams& p, int64_t t, const bf16*& cos,
                                              const bf16*& sin) {
  int pos = p.positions[t];
  pos = pos < 0 ? 0 : (pos >= p.max_positions ? p.max_positions - 1 : pos);  // validated on the host
  const int half = p.rope_dim / 2;
  cos = static_cast<const bf16*>(p.cos) + static_cast<int64_t>(pos) * half;
  sin = static_cast<const bf16*>(p.sin) + static_cast<int64_t>(pos) * half;
}

// The two elements of rope pair `pair`: (2j, 2j + 1) interleaved, else (j, j + rope_dim / 2).
__device__ __forceinline__ void mla_pair_index(const MlaInputsParams& p, int pair, int& i1, int& i2) {
  i1 = p.interleave ? 2 * pair : pair;
  i2 = p.interleave ? 2 * pair + 1 : pair + p.rope_dim / 2;
}

// One rotated pair, rounded to bf16 (rope.cu's arithmetic).
__device__ __forceinline__ void mla_rotate(float x1, float x2, float c, float s, bf16& y1, bf16& y2) {
  y1 = to_bf(x1 * c - x2 * s);
  y2 = to_bf(x2 * c + x1 * s);
}

// Token t's latent: c_kv = RMSNorm(kv[t, :kv_rank]) into p.c_kv, k_pe = RoPE(kv[t, kv_rank:]) into
// p.k_pe, and both into cache_row ([kv_rank + rope_dim]) when it is set. Every thread of a block of
// MLA_INPUTS_THREADS calls it (a block reduction).
// NOTE: each thread issues all its loads before its first store: the compiler cannot prove the outputs
// alias none of the inputs, so an interleaved loop costs a dependent round trip per element.
__device__ __forceinline__ void mla_latent_row(const MlaInputsParams& p, int64_t t, float* scratch, bf16* cache_row) {
  const bf16 *cos, *sin;
  mla_rope_rows(p, t, cos, sin);
  const int width = p.kv_rank + p.rope_dim;
  const bf16* kv = static_cast<const bf16*>(p.kv) + t * width;
  const bf16* w = static_cast<const bf16*>(p.kv_norm);
  float vals[MLA_INPUTS_MAX_PER_THREAD], ws[MLA_INPUTS_MAX_PER_THREAD];
#pragma unroll
  for (int i = 0; i < MLA_INPUTS_MAX_PER_THREAD; ++i) {
    const int c = threadIdx.x + i * MLA_INPUTS_THREADS;
    vals[i] = c < p.kv_rank ? to_f(kv[c]) : 0.f;
    ws[i] = c < p.kv_rank ? to_f(w[c]) : 0.f;
  }
  // k_pe: one pair per thread for rope_dim <= 2 * MLA_INPUTS_THREADS (64 in every DeepSeek).
  const int r = threadIdx.x, half = p.rope_dim / 2;
  int i1 = 0, i2 = 0;
  float x1 = 0.f, x2 = 0.f, c = 0.f, sn = 0.f;
  if (r < half) {
    mla_pair_index(p, r, i1, i2);
    x1 = to_f(kv[p.kv_rank + i1]), x2 = to_f(kv[p.kv_rank + i2]);
    c = to_f(cos[r]), sn = to_f(sin[r]);
  }
  float sq = 0.f;
#pragma unroll
  for (int i = 0; i < MLA_INPUTS_MAX_PER_THREAD; ++i) sq += vals[i] * vals[i];
  const float inv = rsqrtf(block_sum(sq, scratch) / static_cast<float>(p.kv_rank) + p.eps);
  bf16* ckv = static_cast<bf16*>(p.c_kv) + t * p.kv_rank;
#pragma unroll
  for (int i = 0; i < MLA_INPUTS_MAX_PER_THREAD; ++i) {
    const int col = threadIdx.x + i * MLA_INPUTS_THREADS;
    if (col < p.kv_rank) {
      const bf16 y = to_bf(ws[i] * to_f(to_bf(vals[i] * inv)));
      ckv[col] = y;
      if (cache_row) cache_row[col] = y;
    }
  }
  if (r < half) {
    bf16 y1, y2;
    mla_rotate(x1, x2, c, sn, y1, y2);
    bf16* kpe = static_cast<bf16*>(p.k_pe) + t * p.rope_dim;
    kpe[i1] = y1, kpe[i2] = y2;
    if (cache_row) cache_row[p.kv_rank + i1] = y1, cache_row[p.kv_rank + i2] = y2;
  }
}

}  // namespace flashserve
