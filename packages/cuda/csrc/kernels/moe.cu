#include <mma.h>

#include <cstdlib>
#include <string>

#include "kernels/common.cuh"
#include "kernels/launch.h"
#include "kernels/moe.h"
#include "kernels/side_copy.cuh"
#include "runtime/check.h"
#include "runtime/env.h"

namespace flashserve {
namespace {

constexpr int ALIGN_THREADS = 1024;
constexpr int MAX_EXPERTS = 1024;
static_assert(MAX_EXPERTS <= ALIGN_THREADS, "moe_align_kernel: one thread per expert");

// Inclusive prefix sums of two values across a full warp, at once.
__device__ __forceinline__ void warp_inclusive_scan2(int& a, int& b, int lane) {
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const int x = __shfl_up_sync(0xffffffffu, a, d), y = __shfl_up_sync(0xffffffffu, b, d);
    if (lane >= d) {
      a += x;
      b += y;
    }
  }
}

// One block: assignments per expert are few enough (tokens * top_k) that a single block's atomics
// and one scan over experts cost less than a second launch. Thread e owns expert e: its row count, its
// tile count, and (after a block-wide scan of both) its offset and its tiles.
// NOTE: the scan used to be one thread's loop over every expert, writing each tile as it went: ~8 us a
// layer at a 32-token step (kernel timeline, tenth session), the longest of the routing kernels.
__global__ void __launch_bounds__(ALIGN_THREADS) moe_align_kernel(MoeAlignParams p) {
  __shared__ int counts[MAX_EXPERTS];
  __shared__ int cursor[MAX_EXPERTS];
  __shared__ int warp_rows[ALIGN_THREADS / 32], warp_tiles[ALIGN_THREADS / 32];
  pdl_wait();
  pdl_launch_dependents();
  const int e = threadIdx.x, lane = e & 31, warp = e >> 5;
  if (e < p.num_experts) counts[e] = 0;
  __syncthreads();
  for (int a = threadIdx.x; a < p.num_assign; a += blockDim.x) {
    const int id = p.topk_ids[a];
    if (id >= 0 && id < p.num_experts) atomicAdd(&counts[id], 1);
  }
  __syncthreads();
  const int rows = e < p.num_experts ? counts[e] : 0;
  const int tiles = (rows + p.block_m - 1) / p.block_m;
  // Inclusive scan of (rows, tiles) over the block: within each warp, then over the warps' totals.
  int row_sum = rows, tile_sum = tiles;
  warp_inclusive_scan2(row_sum, tile_sum, lane);
  if (lane == 31) {
    warp_rows[warp] = row_sum;
    warp_tiles[warp] = tile_sum;
  }
  __syncthreads();
  if (warp == 0) {
    int wr = lane < ALIGN_THREADS / 32 ? warp_rows[lane] : 0, wt = lane < ALIGN_THREADS / 32 ? warp_tiles[lane] : 0;
    warp_inclusive_scan2(wr, wt, lane);
    if (lane < ALIGN_THREADS / 32) {
      warp_rows[lane] = wr;
      warp_tiles[lane] = wt;
    }
  }
  __syncthreads();
  if (warp > 0) {
    row_sum += warp_rows[warp - 1];
    tile_sum += warp_tiles[warp - 1];
  }
  // Exclusive prefixes: this expert's first row and first tile.
  const int off = row_sum - rows, first_tile = tile_sum - tiles;
  if (e < p.num_experts) {
    p.expert_offsets[e] = off;
    cursor[e] = off;
    for (int i = 0; i < tiles; ++i) {
      p.tile_expert[first_tile + i] = e;
      p.tile_row_begin[first_tile + i] = off + i * p.block_m;
    }
  }
  if (e == ALIGN_THREADS - 1) {
    // The last thread's inclusive sums are the totals (threads past the experts add nothing).
    p.expert_offsets[p.num_experts] = row_sum;
    *p.num_tiles = tile_sum;
  }
  __syncthreads();
  for (int a = threadIdx.x; a < p.num_assign; a += blockDim.x) {
    const int id = p.topk_ids[a];
    if (id < 0 || id >= p.num_experts) {
      p.assign_pos[a] = -1;
      continue;
    }
    const int pos = atomicAdd(&cursor[id], 1);
    p.sorted_assign[pos] = a;
    p.assign_pos[a] = pos;
  }
}

__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  // src-size 0 zero-fills the 16 bytes: rows past the tile's end contribute nothing.
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// The same copy with the L2 prefetch-size hint when HINT is 256 (PTX .L2::256B): the weight rows are
// read 128 bytes per row per stage, and the hint has L2 fetch the row's next 128 bytes with them.
template <int HINT>
__device__ __forceinline__ void cp_async_16_hinted(void* smem, const void* gmem, bool valid) {
  static_assert(HINT == 0 || HINT == 256, "the prefetch-size hint is 256 bytes or none");
  if constexpr (HINT == 256) {
    const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
    asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(valid ? 16 : 0));
  } else {
    cp_async_16(smem, gmem, valid);
  }
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// NOTE: decode (16-row tiles) is bound by streaming expert weights: each block must keep many bytes in
// flight, hence 64-wide K tiles in a 5-stage ring (4 tiles = 32 KiB of weights pending per block), and
// the weight loads carry the L2::256B prefetch hint (HINT), so each 128-byte piece of a weight row
// brings the row's next piece into L2 with it. Tenth session, H100, V2-Lite shapes, graph step ms at
// batch 8 / 32 / 128, three interleaved rounds: 64x6 without the hint (the earlier tiles) 8.89 / 13.40 /
// 15.49; 64x6 with it 8.52 / 12.76 / 15.02; 64x5 8.40 / 12.59 / 15.00; 64x4 8.43 / 12.66 / 14.98; 64x3
// 8.55 / 13.30 / 14.84; 64x8 9.12 / 13.71 / 16.29; 128x4 8.36 / 12.81 / 15.34; 32x6 8.87 / 13.16 / 15.80.
// Prefill (64-row tiles) is bound by the tensor cores: 32-wide K, 3 stages.
// BN = 32 (decode only) doubles the blocks of a one-token step, so the few active experts' weights
// spread over every SM instead of leaving a wave half empty (192 blocks on 132 SMs).
template <int BM, int BN_, int BK_ = (BM == 16 ? 64 : 32), int STAGES_ = (BM == 16 ? 5 : 3)>
struct GemmTraits {
  static constexpr int BN = BN_;
  static constexpr int BK = BK_;
  static constexpr int STAGES = STAGES_;
  static constexpr int WARPS_M = BM == 16 ? 1 : 2;
  static constexpr int WARPS_N = BM == 16 ? BN / 16 : 2;
  static constexpr int THREADS = 32 * WARPS_M * WARPS_N;
  // NOTE: rows are padded by 8 bf16 (16 bytes) so the 16x16 fragment loads of consecutive rows fall
  // in different shared-memory banks.
  static constexpr int LDS = BK + 8;
  static constexpr int FRAG_M = BM / 16 / WARPS_M;
  static constexpr int FRAG_N = BN / 16 / WARPS_N;
  static constexpr int A_STAGE = BM * LDS, B_STAGE = BN * LDS;
  static constexpr int PIPE_BYTES = STAGES * (A_STAGE + B_STAGE) * 2;
  static constexpr int EPI_BYTES = BM * (BN + 4) * 4;
  static constexpr int SMEM_BYTES = PIPE_BYTES > EPI_BYTES ? PIPE_BYTES : EPI_BYTES;
  static_assert(BM == 16 || BM == 64, "grouped GEMM tiles are 16 or 64 rows");
  static_assert(BN == 64 || (BM == 16 && BN == 32), "grouped GEMM tiles are 64 columns, or 32 with 16 rows");
  static_assert(SMEM_BYTES <= 200 * 1024, "shared memory per block");
};

// What a launch does besides the product, as compile-time flags: each combination is its own kernel, so
// the plain one is exactly the kernel without them. NOTE: as run-time branches in one kernel they made
// the batch-32 step ~0.3 ms slower (tenth session, H100), whichever of them were on.
constexpr int GEMM_GATED = 1;   // GroupedGemmParams::gated
constexpr int GEMM_EARLY = 2;   // GroupedGemmParams::weights_ready
constexpr int GEMM_COPIES = 4;  // GroupedGemmParams::copies

template <int BM, int BN, int BK = GemmTraits<BM, BN>::BK, int STAGES = GemmTraits<BM, BN>::STAGES,
          int HINT = (BM == 16 ? 256 : 0), int FLAGS = 0>
__global__ void __launch_bounds__(GemmTraits<BM, BN, BK, STAGES>::THREADS) grouped_gemm_kernel(GroupedGemmParams p) {
  using T = GemmTraits<BM, BN, BK, STAGES>;
  using namespace nvcuda;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  bf16* sa = reinterpret_cast<bf16*>(smem_raw);
  bf16* sb = sa + T::STAGES * T::A_STAGE;
  // With weights_ready the tile (and so the expert) is resolved and the first stages' weights requested
  // before the wait; otherwise everything waits for the previous kernel (the tile list may be its output).
  constexpr bool early = (FLAGS & GEMM_EARLY) != 0, gated = (FLAGS & GEMM_GATED) != 0;
  if constexpr (!early) {
    pdl_wait();
    pdl_launch_dependents();
  }

  const int tile = blockIdx.y;
  int group = 0, row_begin = 0, row_end = 0;
  bool live = true;
  if (p.tile_group) {
    // With weights_ready this is before the wait: the list was written by a kernel that finished before
    // this one could launch (GroupedGemmParams::weights_ready).
    live = tile < *p.num_tiles;
    if (live) {
      group = p.tile_group[tile];
      row_begin = p.tile_row_begin[tile];
      row_end = min(row_begin + BM, p.group_end[group + 1]);
    }
  } else {
    const int tiles_per_group = (p.m + BM - 1) / BM;
    group = tile / tiles_per_group;
    live = group < (p.dense_groups > 1 ? p.dense_groups : 1);
    row_begin = (tile % tiles_per_group) * BM;
    row_end = min(row_begin + BM, p.m);
  }
  const int n0 = blockIdx.x * T::BN;  // global output column of this block (of the product: gated, 2x act's)
  const bf16* w = static_cast<const bf16*>(p.w) + group * p.w_group_stride;
  const bf16* a = static_cast<const bf16*>(p.a) + group * p.a_group_stride;
  // Gated: local weight rows [0, BN/2) are gate rows from n0/2, the rest the matching up rows.
  const int half_n = p.n / 2, gate0 = n0 / 2;

  // Each thread copies fixed 16-byte chunks: a row of BK bf16 is BK/8 chunks.
  constexpr int CHUNKS_PER_ROW = T::BK / 8;
  auto load_a = [&](int stage, int k0) {
    for (int c = threadIdx.x; c < BM * CHUNKS_PER_ROW; c += T::THREADS) {
      const int r = c / CHUNKS_PER_ROW, kc = (c % CHUNKS_PER_ROW) * 8;
      const int prow = row_begin + r;
      // Rows past the tile's end and chunks past K (K % 32 != 0) are zero-filled.
      const bool valid = prow < row_end && k0 + kc < p.k;
      int src_row = prow < row_end ? prow : row_begin;
      if (p.gather) src_row = p.gather[src_row] / p.gather_div;
      cp_async_16(sa + stage * T::A_STAGE + r * T::LDS + kc, a + src_row * p.lda + (valid ? k0 + kc : 0), valid);
    }
  };
  auto load_b = [&](int stage, int k0) {
    for (int c = threadIdx.x; c < T::BN * CHUNKS_PER_ROW; c += T::THREADS) {
      const int r = c / CHUNKS_PER_ROW, kc = (c % CHUNKS_PER_ROW) * 8;
      int wrow = n0 + r;
      bool valid = wrow < p.n;
      if constexpr (gated) {
        const int j = gate0 + (r < T::BN / 2 ? r : r - T::BN / 2);
        valid = j < half_n;
        wrow = r < T::BN / 2 ? j : half_n + j;
      }
      valid = valid && k0 + kc < p.k;
      cp_async_16_hinted<HINT>(sb + stage * T::B_STAGE + r * T::LDS + kc,
                               w + (valid ? static_cast<int64_t>(wrow) * p.k + k0 + kc : 0), valid);
    }
  };

  // This block's share of the K tiles (all of them without split-K); an empty share still writes
  // its zero partial so the reader can sum every split.
  const int k_tiles_all = (p.k + T::BK - 1) / T::BK;
  const int splits = p.split_k > 1 ? p.split_k : 1;
  const int per_split = (k_tiles_all + splits - 1) / splits;
  const int kt_begin = min(static_cast<int>(blockIdx.z) * per_split, k_tiles_all);
  const int k_tiles = min(per_split, k_tiles_all - kt_begin);
  if constexpr (early) {
    // One cp.async group for all the prologue's weights: older than every A group below, so the main
    // loop's wait counts still cover stage kt's weights when they cover its activations.
    if (live) {
#pragma unroll
      for (int s = 0; s < T::STAGES - 1; ++s)
        if (s < k_tiles) load_b(s, (kt_begin + s) * T::BK);
    }
    cp_async_commit();
    pdl_wait();
    pdl_launch_dependents();
  }
  // Side copies over the whole grid (dense groups: every block is live).
  if constexpr ((FLAGS & GEMM_COPIES) != 0) {
    const int64_t blocks = static_cast<int64_t>(gridDim.x) * gridDim.y * gridDim.z;
    const int64_t block = (static_cast<int64_t>(blockIdx.z) * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
#pragma unroll
    for (int i = 0; i < 3; ++i) copy_share(p.copies[i], block * T::THREADS + threadIdx.x, blocks * T::THREADS);
  }
  if (!live) {
    cp_async_wait<0>();
    return;
  }

  const int warp = threadIdx.x >> 5;
  const int wm = warp / T::WARPS_N, wn = warp % T::WARPS_N;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[T::FRAG_M][T::FRAG_N];
#pragma unroll
  for (int i = 0; i < T::FRAG_M; ++i)
#pragma unroll
    for (int j = 0; j < T::FRAG_N; ++j) wmma::fill_fragment(acc[i][j], 0.f);

#pragma unroll
  for (int s = 0; s < T::STAGES - 1; ++s) {
    if (s < k_tiles) {
      load_a(s, (kt_begin + s) * T::BK);
      if constexpr (!early) load_b(s, (kt_begin + s) * T::BK);
    }
    cp_async_commit();
  }
  for (int kt = 0; kt < k_tiles; ++kt) {
    // Stage kt has landed once at most STAGES-2 younger groups are pending.
    cp_async_wait<T::STAGES - 2>();
    __syncthreads();
    const int next = kt + T::STAGES - 1;
    if (next < k_tiles) {
      load_a(next % T::STAGES, (kt_begin + next) * T::BK);
      load_b(next % T::STAGES, (kt_begin + next) * T::BK);
    }
    cp_async_commit();
    const bf16* ta = sa + (kt % T::STAGES) * T::A_STAGE;
    const bf16* tb = sb + (kt % T::STAGES) * T::B_STAGE;
#pragma unroll
    for (int kk = 0; kk < T::BK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa[T::FRAG_M];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> fb[T::FRAG_N];
#pragma unroll
      for (int i = 0; i < T::FRAG_M; ++i)
        wmma::load_matrix_sync(fa[i], ta + ((wm * T::FRAG_M + i) * 16) * T::LDS + kk, T::LDS);
      // The weight tile is [BN, BK] row-major, i.e. the K x N operand in column-major order.
#pragma unroll
      for (int j = 0; j < T::FRAG_N; ++j)
        wmma::load_matrix_sync(fb[j], tb + ((wn * T::FRAG_N + j) * 16) * T::LDS + kk, T::LDS);
#pragma unroll
      for (int i = 0; i < T::FRAG_M; ++i)
#pragma unroll
        for (int j = 0; j < T::FRAG_N; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // the pipeline buffers are reused for the epilogue

  float* sc = reinterpret_cast<float*>(smem_raw);
  constexpr int LDC_S = T::BN + 4;
#pragma unroll
  for (int i = 0; i < T::FRAG_M; ++i)
#pragma unroll
    for (int j = 0; j < T::FRAG_N; ++j)
      wmma::store_matrix_sync(sc + ((wm * T::FRAG_M + i) * 16) * LDC_S + (wn * T::FRAG_N + j) * 16, acc[i][j],
                              LDC_S, wmma::mem_row_major);
  __syncthreads();
  if (splits > 1) {
    float* part = p.partial + static_cast<int64_t>(blockIdx.z) * p.m * p.n;
    for (int idx = threadIdx.x; idx < BM * T::BN; idx += T::THREADS) {
      const int r = idx / T::BN, col = idx % T::BN;
      const int prow = row_begin + r;
      if (prow < row_end && n0 + col < p.n) part[static_cast<int64_t>(prow) * p.n + n0 + col] = sc[r * LDC_S + col];
    }
    return;
  }
  bf16* c = static_cast<bf16*>(p.c) + group * p.c_group_stride;
  if constexpr (gated) {
    // act as run_silu_mul writes it (activation.cu): the same rounding, silu_mul_bf16.
    constexpr int HALF = T::BN / 2;
    for (int idx = threadIdx.x; idx < BM * HALF; idx += T::THREADS) {
      const int r = idx / HALF, col = idx % HALF;
      const int prow = row_begin + r;
      if (prow < row_end && gate0 + col < half_n)
        c[prow * p.ldc + gate0 + col] = silu_mul_bf16(sc[r * LDC_S + col], sc[r * LDC_S + HALF + col]);
    }
  } else {
    for (int idx = threadIdx.x; idx < BM * T::BN; idx += T::THREADS) {
      const int r = idx / T::BN, col = idx % T::BN;
      const int prow = row_begin + r;
      if (prow < row_end && n0 + col < p.n)
        c[prow * p.ldc + n0 + col] = to_bf(sc[r * LDC_S + col]);
    }
  }
}

// Most assignments a token may have for the vectorised combine (DeepSeek-V3 routes 8, V2-Lite 6).
constexpr int COMBINE_VEC_MAX_TOP_K = 8;

// The combine over 8 consecutive columns per thread: the token's rows of y are read with 16-byte loads,
// all top_k of them issued before any is summed. NOTE: the scalar loop below read one element of one
// row at a time, each load waiting on the one before, which made the combine a chain of ~50 L2 round
// trips (~20 us a layer at 32 tokens). Same sums in the same order, so the results are bit-identical.
__device__ __forceinline__ void moe_combine_vec8(const MoeCombineParams& p, int t) {
  const bf16* y = static_cast<const bf16*>(p.y);
  const int* ap = p.assign_pos + t * p.top_k;
  const float* wp = p.topk_weights + t * p.top_k;
  int pos[COMBINE_VEC_MAX_TOP_K];
  float w[COMBINE_VEC_MAX_TOP_K];
#pragma unroll
  for (int j = 0; j < COMBINE_VEC_MAX_TOP_K; ++j) {
    pos[j] = j < p.top_k ? ap[j] : -1;
    w[j] = j < p.top_k ? wp[j] : 0.f;
  }
  const int64_t row = static_cast<int64_t>(t) * p.hidden;
  for (int c = threadIdx.x * 8; c < p.hidden; c += blockDim.x * 8) {
    uint4 v[COMBINE_VEC_MAX_TOP_K];
#pragma unroll
    for (int j = 0; j < COMBINE_VEC_MAX_TOP_K; ++j)
      v[j] = pos[j] >= 0 ? *reinterpret_cast<const uint4*>(y + static_cast<int64_t>(pos[j]) * p.hidden + c)
                         : make_uint4(0, 0, 0, 0);
    float acc[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[i] = 0.f;
#pragma unroll
    for (int j = 0; j < COMBINE_VEC_MAX_TOP_K; ++j) {
      if (pos[j] < 0) continue;
      const bf16* e = reinterpret_cast<const bf16*>(&v[j]);
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[i] += w[j] * to_f(e[i]);
    }
    uint4 packed;
    bf16* o = reinterpret_cast<bf16*>(&packed);
    if (p.addend) {
      // transformers adds the routed sum (rounded to bf16) to the shared experts' bf16 output.
      const uint4 a = *reinterpret_cast<const uint4*>(static_cast<const bf16*>(p.addend) + row + c);
      const bf16* ae = reinterpret_cast<const bf16*>(&a);
#pragma unroll
      for (int i = 0; i < 8; ++i) o[i] = to_bf(to_f(to_bf(acc[i])) + to_f(ae[i]));
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) o[i] = to_bf(acc[i]);
    }
    *reinterpret_cast<uint4*>(static_cast<bf16*>(p.out) + row + c) = packed;
  }
}

__global__ void moe_combine_kernel(MoeCombineParams p) {
  pdl_wait();
  pdl_launch_dependents();
  const int t = blockIdx.x;
  const uintptr_t addresses =
      reinterpret_cast<uintptr_t>(p.y) | reinterpret_cast<uintptr_t>(p.out) | reinterpret_cast<uintptr_t>(p.addend);
  if (!p.y_partial && p.top_k <= COMBINE_VEC_MAX_TOP_K && p.hidden % 8 == 0 && addresses % 16 == 0) {
    moe_combine_vec8(p, t);
    return;
  }
  const bf16* y = static_cast<const bf16*>(p.y);
  bf16* out = static_cast<bf16*>(p.out) + static_cast<int64_t>(t) * p.hidden;
  // NOTE: rows of y are the sorted assignments; with split-K the partials hold m = num_tokens * top_k
  // rows per split.
  const bf16* add = p.addend ? static_cast<const bf16*>(p.addend) + static_cast<int64_t>(t) * p.hidden : nullptr;
  for (int c = threadIdx.x; c < p.hidden; c += blockDim.x) {
    float acc = 0.f;
    for (int j = 0; j < p.top_k; ++j) {
      const int pos = p.assign_pos[t * p.top_k + j];
      if (pos < 0) continue;
      float v;
      if (p.y_partial) {
        // Split-K partials: summed here, then rounded as the bf16 GEMM output would have been.
        float sum = 0.f;
        const int64_t stride = static_cast<int64_t>(p.num_tokens) * p.top_k * p.hidden;
        for (int s = 0; s < p.splits; ++s) sum += p.y_partial[s * stride + static_cast<int64_t>(pos) * p.hidden + c];
        v = to_f(to_bf(sum));
      } else {
        v = to_f(y[static_cast<int64_t>(pos) * p.hidden + c]);
      }
      acc += p.topk_weights[t * p.top_k + j] * v;
    }
    // transformers adds the routed sum (rounded to bf16) to the shared experts' bf16 output.
    if (add) acc = to_f(to_bf(acc)) + to_f(add[c]);
    out[c] = to_bf(acc);
  }
}

template <int BM, int BN, int BK, int STAGES, int HINT, int FLAGS>
void launch_gemm_flags(GroupedGemmParams& p, dim3 grid) {
  using T = GemmTraits<BM, BN, BK, STAGES>;
  auto kernel = grouped_gemm_kernel<BM, BN, BK, STAGES, HINT, FLAGS>;
  thread_local const bool configured = [kernel] {
    cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, T::SMEM_BYTES);
    return true;
  }();
  (void)configured;
  launch_pdl("groupedGemm", kernel, grid, dim3(T::THREADS), T::SMEM_BYTES, p.stream, p);
}

// The flag combinations the callers use: plain, gated (the experts' gate/up), early (the experts' down,
// bmm), early with side copies (the absorbed query; side copies alone under FLASHSERVE_NO_EARLY_WEIGHTS).
template <int BM, int BN, int BK = GemmTraits<BM, BN>::BK, int STAGES = GemmTraits<BM, BN>::STAGES,
          int HINT = (BM == 16 ? 256 : 0)>
void launch_gemm(GroupedGemmParams& p, dim3 grid) {
  const bool copies = has_side_copies(p.copies);
  require(!(p.gated && (p.weights_ready || copies)), "groupedGemm: the gated epilogue takes no weights_ready or copies");
  if (p.gated)
    launch_gemm_flags<BM, BN, BK, STAGES, HINT, GEMM_GATED>(p, grid);
  else if (copies && p.weights_ready)
    launch_gemm_flags<BM, BN, BK, STAGES, HINT, GEMM_EARLY | GEMM_COPIES>(p, grid);
  else if (copies)
    launch_gemm_flags<BM, BN, BK, STAGES, HINT, GEMM_COPIES>(p, grid);
  else if (p.weights_ready)
    launch_gemm_flags<BM, BN, BK, STAGES, HINT, GEMM_EARLY>(p, grid);
  else
    launch_gemm_flags<BM, BN, BK, STAGES, HINT, 0>(p, grid);
}

}  // namespace

void run_moe_align(MoeAlignParams& p) {
  require(p.num_experts <= MAX_EXPERTS, "moeExperts: more than 1024 experts is not supported");
  launch_pdl("moeExperts (align)", moe_align_kernel, dim3(1), dim3(ALIGN_THREADS), 0, p.stream, p);
}

void run_grouped_gemm(GroupedGemmParams& p) {
  require(p.k % 8 == 0, "groupedGemm: K must be a multiple of 8 (16-byte rows)");
  require(p.lda % 8 == 0, "groupedGemm: the A row stride must be a multiple of 8 elements");
  if (p.max_tiles == 0) return;
  const int bn = p.block_n == 32 && p.block_m == 16 ? 32 : 64;
  const int splits = p.split_k > 1 ? p.split_k : 1;
  require(splits == 1 || p.partial != nullptr, "groupedGemm: split-K needs a partial buffer");
  require(!p.gated || (splits == 1 && p.n % 2 == 0), "groupedGemm: the gated epilogue needs an even N and no split-K");
  static const bool no_early = env_flag("FLASHSERVE_NO_EARLY_WEIGHTS");
  if (no_early) p.weights_ready = false;
  require(p.tile_group == nullptr || !has_side_copies(p.copies), "groupedGemm: side copies need dense groups");
  dim3 grid((p.n + bn - 1) / bn, p.max_tiles, splits);
  require(p.max_tiles <= 65535, "groupedGemm: too many row tiles");
  // Opting in to more than 48 KiB of dynamic shared memory is per kernel and per device: once per
  // thread for each kernel, since each thread drives one device (runtime.cc).
  if (p.block_m == 16 && bn == 32) {
    launch_gemm<16, 32>(p, grid);
  } else if (p.block_m == 16) {
    // FLASHSERVE_GEMM_L2_HINT=0 (read once; A/B timing) drops the prefetch-size hint (NOTE at GemmTraits).
    static const bool no_hint = [] {
      const char* v = std::getenv("FLASHSERVE_GEMM_L2_HINT");
      return v && std::atoi(v) == 0;
    }();
    if (no_hint)
      launch_gemm<16, 64, GemmTraits<16, 64>::BK, GemmTraits<16, 64>::STAGES, 0>(p, grid);
    else
      launch_gemm<16, 64>(p, grid);
  } else {
    require(p.block_m == 64, "groupedGemm: block_m must be 16 or 64");
    launch_gemm<64, 64>(p, grid);
  }
}

int dense_groups_block_m(int rows) {
  // NOTE: at 17-64 rows the 64-row tiles left W_UV at 32 tokens with 32 blocks of 2-deep 32-wide K
  // pipelines: ~31 us a layer with o_proj (kernel timeline, ninth session), latency bound.
  static const int max_rows = [] {
    const char* v = std::getenv("FLASHSERVE_DECODE_TILE_MAX_ROWS");
    const int n = v ? std::atoi(v) : 0;
    return n > 0 ? n : 64;
  }();
  return rows <= max_rows ? 16 : 64;
}

void run_moe_combine(MoeCombineParams& p) {
  if (p.num_tokens == 0) return;
  launch_pdl("moeExperts (combine)", moe_combine_kernel, dim3(p.num_tokens), dim3(256), 0, p.stream, p);
}

}  // namespace flashserve
