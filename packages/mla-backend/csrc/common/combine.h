// Merges the partial outputs of requests that the schedule cut into several pieces, and writes the
// empty result (out = 0, lse = -inf) of requests with no cached tokens.
#pragma once

#include "params.h"

namespace flashserve::mla {

// Reads params.o_accum / lse_accum / num_splits; writes params.out / lse for every request whose
// split count is not 1 (requests in one piece were written by the decode kernel itself).
// With programmatic_launch (sm_90+), the combine is launched as a programmatic dependent of the
// decode kernel just queued on the stream: its blocks start while the decode kernel drains and wait
// on the device (griddepcontrol.wait) until its results are visible.
cudaError_t run_combine(const DecodeParams& params, bool programmatic_launch = false);

}  // namespace flashserve::mla
