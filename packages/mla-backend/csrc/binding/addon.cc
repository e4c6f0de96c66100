// Entry point of the @flashserve/mla-backend addon. No CUDA call happens at load time: a machine
// without a driver or GPU loads the addon and learns why it cannot run from probe().
#include <napi.h>

#include "binding/mla_ops.h"

namespace {
Napi::Object init(Napi::Env env, Napi::Object exports) {
  exports.Set("abiVersion", Napi::Number::New(env, 1));
  flashserve::mla::binding::register_ops(env, exports);
  return exports;
}
}  // namespace

NODE_API_MODULE(flashserve_mla, init)
