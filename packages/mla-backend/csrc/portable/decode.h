// Launch entry of the portable MLA decode kernel (`cuda-mla`, any GPU from sm_80): same params,
// same schedule and combine as the Hopper kernel, CUDA-core fp32 math. The baseline, and the path
// for GPUs without wgmma.
#pragma once

#include "params.h"

namespace flashserve::mla::portable {

cudaError_t run_mla_decode(const DecodeParams& params);

}  // namespace flashserve::mla::portable
