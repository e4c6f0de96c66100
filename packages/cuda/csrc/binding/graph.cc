// CUDA graph capture and replay of the runtime's stream (see runtime/runtime.h for how uploads
// behave under capture and replay, and src/graphs.ts for the replay pass).
#include "binding/napi_util.h"

namespace flashserve {
namespace {

using Info = const Napi::CallbackInfo&;

Napi::Value begin_capture(Info info) {
  return guarded(info, "captureGraph", [&] {
    stream_or_throw();
    runtime().begin_capture();
    return info.Env().Undefined();
  });
}

Napi::Value end_capture(Info info) {
  return guarded(info, "captureGraph", [&] { return Napi::Number::New(info.Env(), runtime().end_capture()); });
}

Napi::Value abort_capture(Info info) {
  return guarded(info, "captureGraph", [&] {
    runtime().abort_capture();
    return info.Env().Undefined();
  });
}

Napi::Value begin_replay(Info info) {
  return guarded(info, "replayGraph", [&] {
    runtime().begin_replay(int_arg(info, 0));
    return info.Env().Undefined();
  });
}

Napi::Value cancel_replay(Info info) {
  return guarded(info, "replayGraph", [&] {
    runtime().cancel_replay();
    return info.Env().Undefined();
  });
}

// launchGraph(id, hostWritten = 0): hostWritten, the replay's staging slots filled through
// graphArena() rather than upload.
Napi::Value launch_graph(Info info) {
  return guarded(info, "replayGraph", [&] {
    const size_t host_written = info.Length() > 1 ? static_cast<size_t>(int_arg(info, 1)) : 0;
    runtime().launch_graph(int_arg(info, 0), host_written);
    return info.Env().Undefined();
  });
}

// The pinned staging memory of every graph's uploads, as an external ArrayBuffer: a replay pass
// writes a step's inputs there with plain stores instead of one addon call each. It lives as long as
// the process (never freed or moved), so the buffer needs no finalizer.
Napi::Value graph_arena(Info info) {
  return guarded(info, "graphArena", [&] {
    stream_or_throw();
    char* arena = runtime().graph_arena();
    return Napi::ArrayBuffer::New(info.Env(), arena, runtime().graph_arena_size());
  });
}

Napi::Value destroy_graph(Info info) {
  return guarded(info, "destroyGraph", [&] {
    runtime().destroy_graph(int_arg(info, 0));
    return info.Env().Undefined();
  });
}

}  // namespace

void register_graph(Napi::Env env, Napi::Object exports) {
  exports.Set("beginCapture", Napi::Function::New(env, begin_capture, "beginCapture"));
  exports.Set("endCapture", Napi::Function::New(env, end_capture, "endCapture"));
  exports.Set("abortCapture", Napi::Function::New(env, abort_capture, "abortCapture"));
  exports.Set("beginReplay", Napi::Function::New(env, begin_replay, "beginReplay"));
  exports.Set("cancelReplay", Napi::Function::New(env, cancel_replay, "cancelReplay"));
  exports.Set("launchGraph", Napi::Function::New(env, launch_graph, "launchGraph"));
  exports.Set("destroyGraph", Napi::Function::New(env, destroy_graph, "destroyGraph"));
  exports.Set("graphArena", Napi::Function::New(env, graph_arena, "graphArena"));
}

}  // namespace flashserve
