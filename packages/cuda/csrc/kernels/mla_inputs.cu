#include "kernels/launch.h"
#include "kernels/mla_inputs.cuh"
#include "kernels/mla_inputs.h"
#include "runtime/check.h"

namespace flashserve {
namespace {

constexpr int THREADS = MLA_INPUTS_THREADS;
constexpr int Q_ITEMS = 4;  // query work items per thread: whole heads per block, about 1024 items

// Query heads per block: as many whole heads as THREADS * Q_ITEMS items hold (an item is one copied
// element or one rotated pair).
__host__ __device__ inline int heads_per_block(const MlaInputsParams& p) {
  const int per_head = p.head_dim - p.rope_dim / 2;
  const int hpb = (THREADS * Q_ITEMS) / per_head;
  return hpb > 0 ? hpb : 1;
}

// Block (t, 0): the latent (norm of c_kv, RoPE of k_pe); blocks (t, 1..): the query, a few heads each.
// NOTE: each thread issues all its loads before its first store (see mla_latent_row).
__global__ void __launch_bounds__(THREADS) mla_inputs_kernel(MlaInputsParams p) {
  __shared__ float scratch[32];
  pdl_wait();
  pdl_launch_dependents();
  const int64_t t = blockIdx.x;
  if (blockIdx.y == 0) {
    mla_latent_row(p, t, scratch, nullptr);
    return;
  }
  const bf16 *cos, *sin;
  mla_rope_rows(p, t, cos, sin);
  const int half = p.rope_dim / 2;
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
      mla_pair_index(p, r, i1, i2);
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
      mla_rotate(a[u], b[u], c[u], sn[u], out[at1[u]], out[at2[u]]);
    }
  }
}

}  // namespace

void run_mla_inputs(MlaInputsParams& p) {
  if (p.num_tokens == 0) return;
  require(p.rope_dim % 2 == 0 && p.rope_dim <= p.head_dim, "mlaInputs: rope_dim must be even and at most head_dim");
  require(p.kv_rank <= THREADS * MLA_INPUTS_MAX_PER_THREAD, "mlaInputs: kv_lora_rank above 1024 is not supported");
  require(p.rope_dim <= 2 * THREADS, "mlaInputs: rope_dim above 512 is not supported");
  require(p.head_dim - p.rope_dim / 2 <= THREADS * Q_ITEMS, "mlaInputs: head_dim is too large");
  const int hpb = heads_per_block(p);
  const int q_blocks = (p.num_heads + hpb - 1) / hpb;
  launch_pdl("mlaInputs", mla_inputs_kernel, dim3(p.num_tokens, 1 + q_blocks), dim3(THREADS), 0, p.stream, p);
}

}  // namespace flashserve
