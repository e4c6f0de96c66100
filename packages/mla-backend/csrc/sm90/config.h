// Tile sizes of the Hopper MLA decode kernel.
#pragma once

#include "params.h"

namespace flashserve::mla::sm90 {

constexpr int BLOCK_M = 64;                        // query rows per CTA: one wgmma M
constexpr int BLOCK_N = PAGE_SIZE;                 // cached tokens per step: one page
constexpr int CHUNK = 64;                          // head dims per TMA box / 128-byte swizzle atom
constexpr int QK_CHUNKS = HEAD_DIM_QK / CHUNK;     // 9: 8 latent + 1 rope
constexpr int V_CHUNKS_PER_WG = HEAD_DIM_V / CHUNK / 2;  // 4: each math warpgroup owns 256 of 512
constexpr int NUM_STAGES = 2;                      // pages resident in shared memory
constexpr int NUM_MATH_WARPGROUPS = 2;
// NOTE: no producer warp: one math thread issues the TMA loads. With 8 warps (2 per SM
// sub-partition) ptxas may give each thread 255 registers, enough for the 128 fp32 of O plus two
// tiles of scores. A 9th warp lands 3 warps on one sub-partition and caps every thread at 168
// registers; a producer warpgroup with setmaxnreg measured the same cap at compile time (spills).
constexpr int NUM_THREADS = 128 * NUM_MATH_WARPGROUPS;
constexpr int MATH_THREADS = 128 * NUM_MATH_WARPGROUPS;

}  // namespace flashserve::mla::sm90
