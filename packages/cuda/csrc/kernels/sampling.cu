#include "kernels/common.cuh"
#include "kernels/sampling.h"
#include "runtime/check.h"

namespace flashserve {
namespace {

constexpr int THREADS = 1024;
constexpr int BINS = 256;

__device__ __forceinline__ float logit_at(const SamplingParams& p, int64_t i) {
  return p.logits_bf16 ? to_f(static_cast<const bf16*>(p.logits)[i]) : static_cast<const float*>(p.logits)[i];
}

// Monotone map of a float to an unsigned key: a > b  <=>  key(a) > key(b).
__device__ __forceinline__ uint32_t key_of(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float value_of_key(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// Block argmax (value, index), ties to the lower index.
__device__ void block_argmax(float& v, int& i, float* sv, int* si) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  warp_argmax(v, i);
  __syncthreads();
  if (lane == 0) {
    sv[warp] = v;
    si[warp] = i;
  }
  __syncthreads();
  if (warp == 0) {
    v = lane < THREADS / 32 ? sv[lane] : -INFINITY;
    i = lane < THREADS / 32 ? si[lane] : 0x7fffffff;
    warp_argmax(v, i);
    if (lane == 0) {
      sv[0] = v;
      si[0] = i;
    }
  }
  __syncthreads();
  v = sv[0];
  i = si[0];
}

// The running max, its index (the lowest one on ties) and sum(exp(logit - max)) of a set of logits:
// an online softmax, so one read of the row gives what the greedy path needs.
struct SoftmaxStats {
  float m;
  int i;
  float s;
};

__device__ __forceinline__ void stats_add(SoftmaxStats& a, float v, int idx) {
  if (v > a.m) {
    a.s = a.s * __expf(a.m - v) + 1.f;  // a.m = -inf at first: exp(-inf) = 0
    a.m = v;
    a.i = idx;
  } else if (v != -INFINITY) {
    a.s += __expf(v - a.m);
  }
}

__device__ __forceinline__ SoftmaxStats stats_merge(SoftmaxStats a, SoftmaxStats b) {
  if (b.m > a.m || (b.m == a.m && b.i < a.i)) {
    const SoftmaxStats t = a;
    a = b;
    b = t;
  }
  if (b.m != -INFINITY) a.s += b.s * __expf(b.m - a.m);
  return a;
}

__device__ __forceinline__ SoftmaxStats warp_stats(SoftmaxStats a) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    SoftmaxStats b;
    b.m = __shfl_xor_sync(0xffffffffu, a.m, o);
    b.i = __shfl_xor_sync(0xffffffffu, a.i, o);
    b.s = __shfl_xor_sync(0xffffffffu, a.s, o);
    a = stats_merge(a, b);
  }
  return a;
}

struct Shared {
  float hist_w[BINS];
  unsigned hist_c[BINS];
  float red[32];
  SoftmaxStats stats[32];
  float sv[32];
  int si[32];
  uint32_t prefix;
  float carry;
  int chosen;
  int top_ids[SAMPLING_MAX_TOP_LOGPROBS];
};

// The SoftmaxStats of the row's 8-logit chunks [chunk_begin, chunk_end) (the whole row when the split
// path does not apply). bf16 rows are read 8 logits per load (16 bytes) with four loads in flight per
// thread: the pass is latency-bound, and scalar loads made it ~8x longer.
__device__ SoftmaxStats row_softmax_stats(const SamplingParams& p, int64_t base, Shared& s, int chunk_begin = 0,
                                          int chunk_end = -1) {
  SoftmaxStats a{-INFINITY, 0x7fffffff, 0.f};
  const auto* bf = static_cast<const bf16*>(p.logits) + base;
  if (p.logits_bf16 && p.vocab % 8 == 0 && (reinterpret_cast<uintptr_t>(bf) & 15u) == 0) {
    constexpr int UNROLL = 4;
    const auto* v8 = reinterpret_cast<const uint4*>(bf);
    const int chunks = chunk_end < 0 ? p.vocab / 8 : chunk_end;
    for (int c0 = chunk_begin + threadIdx.x; c0 < chunks; c0 += THREADS * UNROLL) {
      uint4 raw[UNROLL];
#pragma unroll
      for (int u = 0; u < UNROLL; ++u) {
        const int c = c0 + u * THREADS;
        if (c < chunks) raw[u] = __ldg(v8 + c);
      }
#pragma unroll
      for (int u = 0; u < UNROLL; ++u) {
        const int c = c0 + u * THREADS;
        if (c >= chunks) break;
        const bf16* e = reinterpret_cast<const bf16*>(&raw[u]);
#pragma unroll
        for (int j = 0; j < 8; ++j) stats_add(a, to_f(e[j]), c * 8 + j);
      }
    }
  } else {
    for (int i = threadIdx.x; i < p.vocab; i += THREADS) stats_add(a, logit_at(p, base + i), i);
  }
  a = warp_stats(a);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) s.stats[warp] = a;
  __syncthreads();
  if (warp == 0) {
    a = lane < THREADS / 32 ? s.stats[lane] : SoftmaxStats{-INFINITY, 0x7fffffff, 0.f};
    a = warp_stats(a);
    if (lane == 0) s.stats[0] = a;
  }
  __syncthreads();
  a = s.stats[0];
  __syncthreads();
  return a;
}

// Radix selection over the keys of z = (logit - max) / T restricted to z >= floor_z.
//   by_count: the key of the `target`-th largest element (target >= 1);
//   else:     the key at which the mass sum(exp(z)) counted from the top first reaches `target`.
__device__ uint32_t radix_select(const SamplingParams& p, float mx, float inv_t, float floor_z,
                                 bool by_count, float target, Shared& s) {
  uint32_t prefix = 0, mask = 0;
  float remaining = target;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < BINS; b += THREADS) {
      s.hist_c[b] = 0;
      s.hist_w[b] = 0.f;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < p.vocab; i += THREADS) {
      const float zz = (logit_at(p, static_cast<int64_t>(blockIdx.x) * p.vocab + i) - mx) * inv_t;
      if (zz < floor_z) continue;
      const uint32_t k = key_of(zz);
      if ((k & mask) != prefix) continue;
      const int bin = (k >> shift) & 0xff;
      if (by_count) {
        atomicAdd(&s.hist_c[bin], 1u);
      } else {
        atomicAdd(&s.hist_w[bin], __expf(zz));
      }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int bin = BINS - 1;
      for (; bin > 0; --bin) {
        const float w = by_count ? static_cast<float>(s.hist_c[bin]) : s.hist_w[bin];
        if (w >= remaining) break;
        remaining -= w;
      }
      s.prefix = prefix | (static_cast<uint32_t>(bin) << shift);
      s.carry = remaining;
    }
    __syncthreads();
    prefix = s.prefix;
    remaining = s.carry;
    mask |= 0xffu << shift;
    __syncthreads();
  }
  return prefix;
}

// The split greedy path (SamplingParams::split_scratch): gridDim.y blocks a row, block y the chunks of
// slice y; each writes its slice's SoftmaxStats, and the last to finish merges all of them in slice
// order and writes the token and its logprob. Its counter goes back to 0 for the next call.
struct SplitStats {
  float m;
  int i;
  float s;
};

__device__ void sample_greedy_split(const SamplingParams& p, int r, int64_t base, Shared& s) {
  const int slices = gridDim.y, chunks = p.vocab / 8, per = (chunks + slices - 1) / slices;
  const int begin = blockIdx.y * per, end = min(begin + per, chunks);
  const SoftmaxStats st = row_softmax_stats(p, base, s, begin, end);
  auto* partial = static_cast<SplitStats*>(p.split_scratch) + static_cast<int64_t>(r) * slices;
  auto* counter = reinterpret_cast<int*>(static_cast<SplitStats*>(p.split_scratch) + static_cast<int64_t>(p.rows) * slices) + r;
  if (threadIdx.x == 0) {
    partial[blockIdx.y] = SplitStats{st.m, st.i, st.s};
    __threadfence();
    const bool last = atomicAdd(counter, 1) == slices - 1;
    if (last) {
      __threadfence();
      SoftmaxStats a{-INFINITY, 0x7fffffff, 0.f};
      for (int y = 0; y < slices; ++y) {
        // Through L2: the other blocks' partials are not in this SM's L1.
        a = stats_merge(a, SoftmaxStats{__ldcg(&partial[y].m), __ldcg(&partial[y].i), __ldcg(&partial[y].s)});
      }
      const int token = a.i < p.vocab ? a.i : 0;
      p.out_tokens[r] = token;
      p.out_logprobs[r] = logit_at(p, base + token) - (a.m + __logf(a.s));
      *counter = 0;
    }
  }
}

__global__ void __launch_bounds__(THREADS) sampling_kernel(SamplingParams p) {
  __shared__ Shared s;
  const int r = blockIdx.x;
  const int64_t base = static_cast<int64_t>(r) * p.vocab;
  if (gridDim.y > 1) {  // the split greedy path applies to this launch: greedy rows take it
    if (!(p.temperature[r] > 0.f)) {
      sample_greedy_split(p, r, base, s);
      return;
    }
    if (blockIdx.y != 0) return;  // a sampled row: block 0 alone, as without the split
  }

  // One pass for the max, the argmax and the softmax denominator (the greedy path needs nothing else).
  const SoftmaxStats st = row_softmax_stats(p, base, s);
  const float mx = st.m;
  const int arg = st.i;
  const float log_z = mx + __logf(st.s);

  int token = arg;
  const float temp = p.temperature[r];
  if (temp > 0.f) {
    const float inv_t = 1.f / temp;
    float floor_z = -INFINITY;
    const int k = p.top_k[r];
    if (k > 0 && k < p.vocab) floor_z = value_of_key(radix_select(p, mx, inv_t, floor_z, true, k, s));
    const float top_p = p.top_p[r];
    if (top_p < 1.f) {
      float mass = 0.f;
      for (int i = threadIdx.x; i < p.vocab; i += THREADS) {
        const float z = (logit_at(p, base + i) - mx) * inv_t;
        if (z >= floor_z) mass += __expf(z);
      }
      mass = block_sum(mass, s.red);
      const float tp = value_of_key(radix_select(p, mx, inv_t, floor_z, false, top_p * mass, s));
      floor_z = fmaxf(floor_z, tp);
    }
    const float min_p = p.min_p[r];
    if (min_p > 0.f) floor_z = fmaxf(floor_z, __logf(min_p));  // z_max is 0, so p_i / p_max = exp(z_i)

    // Inverse-CDF sampling in index order: each thread owns a contiguous chunk.
    const int chunk = (p.vocab + THREADS - 1) / THREADS;
    const int begin = threadIdx.x * chunk, end = min(begin + chunk, p.vocab);
    float mine = 0.f;
    for (int i = begin; i < end; ++i) {
      const float z = (logit_at(p, base + i) - mx) * inv_t;
      if (z >= floor_z) mine += __expf(z);
    }
    // Exclusive scan of the chunk sums: warp scan, then a scan of warp totals.
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float incl = mine;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const float v = __shfl_up_sync(0xffffffffu, incl, o);
      if (lane >= o) incl += v;
    }
    __syncthreads();
    if (lane == 31) s.red[warp] = incl;
    if (threadIdx.x == 0) s.chosen = 0x7fffffff;
    __syncthreads();
    if (warp == 0) {
      float w = s.red[lane];
      float wi = w;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const float v = __shfl_up_sync(0xffffffffu, wi, o);
        if (lane >= o) wi += v;
      }
      s.red[lane] = wi - w;  // exclusive prefix of warp totals
      if (lane == 31) s.sv[0] = wi;
    }
    __syncthreads();
    const float total = s.sv[0];
    const float target = p.uniform[r] * total;
    float acc = s.red[warp] + incl - mine;
    if (mine > 0.f && acc <= target && target < acc + mine) {
      for (int i = begin; i < end; ++i) {
        const float z = (logit_at(p, base + i) - mx) * inv_t;
        if (z < floor_z) continue;
        acc += __expf(z);
        if (acc > target) {
          atomicMin(&s.chosen, i);
          break;
        }
      }
    }
    __syncthreads();
    // Rounding can leave the target past the last kept element: the argmax is always kept.
    if (s.chosen != 0x7fffffff) token = s.chosen;
  }
  if (threadIdx.x == 0) {
    p.out_tokens[r] = token;
    p.out_logprobs[r] = logit_at(p, base + token) - log_z;
  }
  for (int n = 0; n < p.num_top && p.top_ids; ++n) {
    float v = -INFINITY;
    int i = 0x7fffffff;
    for (int j = threadIdx.x; j < p.vocab; j += THREADS) {
      bool taken = false;
      for (int q = 0; q < n; ++q) taken |= s.top_ids[q] == j;
      const float l = logit_at(p, base + j);
      if (!taken && (l > v || (l == v && j < i))) {
        v = l;
        i = j;
      }
    }
    block_argmax(v, i, s.sv, s.si);
    if (threadIdx.x == 0) {
      s.top_ids[n] = i;
      p.top_ids[static_cast<int64_t>(r) * p.num_top + n] = i;
      p.top_logprobs[static_cast<int64_t>(r) * p.num_top + n] = v - log_z;
    }
    __syncthreads();
  }
}

// Slices a greedy row is split into: one per ~8k logits (one 16-byte load a thread), at most 32.
int split_slices(int vocab) {
  const int slices = (vocab + THREADS * 8 - 1) / (THREADS * 8);
  return slices < 32 ? slices : 32;
}

}  // namespace

size_t sampling_split_bytes(int rows, int vocab) {
  const int slices = split_slices(vocab);
  if (slices < 2 || vocab % 8 != 0) return 0;
  return (sizeof(SplitStats) * slices + sizeof(int)) * static_cast<size_t>(rows);
}

void run_sampling(SamplingParams& p) {
  if (p.rows == 0) return;
  require(p.num_top >= 0 && p.num_top <= SAMPLING_MAX_TOP_LOGPROBS, "sample: at most 20 top logprobs");
  const bool split = p.split_scratch && p.logits_bf16 && p.num_top == 0 && sampling_split_bytes(p.rows, p.vocab) > 0 &&
                     (reinterpret_cast<uintptr_t>(p.logits) & 15u) == 0;
  sampling_kernel<<<dim3(p.rows, split ? split_slices(p.vocab) : 1), THREADS, 0, p.stream>>>(p);
  check_launch("sample");
}

}  // namespace flashserve
