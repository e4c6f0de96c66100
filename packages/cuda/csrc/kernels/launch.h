// Kernel launches with programmatic dependent launch (PDL, sm_90 and newer). With PDL the next kernel
// on the stream may be launched while this one drains: its blocks take SMs as this kernel's blocks
// retire, and whatever it does before pdl_wait() (common.cuh) overlaps this kernel's tail. The decode
// kernels use that to request their weights, which no earlier kernel writes, before waiting for
// their activations: at batch 1 a decode step is ~400 short kernels, so the launch gap and the first
// load's latency are a large share of each one.
//
// Contract for a kernel launched through launch_pdl: every thread calls pdl_wait() before it reads
// memory an earlier kernel wrote and before it writes anything. Kernels launched the ordinary way
// (cuBLAS, the MLA addon) keep full stream ordering, before and after these.
// FLASHSERVE_NO_PDL=1 turns the attribute off (A/B timing); the kernels are the same either way.
#pragma once
#include <cuda_runtime.h>

#include <cstdlib>
#include <string>

#include "kernels/timeline.h"
#include "runtime/check.h"
#include "runtime/env.h"

namespace flashserve {

// Whether launches get the PDL attribute: on sm_90+ unless FLASHSERVE_NO_PDL=1. Decided once per
// thread, for the device that thread drives (runtime.cc).
inline bool pdl_enabled() {
  thread_local const bool on = [] {
    if (env_flag("FLASHSERVE_NO_PDL")) return false;
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return false;
    return major >= 9;
  }();
  return on;
}

// Measurement probe (FLASHSERVE_PROBE_DOUBLE="<op>@<blocks>", e.g. "linear (skinny)@256"): each launch
// of that op with that many blocks is issued twice, so a step timed with and without it gives the
// kernel's marginal cost inside the real chain of launches. Timing only: an op that updates a buffer
// in place computes something else the second time.
inline bool probe_double(const char* op, unsigned blocks) {
  static const std::string probe = [] {
    const char* v = std::getenv("FLASHSERVE_PROBE_DOUBLE");
    return std::string(v ? v : "");
  }();
  return !probe.empty() && probe == std::string(op) + "@" + std::to_string(blocks);
}

// Launches `kernel<<<grid, block, smem, stream>>>(args...)` with the PDL attribute when enabled, and
// throws naming `op` if the launch fails.
template <typename... Params, typename... Args>
void launch_pdl(const char* op, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                cudaStream_t stream, Args... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_enabled() ? 1 : 0;
#if defined(FLASHSERVE_KERNEL_TIMELINE)
  if (timeline_noting()) timeline_note(op, grid.x, block.x);  // measurement builds only (timeline.h)
#endif
  if (probe_double(op, grid.x * grid.y * grid.z)) check_cuda(cudaLaunchKernelEx(&cfg, kernel, args...), op);
  check_cuda(cudaLaunchKernelEx(&cfg, kernel, args...), op);
}

}  // namespace flashserve
