// Portable split-KV MLA decode: one CTA per (part, 16-row query tile), 256 threads.
// Per page: the page [64 x 576] goes to shared memory; thread t scores row t/16 against tokens
// t%16 + 16k (k < 4); the 16 threads of a row share its online-softmax state through shuffles; then
// thread t accumulates row t/16, head dims 32 (t%16) .. +32 of O in registers.
// NaN safety: slots past the length get score -inf by index and are skipped in P V (0 * NaN = NaN).
#include <cuda_bf16.h>

#include <cmath>

#include "common/combine.h"
#include "common/pieces.h"
#include "portable/decode.h"

namespace flashserve::mla::portable {
namespace {

constexpr int ROWS = 16;
constexpr int THREADS = 256;
constexpr int K_STRIDE = HEAD_DIM_QK + 8;  // bf16 per page row in shared memory; padded against bank conflicts

struct Smem {
  float q[ROWS][HEAD_DIM_QK];
  __nv_bfloat16 k[PAGE_SIZE][K_STRIDE];
  float p[ROWS][PAGE_SIZE];
};

__global__ void __launch_bounds__(THREADS) mla_decode_portable_kernel(const __grid_constant__ DecodeParams p) {
  extern __shared__ __align__(16) uint8_t smem_raw[];
  Smem& s = *reinterpret_cast<Smem*>(smem_raw);
  const int tiles = (p.q_rows + ROWS - 1) / ROWS;
  const int tile = blockIdx.x % tiles;
  const SchedPart part = reinterpret_cast<const SchedPart*>(p.sched_meta)[blockIdx.x / tiles];
  const int t = threadIdx.x;
  const int row = t / 16, sub = t % 16;
  const int g = tile * ROWS + row;  // query row within the request
  const float scale_log2 = p.softmax_scale * 1.4426950408889634f;
  const __nv_bfloat16* q = static_cast<const __nv_bfloat16*>(p.q);
  const __nv_bfloat16* kc = static_cast<const __nv_bfloat16*>(p.kcache);

  PieceIter pieces(p, part);
  Piece pc;
  while (pieces.next(pc)) {
    const int r = pc.req;
    const int len = p.cache_seqlens[r];
    const int lim = g < p.q_rows ? len - (p.s_q - 1 - g / p.h_q) : 0;
    __syncthreads();  // the previous piece is done with s.q
    for (int i = t; i < ROWS * HEAD_DIM_QK; i += THREADS) {
      const int rr = i / HEAD_DIM_QK, d = i % HEAD_DIM_QK, gg = tile * ROWS + rr;
      s.q[rr][d] = gg < p.q_rows ? __bfloat162float(q[r * p.q_batch_stride + gg * p.q_row_stride + d]) : 0.f;
    }
    float m = -INFINITY, l = 0.f, o[32];
#pragma unroll
    for (int i = 0; i < 32; ++i) o[i] = 0.f;

    for (int pg = pc.page_begin; pg < pc.page_end; ++pg) {
      const int block = p.block_table[r * p.block_table_stride + pg];
      const int valid = min(PAGE_SIZE, len - pg * PAGE_SIZE);
      __syncthreads();  // the previous page is no longer read
      for (int i = t; i < PAGE_SIZE * (HEAD_DIM_QK / 8); i += THREADS) {
        const int tok = i / (HEAD_DIM_QK / 8), c = i % (HEAD_DIM_QK / 8);
        *reinterpret_cast<uint4*>(&s.k[tok][c * 8]) =
            *reinterpret_cast<const uint4*>(kc + block * p.k_block_stride + tok * p.k_row_stride + c * 8);
      }
      __syncthreads();
      float sc[4];
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const int tok = sub + 16 * k;
        float acc = 0.f;
        for (int d = 0; d < HEAD_DIM_QK; d += 8) {
          const uint4 raw = *reinterpret_cast<const uint4*>(&s.k[tok][d]);
          const __nv_bfloat162* kv2 = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const float2 kf = __bfloat1622float2(kv2[e]);
            acc = fmaf(s.q[row][d + 2 * e], kf.x, acc);
            acc = fmaf(s.q[row][d + 2 * e + 1], kf.y, acc);
          }
        }
        sc[k] = pg * PAGE_SIZE + tok < lim ? acc : -INFINITY;
      }
      float mx = fmaxf(fmaxf(sc[0], sc[1]), fmaxf(sc[2], sc[3]));
#pragma unroll
      for (int o2 = 1; o2 < 16; o2 <<= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o2));
      const float mn = fmaxf(m, mx);
      const float ms = mn == -INFINITY ? 0.f : mn * scale_log2;
      const float alpha = exp2f(m * scale_log2 - ms);
      m = mn;
      float sum = 0.f;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const float e = exp2f(fmaf(sc[k], scale_log2, -ms));
        s.p[row][sub + 16 * k] = e;
        sum += e;
      }
#pragma unroll
      for (int o2 = 1; o2 < 16; o2 <<= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o2);
      l = l * alpha + sum;
#pragma unroll
      for (int i = 0; i < 32; ++i) o[i] *= alpha;
      __syncwarp();  // a row's 16 threads share one warp, so its P is visible after this
      for (int tok = 0; tok < valid; ++tok) {
        const float pv = s.p[row][tok];
        const __nv_bfloat162* v2 = reinterpret_cast<const __nv_bfloat162*>(&s.k[tok][sub * 32]);
#pragma unroll
        for (int e = 0; e < 16; ++e) {
          const float2 vf = __bfloat1622float2(v2[e]);
          o[2 * e] = fmaf(pv, vf.x, o[2 * e]);
          o[2 * e + 1] = fmaf(pv, vf.y, o[2 * e + 1]);
        }
      }
    }
    if (g >= p.q_rows) continue;
    const float inv = l > 0.f ? 1.f / l : 0.f;
    const float lse = l > 0.f ? m * p.softmax_scale + logf(l) : -INFINITY;
    bool split;
    const int slot = piece_slot(p, part, r, &split);
    if (!split) {
      __nv_bfloat16* out = static_cast<__nv_bfloat16*>(p.out) + r * p.o_batch_stride + g * p.o_row_stride + sub * 32;
#pragma unroll
      for (int e = 0; e < 16; ++e)
        reinterpret_cast<__nv_bfloat162*>(out)[e] = __floats2bfloat162_rn(o[2 * e] * inv, o[2 * e + 1] * inv);
      if (sub == 0) p.lse[((int64_t)r * p.h_q + g % p.h_q) * p.s_q + g / p.h_q] = lse;
    } else {
      float* acc = p.o_accum + ((int64_t)slot * p.q_rows + g) * HEAD_DIM_V + sub * 32;
#pragma unroll
      for (int e = 0; e < 32; e += 4)
        *reinterpret_cast<float4*>(acc + e) = make_float4(o[e] * inv, o[e + 1] * inv, o[e + 2] * inv, o[e + 3] * inv);
      if (sub == 0) p.lse_accum[(int64_t)slot * p.q_rows + g] = lse;
    }
  }
}

}  // namespace

cudaError_t run_mla_decode(const DecodeParams& p) {
  constexpr int smem = sizeof(Smem);
  cudaError_t err =
      cudaFuncSetAttribute(mla_decode_portable_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (err != cudaSuccess) return err;
  const int tiles = (p.q_rows + ROWS - 1) / ROWS;
  mla_decode_portable_kernel<<<p.num_parts * tiles, THREADS, smem, p.stream>>>(p);
  err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  return run_combine(p);
}

}  // namespace flashserve::mla::portable
