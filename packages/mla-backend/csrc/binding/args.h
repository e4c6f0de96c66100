// Reading one op's argument object on the JS thread. Every failure throws a JS TypeError/RangeError
// whose message starts with the op's name and names the field, e.g.
//   "mlaDecode: q must be a bigint device pointer (16-byte aligned)".
// Native code never exits: a bad argument or a CUDA failure becomes a thrown JS error.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

namespace flashserve::mla::binding {

class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* op) : env_(info.Env()), op_(op) {
    if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env_, std::string(op) + ": expects one argument object");
    obj_ = info[0].As<Napi::Object>();
  }

  const char* op() const { return op_; }
  Napi::Env env() const { return env_; }

  // A device address: a non-zero bigint, 16-byte aligned (TMA and 16-byte vector accesses need it).
  void* ptr(const char* name, bool optional = false) const {
    Napi::Value v = obj_.Get(name);
    if (optional && (v.IsUndefined() || v.IsNull())) return nullptr;
    if (!v.IsBigInt()) fail(name, "must be a bigint device pointer");
    bool lossless = false;
    const uint64_t x = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless || x == 0) fail(name, "must be a non-null 64-bit device pointer");
    if (x % 16 != 0) fail(name, "must be 16-byte aligned");
    return reinterpret_cast<void*>(static_cast<uintptr_t>(x));
  }

  // cudaStream_t as a bigint (0n: the legacy default stream).
  void* stream(const char* name) const {
    Napi::Value v = obj_.Get(name);
    if (v.IsUndefined()) return nullptr;
    if (!v.IsBigInt()) fail(name, "must be a bigint stream handle");
    bool lossless = false;
    return reinterpret_cast<void*>(static_cast<uintptr_t>(v.As<Napi::BigInt>().Uint64Value(&lossless)));
  }

  int64_t integer(const char* name, int64_t min, int64_t max) const {
    Napi::Value v = obj_.Get(name);
    if (!v.IsNumber()) fail(name, "must be a number");
    const double d = v.As<Napi::Number>().DoubleValue();
    if (d != static_cast<double>(static_cast<int64_t>(d))) fail(name, "must be an integer");
    const int64_t x = static_cast<int64_t>(d);
    if (x < min || x > max)
      throw Napi::RangeError::New(env_, std::string(op_) + ": " + name + " must be in [" + std::to_string(min) + ", " +
                                            std::to_string(max) + "], got " + std::to_string(x));
    return x;
  }

  double number(const char* name) const {
    Napi::Value v = obj_.Get(name);
    if (!v.IsNumber()) fail(name, "must be a number");
    return v.As<Napi::Number>().DoubleValue();
  }

  [[noreturn]] void fail(const char* name, const std::string& what) const {
    throw Napi::TypeError::New(env_, std::string(op_) + ": " + name + " " + what);
  }
  [[noreturn]] void fail(const std::string& what) const { throw Napi::Error::New(env_, std::string(op_) + ": " + what); }

 private:
  Napi::Env env_;
  const char* op_;
  Napi::Object obj_;
};

}  // namespace flashserve::mla::binding
