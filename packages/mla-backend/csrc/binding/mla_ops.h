// The addon's operations: probe, numSmParts, getMlaMetadata, mlaDecode, mlaDecodeUv, mlaDecodePortable, kvWrite.
#pragma once

#include <napi.h>

namespace flashserve::mla::binding {

void register_ops(Napi::Env env, Napi::Object exports);

}  // namespace flashserve::mla::binding
