// Device, stream, allocator and transfers: init, alloc/free, upload/write/download (and its asynchronous
// form), memset, stats.
#include <cuda_runtime_api.h>

#include "binding/napi_util.h"

namespace flashserve {
namespace {

using Info = const Napi::CallbackInfo&;

Napi::Value init(Info info) {
  return guarded(info, "init", [&] {
    Runtime& rt = runtime();
    rt.init(int_arg(info, 0));
    const DeviceProps& p = rt.props();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("name", p.name);
    o.Set("major", p.major);
    o.Set("minor", p.minor);
    o.Set("multiProcessorCount", p.sms);
    o.Set("totalMemory", static_cast<double>(p.total_memory));
    o.Set("stream", Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(rt.stream()))));
    o.Set("cublas",
#ifdef FLASHSERVE_WITH_CUBLAS
          true
#else
          false
#endif
    );
    return o;
  });
}

Napi::Value alloc(Info info) {
  return guarded(info, "alloc", [&] {
    stream_or_throw();
    void* p = runtime().allocator().allocate(static_cast<size_t>(i64_arg(info, 0)));
    return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)));
  });
}

Napi::Value free_block(Info info) {
  return guarded(info, "free", [&] {
    runtime().allocator().release(ptr_arg(info, 0));
    return info.Env().Undefined();
  });
}

// upload(dst, typedArray, srcDtype, dstDtype, count)
Napi::Value upload(Info info) {
  return guarded(info, "upload", [&] {
    stream_or_throw();
    Napi::TypedArray arr = info[1].As<Napi::TypedArray>();
    const void* src = static_cast<const char*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
    const int64_t slot = runtime().upload(ptr_arg(info, 0), src, dtype_arg(info, 2), dtype_arg(info, 3),
                                          static_cast<size_t>(i64_arg(info, 4)));
    // While capturing: where the graph's staging slot for this upload is in graphArena().
    return slot >= 0 ? Napi::Number::New(info.Env(), static_cast<double>(slot)) : info.Env().Undefined();
  });
}

Napi::Value write(Info info) {
  return guarded(info, "write", [&] {
    stream_or_throw();
    Napi::TypedArray arr = info[1].As<Napi::TypedArray>();
    const void* src = static_cast<const char*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
    runtime().write(ptr_arg(info, 0), src, dtype_arg(info, 2), dtype_arg(info, 3), static_cast<size_t>(i64_arg(info, 4)));
    return info.Env().Undefined();
  });
}

// uploadFromFile(dst, path, byteOffset, srcDtype, dstDtype, count)
Napi::Value upload_from_file(Info info) {
  return guarded(info, "uploadFromFile", [&] {
    stream_or_throw();
    const std::string path = info[1].As<Napi::String>().Utf8Value();
    runtime().upload_from_file(ptr_arg(info, 0), path, static_cast<uint64_t>(i64_arg(info, 2)), dtype_arg(info, 3),
                               dtype_arg(info, 4), static_cast<size_t>(i64_arg(info, 5)));
    return info.Env().Undefined();
  });
}

// download(src, srcDtype, count, outTypedArray): fills a Float32Array (f32/bf16) or Int32Array (i32).
Napi::Value download(Info info) {
  return guarded(info, "toHost", [&] {
    stream_or_throw();
    Napi::TypedArray arr = info[3].As<Napi::TypedArray>();
    const size_t n = static_cast<size_t>(i64_arg(info, 2));
    require(arr.ByteLength() >= n * 4, "toHost: destination array too small");
    void* dst = static_cast<char*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
    runtime().download(dst, ptr_arg(info, 0), dtype_arg(info, 1), n);
    return info.Env().Undefined();
  });
}

// downloadAsync(src, bytes): queues a copy of at most 64 KiB into pinned memory; returns its ticket.
Napi::Value download_async(Info info) {
  return guarded(info, "downloadAsync", [&] {
    stream_or_throw();
    const int64_t bytes = i64_arg(info, 1);
    require(bytes >= 0, "bytes must not be negative");
    const uint64_t ticket = runtime().download_async(ptr_arg(info, 0), static_cast<size_t>(bytes));
    return Napi::Number::New(info.Env(), static_cast<double>(ticket));
  });
}

// downloadWait(ticket, outTypedArray): waits for that download and copies its bytes into the array.
Napi::Value download_wait(Info info) {
  return guarded(info, "downloadWait", [&] {
    stream_or_throw();
    const int64_t ticket = i64_arg(info, 0);
    if (!info[1].IsTypedArray()) throw Napi::TypeError::New(info.Env(), "argument 1 must be an Int32Array");
    Napi::TypedArray arr = info[1].As<Napi::TypedArray>();
    void* dst = static_cast<char*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
    runtime().download_wait(ticket > 0 ? static_cast<uint64_t>(ticket) : 0, dst, arr.ByteLength());
    return info.Env().Undefined();
  });
}

Napi::Value memset_zero(Info info) {
  return guarded(info, "zeros", [&] {
    cudaStream_t s = stream_or_throw();
    check_cuda(cudaMemsetAsync(ptr_arg(info, 0), 0, static_cast<size_t>(i64_arg(info, 1)), s), "zeros (cudaMemsetAsync)");
    return info.Env().Undefined();
  });
}

// copyDevice(dst, src, bytes): stream-ordered device-to-device copy.
Napi::Value copy_device(Info info) {
  return guarded(info, "copy", [&] {
    cudaStream_t s = stream_or_throw();
    check_cuda(cudaMemcpyAsync(ptr_arg(info, 0), ptr_arg(info, 1), static_cast<size_t>(i64_arg(info, 2)),
                               cudaMemcpyDeviceToDevice, s),
               "copy (cudaMemcpyAsync)");
    return info.Env().Undefined();
  });
}

Napi::Value synchronize(Info info) {
  return guarded(info, "synchronize", [&] {
    stream_or_throw();
    runtime().synchronize("synchronize: an earlier GPU operation failed");
    return info.Env().Undefined();
  });
}

Napi::Value mem_stats(Info info) {
  return guarded(info, "memStats", [&] {
    const AllocatorStats s = runtime().allocator().stats();
    size_t free_b = 0, total_b = 0;
    if (runtime().initialised()) check_cuda(cudaMemGetInfo(&free_b, &total_b), "memStats (cudaMemGetInfo)");
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("inUse", static_cast<double>(s.in_use));
    o.Set("cached", static_cast<double>(s.cached));
    o.Set("graphPool", static_cast<double>(s.graph_pool));
    o.Set("peakInUse", static_cast<double>(s.peak_in_use));
    o.Set("cudaMallocs", static_cast<double>(s.cuda_mallocs));
    o.Set("deviceFree", static_cast<double>(free_b));
    o.Set("deviceTotal", static_cast<double>(total_b));
    return o;
  });
}

Napi::Value empty_cache(Info info) {
  return guarded(info, "emptyCache", [&] {
    runtime().allocator().empty_cache();
    return info.Env().Undefined();
  });
}

}  // namespace

void register_memory(Napi::Env env, Napi::Object exports) {
  exports.Set("init", Napi::Function::New(env, init, "init"));
  exports.Set("alloc", Napi::Function::New(env, alloc, "alloc"));
  exports.Set("free", Napi::Function::New(env, free_block, "free"));
  exports.Set("upload", Napi::Function::New(env, upload, "upload"));
  exports.Set("write", Napi::Function::New(env, write, "write"));
  exports.Set("download", Napi::Function::New(env, download, "download"));
  exports.Set("downloadAsync", Napi::Function::New(env, download_async, "downloadAsync"));
  exports.Set("downloadWait", Napi::Function::New(env, download_wait, "downloadWait"));
  exports.Set("uploadFromFile", Napi::Function::New(env, upload_from_file, "uploadFromFile"));
  exports.Set("memsetZero", Napi::Function::New(env, memset_zero, "memsetZero"));
  exports.Set("copyDevice", Napi::Function::New(env, copy_device, "copyDevice"));
  exports.Set("synchronize", Napi::Function::New(env, synchronize, "synchronize"));
  exports.Set("memStats", Napi::Function::New(env, mem_stats, "memStats"));
  exports.Set("emptyCache", Napi::Function::New(env, empty_cache, "emptyCache"));
}

}  // namespace flashserve
