// One warp per token: the 576 numbers of a row are 72 chunks of 16 bytes (64 of c_kv, 8 of k_pe).
#include "common/kv_write.h"
#include "params.h"

namespace flashserve::mla {
namespace {

constexpr int WARPS = 8;

__global__ void __launch_bounds__(WARPS * 32) kv_write_kernel(KvWriteParams p) {
  const int tok = blockIdx.x * WARPS + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (tok >= p.num_tokens) return;
  const int slot = p.slot_mapping[tok];
  if (slot < 0 || slot >= p.num_slots) return;
  const int64_t row = (int64_t)(slot / PAGE_SIZE) * p.k_block_stride + (int64_t)(slot % PAGE_SIZE) * p.k_row_stride;
  uint4* dst = reinterpret_cast<uint4*>(static_cast<uint16_t*>(p.kcache) + row);
  const uint4* ckv = reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(p.c_kv) + tok * p.c_kv_stride);
  const uint4* kpe = reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(p.k_pe) + tok * p.k_pe_stride);
  for (int c = lane; c < HEAD_DIM_QK / 8; c += 32) dst[c] = c < HEAD_DIM_V / 8 ? ckv[c] : kpe[c - HEAD_DIM_V / 8];
}

}  // namespace

cudaError_t run_kv_write(const KvWriteParams& params) {
  if (params.num_tokens == 0) return cudaSuccess;
  kv_write_kernel<<<(params.num_tokens + WARPS - 1) / WARPS, WARPS * 32, 0, params.stream>>>(params);
  return cudaGetLastError();
}

}  // namespace flashserve::mla
