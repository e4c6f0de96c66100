// Argument decoding and error conversion shared by the bindings.
// Pointers cross as BigInt (device addresses), sizes as Numbers. A C++ exception becomes a JS Error
// whose message starts with the op's name; an out-of-memory error also carries code
// "CUDA_OUT_OF_MEMORY" and the requested byte count so the caller can name the flag to lower.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>

#include "kernels/elementwise.h"
#include "runtime/check.h"
#include "runtime/runtime.h"

namespace flashserve {

inline void* ptr_arg(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsBigInt()) {
    throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a bigint device pointer");
  }
  bool lossless = false;
  return reinterpret_cast<void*>(static_cast<uintptr_t>(info[i].As<Napi::BigInt>().Uint64Value(&lossless)));
}

inline int int_arg(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a number");
  return info[i].As<Napi::Number>().Int32Value();
}

inline int64_t i64_arg(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a number");
  return info[i].As<Napi::Number>().Int64Value();
}

inline double num_arg(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

inline DType dtype_arg(const Napi::CallbackInfo& info, size_t i) { return static_cast<DType>(int_arg(info, i)); }

inline cudaStream_t stream_or_throw() {
  Runtime& rt = runtime();
  require(rt.initialised(), "the CUDA device is not initialised (call init first)");
  return rt.stream();
}

// Runs `body` and rethrows any C++ failure as a JS Error prefixed with `op`.
template <typename F>
Napi::Value guarded(const Napi::CallbackInfo& info, const char* op, F&& body) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const OutOfMemory& e) {
    Napi::Error err = Napi::Error::New(info.Env(), std::string(op) + ": " + e.what());
    err.Set("code", Napi::String::New(info.Env(), "CUDA_OUT_OF_MEMORY"));
    err.Set("requestedBytes", Napi::Number::New(info.Env(), static_cast<double>(e.requested)));
    throw err;
  } catch (const CudaError& e) {
    Napi::Error err = Napi::Error::New(info.Env(), std::string(op) + ": " + e.what());
    err.Set("code", Napi::String::New(info.Env(), "CUDA_ERROR"));
    err.Set("cudaError", Napi::Number::New(info.Env(), static_cast<double>(e.code)));
    throw err;
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), std::string(op) + ": " + e.what());
  }
}

void register_memory(Napi::Env env, Napi::Object exports);
void register_dense_ops(Napi::Env env, Napi::Object exports);
void register_moe_ops(Napi::Env env, Napi::Object exports);
void register_graph(Napi::Env env, Napi::Object exports);
void register_sampling(Napi::Env env, Napi::Object exports);
void register_timeline(Napi::Env env, Napi::Object exports);

}  // namespace flashserve
