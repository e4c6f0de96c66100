#pragma once
#include <napi.h>

namespace flashserve {
// probe() -> { ok: true, devices: [{ name, major, minor, multiProcessorCount, totalMemory }] }
//          | { ok: false, reason: string }
void register_probe(Napi::Env env, Napi::Object exports);
}  // namespace flashserve
