#include "kernels/common.cuh"
#include "kernels/rope.h"
#include "runtime/check.h"

namespace flashserve {
namespace {

// One block per token; threads stride over the head's elements so the pass-through copy and the
// rotation are one coalesced sweep.
__global__ void rope_kernel(RopeParams p) {
  const int64_t t = blockIdx.x;
  const int half = p.rope_dim / 2;
  const int nope = p.head_dim - p.rope_dim;
  int pos = p.positions[t];
  pos = pos < 0 ? 0 : (pos >= p.max_positions ? p.max_positions - 1 : pos);  // validated on the host
  const bf16* cos = static_cast<const bf16*>(p.cos) + static_cast<int64_t>(pos) * half;
  const bf16* sin = static_cast<const bf16*>(p.sin) + static_cast<int64_t>(pos) * half;
  const bf16* in = static_cast<const bf16*>(p.in) + t * p.num_heads * p.head_dim;
  bf16* out = static_cast<bf16*>(p.out) + t * p.num_heads * p.head_dim;
  // Work items per head: `nope` copies plus `half` rotated pairs.
  const int per_head = nope + half;
  for (int i = threadIdx.x; i < p.num_heads * per_head; i += blockDim.x) {
    const int h = i / per_head, j = i % per_head;
    const bf16* x = in + h * p.head_dim;
    bf16* y = out + h * p.head_dim;
    if (j < nope) {
      y[j] = x[j];
      continue;
    }
    const int r = j - nope;  // pair index
    const int i1 = nope + (p.interleave ? 2 * r : r);
    const int i2 = nope + (p.interleave ? 2 * r + 1 : r + half);
    const float x1 = to_f(x[i1]), x2 = to_f(x[i2]);
    const float c = to_f(cos[r]), s = to_f(sin[r]);
    y[i1] = to_bf(x1 * c - x2 * s);
    y[i2] = to_bf(x2 * c + x1 * s);
  }
}

}  // namespace

void run_rope(RopeParams& p) {
  if (p.num_tokens == 0) return;
  require(p.rope_dim % 2 == 0 && p.rope_dim <= p.head_dim, "rope: rope_dim must be even and at most head_dim");
  rope_kernel<<<p.num_tokens, 256, 0, p.stream>>>(p);
  check_launch("rope");
}

}  // namespace flashserve
