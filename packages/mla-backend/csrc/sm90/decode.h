// Launch entry of the Hopper (sm_90a) MLA decode kernel: the split-KV kernel, then the combine.
#pragma once

#include "common/combine_uv.h"
#include "params.h"

namespace flashserve::mla::sm90 {

// Asynchronous on params.stream. Requires params.sched_meta / num_splits from get_mla_metadata for
// the same cache_seqlens and q_rows. Returns the first CUDA error met (launch or tensor-map encode).
template <typename Element>
cudaError_t run_mla_decode(const DecodeParams& params);

// The same decode kernel, then the combine fused with the W_UV product (combine_uv.h) instead of
// run_combine: writes uv.result, not params.out / lse as results (params.out is still the decode
// kernel's scratch for requests in one piece). Needs combine_uv_applies(params, uv.v_dim).
template <typename Element>
cudaError_t run_mla_decode_uv(const DecodeParams& params, const CombineUvParams& uv);

// V operand descriptor variant (the N-major strides of wgmma); 0 is the one the kernel uses.
// Exposed for the GPU self-test that checks the layout assumption on the device.
cudaError_t run_wgmma_layout_probe(const void* v_tile, const void* p_tile, float* out, int variant,
                                   cudaStream_t stream);

}  // namespace flashserve::mla::sm90
