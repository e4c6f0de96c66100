// Entry point of the @flashserve/cuda addon: initialises nothing eagerly and registers functions.
// NOTE: no CUDA call happens at load time, so a machine without a driver can still load the addon
// and ask `probe()` why the device is unavailable.
#include <napi.h>

#include "binding/napi_util.h"
#include "binding/probe.h"
#include "binding/nccl.h"

namespace {
Napi::Object init(Napi::Env env, Napi::Object exports) {
  flashserve::register_probe(env, exports);
  flashserve::register_memory(env, exports);
  flashserve::register_dense_ops(env, exports);
  flashserve::register_moe_ops(env, exports);
  flashserve::register_graph(env, exports);
  flashserve::register_sampling(env, exports);
  flashserve::register_nccl(env, exports);
  flashserve::register_timeline(env, exports);
  return exports;
}
}  // namespace

NODE_API_MODULE(flashserve_cuda, init)
