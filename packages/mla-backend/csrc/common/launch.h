// Kernel launches, optionally as programmatic dependents of the kernel before them on the stream
// (programmatic dependent launch, sm_90): the launch and the kernel's set-up overlap its predecessor,
// which the kernel must wait for (griddepcontrol.wait) before reading anything it wrote.
#pragma once

#include <cuda_runtime.h>

namespace flashserve::mla {

template <typename Kernel, typename... Args>
cudaError_t launch_kernel(Kernel kernel, dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                          bool programmatic_launch, Args... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = &attr;
  cfg.numAttrs = programmatic_launch ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, args...);
}

}  // namespace flashserve::mla
