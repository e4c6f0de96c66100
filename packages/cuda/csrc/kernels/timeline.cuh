// Device half of the kernel timeline (timeline.h). Included by common.cuh, so by every kernel
// translation unit.
// NOTE: the log pointer is a __constant__ of each translation unit (internal linkage: the library is
// built without relocatable device code, so one symbol cannot be shared across units); each unit
// registers a setter at static initialisation, and set_timeline() calls them all.
#pragma once
#include <cuda_runtime.h>

#include "kernels/timeline.h"

namespace flashserve {

using TimelineSetter = cudaError_t (*)(const TimelineLog&);
// Every translation unit's setter (timeline.cu).
std::vector<TimelineSetter>& timeline_setters();

#if defined(FLASHSERVE_KERNEL_TIMELINE)
namespace timeline_unit {
static __constant__ TimelineLog log;
// static, not inline: an inline function is one definition across units, which would set one unit's log.
static cudaError_t set(const TimelineLog& value) { return cudaMemcpyToSymbol(log, &value, sizeof value); }
[[maybe_unused]] static const bool registered = (timeline_setters().push_back(&set), true);
}  // namespace timeline_unit
#endif

// Called by pdl_wait() after the wait: block 0's thread 0 stamps while a timeline is on. `tag` marks
// the kernels of other addons that stamp into the same log (the MLA addon's: timeline.h, TIMELINE_TAG_*).
// Compiled in only with FLASHSERVE_KERNEL_TIMELINE (the CMake option of both addons; off by default):
// measured always on, the stamp's read of the log pointer (a cold constant, right after the wait, on
// block 0's path) cost 2.4% of the batch-1 step (h100-timeline-2026-11-25.log).
__device__ __forceinline__ void timeline_stamp(unsigned tag = 0) {
#if defined(FLASHSERVE_KERNEL_TIMELINE) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
  if ((threadIdx.x | threadIdx.y | blockIdx.x | blockIdx.y) != 0) return;
  const TimelineLog& l = timeline_unit::log;
  if (l.stamps == nullptr) return;
  unsigned long long now;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  const unsigned int i = atomicAdd(l.count, 1u);
  if (i >= l.capacity) return;
  l.stamps[2 * i] = now;
  l.stamps[2 * i + 1] = (static_cast<unsigned long long>(gridDim.x) << 32) | (tag << 16) | blockDim.x;
#else
  (void)tag;
#endif
}

}  // namespace flashserve
