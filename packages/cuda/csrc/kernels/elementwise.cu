#include "kernels/common.cuh"
#include "kernels/launch.h"
#include "kernels/elementwise.h"
#include "runtime/check.h"

namespace flashserve {
namespace {

constexpr int THREADS = 256;

__global__ void embedding_kernel(EmbeddingParams p) {
  pdl_wait();
  pdl_launch_dependents();
  const int t = blockIdx.x;
  const int id = p.ids[t];
  bf16* out = static_cast<bf16*>(p.out) + static_cast<int64_t>(t) * p.hidden;
  // NOTE: ids are validated on the host; an out-of-range id that slips through gives a zero row
  // rather than reading outside the table.
  if (id < 0 || id >= p.vocab) {
    for (int c = threadIdx.x; c < p.hidden; c += blockDim.x) out[c] = to_bf(0.f);
    return;
  }
  const bf16* row = static_cast<const bf16*>(p.table) + static_cast<int64_t>(id) * p.hidden;
  for (int c = threadIdx.x; c < p.hidden; c += blockDim.x) out[c] = row[c];
}

__global__ void gather_rows_kernel(GatherRowsParams p) {
  pdl_wait();
  pdl_launch_dependents();
  const int r = blockIdx.x;
  const int src = p.index[r] / (p.index_div > 0 ? p.index_div : 1);
  const int64_t row_bytes = static_cast<int64_t>(p.cols) * p.elem_bytes;
  char* out = static_cast<char*>(p.out) + r * row_bytes;
  if (src < 0 || src >= p.in_rows) {
    for (int64_t c = threadIdx.x; c < row_bytes; c += blockDim.x) out[c] = 0;
    return;
  }
  const char* in = static_cast<const char*>(p.in) + src * row_bytes;
  if (row_bytes % 4 == 0) {
    for (int64_t c = threadIdx.x; c < row_bytes / 4; c += blockDim.x)
      reinterpret_cast<uint32_t*>(out)[c] = reinterpret_cast<const uint32_t*>(in)[c];
  } else {
    for (int64_t c = threadIdx.x; c < row_bytes; c += blockDim.x) out[c] = in[c];
  }
}

__device__ __forceinline__ float load_as_f(const void* base, DType t, int64_t i) {
  switch (t) {
    case DType::F32: return static_cast<const float*>(base)[i];
    case DType::BF16: return to_f(static_cast<const bf16*>(base)[i]);
    default: return static_cast<float>(static_cast<const int32_t*>(base)[i]);
  }
}

__device__ __forceinline__ void store_from_f(void* base, DType t, int64_t i, float v) {
  switch (t) {
    case DType::F32: static_cast<float*>(base)[i] = v; break;
    case DType::BF16: static_cast<bf16*>(base)[i] = to_bf(v); break;
    default: static_cast<int32_t*>(base)[i] = static_cast<int32_t>(v); break;
  }
}

__global__ void copy2d_kernel(Copy2dParams p) {
  pdl_wait();
  pdl_launch_dependents();
  for (int64_t r = blockIdx.y; r < p.rows; r += gridDim.y)
  for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < p.cols; c += gridDim.x * blockDim.x) {
    const int64_t src = r * p.in_stride + c, dst = r * p.out_stride + c;
    if (p.in_dtype == p.out_dtype && p.in_dtype == DType::I32) {
      static_cast<int32_t*>(p.out)[dst] = static_cast<const int32_t*>(p.in)[src];
    } else if (p.in_dtype == p.out_dtype && p.in_dtype == DType::BF16) {
      static_cast<bf16*>(p.out)[dst] = static_cast<const bf16*>(p.in)[src];  // bit-exact, no round trip
    } else {
      store_from_f(p.out, p.out_dtype, dst, load_as_f(p.in, p.in_dtype, src));
    }
  }
}

__global__ void axpby_kernel(AxpbyParams p) {
  pdl_wait();
  pdl_launch_dependents();
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < p.n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float v = load_as_f(p.a, p.a_dtype, i) * p.alpha;
    if (p.b) v += load_as_f(p.b, p.b_dtype, i) * p.beta;
    store_from_f(p.out, p.out_dtype, i, v);
  }
}

// Through a 32x32 shared tile so reads and writes are both coalesced; +1 column avoids bank conflicts.
__global__ void transpose_kernel(TransposeParams p) {
  __shared__ uint16_t tile[32][33];
  const int g = blockIdx.z;
  const uint16_t* in = static_cast<const uint16_t*>(p.in) + static_cast<int64_t>(g) * p.rows * p.cols;
  uint16_t* out = static_cast<uint16_t*>(p.out) + static_cast<int64_t>(g) * p.rows * p.cols;
  const int c0 = blockIdx.x * 32, r0 = blockIdx.y * 32;
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    const int r = r0 + i, c = c0 + threadIdx.x;
    if (r < p.rows && c < p.cols) tile[i][threadIdx.x] = in[static_cast<int64_t>(r) * p.cols + c];
  }
  __syncthreads();
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    const int c = c0 + i, r = r0 + threadIdx.x;
    if (r < p.rows && c < p.cols) out[static_cast<int64_t>(c) * p.rows + r] = tile[threadIdx.x][i];
  }
}

__global__ void add_bias_kernel(AddBiasParams p) {
  bf16* c = static_cast<bf16*>(p.c) + static_cast<int64_t>(blockIdx.x) * p.cols;
  const bf16* b = static_cast<const bf16*>(p.bias);
  for (int i = threadIdx.x; i < p.cols; i += blockDim.x) c[i] = to_bf(to_f(c[i]) + to_f(b[i]));
}

// splitmix64: a cheap, well-mixed hash, so every element is independent of launch geometry.
__device__ __forceinline__ uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

__global__ void fill_random_kernel(FillRandomParams p) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < p.n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint64_t h = mix64(p.seed * 0x632be59bd9b4e019ull + static_cast<uint64_t>(i));
    const float u = static_cast<float>(h >> 40) * (1.0f / 16777216.0f);  // 24 random bits
    store_from_f(p.out, p.dtype, i, p.lo + (p.hi - p.lo) * u);
  }
}

__global__ void kv_cache_write_kernel(KvCacheWriteParams p) {
  pdl_wait();
  pdl_launch_dependents();
  const int t = blockIdx.x;
  const int slot = p.slots[t];
  if (slot < 0 || slot >= p.num_slots) return;
  const int width = p.kv_rank + p.rope_dim;
  bf16* dst = static_cast<bf16*>(p.cache) + static_cast<int64_t>(slot) * width;
  const bf16* ckv = static_cast<const bf16*>(p.c_kv) + t * p.c_kv_stride;
  const bf16* kpe = static_cast<const bf16*>(p.k_pe) + t * p.k_pe_stride;
  for (int c = threadIdx.x; c < width; c += blockDim.x) dst[c] = c < p.kv_rank ? ckv[c] : kpe[c - p.kv_rank];
}

__global__ void merge_token_ids_kernel(MergeTokenIdsParams p) {
  pdl_wait();  // prev is the previous step's sampling output, ids and rows this step's uploads
  pdl_launch_dependents();
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < p.n; i += gridDim.x * blockDim.x) {
    const int row = p.rows[i];
    p.out[i] = row >= 0 && row < p.prev_n ? p.prev[row] : p.ids[i];
  }
}

int grid_for(int64_t n) {
  const int64_t blocks = (n + THREADS - 1) / THREADS;
  return static_cast<int>(blocks < 65535 * 8 ? (blocks > 0 ? blocks : 1) : 65535 * 8);
}

}  // namespace

void run_embedding(EmbeddingParams& p) {
  if (p.num_tokens == 0) return;
  launch_pdl("embedding", embedding_kernel, dim3(p.num_tokens), dim3(THREADS), 0, p.stream, p);
}

void run_gather_rows(GatherRowsParams& p) {
  if (p.rows == 0) return;
  launch_pdl("gatherRows", gather_rows_kernel, dim3(p.rows), dim3(THREADS), 0, p.stream, p);
}

void run_copy2d(Copy2dParams& p) {
  if (p.rows == 0 || p.cols == 0) return;
  const int gx = (p.cols + THREADS - 1) / THREADS;
  dim3 grid(gx < 64 ? gx : 64, p.rows < 65535 ? p.rows : 65535);
  launch_pdl("copy2d", copy2d_kernel, grid, dim3(THREADS), 0, p.stream, p);
}

void run_axpby(AxpbyParams& p) {
  if (p.n == 0) return;
  launch_pdl("axpby", axpby_kernel, dim3(grid_for(p.n)), dim3(THREADS), 0, p.stream, p);
}

void run_transpose(TransposeParams& p) {
  if (p.groups == 0 || p.rows == 0 || p.cols == 0) return;
  dim3 grid((p.cols + 31) / 32, (p.rows + 31) / 32, p.groups);
  transpose_kernel<<<grid, dim3(32, 8), 0, p.stream>>>(p);
  check_launch("transpose");
}

void run_add_bias(AddBiasParams& p) {
  if (p.rows == 0) return;
  add_bias_kernel<<<p.rows, THREADS, 0, p.stream>>>(p);
  check_launch("linear (bias)");
}

void run_fill_random(FillRandomParams& p) {
  if (p.n == 0) return;
  fill_random_kernel<<<grid_for(p.n), THREADS, 0, p.stream>>>(p);
  check_launch("fillRandom");
}

void run_kv_cache_write(KvCacheWriteParams& p) {
  if (p.num_tokens == 0) return;
  launch_pdl("kvCacheWrite", kv_cache_write_kernel, dim3(p.num_tokens), dim3(128), 0, p.stream, p);
}

void run_merge_token_ids(MergeTokenIdsParams& p) {
  if (p.n == 0) return;
  launch_pdl("mergeTokenIds", merge_token_ids_kernel, dim3(grid_for(p.n)), dim3(THREADS), 0, p.stream, p);
}

}  // namespace flashserve
