// Stores the step's new latent KV rows into the paged cache: row `slot` of the cache viewed as
// [num_blocks * 64, 576] receives [c_kv ; k_pe]. A negative slot means "no row" (padding) and is
// skipped.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace flashserve::mla {

struct KvWriteParams {
  const void* c_kv;  // bf16 [num_tokens, 512], rows c_kv_stride apart
  int64_t c_kv_stride;
  const void* k_pe;  // bf16 [num_tokens, 64], rows k_pe_stride apart
  int64_t k_pe_stride;
  const int* slot_mapping;  // [num_tokens]
  int num_tokens;
  void* kcache;  // bf16 [num_blocks, 64, 1, 576]
  int64_t num_slots;  // num_blocks * 64: slots at or past it are an error, so never written
  int64_t k_block_stride;
  int64_t k_row_stride;
  cudaStream_t stream;
};

cudaError_t run_kv_write(const KvWriteParams& params);

}  // namespace flashserve::mla
