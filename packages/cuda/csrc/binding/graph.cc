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

Napi::Value launch_graph(Info info) {
  return guarded(info, "replayGraph", [&] {
    runtime().launch_graph(int_arg(info, 0));
    return info.Env().Undefined();
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
}

}  // namespace flashserve
