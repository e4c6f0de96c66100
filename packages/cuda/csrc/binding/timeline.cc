// The kernel timeline (kernels/timeline.h), for the decode bench's --timeline: measurement only.
//   timelineStart(capacity)  log up to `capacity` stamps; launches from now on are noted by name;
//                            returns the log's { stamps, count } device pointers (for the MLA addon's
//                            timelineAttach, whose kernels stamp into the same log with a tag)
//   timelineTake()           { times (ns after the first stamp), grids, blocks, tags } of the stamps so far,
//                            and { ops, opGrids } of the launches noted since start; clears the stamps
//   timelineStop()
#include <cuda_runtime_api.h>

#include <vector>

#include "binding/napi_util.h"
#include "kernels/timeline.h"

namespace flashserve {
namespace {

using Info = const Napi::CallbackInfo&;

// This thread's log on the device (one timeline per thread, as the runtime).
thread_local TimelineLog active = {nullptr, nullptr, 0};

void free_log() {
  set_timeline(nullptr);
  if (active.stamps) cudaFree(active.stamps);
  if (active.count) cudaFree(active.count);
  active = {nullptr, nullptr, 0};
  timeline_set_noting(false);
  timeline_clear();
}

Napi::Value start(Info info) {
  return guarded(info, "timelineStart", [&] {
    stream_or_throw();
    require_timeline_compiled();
    const int capacity = int_arg(info, 0);
    require(capacity > 0, "capacity must be positive");
    free_log();
    TimelineLog log = {nullptr, nullptr, static_cast<unsigned>(capacity)};
    check_cuda(cudaMalloc(reinterpret_cast<void**>(&log.stamps), sizeof(unsigned long long) * 2 * capacity), "timelineStart");
    check_cuda(cudaMalloc(reinterpret_cast<void**>(&log.count), sizeof(unsigned int)), "timelineStart");
    check_cuda(cudaMemset(log.count, 0, sizeof(unsigned int)), "timelineStart");
    active = log;
    set_timeline(&active);
    timeline_set_noting(true);
    timeline_clear();
    Napi::Object ptrs = Napi::Object::New(info.Env());
    ptrs.Set("stamps", Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(log.stamps))));
    ptrs.Set("count", Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(log.count))));
    return static_cast<Napi::Value>(ptrs);
  });
}

Napi::Value take(Info info) {
  return guarded(info, "timelineTake", [&] {
    require(active.stamps != nullptr, "no timeline is on (call timelineStart first)");
    runtime().synchronize("timelineTake");
    unsigned int count = 0;
    check_cuda(cudaMemcpy(&count, active.count, sizeof count, cudaMemcpyDeviceToHost), "timelineTake");
    const unsigned n = count < active.capacity ? count : active.capacity;
    std::vector<unsigned long long> raw(2 * static_cast<size_t>(n));
    if (n > 0)
      check_cuda(cudaMemcpy(raw.data(), active.stamps, sizeof(unsigned long long) * raw.size(), cudaMemcpyDeviceToHost),
                 "timelineTake");
    check_cuda(cudaMemset(active.count, 0, sizeof(unsigned int)), "timelineTake");
    Napi::Env env = info.Env();
    Napi::Float64Array times = Napi::Float64Array::New(env, n);
    Napi::Uint32Array grids = Napi::Uint32Array::New(env, n), blocks = Napi::Uint32Array::New(env, n),
                      tags = Napi::Uint32Array::New(env, n);
    for (unsigned i = 0; i < n; ++i) {
      times[i] = static_cast<double>(raw[2 * i] - raw[0]);
      grids[i] = static_cast<uint32_t>(raw[2 * i + 1] >> 32);
      blocks[i] = static_cast<uint32_t>(raw[2 * i + 1] & 0xffffu);
      tags[i] = static_cast<uint32_t>((raw[2 * i + 1] >> 16) & 0xffffu);
    }
    const std::vector<TimelineLaunch>& noted = timeline_launches();
    Napi::Array ops = Napi::Array::New(env, noted.size());
    Napi::Uint32Array op_grids = Napi::Uint32Array::New(env, noted.size());
    for (size_t i = 0; i < noted.size(); ++i) {
      ops.Set(static_cast<uint32_t>(i), noted[i].op);
      op_grids[i] = noted[i].grid;
    }
    Napi::Object result = Napi::Object::New(env);
    result.Set("times", times);
    result.Set("grids", grids);
    result.Set("blocks", blocks);
    result.Set("tags", tags);
    result.Set("dropped", count - n);
    result.Set("ops", ops);
    result.Set("opGrids", op_grids);
    return result;
  });
}

Napi::Value stop(Info info) {
  return guarded(info, "timelineStop", [&] {
    runtime().synchronize("timelineStop");
    free_log();
    return info.Env().Undefined();
  });
}

}  // namespace

void register_timeline(Napi::Env env, Napi::Object exports) {
  exports.Set("timelineStart", Napi::Function::New(env, start, "timelineStart"));
  exports.Set("timelineTake", Napi::Function::New(env, take, "timelineTake"));
  exports.Set("timelineStop", Napi::Function::New(env, stop, "timelineStop"));
}

}  // namespace flashserve
