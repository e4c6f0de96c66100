// Entry point of the @flashserve/mla-backend addon. No CUDA call happens at load time.
#include <napi.h>

namespace {
Napi::Object init(Napi::Env env, Napi::Object exports) {
  exports.Set("abiVersion", Napi::Number::New(env, 1));
  return exports;
}
}  // namespace

NODE_API_MODULE(flashserve_mla, init)
