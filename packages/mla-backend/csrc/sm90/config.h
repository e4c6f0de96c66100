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
// NOTE: 384 threads cap ptxas at 168 registers a thread (the 4 sub-partitions' register files are
// split evenly over their 3 warps each), which the math fits without spills; setmaxnreg only moves
// registers at run time. 256 threads with one math thread issuing the loads measured 20% slower
// when compute-bound (NOTES.md, v3).
constexpr int NUM_THREADS = 128 * (NUM_MATH_WARPGROUPS + 1);  // + one producer warpgroup
constexpr int MATH_THREADS = 128 * NUM_MATH_WARPGROUPS;

}  // namespace flashserve::mla::sm90
