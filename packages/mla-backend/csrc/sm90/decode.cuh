// The Hopper MLA decode kernel (sm_90a): one CTA per (part of the split-KV schedule, 64-row query
// tile), persistent over the part's pieces, 3 warpgroups:
//   - warpgroup 2, the producer: one thread issues TMA loads of the Q tile (9 boxes of 64 x 64) and of
//     each page (9 boxes, one mbarrier each, so Q K^T starts on the first box that lands) into a
//     2-stage ring;
//   - warpgroups 0 and 1, the math, under one of two schedules picked per launch:
//     * pipelined (one query tile per request: memory-bound): per page, each warpgroup scores 32 of
//       its 64 tokens, the row maxima are exchanged so both share one running max, each writes its
//       probabilities (bf16) to a shared 64 x 64 P tile, and each accumulates its own 256-wide half
//       of O [64 x 512] (fp32 in registers) with P V; the other stage's page loads meanwhile;
//     * staggered (several tiles: compute-bound): two pages per step, warpgroup w scoring the whole
//       page in stage w (n = 64 halves the Q reads per FLOP), each half of O updated with both
//       pages' P; warpgroup 1 takes warpgroup 0's running max instead of both waiting for each
//       other, so one's softmax runs under the other's matrix work (math_staggered). The lockstep
//       form of v6 (math_seesaw) stays selectable for A/B runs (tuning bit 4).
// Everything runs through wgmma with operands in shared memory; no wgmma is ever in flight across
// code that ptxas sees as divergent, which would serialise every wgmma of the kernel (C7518/C7520).
// A request whose pages span several parts produces fp32 partial outputs with their lse, merged by
// the combine kernel (common/combine.cu).
//
// NaN safety: cache slots past a request's length (only ever in its last page) may hold anything.
// Their scores are replaced by -inf by index, never by arithmetic, and their V rows are zeroed in
// shared memory before P V, because 0 * NaN is NaN inside the tensor core.
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>

#include <cmath>
#include <cstdlib>
#include <string>

#include "common/combine.h"
#include "common/combine_uv.h"
#include "common/launch.h"
#include "kernels/timeline.cuh"  // @flashserve/cuda's kernel timeline (measurement only)
#include "common/pieces.h"
#include "sm90/config.h"
#include "sm90/decode.h"
#include "sm90/ptx.h"
#include "sm90/traits.h"
#include "sm90/wgmma.h"

namespace flashserve::mla::sm90 {

// wgmma descriptor strides for the N-major V operand (tokens are K, head dims are N): the next 64
// head dims live in the next 8 KB tile (LBO), the next 8 tokens 1 KB further (SBO).
constexpr uint32_t V_LBO_BYTES = 64 * 64 * 2;
constexpr uint32_t V_SBO_BYTES = 8 * 128;
// K-major operands (Q, K, P): within a 128-byte swizzled row the K extent of one wgmma (16 values,
// 32 bytes) never crosses the atom, so LBO is unused; 8-row groups are 1 KB apart.
constexpr uint32_t KMAJOR_SBO_BYTES = 8 * 128;

// Per-thread view of one 64-row query tile in the math warpgroups. Thread t of warpgroup wg holds
// rows r0 = 16 (t / 32) + (t % 32) / 4 and r0 + 8 of the tile, and of O [64 x 512] the columns
// 256 wg + 8 j + 2 (t % 4) + {0, 1}, j < 32 (the wgmma accumulator layout, wgmma.h).
struct MathThread {
  int wg, lane, r0;
  int g0, g1;      // the two rows within the request (tile offset added)
  int lim0, lim1;  // causal limits: cache positions < lim are visible to the row
};

__device__ __forceinline__ MathThread math_thread(const DecodeParams& p, int tile, int len) {
  MathThread m;
  const int t = threadIdx.x % 128;
  m.wg = threadIdx.x / 128;
  m.lane = t % 32;
  m.r0 = (t / 32) * 16 + m.lane / 4;
  m.g0 = tile * BLOCK_M + m.r0;
  m.g1 = m.g0 + 8;
  // Query token i of s_q sees cache positions < len - (s_q - 1 - i); padding rows see everything.
  m.lim0 = m.g0 < p.q_rows ? len - (p.s_q - 1 - m.g0 / p.h_q) : len;
  m.lim1 = m.g1 < p.q_rows ? len - (p.s_q - 1 - m.g1 / p.h_q) : len;
  return m;
}

// Zeroes the V rows of cache slots at or past `valid` in one staged page (see the NaN note at the
// top), by `threads` threads numbered from `first`; the caller fences and synchronises.
template <typename Smem>
__device__ __forceinline__ void zero_tail_rows(Smem& s, int stage, int valid, int idx, int threads) {
  const int count = (PAGE_SIZE - valid) * 8 * 8;
  for (int i = idx; i < count; i += threads) {
    const int row = valid + i / 64, tile_c = (i / 8) % 8, chunk = i % 8;
    *reinterpret_cast<uint4*>(s.kv[stage][tile_c] + row * 128 + chunk * 16) = make_uint4(0, 0, 0, 0);
  }
}

// Writes probabilities for this thread's rows into a 64 x 64 bf16 tile (K-major, 128-byte swizzle):
// `pv` holds N / 8 column groups in accumulator layout, for columns col_base + 8 j + 2 (lane % 4).
template <int N>
__device__ __forceinline__ void store_p(uint8_t* tile, const float (&pv)[N / 2], int r0, int lane, int col_base) {
#pragma unroll
  for (int j = 0; j < N / 8; ++j) {
    const int col = col_base + 8 * j + 2 * (lane % 4);
    // rows r0 and r0 + 8 share the swizzle phase (r % 8)
    const int off = r0 * 128 + (((col / 8) ^ (r0 % 8)) * 16) + (col % 8) * 2;
    *reinterpret_cast<__nv_bfloat162*>(tile + off) = __floats2bfloat162_rn(pv[4 * j + 0], pv[4 * j + 1]);
    *reinterpret_cast<__nv_bfloat162*>(tile + off + 8 * 128) = __floats2bfloat162_rn(pv[4 * j + 2], pv[4 * j + 3]);
  }
}

// Frees a whole staged page (both halves of kv_empty) for this thread.
template <typename Smem>
__device__ __forceinline__ void release_page(Smem& s, int stage) {
  mbar_arrive(&s.kv_empty[stage][0]);
  mbar_arrive(&s.kv_empty[stage][1]);
}

// S [64 x 64] = Q [64 x 576] K[page in `stage`]^T for one warpgroup, starting on each 64-dim piece
// as it lands; returns with the product complete.
// NOTE: splitting the chain of 36 wgmmas into two independent accumulators (even / odd pieces) made
// no difference (NOTES.md, v7): the chain is not what limits.
template <typename Smem>
__device__ __forceinline__ void score_page(const DecodeParams& p, Smem& s, float (&sc)[32], int stage,
                                           uint32_t parity) {
  if (p.tuning & 8)  // A/B: wait for the whole page first
    for (int c = 0; c < QK_CHUNKS; ++c) mbar_wait(&s.kv_full[stage][c], parity);
  wgmma_fence();
#pragma unroll
  for (int c = 0; c < QK_CHUNKS; ++c) {
    mbar_wait(&s.kv_full[stage][c], parity);
    wgmma_fence();  // NOTE: explicit, so ptxas injects none after the wait loop (C7520 otherwise)
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      const uint64_t da = make_desc_sw128(smem_addr(s.q[c]) + kk * 32, 16, KMAJOR_SBO_BYTES);
      const uint64_t db = make_desc_sw128(smem_addr(s.kv[stage][c]) + kk * 32, 16, KMAJOR_SBO_BYTES);
      wgmma_m64n64k16_ss(sc, da, db, (c | kk) != 0);
    }
  }
  wgmma_commit();
  wgmma_wait<0>();
}

// O[:, 256 wg : 256 wg + 256] += P [64 x 64, K-major tile at p_tile] V [64 tokens x 256 of stage].
template <typename Smem>
__device__ __forceinline__ void issue_pv(Smem& s, float (&o)[128], const uint8_t* p_tile, int stage, int wg) {
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    const uint64_t da = make_desc_sw128(smem_addr(p_tile) + kk * 32, 16, KMAJOR_SBO_BYTES);
    const uint64_t db =
        make_desc_sw128(smem_addr(s.kv[stage][wg * V_CHUNKS_PER_WG]) + kk * 16 * 128, V_LBO_BYTES, V_SBO_BYTES);
    wgmma_m64n256k16_ss_tb(o, da, db, 1);
  }
}

// Online-softmax step shared by both schedules: given this warpgroup's scores `sc` (N columns, masked
// to -inf) and both warpgroups' row maxima in s.row_max, turns sc into probabilities under the new
// running max, rescales O and the running denominator.
template <int N, typename Smem>
__device__ __forceinline__ void softmax_update(Smem& s, const MathThread& mt, float scale_log2, float (&sc)[N / 2],
                                               float (&o)[128], float& m0, float& m1, float& l0, float& l1) {
  const float mn0 = fmaxf(m0, fmaxf(s.row_max[0][mt.r0], s.row_max[1][mt.r0]));
  const float mn1 = fmaxf(m1, fmaxf(s.row_max[0][mt.r0 + 8], s.row_max[1][mt.r0 + 8]));
  // A row with nothing visible yet keeps max -inf; scale by 0 so exp2 sees -inf, not NaN.
  const float ms0 = mn0 == -INFINITY ? 0.f : mn0 * scale_log2;
  const float ms1 = mn1 == -INFINITY ? 0.f : mn1 * scale_log2;
  const float alpha0 = exp2f(m0 * scale_log2 - ms0);
  const float alpha1 = exp2f(m1 * scale_log2 - ms1);
  m0 = mn0;
  m1 = mn1;
  float sum0 = 0.f, sum1 = 0.f;
#pragma unroll
  for (int j = 0; j < N / 8; ++j) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      sc[4 * j + e] = exp2f(fmaf(sc[4 * j + e], scale_log2, -ms0));
      sc[4 * j + 2 + e] = exp2f(fmaf(sc[4 * j + 2 + e], scale_log2, -ms1));
      sum0 += sc[4 * j + e];
      sum1 += sc[4 * j + 2 + e];
    }
  }
  l0 = l0 * alpha0 + sum0;
  l1 = l1 * alpha1 + sum1;
  // NOTE: once the running max settles alpha is exactly 1 for most rows, and the multiplies can go.
  if (alpha0 != 1.f || alpha1 != 1.f) {
#pragma unroll
    for (int j = 0; j < 32; ++j) {
      o[4 * j + 0] *= alpha0;
      o[4 * j + 1] *= alpha0;
      o[4 * j + 2] *= alpha1;
      o[4 * j + 3] *= alpha1;
    }
  }
}

// A quad of lanes holds a whole row: the maxima of this thread's two rows over the quad.
__device__ __forceinline__ void quad_row_max(float& mx0, float& mx1) {
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
}

// Masks N score columns (tokens tok_base + 8 j + 2 (lane % 4) + e) by the rows' causal limits and
// returns this thread's two rows' maxima (a quad of lanes holds a whole row, so no shared memory).
template <int N>
__device__ __forceinline__ void mask_row_max(const MathThread& mt, float (&sc)[N / 2], int tok_base, float& mx0,
                                             float& mx1) {
  mx0 = -INFINITY;
  mx1 = -INFINITY;
#pragma unroll
  for (int j = 0; j < N / 8; ++j) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int tok = tok_base + 8 * j + 2 * (mt.lane % 4) + e;
      sc[4 * j + e] = tok < mt.lim0 ? sc[4 * j + e] : -INFINITY;
      sc[4 * j + 2 + e] = tok < mt.lim1 ? sc[4 * j + 2 + e] : -INFINITY;
      mx0 = fmaxf(mx0, sc[4 * j + e]);
      mx1 = fmaxf(mx1, sc[4 * j + 2 + e]);
    }
  }
  quad_row_max(mx0, mx1);
}

// Masks this warpgroup's N score columns by the rows' causal limits and publishes its row maxima to
// s.row_max[wg].
template <int N, typename Smem>
__device__ __forceinline__ void mask_and_publish_max(Smem& s, const MathThread& mt, float (&sc)[N / 2], int tok_base) {
  float mx0, mx1;
  mask_row_max<N>(mt, sc, tok_base, mx0, mx1);
  if (mt.lane % 4 == 0) {
    s.row_max[mt.wg][mt.r0] = mx0;
    s.row_max[mt.wg][mt.r0 + 8] = mx1;
  }
}

// End of one piece: both warpgroups' denominators, then out/lse (request in one piece) or the fp32
// partials (split request).
template <typename Smem>
__device__ __forceinline__ void write_piece(const DecodeParams& p, const SchedPart& part, Smem& s, const MathThread& mt,
                                            int r, float (&o)[128], float m0, float m1, float l0, float l1) {
  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  if (mt.lane % 4 == 0) {
    s.row_sum[mt.wg][mt.r0] = l0;
    s.row_sum[mt.wg][mt.r0 + 8] = l1;
  }
  named_barrier_sync(1, MATH_THREADS);
  const float L0 = s.row_sum[0][mt.r0] + s.row_sum[1][mt.r0];
  const float L1 = s.row_sum[0][mt.r0 + 8] + s.row_sum[1][mt.r0 + 8];
  const float inv0 = L0 > 0.f ? 1.f / L0 : 0.f, inv1 = L1 > 0.f ? 1.f / L1 : 0.f;
  const float lse0 = L0 > 0.f ? m0 * p.softmax_scale + logf(L0) : -INFINITY;
  const float lse1 = L1 > 0.f ? m1 * p.softmax_scale + logf(L1) : -INFINITY;
  const int g0 = mt.g0, g1 = mt.g1;

  bool split;
  const int slot = piece_slot(p, part, r, &split);
  const int col0 = mt.wg * 256 + 2 * (mt.lane % 4);
  if (!split) {
    __nv_bfloat16* out = reinterpret_cast<__nv_bfloat16*>(p.out) + r * p.o_batch_stride;
#pragma unroll
    for (int j = 0; j < 32; ++j) {
      if (g0 < p.q_rows)
        *reinterpret_cast<__nv_bfloat162*>(out + g0 * p.o_row_stride + col0 + 8 * j) =
            __floats2bfloat162_rn(o[4 * j] * inv0, o[4 * j + 1] * inv0);
      if (g1 < p.q_rows)
        *reinterpret_cast<__nv_bfloat162*>(out + g1 * p.o_row_stride + col0 + 8 * j) =
            __floats2bfloat162_rn(o[4 * j + 2] * inv1, o[4 * j + 3] * inv1);
    }
    if (mt.wg == 0 && mt.lane % 4 == 0) {
      if (g0 < p.q_rows) p.lse[((int64_t)r * p.h_q + g0 % p.h_q) * p.s_q + g0 / p.h_q] = lse0;
      if (g1 < p.q_rows) p.lse[((int64_t)r * p.h_q + g1 % p.h_q) * p.s_q + g1 / p.h_q] = lse1;
    }
  } else {
    float* acc = p.o_accum + (int64_t)slot * p.q_rows * HEAD_DIM_V;
#pragma unroll
    for (int j = 0; j < 32; ++j) {
      if (g0 < p.q_rows)
        *reinterpret_cast<float2*>(acc + (int64_t)g0 * HEAD_DIM_V + col0 + 8 * j) =
            make_float2(o[4 * j] * inv0, o[4 * j + 1] * inv0);
      if (g1 < p.q_rows)
        *reinterpret_cast<float2*>(acc + (int64_t)g1 * HEAD_DIM_V + col0 + 8 * j) =
            make_float2(o[4 * j + 2] * inv1, o[4 * j + 3] * inv1);
    }
    if (mt.wg == 0 && mt.lane % 4 == 0) {
      if (g0 < p.q_rows) p.lse_accum[(int64_t)slot * p.q_rows + g0] = lse0;
      if (g1 < p.q_rows) p.lse_accum[(int64_t)slot * p.q_rows + g1] = lse1;
    }
  }
}

// Schedule "pipelined" (memory-bound shapes): one page per step, both warpgroups on it, each scoring
// 32 of its 64 tokens; the other stage's page is loading meanwhile.
template <typename Smem>
__device__ void math_pipelined(const DecodeParams& p, const SchedPart& part, Smem& s, int tile) {
  const float scale_log2 = p.softmax_scale * 1.4426950408889634f;
  PieceIter pieces(p, part);
  Piece pc;
  int it = 0, n = 0;
  while (pieces.next(pc)) {
    const int r = pc.req;
    const int len = p.cache_seqlens[r];
    const MathThread mt = math_thread(p, tile, len);
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
    float o[128];
#pragma unroll
    for (int i = 0; i < 128; ++i) o[i] = 0.f;
    mbar_wait(&s.q_full, n & 1);
    for (int pg = pc.page_begin; pg < pc.page_end; ++pg, ++it) {
      const int stage = it % NUM_STAGES;
      const uint32_t parity = (it / NUM_STAGES) & 1;
      if (p.tuning & 8)  // A/B: wait for the whole page first
        for (int c = 0; c < QK_CHUNKS; ++c) mbar_wait(&s.kv_full[stage][c], parity);
      // S [64 x 32] = Q [64 x 576] K[32 tokens of this warpgroup]^T, each 64-dim piece as it lands
      float sc[16];
      wgmma_fence();
#pragma unroll
      for (int c = 0; c < QK_CHUNKS; ++c) {
        mbar_wait(&s.kv_full[stage][c], parity);
        wgmma_fence();  // NOTE: explicit, so ptxas injects none after the wait loop (C7520 otherwise)
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
          const uint64_t da = make_desc_sw128(smem_addr(s.q[c]) + kk * 32, 16, KMAJOR_SBO_BYTES);
          const uint64_t db =
              make_desc_sw128(smem_addr(s.kv[stage][c]) + mt.wg * 32 * 128 + kk * 32, 16, KMAJOR_SBO_BYTES);
          wgmma_m64n32k16_ss(sc, da, db, (c | kk) != 0);
        }
      }
      wgmma_commit();
      wgmma_wait<0>();
      if (pg == pc.page_end - 1) mbar_arrive(&s.q_empty);  // Q is not read again in this piece
      const int valid = len - pg * PAGE_SIZE;
      if (valid < PAGE_SIZE) {
        zero_tail_rows(s, stage, valid, threadIdx.x, MATH_THREADS);
        fence_proxy_async();
      }
      mask_and_publish_max<32>(s, mt, sc, pg * PAGE_SIZE + mt.wg * 32);
      named_barrier_sync(1, MATH_THREADS);
      softmax_update<32>(s, mt, scale_log2, sc, o, m0, m1, l0, l1);
      store_p<32>(s.p, sc, mt.r0, mt.lane, mt.wg * 32);
      fence_proxy_async();
      named_barrier_sync(1, MATH_THREADS);
      wgmma_fence();
      issue_pv(s, o, s.p, stage, mt.wg);
      wgmma_commit();
      wgmma_wait<0>();
      release_page(s, stage);
    }
    write_piece(p, part, s, mt, r, o, m0, m1, l0, l1);
    ++n;
  }
}

// Schedule "seesaw" in lockstep (v6; now only for A/B runs, tuning bit 4): two pages per step, one
// per warpgroup, both waiting for both pages' scores before any softmax. Warpgroup w
// scores the whole page in stage w (64 columns: twice the work of one wgmma for the same Q reads,
// halving the Q traffic from shared memory), the maxima are exchanged, each writes its P into its
// page's rope tile (free once scored), and each accumulates its half of O over both pages. A step
// holds one page when the piece's pages start in stage 1 or end in stage 0.
template <typename Smem>
__device__ void math_seesaw(const DecodeParams& p, const SchedPart& part, Smem& s, int tile) {
  const float scale_log2 = p.softmax_scale * 1.4426950408889634f;
  PieceIter pieces(p, part);
  Piece pc;
  int it = 0, n = 0;
  while (pieces.next(pc)) {
    const int r = pc.req;
    const int len = p.cache_seqlens[r];
    const MathThread mt = math_thread(p, tile, len);
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
    float o[128];
#pragma unroll
    for (int i = 0; i < 128; ++i) o[i] = 0.f;
    mbar_wait(&s.q_full, n & 1);
    int pg = pc.page_begin;
    while (pg < pc.page_end) {
      // This step: the page in stage 0 (if `it` is even) and/or the page in stage 1.
      const int first_stage = it % NUM_STAGES;
      const int count = (first_stage == 0 && pg + 1 < pc.page_end) ? 2 : 1;
      const bool last_step = pg + count == pc.page_end;
      // My page in this step, if any: stage wg.
      const int my_off = mt.wg - first_stage;  // 0 or 1 when present
      const bool mine = my_off >= 0 && my_off < count;
      const int my_pg = pg + my_off, my_it = it + my_off;
      float sc[32];
      if (mine) {
        score_page(p, s, sc, mt.wg, (my_it / NUM_STAGES) & 1);
        const int valid = len - my_pg * PAGE_SIZE;
        if (valid < PAGE_SIZE) {
          zero_tail_rows(s, mt.wg, valid, threadIdx.x % 128, 128);
          fence_proxy_async();
        }
        mask_and_publish_max<64>(s, mt, sc, my_pg * PAGE_SIZE);
      } else {
#pragma unroll
        for (int i = 0; i < 32; ++i) sc[i] = -INFINITY;
        if (mt.lane % 4 == 0) {
          s.row_max[mt.wg][mt.r0] = -INFINITY;
          s.row_max[mt.wg][mt.r0 + 8] = -INFINITY;
        }
      }
      if (last_step) mbar_arrive(&s.q_empty);  // Q is not read again in this piece
      named_barrier_sync(1, MATH_THREADS);
      softmax_update<64>(s, mt, scale_log2, sc, o, m0, m1, l0, l1);
      // The rope tile (dims 512..575) of my page is free once scored: it takes my P.
      if (mine) {
        store_p<64>(s.kv[mt.wg][QK_CHUNKS - 1], sc, mt.r0, mt.lane, 0);
        fence_proxy_async();
      }
      named_barrier_sync(1, MATH_THREADS);
      // O half += P_stage V_stage for each page of the step, the lower stage first so that it is
      // released (and reloaded) while the other is still being read.
      wgmma_fence();
      issue_pv(s, o, s.kv[first_stage][QK_CHUNKS - 1], first_stage, mt.wg);
      wgmma_commit();
      if (count == 2) {
        wgmma_fence();
        issue_pv(s, o, s.kv[1][QK_CHUNKS - 1], 1, mt.wg);
        wgmma_commit();
        wgmma_wait<1>();
        release_page(s, 0);
        wgmma_wait<0>();
        release_page(s, 1);
      } else {
        wgmma_wait<0>();
        release_page(s, first_stage);
      }
      pg += count;
      it += count;
    }
    write_piece(p, part, s, mt, r, o, m0, m1, l0, l1);
    ++n;
  }
}

// Row maxima of this thread's two rows over N score columns, masked by the causal limits only when
// `masked` (uniform: the page holds a token that some row may not see).
template <int N>
__device__ __forceinline__ void page_row_max(const MathThread& mt, float (&sc)[N / 2], int tok_base, bool masked,
                                             float& mx0, float& mx1) {
  if (masked) {
    mask_row_max<N>(mt, sc, tok_base, mx0, mx1);
    return;
  }
  mx0 = -INFINITY;
  mx1 = -INFINITY;
#pragma unroll
  for (int j = 0; j < N / 8; ++j) {
    mx0 = fmaxf(mx0, fmaxf(sc[4 * j + 0], sc[4 * j + 1]));
    mx1 = fmaxf(mx1, fmaxf(sc[4 * j + 2], sc[4 * j + 3]));
  }
  quad_row_max(mx0, mx1);
}

// Factor that moves values kept under running max `from` to running max `to` (>= from). A row with
// nothing visible yet keeps max -inf: scaled by 0 (its values are 0), never NaN. Exactly 1 when the
// max did not move.
__device__ __forceinline__ float max_shift(float from, float to, float scale_log2) {
  return exp2f(from * scale_log2 - (to == -INFINITY ? 0.f : to * scale_log2));
}

// Scores -> unnormalised probabilities under the rows' maxima mx0 / mx1; adds the row sums to l0/l1.
template <int N>
__device__ __forceinline__ void exp_scores(float (&sc)[N / 2], float mx0, float mx1, float scale_log2, float& l0,
                                           float& l1) {
  const float ms0 = mx0 == -INFINITY ? 0.f : mx0 * scale_log2;
  const float ms1 = mx1 == -INFINITY ? 0.f : mx1 * scale_log2;
  float sum0 = 0.f, sum1 = 0.f;
#pragma unroll
  for (int j = 0; j < N / 8; ++j) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      sc[4 * j + e] = exp2f(fmaf(sc[4 * j + e], scale_log2, -ms0));
      sc[4 * j + 2 + e] = exp2f(fmaf(sc[4 * j + 2 + e], scale_log2, -ms1));
      sum0 += sc[4 * j + e];
      sum1 += sc[4 * j + 2 + e];
    }
  }
  l0 += sum0;
  l1 += sum1;
}

// O (this warpgroup's half) and the running denominators times a0 / a1 (rows r0 / r0 + 8).
// NOTE: a thread-dependent branch: call only with no wgmma in flight (C7518 otherwise).
__device__ __forceinline__ void rescale(float (&o)[128], float& l0, float& l1, float a0, float a1) {
  l0 *= a0;
  l1 *= a1;
  if (a0 != 1.f || a1 != 1.f) {  // once the running max settles, most rows skip the multiplies
#pragma unroll
    for (int j = 0; j < 32; ++j) {
      o[4 * j + 0] *= a0;
      o[4 * j + 1] *= a0;
      o[4 * j + 2] *= a1;
      o[4 * j + 3] *= a1;
    }
  }
}

// Named barriers of the staggered schedule (0 is __syncthreads, 1 the math warpgroups' sync).
constexpr int BAR_P_A = 2;  // warpgroup 0 -> 1: P of the stage-0 page and the running max after it
constexpr int BAR_P_B = 3;  // warpgroup 1 -> 0: P of the stage-1 page and the running max after it

// Schedule "staggered" (compute-bound shapes, the default for >= 2 query tiles): two pages per step
// as in the seesaw, page A (stage 0) scored by warpgroup 0 and page B (stage 1) by warpgroup 1, but
// the warpgroups never wait for each other's scores in lockstep:
//   wg 0: S_A = Q K_A^T; softmax of A under m_a = max(m, rowmax S_A); publish P_A, m_a; O_L += P_A V_A;
//         free the left half of stage 0; wait for P_B, m_b; O_L *= e^(m_a - m_b); O_L += P_B V_B.
//   wg 1: S_B = Q K_B^T (beside wg 0's work); wait for P_A, m_a; O_R *= e^(m - m_a); O_R += P_A V_A, and
//         while that runs: softmax of B under m_b = max(m_a, rowmax S_B), publish P_B, m_b; then
//         O_R *= e^(m_a - m_b); O_R += P_B V_B.
// So wg 1's softmax runs under P_A V_A, neither waits for the other's Q K^T, and stage 0 (and the left
// half of V in either stage) is freed for its reload earlier: with two stages, a page's time in shared
// memory plus one load latency bounds a step. Measured 3-6% faster than the lockstep form on the
// compute-bound cases, and ~5% on the worst one (NOTES.md, v7). The running denominators stay per
// warpgroup (sums of its own pages' P) under the same running max, added in write_piece.
template <typename Smem>
__device__ void math_staggered(const DecodeParams& p, const SchedPart& part, Smem& s, int tile) {
  const float scale_log2 = p.softmax_scale * 1.4426950408889634f;
  PieceIter pieces(p, part);
  Piece pc;
  int it = 0, n = 0;
  while (pieces.next(pc)) {
    const int r = pc.req;
    const int len = p.cache_seqlens[r];
    const MathThread mt = math_thread(p, tile, len);
    // Tokens below this are visible to every row of the tile (causal limits, NaN past the length).
    const int mask_from = len - (p.s_q - 1);
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
    float o[128];
#pragma unroll
    for (int i = 0; i < 128; ++i) o[i] = 0.f;
    mbar_wait(&s.q_full, n & 1);
    int pg = pc.page_begin;
    while (pg < pc.page_end) {
      // A step holds page A (stage 0) when `it` is even, page B (stage 1) when there is one more.
      const bool has_a = it % NUM_STAGES == 0;
      const bool has_b = !has_a || pg + 1 < pc.page_end;
      const int count = int(has_a) + int(has_b);
      const bool mine = mt.wg == 0 ? has_a : has_b;
      const int my_pg = pg + (mt.wg == 1 && has_a ? 1 : 0);
      const int my_it = it + (my_pg - pg);
      float sc[32];
      float mx0 = -INFINITY, mx1 = -INFINITY;
      // NOTE: the two pages' Q K^T run side by side. Making S_B wait until S_A was issued (so that it
      // would run under wg 0's softmax) measured ~8% slower, likely because issuing S_A waits for page
      // A's last piece, so S_B started a page load later (NOTES.md, v7).
      if (mine) {
        score_page(p, s, sc, mt.wg, (my_it / NUM_STAGES) & 1);
        const int valid = len - my_pg * PAGE_SIZE;
        if (valid < PAGE_SIZE) {
          zero_tail_rows(s, mt.wg, valid, threadIdx.x % 128, 128);
          fence_proxy_async();
        }
        // Only a page holding a token some row may not see needs the mask (the last page or two of
        // the request); tuning 128 (A/B): mask every page, as v7.
        page_row_max<64>(mt, sc, my_pg * PAGE_SIZE, (p.tuning & 128) || (my_pg + 1) * PAGE_SIZE > mask_from, mx0,
                         mx1);
      } else {
#pragma unroll
        for (int i = 0; i < 32; ++i) sc[i] = -INFINITY;
      }
      if (pg + count == pc.page_end) mbar_arrive(&s.q_empty);  // Q is not read again in this piece
      if (mt.wg == 0) {
        const float ma0 = fmaxf(m0, mx0), ma1 = fmaxf(m1, mx1);
        rescale(o, l0, l1, max_shift(m0, ma0, scale_log2), max_shift(m1, ma1, scale_log2));
        m0 = ma0;
        m1 = ma1;
        exp_scores<64>(sc, ma0, ma1, scale_log2, l0, l1);
        if (has_a) {  // the rope tile of page A is free once scored: it takes P_A
          store_p<64>(s.kv[0][QK_CHUNKS - 1], sc, mt.r0, mt.lane, 0);
          fence_proxy_async();
        }
        // Every lane of a quad writes the same value: no lane-dependent branch.
        s.row_max[0][mt.r0] = ma0;
        s.row_max[0][mt.r0 + 8] = ma1;
        named_barrier_arrive(BAR_P_A, MATH_THREADS);
        // NOTE: this P V (and wg 1's P_B V_B) with P from registers (wgmma with A in registers:
        // the m64n64 accumulator packed to bf16 pairs is the A layout) was correct but no faster
        // (NOTES.md, v7): P is 8 KB of the ~600 KB of shared-memory traffic of a step.
        if (has_a) {
          wgmma_fence();
          issue_pv(s, o, s.kv[0][QK_CHUNKS - 1], 0, 0);
          wgmma_commit();
          wgmma_wait<0>();
          // Left half of V_A read; wg 1 frees the rest (its half and P_A) when its P_A V_A is done.
          mbar_arrive(&s.kv_empty[0][0]);
          mbar_arrive(&s.kv_empty[0][1]);
        }
        named_barrier_sync(BAR_P_B, MATH_THREADS);
        const float mb0 = s.row_max[1][mt.r0], mb1 = s.row_max[1][mt.r0 + 8];
        rescale(o, l0, l1, max_shift(m0, mb0, scale_log2), max_shift(m1, mb1, scale_log2));
        m0 = mb0;
        m1 = mb1;
        if (has_b) {
          wgmma_fence();
          issue_pv(s, o, s.kv[1][QK_CHUNKS - 1], 1, 0);
          wgmma_commit();
          wgmma_wait<0>();
          mbar_arrive(&s.kv_empty[1][0]);
          mbar_arrive(&s.kv_empty[1][1]);
        }
      } else {
        named_barrier_sync(BAR_P_A, MATH_THREADS);
        const float ma0 = s.row_max[0][mt.r0], ma1 = s.row_max[0][mt.r0 + 8];
        rescale(o, l0, l1, max_shift(m0, ma0, scale_log2), max_shift(m1, ma1, scale_log2));
        // B's softmax, run while P_A V_A is in flight. Straight-line code only (no lane-dependent
        // branch); without page B, P (all zero) goes to the spare tile rather than a stage.
        const float mb0 = fmaxf(ma0, mx0), mb1 = fmaxf(ma1, mx1);
        const float d0 = max_shift(ma0, mb0, scale_log2), d1 = max_shift(ma1, mb1, scale_log2);
        auto softmax_b = [&] {
          l0 *= d0;
          l1 *= d1;
          exp_scores<64>(sc, mb0, mb1, scale_log2, l0, l1);
          store_p<64>(has_b ? s.kv[1][QK_CHUNKS - 1] : s.p, sc, mt.r0, mt.lane, 0);
          fence_proxy_async();
          s.row_max[1][mt.r0] = mb0;
          s.row_max[1][mt.r0 + 8] = mb1;
          named_barrier_arrive(BAR_P_B, MATH_THREADS);
        };
        // NOTE: issue and wait in one branch, the softmax copied into both: a wgmma issued under a
        // branch and waited for after it merges is serialised (C7515).
        if (has_a) {
          wgmma_fence();
          issue_pv(s, o, s.kv[0][QK_CHUNKS - 1], 0, 1);
          wgmma_commit();
          softmax_b();
          wgmma_wait<0>();
          mbar_arrive(&s.kv_empty[0][1]);
        } else {
          softmax_b();
        }
        float one0 = 1.f, one1 = 1.f;  // l is already under m_b
        rescale(o, one0, one1, d0, d1);
        m0 = mb0;
        m1 = mb1;
        if (has_b) {
          wgmma_fence();
          issue_pv(s, o, s.kv[1][QK_CHUNKS - 1], 1, 1);
          wgmma_commit();
          wgmma_wait<0>();
          mbar_arrive(&s.kv_empty[1][1]);
        }
      }
      pg += count;
      it += count;
    }
    write_piece(p, part, s, mt, r, o, m0, m1, l0, l1);
    ++n;
  }
}

// The CTA's part of the schedule, read through L2 (the producer may read it before its PDL wait).
__device__ __forceinline__ SchedPart load_part(const DecodeParams& p, int index) {
  const int4* at = reinterpret_cast<const int4*>(p.sched_meta) + index * 2;
  const int4 a = __ldcg(at), b = __ldcg(at + 1);
  return SchedPart{a.x, a.y, a.z, a.w, b.x, {b.y, b.z, b.w}};
}

// Which math schedule a kernel instance runs.
enum Schedule : int { kPipelined = 0, kSeesawLockstep = 1, kStaggered = 2 };

template <typename Element, int kSchedule>
__global__ void __launch_bounds__(NUM_THREADS, 1)
    mla_decode_kernel(const __grid_constant__ DecodeParams p, const __grid_constant__ CUtensorMap tmap_q,
                      const __grid_constant__ CUtensorMap tmap_kv) {
  using T = Traits<Element>;
  using Smem = typename T::SharedStorage;
  extern __shared__ uint8_t smem_raw[];
  Smem& s = *reinterpret_cast<Smem*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));

  const int tiles = (p.q_rows + BLOCK_M - 1) / BLOCK_M;
  const int tile = blockIdx.x % tiles;
  const int wg = threadIdx.x / 128;

  if (threadIdx.x == 0) {
    mbar_init(&s.q_full, 1);
    mbar_init(&s.q_empty, MATH_THREADS);
    for (int i = 0; i < NUM_STAGES; ++i) {
      for (int c = 0; c < QK_CHUNKS; ++c) mbar_init(&s.kv_full[i][c], 1);
      // The staggered schedule frees the left half of V as soon as warpgroup 0 (its only reader
      // besides the scorer, which is done by then) has read it; the others free whole pages.
      mbar_init(&s.kv_empty[i][0], kSchedule == kStaggered ? 128 : MATH_THREADS);
      mbar_init(&s.kv_empty[i][1], MATH_THREADS);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();
  // Launched as a programmatic dependent (run_mla_decode): the launch and the barrier set-up above
  // overlap the kernel before (the absorbed query, which writes q and this step's cache rows). The
  // math threads wait here (a no-op for a plain launch). The producer waits only before its first load
  // of something that kernel writes (Q, or a page holding a token of this step): the schedule, the
  // lengths and the block table come from the step's start (uploads and the metadata kernel, complete
  // before the kernel before this one passed its own wait), and so do pages of earlier tokens, which it
  // requests first. Read through L2 (__ldcg): not from an L1 line of an earlier step. Tuning bit 11
  // (2048, FLASHSERVE_MLA_LATE_PAGES=1, A/B): the producer waits here too.
  const bool early_pages = !(p.tuning & 2048);
  if (wg != NUM_MATH_WARPGROUPS || !early_pages) asm volatile("griddepcontrol.wait;\n" ::: "memory");
  flashserve::timeline_stamp(flashserve::TIMELINE_TAG_MLA_DECODE);  // thread 0: a math thread, past the wait
  const SchedPart part = load_part(p, blockIdx.x / tiles);

  if (wg == NUM_MATH_WARPGROUPS) {
    // ---------------- producer: one thread issues every TMA load ----------------
    // NOTE: a separate warpgroup, not a math thread: wgmma is warpgroup-collective, so a math
    // warp busy issuing loads holds back its whole warpgroup's Q K^T (measured 20% slower, v3).
    setmaxnreg_dec<40>();
    if (threadIdx.x % 128 != 0) return;
    asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(&tmap_q)) : "memory");
    asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(&tmap_kv)) : "memory");
    // Pages are loaded evict-first, also when several query tiles (sibling CTAs) read each one: they
    // read it at about the same time, and the streamed cache (>> L2) leaves L2 sooner. Measured 2-3%
    // faster over the compute-bound cases than evict-normal (up to 15% on 16384/128/2; NOTES.md, v8).
    // Tuning 64 (A/B): evict-normal with several tiles, as v7.
    uint64_t policy;
    if (tiles == 1 || !(p.tuning & 64)) policy = policy_evict_first();
    else asm volatile("createpolicy.fractional.L2::evict_normal.b64 %0, 1.0;\n" : "=l"(policy));
    // NOTE: pulling the pages after the next two into L2 ahead of time (cp.async.bulk.prefetch)
    // measured 5-10% slower on every case, memory- and compute-bound alike (NOTES.md, v5).
    PieceIter pieces(p, part);
    Piece pc;
    int it = 0, n = 0;
    bool waited = !early_pages;
    const auto wait_once = [&] {
      if (!waited) asm volatile("griddepcontrol.wait;\n" ::: "memory");
      waited = true;
    };
    while (pieces.next(pc)) {
      const int* bt = p.block_table + pc.req * p.block_table_stride;
      int block = __ldcg(bt + pc.page_begin);
      // Positions from here on are this step's tokens, whose cache rows the kernel before writes.
      const int fresh = __ldcg(p.cache_seqlens + pc.req) - p.s_q;
      // Q after the piece's first page has been requested (the math waits on each barrier alone).
      bool q_sent = false;
      for (int pg = pc.page_begin; pg < pc.page_end; ++pg, ++it) {
        const int stage = it % NUM_STAGES;
        if ((pg + 1) * PAGE_SIZE > fresh) wait_once();
        // The next block id is read before waiting, so its latency hides behind the wait.
        const int next_block = pg + 1 < pc.page_end ? __ldcg(bt + pg + 1) : 0;
        const uint32_t empty_parity = ((it / NUM_STAGES) & 1) ^ 1;
        // One barrier per 64 x 64 piece, so Q K^T starts on the first piece that lands; the left
        // half of V (tiles 0..3) may be freed before the rest.
#pragma unroll
        for (int c = 0; c < QK_CHUNKS; ++c) {
          if (c == 0) {
            if (p.tuning & 32) mbar_wait(&s.kv_empty[stage][1], empty_parity);  // A/B: whole page
            mbar_wait(&s.kv_empty[stage][0], empty_parity);
          }
          if (c == V_CHUNKS_PER_WG) mbar_wait(&s.kv_empty[stage][1], empty_parity);
          mbar_arrive_expect_tx(&s.kv_full[stage][c], T::TILE_BYTES);
          tma_load_2d(s.kv[stage][c], &tmap_kv, &s.kv_full[stage][c], c * CHUNK, block * PAGE_SIZE, policy);
        }
        block = next_block;
        if (!q_sent) {
          wait_once();  // q comes from the kernel before
          mbar_wait(&s.q_empty, (n & 1) ^ 1);
          mbar_arrive_expect_tx(&s.q_full, QK_CHUNKS * T::TILE_BYTES);
#pragma unroll
          for (int c = 0; c < QK_CHUNKS; ++c)
            tma_load_3d(s.q[c], &tmap_q, &s.q_full, c * CHUNK, tile * BLOCK_M, pc.req);
          q_sent = true;
        }
      }
      ++n;
    }
  } else {
    setmaxnreg_inc<232>();
    if constexpr (kSchedule == kStaggered) math_staggered(p, part, s, tile);
    else if constexpr (kSchedule == kSeesawLockstep) math_seesaw(p, part, s, tile);
    else math_pipelined(p, part, s, tile);
    // NOTE: the trigger comes after this CTA's last write-back. Issued at kernel start it let the
    // combine's blocks (up to 7 per SM) sit resident beside the math and cost a third of the speed
    // when compute-bound (NOTES.md, v2).
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
  }
}

// ---------------------------------------------------------------------------------------------
// Host side: tensor maps and the launch.

using EncodeTiledFn = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                   const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                   CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

// cuTensorMapEncodeTiled lives in the driver; it is reached through the runtime so that nothing
// links libcuda (the addon must load on a machine without a driver and say why it cannot run).
inline EncodeTiledFn encode_tiled_fn() {
  static EncodeTiledFn fn = [] {
    void* ptr = nullptr;
    cudaDriverEntryPointQueryResult status;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &ptr, 12000, cudaEnableDefault, &status) !=
            cudaSuccess ||
        status != cudaDriverEntryPointSuccess)
      ptr = nullptr;
    return reinterpret_cast<EncodeTiledFn>(ptr);
  }();
  return fn;
}

inline cudaError_t make_tensor_maps(const DecodeParams& p, CUtensorMap* tq, CUtensorMap* tkv) {
  EncodeTiledFn encode = encode_tiled_fn();
  if (!encode) return cudaErrorNotSupported;
  const cuuint32_t elem_strides[3] = {1, 1, 1};
  {
    const cuuint64_t dims[3] = {HEAD_DIM_QK, (cuuint64_t)p.q_rows, (cuuint64_t)p.b};
    const cuuint64_t strides[2] = {(cuuint64_t)p.q_row_stride * 2, (cuuint64_t)p.q_batch_stride * 2};
    const cuuint32_t box[3] = {CHUNK, BLOCK_M, 1};
    if (encode(tq, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, const_cast<void*>(p.q), dims, strides, box, elem_strides,
               CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
               CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS)
      return cudaErrorInvalidValue;
  }
  {
    const cuuint64_t dims[2] = {HEAD_DIM_QK, (cuuint64_t)p.num_blocks * PAGE_SIZE};
    const cuuint64_t strides[1] = {(cuuint64_t)p.k_row_stride * 2};
    const cuuint32_t box[2] = {CHUNK, PAGE_SIZE};
    if (encode(tkv, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void*>(p.kcache), dims, strides, box,
               elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
               CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS)
      return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}

// The decode kernel alone; its dependents (combine or combine + W_UV) are queued by the callers below.
template <typename Element>
cudaError_t launch_decode_kernel(const DecodeParams& p) {
  // The tensor maps see the cache as [num_blocks * 64, 576] and q as [b, q_rows, 576].
  if (p.k_block_stride != (int64_t)PAGE_SIZE * p.k_row_stride) return cudaErrorInvalidValue;
  if ((p.k_row_stride * 2) % 16 != 0 || (p.q_row_stride * 2) % 16 != 0 || (p.q_batch_stride * 2) % 16 != 0)
    return cudaErrorInvalidValue;
  CUtensorMap tq, tkv;
  cudaError_t err = make_tensor_maps(p, &tq, &tkv);
  if (err != cudaSuccess) return err;
  constexpr int smem = Traits<Element>::SMEM_BYTES;
  const int tiles = (p.q_rows + BLOCK_M - 1) / BLOCK_M;
  // Several query tiles per request make the work compute-bound: score whole pages per warpgroup,
  // staggered. One tile is memory-bound: keep a page loading while one is computed. (tuning bits
  // 0/2 force one schedule, bit 4 the lockstep seesaw of v6, bits 6/7 v7's L2 policy and masking,
  // for the benchmark's A/B runs.)
  bool two_pages = tiles >= 2;
  if (p.tuning & 1) two_pages = false;
  if (p.tuning & 4) two_pages = true;
  auto kernel = !two_pages        ? &mla_decode_kernel<Element, kPipelined>
                : (p.tuning & 16) ? &mla_decode_kernel<Element, kSeesawLockstep>
                                  : &mla_decode_kernel<Element, kStaggered>;
  err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (err != cudaSuccess) return err;
  // A programmatic dependent launch unless tuning bit 9 (FLASHSERVE_MLA_NO_PDL=1, A/B timing).
  return launch_kernel(kernel, dim3(p.num_parts * tiles), dim3(NUM_THREADS), smem, p.stream, !(p.tuning & 512), p,
                       tq, tkv);
}

template <typename Element>
cudaError_t run_mla_decode(const DecodeParams& p) {
  const cudaError_t err = launch_decode_kernel<Element>(p);
  if (err != cudaSuccess) return err;
  return run_combine(p, /*programmatic_launch=*/!(p.tuning & 2));
}

template <typename Element>
cudaError_t run_mla_decode_uv(const DecodeParams& p, const CombineUvParams& uv) {
  if (!combine_uv_applies(p, uv.v_dim)) return cudaErrorInvalidValue;
  // Measurement probe (FLASHSERVE_PROBE_DOUBLE=mla-decode or mla-combine-uv; see the cuda package's
  // launch.h): that kernel is launched twice, to time its marginal cost inside a decode step.
  static const std::string probe = [] {
    const char* v = std::getenv("FLASHSERVE_PROBE_DOUBLE");
    return std::string(v ? v : "");
  }();
  cudaError_t err = launch_decode_kernel<Element>(p);
  if (err == cudaSuccess && probe == "mla-decode") err = launch_decode_kernel<Element>(p);
  if (err != cudaSuccess) return err;
  if (probe == "mla-combine-uv") {
    err = run_combine_uv(p, uv, /*programmatic_launch=*/!(p.tuning & 2));
    if (err != cudaSuccess) return err;
  }
  return run_combine_uv(p, uv, /*programmatic_launch=*/!(p.tuning & 2));
}

}  // namespace flashserve::mla::sm90
