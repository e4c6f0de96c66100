// Scheduling metadata for the split-KV decode kernels, computed on the GPU from cache_seqlens alone
// (so it can run once per engine step inside a captured graph and serve every layer).
#pragma once

#include "params.h"

namespace flashserve::mla {

// Fills params.sched_meta [num_parts, 8] and params.num_splits [b + 1]. Asynchronous on
// params.stream; returns the launch error, if any.
cudaError_t run_get_mla_metadata(const MetadataParams& params);

}  // namespace flashserve::mla
