#include "binding/probe.h"

#include <cuda_runtime_api.h>

#include <string>

namespace flashserve {
namespace {

Napi::Value probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object result = Napi::Object::New(env);
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    result.Set("ok", false);
    std::string reason = err != cudaSuccess ? std::string("cudaGetDeviceCount failed: ") + cudaGetErrorString(err)
                                            : std::string("no CUDA device is visible");
    result.Set("reason", reason);
    cudaGetLastError();  // clear the sticky-free error so later probes start clean
    return result;
  }
  Napi::Array devices = Napi::Array::New(env, count);
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    Napi::Object d = Napi::Object::New(env);
    d.Set("name", std::string(prop.name));
    d.Set("major", prop.major);
    d.Set("minor", prop.minor);
    d.Set("multiProcessorCount", prop.multiProcessorCount);
    d.Set("totalMemory", static_cast<double>(prop.totalGlobalMem));
    devices.Set(i, d);
  }
  result.Set("ok", true);
  result.Set("devices", devices);
  return result;
}

}  // namespace

void register_probe(Napi::Env env, Napi::Object exports) { exports.Set("probe", Napi::Function::New(env, probe, "probe")); }

}  // namespace flashserve
