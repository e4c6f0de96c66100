// See nccl.h. The few NCCL entry points are declared here with NCCL's documented C ABI (enums are
// int-sized, ncclUniqueId is 128 opaque bytes passed by value) and resolved with dlsym.
//
// NOTE: NVLink SHARP (NVLS) multicast stays off: NCCL_NVLS_ENABLE=0 is set in the process
// environment before any communicator is created (the TS layer sets it too, where workers start),
// and nothing here creates multicast objects.
#include "binding/nccl.h"

#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

namespace flashserve {
namespace {

constexpr int NCCL_UNIQUE_ID_BYTES = 128;
struct NcclUniqueId {
  char internal[NCCL_UNIQUE_ID_BYTES];
};
struct NcclComm;
using NcclCommT = NcclComm*;
using NcclResult = int;
constexpr NcclResult NCCL_SUCCESS = 0;
constexpr int NCCL_SUM = 0;

struct NcclApi {
  NcclResult (*get_unique_id)(NcclUniqueId*);
  NcclResult (*comm_init_rank)(NcclCommT*, int, NcclUniqueId, int);
  NcclResult (*all_reduce)(const void*, void*, size_t, int, int, NcclCommT, cudaStream_t);
  NcclResult (*all_gather)(const void*, void*, size_t, int, NcclCommT, cudaStream_t);
  NcclResult (*broadcast)(const void*, void*, size_t, int, int, NcclCommT, cudaStream_t);
  NcclResult (*comm_destroy)(NcclCommT);
  NcclResult (*comm_abort)(NcclCommT);
  const char* (*get_error_string)(NcclResult);
  NcclResult (*get_version)(int*);
};

std::mutex g_mutex;
void* g_handle = nullptr;
NcclApi g_api{};
std::string g_path;
int g_version = 0;

template <typename F>
bool resolve(void* h, const char* name, F& slot, std::string& missing) {
  slot = reinterpret_cast<F>(dlsym(h, name));
  if (slot == nullptr) missing += missing.empty() ? name : std::string(", ") + name;
  return slot != nullptr;
}

// Tries one path; fills the API on success, else appends why to `why`.
bool try_load(const std::string& path, std::string& why) {
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) {
    const char* e = dlerror();
    // dlerror's text already names the path.
    why += "\n  " + (e != nullptr ? std::string(e) : path + ": dlopen failed");
    return false;
  }
  NcclApi api{};
  std::string missing;
  resolve(h, "ncclGetUniqueId", api.get_unique_id, missing);
  resolve(h, "ncclCommInitRank", api.comm_init_rank, missing);
  resolve(h, "ncclAllReduce", api.all_reduce, missing);
  resolve(h, "ncclAllGather", api.all_gather, missing);
  resolve(h, "ncclBroadcast", api.broadcast, missing);
  resolve(h, "ncclCommDestroy", api.comm_destroy, missing);
  resolve(h, "ncclCommAbort", api.comm_abort, missing);
  resolve(h, "ncclGetErrorString", api.get_error_string, missing);
  resolve(h, "ncclGetVersion", api.get_version, missing);
  if (!missing.empty()) {
    why += "\n  " + path + ": missing " + missing;
    dlclose(h);
    return false;
  }
  int version = 0;
  api.get_version(&version);
  g_handle = h;
  g_api = api;
  g_path = path;
  g_version = version;
  return true;
}

const NcclApi& api(const Napi::Env& env) {
  if (g_handle == nullptr) throw Napi::Error::New(env, "NCCL is not loaded (call ncclLoad first)");
  return g_api;
}

void check(const Napi::Env& env, const char* op, NcclResult r) {
  if (r == NCCL_SUCCESS) return;
  const char* text = g_api.get_error_string != nullptr ? g_api.get_error_string(r) : "unknown error";
  Napi::Error err = Napi::Error::New(env, std::string(op) + ": " + text + " (ncclResult " + std::to_string(r) + ")");
  err.Set("code", Napi::String::New(env, "NCCL_ERROR"));
  err.Set("ncclResult", Napi::Number::New(env, r));
  throw err;
}

void* ptr(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsBigInt()) throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a bigint");
  bool lossless = false;
  return reinterpret_cast<void*>(static_cast<uintptr_t>(info[i].As<Napi::BigInt>().Uint64Value(&lossless)));
}

int num(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a number");
  return info[i].As<Napi::Number>().Int32Value();
}

size_t count(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a number");
  const int64_t n = info[i].As<Napi::Number>().Int64Value();
  if (n < 0) throw Napi::RangeError::New(info.Env(), "argument " + std::to_string(i) + " must not be negative");
  return static_cast<size_t>(n);
}

NcclCommT comm(const Napi::CallbackInfo& info, size_t i) { return static_cast<NcclCommT>(ptr(info, i)); }
cudaStream_t stream(const Napi::CallbackInfo& info, size_t i) { return static_cast<cudaStream_t>(ptr(info, i)); }

Napi::Value nccl_load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::lock_guard<std::mutex> lock(g_mutex);
  Napi::Object out = Napi::Object::New(env);
  if (g_handle == nullptr) {
    if (!info[0].IsArray()) throw Napi::TypeError::New(env, "ncclLoad: argument 0 must be an array of paths");
    Napi::Array paths = info[0].As<Napi::Array>();
    std::string why;
    for (uint32_t i = 0; i < paths.Length() && g_handle == nullptr; ++i) {
      Napi::Value p = paths.Get(i);
      if (p.IsString()) try_load(p.As<Napi::String>().Utf8Value(), why);
    }
    if (g_handle == nullptr) {
      out.Set("ok", false);
      out.Set("reason", why.empty() ? std::string("no candidate path for libnccl.so.2") : "libnccl.so.2 did not load:" + why);
      return out;
    }
  }
  out.Set("ok", true);
  out.Set("path", g_path);
  out.Set("version", g_version);
  return out;
}

Napi::Value nccl_get_unique_id(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  NcclUniqueId id{};
  check(env, "ncclGetUniqueId", api(env).get_unique_id(&id));
  Napi::Uint8Array out = Napi::Uint8Array::New(env, NCCL_UNIQUE_ID_BYTES);
  std::memcpy(out.Data(), id.internal, NCCL_UNIQUE_ID_BYTES);
  return out;
}

Napi::Value nccl_comm_init_rank(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().ByteLength() != NCCL_UNIQUE_ID_BYTES) {
    throw Napi::TypeError::New(env, "ncclCommInitRank: argument 0 must be the 128-byte unique id");
  }
  Napi::TypedArray arr = info[0].As<Napi::TypedArray>();
  NcclUniqueId id{};
  std::memcpy(id.internal, static_cast<const char*>(arr.ArrayBuffer().Data()) + arr.ByteOffset(), NCCL_UNIQUE_ID_BYTES);
  const int world = num(info, 1);
  const int rank = num(info, 2);
  // Overwrites whatever the environment says: multicast must stay off on the machines we are lent.
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  NcclCommT c = nullptr;
  check(env, "ncclCommInitRank", api(env).comm_init_rank(&c, world, id, rank));
  return Napi::BigInt::New(env, static_cast<uint64_t>(reinterpret_cast<uintptr_t>(c)));
}

// ncclAllReduce(comm, send, recv, count, dtype, stream)
Napi::Value nccl_all_reduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  check(env, "ncclAllReduce",
        api(env).all_reduce(ptr(info, 1), ptr(info, 2), count(info, 3), num(info, 4), NCCL_SUM, comm(info, 0), stream(info, 5)));
  return env.Undefined();
}

// ncclAllGather(comm, send, recv, sendCount, dtype, stream)
Napi::Value nccl_all_gather(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  check(env, "ncclAllGather",
        api(env).all_gather(ptr(info, 1), ptr(info, 2), count(info, 3), num(info, 4), comm(info, 0), stream(info, 5)));
  return env.Undefined();
}

// ncclBroadcast(comm, send, recv, count, dtype, root, stream)
Napi::Value nccl_broadcast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  check(env, "ncclBroadcast",
        api(env).broadcast(ptr(info, 1), ptr(info, 2), count(info, 3), num(info, 4), num(info, 5), comm(info, 0), stream(info, 6)));
  return env.Undefined();
}

Napi::Value nccl_comm_abort(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  check(env, "ncclCommAbort", api(env).comm_abort(comm(info, 0)));
  return env.Undefined();
}

Napi::Value nccl_comm_destroy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  check(env, "ncclCommDestroy", api(env).comm_destroy(comm(info, 0)));
  return env.Undefined();
}

}  // namespace

void register_nccl(Napi::Env env, Napi::Object exports) {
  exports.Set("ncclLoad", Napi::Function::New(env, nccl_load, "ncclLoad"));
  exports.Set("ncclGetUniqueId", Napi::Function::New(env, nccl_get_unique_id, "ncclGetUniqueId"));
  exports.Set("ncclCommInitRank", Napi::Function::New(env, nccl_comm_init_rank, "ncclCommInitRank"));
  exports.Set("ncclAllReduce", Napi::Function::New(env, nccl_all_reduce, "ncclAllReduce"));
  exports.Set("ncclAllGather", Napi::Function::New(env, nccl_all_gather, "ncclAllGather"));
  exports.Set("ncclBroadcast", Napi::Function::New(env, nccl_broadcast, "ncclBroadcast"));
  exports.Set("ncclCommAbort", Napi::Function::New(env, nccl_comm_abort, "ncclCommAbort"));
  exports.Set("ncclCommDestroy", Napi::Function::New(env, nccl_comm_destroy, "ncclCommDestroy"));
}

}  // namespace flashserve
