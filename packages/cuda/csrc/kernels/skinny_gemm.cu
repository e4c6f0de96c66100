#include <cstdint>

#include "kernels/gemv.cuh"
#include "kernels/launch.h"
#include "kernels/mla_inputs.cuh"
#include "kernels/side_copy.cuh"
#include "kernels/skinny_gemm.h"
#include "runtime/check.h"

namespace flashserve {
namespace {

constexpr int WARPS = 8;
// NOTE: 4 blocks of 8 warps per SM (registers capped at 64 per thread by the launch bounds) keep
// 32 warps x 4 KiB of weight loads in flight per SM, several times what copy bandwidth needs; a grid
// of at most one such wave lets every warp request its first row before the PDL wait.
constexpr int BLOCKS_PER_SM = 4;

// Lanes per output row: a warp covers 32 / LANES rows at once. Rows of 128 or 256 elements (the
// absorbed query's K = 128) would leave half a warp idle with 32 lanes per row.
template <int LANES>
__device__ __forceinline__ float row_sum(float v) {
#pragma unroll
  for (int o = LANES / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// The norm form's prologue (after the PDL wait): rows = RMSNorm(x + residual) of the p.m rows into
// `rows` (shared, [m, k] bf16), as run_rms_norm computes them (see SkinnyNorm); block 0 also writes the
// sum and the normed rows out.
// NOTE: the loops store only to shared memory, so the compiler may issue all of a thread's global
// loads at once; block 0's global writes come after, from shared memory.
// NOTE: the norm weight is a weight (no kernel writes it), so each thread's first chunk of it, w0 (chunk
// w0_chunk, -1 for none), was requested before the PDL wait: the scaling pass then waits on no load
// at V2-Lite's one row of 2048.
__device__ __forceinline__ void norm_rows_to_shared(const SkinnyGemmParams& p, uint4* rows, float* scratch,
                                                    const uint4& w0, int w0_chunk) {
  const SkinnyNorm& nm = p.norm;
  const int k = p.k, kc = k / 8, total = p.m * kc;
  const uint4* x = static_cast<const uint4*>(nm.x);
  const uint4* res = static_cast<const uint4*>(nm.residual);
  for (int i = threadIdx.x; i < total; i += blockDim.x) {
    Bf16x8 v;
    v.u = load_act_chunk(x + i);
    if (res) {
      Bf16x8 r;
      r.u = load_act_chunk(res + i);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float2 a = __bfloat1622float2(v.h[j]), b = __bfloat1622float2(r.h[j]);
        v.h[j] = __floats2bfloat162_rn(a.x + b.x, a.y + b.y);
      }
    }
    rows[i] = v.u;
  }
  __syncthreads();
  if (blockIdx.x == 0 && nm.residual_out) {
    for (int i = threadIdx.x; i < total; i += blockDim.x) static_cast<uint4*>(nm.residual_out)[i] = rows[i];
  }
  // norm.cu's order: thread t adds the squares of columns t, t + 256, ... (blocks of 256 threads in both).
  const bf16* h = reinterpret_cast<const bf16*>(rows);
  float inv[SKINNY_NORM_MAX_M] = {};
#pragma unroll
  for (int r = 0; r < SKINNY_NORM_MAX_M; ++r) {
    if (r >= p.m) break;
    float sq = 0.f;
    for (int c = threadIdx.x; c < k; c += blockDim.x) {
      const float v = to_f(h[r * k + c]);
      sq = fmaf(v, v, sq);
    }
    inv[r] = rsqrtf(block_sum(sq, scratch) / static_cast<float>(k) + nm.eps);
  }
  // block_sum ends in a barrier after every thread's last read of `rows` above: safe to overwrite.
  const uint4* w = static_cast<const uint4*>(nm.weight);
  for (int i = threadIdx.x; i < total; i += blockDim.x) {
    const int r = i / kc;
    float s = inv[0];
#pragma unroll
    for (int q = 1; q < SKINNY_NORM_MAX_M; ++q) s = r == q ? inv[q] : s;
    Bf16x8 v, g;
    v.u = rows[i];
    const int c = i - r * kc;
    g.u = c == w0_chunk ? w0 : w[c];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float2 a = __bfloat1622float2(v.h[j]), b = __bfloat1622float2(g.h[j]);
      v.h[j] = __halves2bfloat162(rms_scale(a.x, s, b.x), rms_scale(a.y, s, b.y));
    }
    rows[i] = v.u;
  }
  __syncthreads();
  if (blockIdx.x == 0 && nm.normed_out) {
    for (int i = threadIdx.x; i < total; i += blockDim.x) static_cast<uint4*>(nm.normed_out)[i] = rows[i];
  }
}

// The MLA-inputs form's prologue (after the PDL wait; see SkinnyMlaInputs): the work of
// mla_inputs_kernel, plus the RoPE'd q_pe into C and the latent rows into the cache. Its outputs are
// read by no thread of this launch: the product reads only the nope part of A, which RoPE leaves as it
// is. The launch adds blocks without GEMV rows after the first `gemv_blocks` where its one wave has
// room (launch_skinny): the query's items go to them first, a thread each, and token t's latent row
// to block gridDim.x - 1 - t, so the blocks with rows are not held up.
static_assert(WARPS * 32 == MLA_INPUTS_THREADS, "the latent row is one block's work");
__device__ __forceinline__ void mla_inputs_prologue(const SkinnyGemmParams& p, float* scratch, int gemv_blocks) {
  const SkinnyMlaInputs& f = p.mla;
  const MlaInputsParams& in = f.in;
  const int width = in.kv_rank + in.rope_dim;
  for (int t = gridDim.x - 1 - blockIdx.x; t < p.m; t += gridDim.x) {
    const int64_t slot = f.cache ? f.slots[t] : -1;
    bf16* row = slot >= 0 && slot < f.num_slots ? static_cast<bf16*>(f.cache) + slot * width : nullptr;
    mla_latent_row(in, t, scratch, row);
  }
  const int half = in.rope_dim / 2, nope = in.head_dim - in.rope_dim, per_head = nope + half;
  const int total = p.m * in.num_heads * per_head;
  const bf16* q = static_cast<const bf16*>(in.q);
  bf16* q_out = static_cast<bf16*>(in.q_out);
  const int grid = static_cast<int>(gridDim.x);
  const int first = gemv_blocks < grid ? gemv_blocks : 0;  // the block of item 0
  const int rank = (static_cast<int>(blockIdx.x) - first + grid) % grid;
  for (int i = rank * blockDim.x + threadIdx.x; i < total; i += grid * blockDim.x) {
    const int th = i / per_head, j = i - th * per_head;  // th: token * heads + head
    const int64_t at = static_cast<int64_t>(th) * in.head_dim;
    if (j < nope) {
      q_out[at + j] = q[at + j];
      continue;
    }
    const int t = th / in.num_heads, h = th - t * in.num_heads, r = j - nope;
    const bf16 *cos, *sin;
    mla_rope_rows(in, t, cos, sin);
    int i1, i2;
    mla_pair_index(in, r, i1, i2);
    bf16 y1, y2;
    mla_rotate(to_f(q[at + nope + i1]), to_f(q[at + nope + i2]), to_f(cos[r]), to_f(sin[r]), y1, y2);
    q_out[at + nope + i1] = y1, q_out[at + nope + i2] = y2;
    bf16* pe = static_cast<bf16*>(p.c) + t * p.ldc + h * p.c_group_stride + p.group_rows;
    pe[i1] = y1, pe[i2] = y2;
  }
}

// This block's slice of [base, base + bytes) requested into L2 (bulk prefetches, no completion to
// wait for): slices of 16-byte multiples, the last block taking the rest. sm_90+ (TMA); a no-op below.
__device__ __forceinline__ void l2_prefetch_slice(const void* base, int64_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const int64_t per = (bytes / gridDim.x) & ~int64_t{15};
  const int64_t begin = per * blockIdx.x;
  const int64_t size = blockIdx.x + 1 == gridDim.x ? (bytes - begin) & ~int64_t{15} : per;
  const char* p = static_cast<const char*>(base) + begin;
  for (int64_t done = 0; done < size;) {
    const uint32_t chunk = static_cast<uint32_t>(size - done < (int64_t{1} << 20) ? size - done : int64_t{1} << 20);
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p + done), "r"(chunk) : "memory");
    done += chunk;
  }
#else
  (void)base, (void)bytes;
#endif
}

enum class Form { PLAIN, NORM, MLA_INPUTS };

template <int M, int LANES, Form F>
__global__ void __launch_bounds__(WARPS * 32, BLOCKS_PER_SM) skinny_gemm_kernel(SkinnyGemmParams p) {
  constexpr bool NORM = F == Form::NORM;
  constexpr int ROWS_PER_WARP = 32 / LANES;
  const int lane = threadIdx.x & (LANES - 1);
  const int rows_total = gridDim.x * WARPS * ROWS_PER_WARP;
  const int chunks = p.k / 8;
  const int group_rows = p.group_rows > 0 ? p.group_rows : p.n;
  const bf16* w = static_cast<const bf16*>(p.w);
  int n = (blockIdx.x * WARPS + (threadIdx.x >> 5)) * ROWS_PER_WARP + (threadIdx.x & 31) / LANES;

  uint4 wv[GEMV_CHUNKS];
  if (n < p.n) load_row_group<LANES>(wv, w + static_cast<int64_t>(n) * p.k, 0, chunks, lane);
  if (p.l2_prefetch != nullptr && threadIdx.x == 0) l2_prefetch_slice(p.l2_prefetch, p.l2_prefetch_bytes);
  uint4 norm_w0 = {};
  int norm_w0_chunk = -1;
  if constexpr (NORM) {
    if (static_cast<int>(threadIdx.x) < p.m * chunks) {
      norm_w0_chunk = threadIdx.x % chunks;
      norm_w0 = static_cast<const uint4*>(p.norm.weight)[norm_w0_chunk];
    }
  }
  pdl_wait();
  pdl_launch_dependents();

  const bf16* act = static_cast<const bf16*>(p.a);
  int64_t lda = p.lda;
  if constexpr (NORM) {
    static_assert(M <= SKINNY_NORM_MAX_M, "norm form: at most SKINNY_NORM_MAX_M rows");
    extern __shared__ uint4 norm_rows[];
    __shared__ float scratch[32];
    norm_rows_to_shared(p, norm_rows, scratch, norm_w0, norm_w0_chunk);
    act = reinterpret_cast<const bf16*>(norm_rows);
    lda = p.k;
  }

  if constexpr (F == Form::MLA_INPUTS) {
    __shared__ float scratch[32];
    mla_inputs_prologue(p, scratch, (p.n + WARPS * ROWS_PER_WARP - 1) / (WARPS * ROWS_PER_WARP));
  }

#pragma unroll
  for (int k = 0; k < (F == Form::PLAIN ? SKINNY_SIDE_COPIES : 0); ++k)
    copy_share(p.copies[k], blockIdx.x * blockDim.x + threadIdx.x, static_cast<int64_t>(gridDim.x) * blockDim.x);

  // NOTE: every lane of a warp runs the same number of iterations (rows_total is a multiple of the
  // rows per warp), so the shuffles below always see the whole warp; lanes past the end compute on
  // nothing and store nothing.
  bool preloaded = true;
  const int first = n - (threadIdx.x & 31) / LANES;  // the warp's first row this iteration
  for (int base_row = first; base_row < p.n; base_row += rows_total, n += rows_total) {
    const bool live = n < p.n;
    const bf16* wrow = w + static_cast<int64_t>(live ? n : 0) * p.k;
    const int g = live ? n / group_rows : 0, j = live ? n - g * group_rows : 0;
    const bf16* a = act + g * p.a_group_stride;
    float acc[M];
#pragma unroll
    for (int r = 0; r < M; ++r) acc[r] = 0.f;
    for (int base = 0; base < chunks; base += LANES * GEMV_CHUNKS) {
      if (!preloaded && live) load_row_group<LANES>(wv, wrow, base, chunks, lane);
      preloaded = false;
#pragma unroll
      for (int u = 0; u < GEMV_CHUNKS; ++u) {
        const int c = base + u * LANES + lane;
        if (!live || c >= chunks) continue;
#pragma unroll
        for (int r = 0; r < M; ++r)
          if (r < p.m) acc[r] = dot8(wv[u], load_act_chunk(a + r * lda + c * 8), acc[r]);
      }
    }
#pragma unroll
    for (int r = 0; r < M; ++r) acc[r] = row_sum<LANES>(acc[r]);
    if (live && lane == 0) {
      const float b = p.bias ? to_f(static_cast<const bf16*>(p.bias)[n]) : 0.f;
      const int64_t col = g * p.c_group_stride + j;
#pragma unroll
      for (int r = 0; r < M; ++r) {
        if (r >= p.m) break;
        // Like cuBLAS with a bias epilogue: the GEMM result rounds to bf16 before the bias is added.
        const float v = p.bias ? to_f(to_bf(acc[r])) + b : acc[r];
        if (p.c_dtype == DType::F32) {
          static_cast<float*>(p.c)[r * p.ldc + col] = v;
        } else {
          static_cast<bf16*>(p.c)[r * p.ldc + col] = to_bf(v);
        }
      }
    }
  }
}

template <int LANES>
void launch_skinny(SkinnyGemmParams& p) {
  const int rows_per_block = WARPS * (32 / LANES);
  int want = (p.n + rows_per_block - 1) / rows_per_block;
  if (p.mla.in.kv) {  // blocks for mlaInputs' work (mla_inputs_prologue), where the one wave has room
    const MlaInputsParams& in = p.mla.in;
    const int items = p.m * in.num_heads * (in.head_dim - in.rope_dim / 2);
    want += p.m + (items + WARPS * 32 - 1) / (WARPS * 32);
  }
  const int cap = (p.sms > 0 ? p.sms : 132) * BLOCKS_PER_SM;
  const dim3 grid(want < cap ? want : cap), block(WARPS * 32);
  if (p.norm.x) {
    const char* op = "addRmsNormLinear (skinny)";
    const size_t smem = static_cast<size_t>(p.m) * p.k * sizeof(bf16);
    if (p.m <= 1) {
      launch_pdl(op, skinny_gemm_kernel<1, LANES, Form::NORM>, grid, block, smem, p.stream, p);
    } else {
      launch_pdl(op, skinny_gemm_kernel<2, LANES, Form::NORM>, grid, block, smem, p.stream, p);
    }
    return;
  }
  if (p.mla.in.kv) {
    const char* op = "mlaInputs + mlaAbsorbQuery (skinny)";
    if (p.m <= 1) {
      launch_pdl(op, skinny_gemm_kernel<1, LANES, Form::MLA_INPUTS>, grid, block, 0, p.stream, p);
    } else {
      launch_pdl(op, skinny_gemm_kernel<2, LANES, Form::MLA_INPUTS>, grid, block, 0, p.stream, p);
    }
    return;
  }
  const char* op = "linear (skinny)";
  if (p.m <= 1) {
    launch_pdl(op, skinny_gemm_kernel<1, LANES, Form::PLAIN>, grid, block, 0, p.stream, p);
  } else if (p.m <= 2) {
    launch_pdl(op, skinny_gemm_kernel<2, LANES, Form::PLAIN>, grid, block, 0, p.stream, p);
  } else if (p.m <= 4) {
    launch_pdl(op, skinny_gemm_kernel<4, LANES, Form::PLAIN>, grid, block, 0, p.stream, p);
  } else if (p.m <= 8) {
    launch_pdl(op, skinny_gemm_kernel<8, LANES, Form::PLAIN>, grid, block, 0, p.stream, p);
  } else {
    launch_pdl(op, skinny_gemm_kernel<16, LANES, Form::PLAIN>, grid, block, 0, p.stream, p);
  }
}

}  // namespace

bool skinny_gemm_applies(const SkinnyGemmParams& p) {
  const auto aligned = [](const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; };
  if (p.norm.x) {
    const SkinnyNorm& nm = p.norm;
    return p.m >= 1 && p.m <= SKINNY_NORM_MAX_M && p.k % 8 == 0 && p.k <= SKINNY_NORM_MAX_K && p.group_rows == 0 &&
           !has_side_copies(p.copies) && nm.weight && aligned(nm.x) && aligned(nm.residual) && aligned(nm.weight) &&
           aligned(nm.residual_out) && aligned(nm.normed_out) && aligned(p.w);
  }
  if (p.mla.in.kv) {
    const MlaInputsParams& in = p.mla.in;
    if (p.m > 2 || has_side_copies(p.copies) || in.q != p.a || in.num_tokens != p.m || p.group_rows <= 0 ||
        p.n != in.num_heads * p.group_rows || in.head_dim - in.rope_dim != p.k || in.rope_dim % 2 != 0 ||
        in.rope_dim > 2 * MLA_INPUTS_THREADS || in.kv_rank > MLA_INPUTS_THREADS * MLA_INPUTS_MAX_PER_THREAD ||
        p.a_group_stride != in.head_dim || p.lda != static_cast<int64_t>(in.num_heads) * in.head_dim ||
        p.c_dtype != DType::BF16 || p.bias || (p.mla.cache && !p.mla.slots))
      return false;
  }
  return p.m >= 1 && p.m <= SKINNY_GEMM_MAX_M && p.k % 8 == 0 && p.lda % 8 == 0 && p.a_group_stride % 8 == 0 &&
         aligned(p.a) && aligned(p.w);
}

void run_skinny_gemm(SkinnyGemmParams& p) {
  if (p.n == 0 || p.m == 0) return;
  require(skinny_gemm_applies(p), "linear (skinny): shape or alignment not supported");
  require(p.group_rows == 0 || p.n % p.group_rows == 0, "linear (skinny): n must be a multiple of group_rows");
  // The bulk prefetch needs a 16-byte aligned start: a hint without one is dropped (a hint never fails).
  if (reinterpret_cast<uintptr_t>(p.l2_prefetch) % 16 != 0 || p.l2_prefetch_bytes <= 0) {
    p.l2_prefetch = nullptr;
    p.l2_prefetch_bytes = 0;
  }
  const int chunks = p.k / 8;
  if (chunks <= 8) {
    launch_skinny<8>(p);
  } else if (chunks <= 16) {
    launch_skinny<16>(p);
  } else {
    launch_skinny<32>(p);
  }
}

}  // namespace flashserve
