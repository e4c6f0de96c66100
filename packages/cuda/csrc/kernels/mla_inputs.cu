#include "kernels/common.cuh"
#include "kernels/launch.h"
#include "kernels/mla_inputs.h"
#include "runtime/check.h"

namespace flashserve {
namespace {

constexpr int THREADS = 256;
constexpr int MAX_PER_THREAD = 4;  // kv_rank up to 1024 stays in registers (512 in every DeepSeek)
constexpr int Q_ITEMS = 4;         // query work items per thread: whole heads per block, about 1024 items

// Query heads per block: as many whole heads as THREADS * Q_ITEMS items hold (an item is one copied
// element or one rotated pair).
__host__ __device__ inline int heads_per_block(const MlaInputsParams& p) {
  const int per_head = p.head_dim - p.rope_dim / 2;
  const int hpb = (THREADS * Q_ITEMS) / per_head;
  return hpb > 0 ? hpb : 1;
}

// Block (t, 0): the latent (norm of c_kv, RoPE of k_pe); blocks (t, 1..): the query, a few heads each.
// NOTE: each thread issues all its loads before its first store: the compiler cannot prove the outputs
// alias none of the inputs, so an interleaved loop costs a dependent round trip per element.
__global__ void __launch_bounds__(THREADS) mla_inputs_kernel(MlaInputsParams p) {
  __shared__ float scratch[32];
  pdl_wait();
  pdl_launch_dependents();
  const int64_t t = blockIdx.x;
  const int half = p.rope_dim / 2;
  int pos = p.positions[t];
  pos = pos < 0 ? 0 : (pos >= p.max_positions ? p.max_positions - 1 : pos);  // validated on the host
  const bf16* cos = static_cast<const bf16*>(p.cos) + static_cast<int64_t>(pos) * half;
  const bf16* sin = static_cast<const bf16*>(p.sin) + static_cast<int64_t>(pos) * half;
  const auto pair_index = [&](int pair, int& i1, int& i2) {
    i1 = p.interleave ? 2 * pair : pair;
    i2 = p.interleave ? 2 * pair + 1 : pair + half;
  };

  if (blockIdx.y == 0) {
    const int width = p.kv_rank + p.rope_dim;
    const bf16* kv = static_cast<const bf16*>(p.kv) + t * width;
    const bf16* w = static_cast<const bf16*>(p.kv_norm);
    float vals[MAX_PER_THREAD], ws[MAX_PER_THREAD];
#pragma unroll
    for (int i = 0; i < MAX_PER_THREAD; ++i) {
      const int c = threadIdx.x + i * THREADS;
      vals[i] = c < p.kv_rank ? to_f(kv[c]) : 0.f;
      ws[i] = c < p.kv_rank ? to_f(w[c]) : 0.f;
    }
    // k_pe: one pair per thread for rope_dim <= 2 * THREADS (64 in every DeepSeek).
    const int r = threadIdx.x;
    int i1 = 0, i2 = 0;
    float x1 = 0.f, x2 = 0.f, c = 0.f, sn = 0.f;
    if (r < half) {
      pair_index(r, i1, i2);
      x1 = to_f(kv[p.kv_rank + i1]), x2 = to_f(kv[p.kv_rank + i2]);
      c = to_f(cos[r]), sn = to_f(sin[r]);
    }
    float sq = 0.f;
#pragma unroll
    for (int i = 0; i < MAX_PER_THREAD; ++i) sq += vals[i] * vals[i];
    const float inv = rsqrtf(block_sum(sq, scratch) / static_cast<float>(p.kv_rank) + p.eps);
    bf16* ckv = static_cast<bf16*>(p.c_kv) + t * p.kv_rank;
#pragma unroll
    for (int i = 0; i < MAX_PER_THREAD; ++i) {
      const int col = threadIdx.x + i * THREADS;
      if (col < p.kv_rank) ckv[col] = to_bf(ws[i] * to_f(to_bf(vals[i] * inv)));
    }
    if (r < half) {
      bf16* kpe = static_cast<bf16*>(p.k_pe) + t * p.rope_dim;
      kpe[i1] = to_bf(x1 * c - x2 * sn);
      kpe[i2] = to_bf(x2 * c + x1 * sn);
    }
    return;
  }

  const int nope = p.head_dim - p.rope_dim;
  const int per_head = nope + half;  // pass-through copies, then rotated pairs
  const int hpb = heads_per_block(p);
  const int head0 = (blockIdx.y - 1) * hpb;
  const int heads = min(hpb, p.num_heads - head0);
  const int items = heads * per_head;
  const bf16* q = static_cast<const bf16*>(p.q) + (t * p.num_heads + head0) * p.head_dim;
  bf16* out = static_cast<bf16*>(p.q_out) + (t * p.num_heads + head0) * p.head_dim;
  float a[Q_ITEMS], b[Q_ITEMS], c[Q_ITEMS], sn[Q_ITEMS];
  int at1[Q_ITEMS], at2[Q_ITEMS];
#pragma unroll
  for (int u = 0; u < Q_ITEMS; ++u) {
    const int i = threadIdx.x + u * THREADS;
    at1[u] = at2[u] = -1;
    if (i >= items) continue;
    const int h = i / per_head, j = i - h * per_head;
    if (j < nope) {
      at1[u] = h * p.head_dim + j;
      a[u] = to_f(q[at1[u]]);
    } else {
      const int r = j - nope;
      int i1, i2;
      pair_index(r, i1, i2);
      at1[u] = h * p.head_dim + nope + i1;
      at2[u] = h * p.head_dim + nope + i2;
      a[u] = to_f(q[at1[u]]), b[u] = to_f(q[at2[u]]);
      c[u] = to_f(cos[r]), sn[u] = to_f(sin[r]);
    }
  }
#pragma unroll
  for (int u = 0; u < Q_ITEMS; ++u) {
    if (at1[u] < 0) continue;
    if (at2[u] < 0) {
      out[at1[u]] = to_bf(a[u]);  // exact: the value came from bf16
    } else {
      out[at1[u]] = to_bf(a[u] * c[u] - b[u] * sn[u]);
      out[at2[u]] = to_bf(b[u] * c[u] + a[u] * sn[u]);
    }
  }
}

}  // namespace

void run_mla_inputs(MlaInputsParams& p) {
  if (p.num_tokens == 0) return;
  require(p.rope_dim % 2 == 0 && p.rope_dim <= p.head_dim, "mlaInputs: rope_dim must be even and at most head_dim");
  require(p.kv_rank <= THREADS * MAX_PER_THREAD, "mlaInputs: kv_lora_rank above 1024 is not supported");
  require(p.rope_dim <= 2 * THREADS, "mlaInputs: rope_dim above 512 is not supported");
  require(p.head_dim - p.rope_dim / 2 <= THREADS * Q_ITEMS, "mlaInputs: head_dim is too large");
  const int hpb = heads_per_block(p);
  const int q_blocks = (p.num_heads + hpb - 1) / hpb;
  launch_pdl("mlaInputs", mla_inputs_kernel, dim3(p.num_tokens, 1 + q_blocks), dim3(THREADS), 0, p.stream, p);
}

}  // namespace flashserve
