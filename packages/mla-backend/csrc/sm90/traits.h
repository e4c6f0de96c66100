// Shared-memory plan of the Hopper kernel, derived from config.h. Every 64 x 64 bf16 tile is one
// 8 KB block in the 128-byte-swizzled layout that TMA (SWIZZLE_128B) writes and wgmma reads:
// row i of a tile lives at bytes [128 i, 128 i + 128), its 16-byte chunk c stored at chunk c ^ (i % 8).
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "sm90/config.h"

namespace flashserve::mla::sm90 {

template <typename Element>
struct Traits {
  static_assert(sizeof(Element) == 2, "the Hopper MLA kernel is instantiated for bf16 only");
  static constexpr int TILE_BYTES = 64 * 64 * 2;
  static constexpr int PAGE_BYTES = QK_CHUNKS * TILE_BYTES;  // 73,728: one 64 x 576 page

  struct SharedStorage {
    uint8_t q[QK_CHUNKS][TILE_BYTES];               // Q tile [64 rows x 576], 9 swizzled tiles
    uint8_t kv[NUM_STAGES][QK_CHUNKS][TILE_BYTES];  // pages [64 tokens x 576]
    uint8_t p[TILE_BYTES];                          // probabilities [64 rows x 64 tokens], bf16
    float row_max[NUM_MATH_WARPGROUPS][BLOCK_M];    // per-warpgroup row maxima of one page
    float row_sum[NUM_MATH_WARPGROUPS][BLOCK_M];    // per-warpgroup softmax denominators
    uint64_t q_full, q_empty;
    uint64_t kv_full[NUM_STAGES][QK_CHUNKS];  // one per 64 x 64 piece of a staged page
    // Per staged page: [0] frees the tiles 0..3 (the left 256 dims of V), [1] the tiles 4..8, so
    // that the left half can reload while the right half (and the P tile) is still being read.
    uint64_t kv_empty[NUM_STAGES][2];
  };
  // NOTE: the dynamic shared window is only 16-byte aligned by contract; the kernel rounds its base
  // up to 1024 bytes (the swizzle atom), hence the slack.
  static constexpr int SMEM_BYTES = sizeof(SharedStorage) + 1024;
  static_assert(SMEM_BYTES <= 227 * 1024, "shared-memory plan exceeds the 227 KB an H100 block may use");
};

}  // namespace flashserve::mla::sm90
