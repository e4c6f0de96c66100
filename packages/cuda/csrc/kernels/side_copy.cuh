// Device side of SideCopy (elementwise.h): a launch's share of a strided copy.
#pragma once
#include "kernels/common.cuh"
#include "kernels/elementwise.h"

namespace flashserve {

// Worker `worker` of `workers` (threads over the whole grid) copies its elements of `cp`.
__device__ __forceinline__ void copy_share(const SideCopy& cp, int64_t worker, int64_t workers) {
  const int64_t total = static_cast<int64_t>(cp.rows) * cp.cols;
  for (int64_t i = worker; i < total; i += workers) {
    const int64_t r = i / cp.cols, col = i - r * cp.cols;
    const int64_t dst_row = cp.dst_index ? cp.dst_index[r] : r;
    if (cp.dst_index && (dst_row < 0 || dst_row >= cp.dst_rows)) continue;
    static_cast<bf16*>(cp.dst)[dst_row * cp.dst_stride + col] = static_cast<const bf16*>(cp.src)[r * cp.src_stride + col];
  }
}

}  // namespace flashserve
