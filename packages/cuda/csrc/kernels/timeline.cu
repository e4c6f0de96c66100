#include "kernels/timeline.cuh"
#include "runtime/check.h"

namespace flashserve {

std::vector<TimelineSetter>& timeline_setters() {
  static std::vector<TimelineSetter> setters;
  return setters;
}

bool timeline_compiled() {
#if defined(FLASHSERVE_KERNEL_TIMELINE)
  return true;
#else
  return false;
#endif
}

void require_timeline_compiled() {
  require(timeline_compiled(),
          "the kernel timeline is not built in: build the addons with the CMake option FLASHSERVE_KERNEL_TIMELINE=ON "
          "(FLASHSERVE_KERNEL_TIMELINE=1 for scripts/build-native.mjs)");
}

void set_timeline(const TimelineLog* log) {
  if (log != nullptr) require_timeline_compiled();
  const TimelineLog value = log ? *log : TimelineLog{nullptr, nullptr, 0};
  for (TimelineSetter set : timeline_setters()) check_cuda(set(value), "timeline");
}

namespace {
thread_local bool noting = false;
thread_local std::vector<TimelineLaunch> launches;
}  // namespace

bool timeline_noting() { return noting; }
void timeline_set_noting(bool on) { noting = on; }
void timeline_note(const char* op, unsigned grid, unsigned block) { launches.push_back({op, grid, block}); }
const std::vector<TimelineLaunch>& timeline_launches() { return launches; }
void timeline_clear() { launches.clear(); }

}  // namespace flashserve
