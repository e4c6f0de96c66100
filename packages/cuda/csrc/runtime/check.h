// Error plumbing shared by the runtime, the launchers and the bindings.
// NOTE: native code never prints and exits: every failure is a C++ exception whose message names the
// operation, and the binding layer turns it into a JS error (see binding/napi_util.h).
#pragma once
#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

namespace flashserve {

class CudaError : public std::runtime_error {
 public:
  CudaError(const std::string& msg, cudaError_t code) : std::runtime_error(msg), code(code) {}
  cudaError_t code;
};

class OutOfMemory : public std::runtime_error {
 public:
  OutOfMemory(const std::string& msg, size_t requested) : std::runtime_error(msg), requested(requested) {}
  size_t requested;
};

inline void check_cuda(cudaError_t err, const char* op) {
  if (err != cudaSuccess) {
    throw CudaError(std::string(op) + " failed: " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")",
                    err);
  }
}

// After a kernel launch: a bad configuration shows here; faults inside the kernel show at the next
// synchronisation, which names itself (toHost) and says an earlier op failed.
inline void check_launch(const char* op) { check_cuda(cudaGetLastError(), op); }

inline void require(bool cond, const std::string& msg) {
  if (!cond) throw std::invalid_argument(msg);
}

}  // namespace flashserve
