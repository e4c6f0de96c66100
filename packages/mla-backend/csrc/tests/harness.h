// Helpers shared by the standalone GPU test (mla_test.cu) and benchmark (bench/mla_bench.cu):
// device buffers, on-device random fills, the paged-cache case builder and the launch of either
// kernel through the same path the Node binding uses (metadata, decode, combine).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/metadata.h"
#include "params.h"
#include "portable/decode.h"
#include "sm90/decode.h"

namespace flashserve::mla::harness {

#define MLA_CHECK(expr)                                                                                 \
  do {                                                                                                  \
    cudaError_t err_ = (expr);                                                                          \
    if (err_ != cudaSuccess)                                                                            \
      throw std::runtime_error(std::string(#expr) + " failed: " + cudaGetErrorString(err_) + " at " +   \
                               __FILE__ + ":" + std::to_string(__LINE__));                              \
  } while (0)

template <typename T>
struct DeviceBuffer {
  T* ptr = nullptr;
  size_t count = 0;
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) : count(n) { MLA_CHECK(cudaMalloc(&ptr, std::max<size_t>(n, 1) * sizeof(T))); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr(o.ptr), count(o.count) { o.ptr = nullptr; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(ptr, o.ptr);
    std::swap(count, o.count);
    return *this;
  }
  ~DeviceBuffer() { if (ptr) cudaFree(ptr); }
  void upload(const std::vector<T>& v) { MLA_CHECK(cudaMemcpy(ptr, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice)); }
  std::vector<T> download() const {
    std::vector<T> v(count);
    MLA_CHECK(cudaMemcpy(v.data(), ptr, count * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
  }
};

__device__ __forceinline__ uint32_t hash32(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return static_cast<uint32_t>(x);
}

// Uniform in [-amp, amp).
__global__ void fill_uniform_kernel(__nv_bfloat16* x, size_t n, uint64_t seed, float amp) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const float u = hash32(seed * 0x9E3779B97F4A7C15ull + i) * (1.0f / 4294967296.0f);
    x[i] = __float2bfloat16((2.f * u - 1.f) * amp);
  }
}

// Writes NaN into every cache slot that holds no token: slots past a request's length in its last
// block, and every block no request owns (slot_owner < 0).
__global__ void poison_slots_kernel(__nv_bfloat16* cache, const int* valid_in_block, int num_blocks) {
  const int blk = blockIdx.x;
  if (blk >= num_blocks) return;
  const int valid = valid_in_block[blk];
  const __nv_bfloat16 nan = __ushort_as_bfloat16(0x7FC0);
  for (int i = threadIdx.x; i < (PAGE_SIZE - valid) * HEAD_DIM_QK; i += blockDim.x)
    cache[(size_t)blk * PAGE_SIZE * HEAD_DIM_QK + (size_t)valid * HEAD_DIM_QK + i] = nan;
}

inline void fill_uniform(__nv_bfloat16* x, size_t n, uint64_t seed, float amp) {
  fill_uniform_kernel<<<1024, 256>>>(x, n, seed, amp);
  MLA_CHECK(cudaGetLastError());
}

// One decode problem: inputs on the device, outputs and split-KV workspace sized for num_parts.
struct Case {
  int b = 0, s_q = 1, h_q = 16, q_rows = 16, num_blocks = 0, max_blocks = 0, num_parts = 1;
  float scale = 0.f;
  std::vector<int> lens;
  std::vector<int> block_table;  // [b, max_blocks], host copy
  DeviceBuffer<__nv_bfloat16> q, cache, out;
  DeviceBuffer<float> lse, o_accum, lse_accum;
  DeviceBuffer<int> d_lens, d_block_table, sched, splits;
  long long total_k() const { return std::accumulate(lens.begin(), lens.end(), 0LL); }
};

// Builds a case with a shuffled (non-contiguous) block table and `spare` unowned blocks.
inline void build_case(Case& c, int b, int s_q, int h_q, const std::vector<int>& lens, int num_parts, uint64_t seed,
                       int spare_blocks, bool poison) {
  c.b = b;
  c.s_q = s_q;
  c.h_q = h_q;
  c.q_rows = s_q * h_q;
  c.lens = lens;
  c.num_parts = num_parts;
  c.scale = 1.f / std::sqrt(192.f);  // DeepSeek: 1 / sqrt(qk_nope 128 + qk_rope 64)
  std::vector<int> pages(b);
  int total_pages = 0;
  c.max_blocks = 1;
  for (int r = 0; r < b; ++r) {
    pages[r] = (lens[r] + PAGE_SIZE - 1) / PAGE_SIZE;
    total_pages += pages[r];
    c.max_blocks = std::max(c.max_blocks, pages[r]);
  }
  c.num_blocks = total_pages + spare_blocks;
  std::vector<int> perm(c.num_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(perm.begin(), perm.end(), rng);
  c.block_table.assign((size_t)b * c.max_blocks, 0x7FFFFFFF);  // unused entries: never read
  std::vector<int> valid_in_block(c.num_blocks, 0);
  int next = 0;
  for (int r = 0; r < b; ++r)
    for (int pg = 0; pg < pages[r]; ++pg) {
      const int blk = perm[next++];
      c.block_table[(size_t)r * c.max_blocks + pg] = blk;
      valid_in_block[blk] = std::min(PAGE_SIZE, lens[r] - pg * PAGE_SIZE);
    }
  c.q = DeviceBuffer<__nv_bfloat16>((size_t)b * c.q_rows * HEAD_DIM_QK);
  c.cache = DeviceBuffer<__nv_bfloat16>((size_t)c.num_blocks * PAGE_SIZE * HEAD_DIM_QK);
  c.out = DeviceBuffer<__nv_bfloat16>((size_t)b * c.q_rows * HEAD_DIM_V);
  c.lse = DeviceBuffer<float>((size_t)b * c.q_rows);
  c.o_accum = DeviceBuffer<float>((size_t)(b + num_parts) * c.q_rows * HEAD_DIM_V);
  c.lse_accum = DeviceBuffer<float>((size_t)(b + num_parts) * c.q_rows);
  c.d_lens = DeviceBuffer<int>(b);
  c.d_lens.upload(lens);
  c.d_block_table = DeviceBuffer<int>(c.block_table.size());
  c.d_block_table.upload(c.block_table);
  c.sched = DeviceBuffer<int>((size_t)num_parts * SCHED_META_INTS);
  c.splits = DeviceBuffer<int>(b + 1);
  fill_uniform(c.q.ptr, c.q.count, seed ^ 0x51ull, 2.f);
  fill_uniform(c.cache.ptr, c.cache.count, seed ^ 0xCAull, 1.f);
  if (poison) {
    DeviceBuffer<int> d_valid(c.num_blocks);
    d_valid.upload(valid_in_block);
    poison_slots_kernel<<<c.num_blocks, 256>>>(c.cache.ptr, d_valid.ptr, c.num_blocks);
    MLA_CHECK(cudaGetLastError());
    MLA_CHECK(cudaDeviceSynchronize());
  }
}

inline MetadataParams metadata_params(Case& c, cudaStream_t stream) {
  MetadataParams m{};
  m.cache_seqlens = c.d_lens.ptr;
  m.b = c.b;
  m.q_rows = c.q_rows;
  m.num_parts = c.num_parts;
  m.sched_meta = c.sched.ptr;
  m.num_splits = c.splits.ptr;
  m.stream = stream;
  return m;
}

inline DecodeParams decode_params(Case& c, cudaStream_t stream) {
  DecodeParams p{};
  p.b = c.b;
  p.s_q = c.s_q;
  p.h_q = c.h_q;
  p.q_rows = c.q_rows;
  p.num_blocks = c.num_blocks;
  p.max_blocks_per_seq = c.max_blocks;
  p.num_parts = c.num_parts;
  p.softmax_scale = c.scale;
  p.q = c.q.ptr;
  p.q_batch_stride = (int64_t)c.q_rows * HEAD_DIM_QK;
  p.q_row_stride = HEAD_DIM_QK;
  p.kcache = c.cache.ptr;
  p.k_block_stride = (int64_t)PAGE_SIZE * HEAD_DIM_QK;
  p.k_row_stride = HEAD_DIM_QK;
  p.block_table = c.d_block_table.ptr;
  p.block_table_stride = c.max_blocks;
  p.cache_seqlens = c.d_lens.ptr;
  p.out = c.out.ptr;
  p.o_batch_stride = (int64_t)c.q_rows * HEAD_DIM_V;
  p.o_row_stride = HEAD_DIM_V;
  p.lse = c.lse.ptr;
  p.o_accum = c.o_accum.ptr;
  p.lse_accum = c.lse_accum.ptr;
  p.sched_meta = c.sched.ptr;
  p.num_splits = c.splits.ptr;
  p.stream = stream;
  return p;
}

enum class Kernel { FlashMla, Portable };
inline const char* kernel_name(Kernel k) { return k == Kernel::FlashMla ? "flashmla" : "cuda-mla"; }

inline cudaError_t run_decode(Kernel k, const DecodeParams& p) {
  return k == Kernel::FlashMla ? sm90::run_mla_decode<__nv_bfloat16>(p) : portable::run_mla_decode(p);
}

}  // namespace flashserve::mla::harness
