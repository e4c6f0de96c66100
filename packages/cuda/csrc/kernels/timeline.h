// Measurement only: a timeline of the kernels of a captured decode step, as the GPU ran them
// (the decode bench's --timeline). Every kernel launched through launch_pdl calls pdl_wait(); while a
// timeline is on, block 0's thread 0 of each writes the %globaltimer value at which its wait returned
// (the kernels before it had completed) and its grid and block sizes into a device log. The gap between
// one kernel's stamp and the next one's is the first kernel's cost inside the chain of launches (its
// work after its dependencies were met, plus the hand-over), which timing a kernel alone cannot show.
// Kernels of other libraries (cuBLAS, the MLA addon) do not stamp: their time falls into the gap of the
// stamping kernel before them.
//
// Host side: while on, launch_pdl also notes each launch's op name, grid and block (timeline_note), so
// a graph captured while the timeline is on names its stamps in launch order (measurement builds only,
// like the stamps: a default build's launch_pdl has no trace of it either).
// Measurement builds only: the stamps are compiled in with FLASHSERVE_KERNEL_TIMELINE (CMake option
// FLASHSERVE_KERNEL_TIMELINE=ON of both addons); in every other build pdl_wait has no trace of them.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <vector>

namespace flashserve {

// Kernels of the MLA addon (@flashserve/mla-backend) stamp into the same log with a tag: the host
// notes none of their launches, so a stamp's tag names it instead.
constexpr unsigned TIMELINE_TAG_MLA_DECODE = 1, TIMELINE_TAG_MLA_COMBINE_UV = 2, TIMELINE_TAG_MLA_COMBINE = 3;

struct TimelineLog {
  unsigned long long* stamps;  // [capacity][2]: %globaltimer ns, then (grid.x << 32) | (tag << 16) | block.x
  unsigned int* count;         // stamps written (may pass capacity: later ones are dropped)
  unsigned int capacity;
};

struct TimelineLaunch {
  std::string op;
  unsigned grid, block;
};

// Whether the kernels were built to stamp (FLASHSERVE_KERNEL_TIMELINE; see timeline.cuh).
bool timeline_compiled();
// Throws, saying how to build them so, unless they were.
void require_timeline_compiled();
// Points every kernel translation unit at `log` (nullptr: off) for the calling thread's device; throws
// when the kernels were not built to stamp and `log` is set.
void set_timeline(const TimelineLog* log);
// Whether launch_pdl notes its launches on this thread, and what it noted since timeline_clear().
bool timeline_noting();
void timeline_set_noting(bool on);
void timeline_note(const char* op, unsigned grid, unsigned block);
const std::vector<TimelineLaunch>& timeline_launches();
void timeline_clear();

}  // namespace flashserve
