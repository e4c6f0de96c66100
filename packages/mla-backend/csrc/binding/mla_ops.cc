// Thin validating layer between JS and the launchers: turns an argument object into one plain params
// struct (params.h), checks what the kernels assume, launches on the caller's stream and converts a
// CUDA error into a JS error naming the op. Device memory is owned by the caller (@flashserve/cuda
// tensors expose `ptr`); nothing here allocates or synchronises.
#include "binding/mla_ops.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdlib>
#include <string>

#include "binding/args.h"
#include "common/combine_uv.h"
#include "common/kv_write.h"
#include "common/metadata.h"
#include "kernels/timeline.h"  // @flashserve/cuda's kernel timeline (measurement only)
#include "params.h"
#include "portable/decode.h"
#include "sm90/decode.h"

namespace flashserve::mla::binding {
namespace {

constexpr int64_t MAX_I32 = 2147483647;

void check_cuda(const Args& a, cudaError_t err) {
  if (err != cudaSuccess) a.fail(std::string("CUDA error: ") + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

// Compute capability of the current device as major * 10 + minor.
int current_cc(const Args& a) {
  int dev = 0, major = 0, minor = 0;
  check_cuda(a, cudaGetDevice(&dev));
  check_cuda(a, cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  check_cuda(a, cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
  return major * 10 + minor;
}

Napi::Value probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object result = Napi::Object::New(env);
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    result.Set("ok", false);
    result.Set("reason", err != cudaSuccess ? std::string("cudaGetDeviceCount failed: ") + cudaGetErrorString(err)
                                            : std::string("no CUDA device is visible"));
    cudaGetLastError();
    return result;
  }
  Napi::Array devices = Napi::Array::New(env, count);
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    Napi::Object d = Napi::Object::New(env);
    d.Set("name", std::string(prop.name));
    d.Set("major", prop.major);
    d.Set("minor", prop.minor);
    d.Set("multiProcessorCount", prop.multiProcessorCount);
    devices.Set(i, d);
  }
  result.Set("ok", true);
  result.Set("devices", devices);
  return result;
}

// numSmParts({ numSms, qRows }) -> parts of the split-KV schedule (size of the metadata and workspace).
Napi::Value num_sm_parts_js(const Napi::CallbackInfo& info) {
  Args a(info, "numSmParts");
  const int sms = static_cast<int>(a.integer("numSms", 1, 4096));
  const int q_rows = static_cast<int>(a.integer("qRows", 1, 1 << 16));
  return Napi::Number::New(info.Env(), num_sm_parts(sms, q_rows));
}

Napi::Value get_mla_metadata(const Napi::CallbackInfo& info) {
  Args a(info, "getMlaMetadata");
  MetadataParams p{};
  p.cache_seqlens = static_cast<const int*>(a.ptr("cacheSeqlens"));
  p.b = static_cast<int>(a.integer("b", 1, 1 << 20));
  p.q_rows = static_cast<int>(a.integer("qRows", 1, 1 << 16));
  p.num_parts = static_cast<int>(a.integer("numParts", 1, 1024));
  p.sched_meta = static_cast<int*>(a.ptr("schedMeta"));
  p.num_splits = static_cast<int*>(a.ptr("numSplits"));
  p.stream = static_cast<cudaStream_t>(a.stream("stream"));
  check_cuda(a, run_get_mla_metadata(p));
  return info.Env().Undefined();
}

// A/B timing switches (DecodeParams::tuning): FLASHSERVE_MLA_COMBINE_WIDE=1, the combine's wide
// layout even for small grids (bit 8; otherwise it picks its layout by grid size);
// FLASHSERVE_MLA_NO_PDL=1, the sm90 decode kernel launched plainly instead of as a programmatic
// dependent of the kernel before, and the combine not releasing the kernel after it early (bit 9);
// FLASHSERVE_MLA_LATE_PAGES=1, the sm90 producer waiting for the kernel before at its start (bit 11).
int tuning_from_env() {
  static const int tuning = [] {
    auto on = [](const char* name) {
      const char* v = std::getenv(name);
      return v && std::string(v) == "1";
    };
    return (on("FLASHSERVE_MLA_COMBINE_WIDE") ? 256 : 0) | (on("FLASHSERVE_MLA_NO_PDL") ? 512 : 0) |
           (on("FLASHSERVE_MLA_LATE_PAGES") ? 2048 : 0);
  }();
  return tuning;
}

DecodeParams decode_params(const Args& a) {
  DecodeParams p{};
  p.b = static_cast<int>(a.integer("b", 1, 1 << 20));
  p.s_q = static_cast<int>(a.integer("sQ", 1, 64));
  p.h_q = static_cast<int>(a.integer("hQ", 1, 1024));
  p.q_rows = p.s_q * p.h_q;
  p.num_blocks = static_cast<int>(a.integer("numBlocks", 1, MAX_I32 / PAGE_SIZE));
  p.max_blocks_per_seq = static_cast<int>(a.integer("maxBlocksPerSeq", 1, MAX_I32));
  p.num_parts = static_cast<int>(a.integer("numParts", 1, 1024));
  p.softmax_scale = static_cast<float>(a.number("softmaxScale"));
  if (!(p.softmax_scale > 0.f)) a.fail("softmaxScale", "must be a positive number");
  p.q = a.ptr("q");
  p.q_batch_stride = a.integer("qBatchStride", 1, INT64_MAX / 2);
  p.q_row_stride = a.integer("qRowStride", HEAD_DIM_QK, MAX_I32);
  p.kcache = a.ptr("kcache");
  p.k_block_stride = a.integer("kBlockStride", 1, INT64_MAX / 2);
  p.k_row_stride = a.integer("kRowStride", HEAD_DIM_QK, MAX_I32);
  p.block_table = static_cast<const int*>(a.ptr("blockTable"));
  p.block_table_stride = a.integer("blockTableStride", p.max_blocks_per_seq, MAX_I32);
  p.cache_seqlens = static_cast<const int*>(a.ptr("cacheSeqlens"));
  p.out = a.ptr("out");
  p.o_batch_stride = a.integer("oBatchStride", 1, INT64_MAX / 2);
  p.o_row_stride = a.integer("oRowStride", HEAD_DIM_V, MAX_I32);
  p.lse = static_cast<float*>(a.ptr("lse"));
  p.o_accum = static_cast<float*>(a.ptr("oAccum"));
  p.lse_accum = static_cast<float*>(a.ptr("lseAccum"));
  p.sched_meta = static_cast<const int*>(a.ptr("schedMeta"));
  p.num_splits = static_cast<const int*>(a.ptr("numSplits"));
  p.stream = static_cast<cudaStream_t>(a.stream("stream"));
  p.tuning = tuning_from_env();
  // Rows (s, h) must be packed so the query tile is q_rows consecutive rows of the batch entry.
  if (p.q_batch_stride < (int64_t)p.q_rows * p.q_row_stride) a.fail("qBatchStride", "is smaller than sQ * hQ * qRowStride");
  if (p.o_batch_stride < (int64_t)p.q_rows * p.o_row_stride) a.fail("oBatchStride", "is smaller than sQ * hQ * oRowStride");
  if (p.k_block_stride < (int64_t)PAGE_SIZE * p.k_row_stride) a.fail("kBlockStride", "is smaller than 64 * kRowStride");
  for (const auto& [name, v] : {std::pair<const char*, int64_t>{"qRowStride", p.q_row_stride},
                                {"qBatchStride", p.q_batch_stride},
                                {"kRowStride", p.k_row_stride},
                                {"oRowStride", p.o_row_stride}})
    if (v % 8 != 0) a.fail(name, "must be a multiple of 8 elements (16 bytes)");
  return p;
}

Napi::Value mla_decode(const Napi::CallbackInfo& info) {
  Args a(info, "mlaDecode");
  DecodeParams p = decode_params(a);
  const int cc = current_cc(a);
  if (cc / 10 != 9) a.fail("needs a Hopper GPU (sm_90); this device is sm_" + std::to_string(cc) + ": use mlaDecodePortable");
  if (p.k_block_stride != (int64_t)PAGE_SIZE * p.k_row_stride)
    a.fail("kBlockStride", "must equal 64 * kRowStride (the kernel reads the cache as one 2-D tensor)");
  check_cuda(a, sm90::run_mla_decode<__nv_bfloat16>(p));
  return info.Env().Undefined();
}

// mlaDecodeUv(decode args + { wUv, vDim, result }): mlaDecode with the split-KV combine fused into the
// value projection; result [b * sQ, hQ, vDim] bf16 (out stays the decode kernel's scratch).
Napi::Value mla_decode_uv(const Napi::CallbackInfo& info) {
  Args a(info, "mlaDecodeUv");
  DecodeParams p = decode_params(a);
  const int cc = current_cc(a);
  if (cc / 10 != 9) a.fail("needs a Hopper GPU (sm_90); this device is sm_" + std::to_string(cc));
  if (p.k_block_stride != (int64_t)PAGE_SIZE * p.k_row_stride)
    a.fail("kBlockStride", "must equal 64 * kRowStride (the kernel reads the cache as one 2-D tensor)");
  CombineUvParams uv{};
  uv.w_uv = a.ptr("wUv");
  uv.v_dim = static_cast<int>(a.integer("vDim", 1, 1 << 16));
  uv.result = a.ptr("result");
  if (!combine_uv_applies(p, uv.v_dim))
    a.fail("needs b * sQ <= " + std::to_string(COMBINE_UV_MAX_TOKENS) + " and vDim a multiple of " +
           std::to_string(COMBINE_UV_ROWS));
  check_cuda(a, sm90::run_mla_decode_uv<__nv_bfloat16>(p, uv));
  return info.Env().Undefined();
}

Napi::Value mla_decode_portable(const Napi::CallbackInfo& info) {
  Args a(info, "mlaDecodePortable");
  DecodeParams p = decode_params(a);
  const int cc = current_cc(a);
  if (cc < 80) a.fail("needs compute capability 8.0 or newer; this device is sm_" + std::to_string(cc));
  check_cuda(a, portable::run_mla_decode(p));
  return info.Env().Undefined();
}

Napi::Value kv_write(const Napi::CallbackInfo& info) {
  Args a(info, "kvWrite");
  KvWriteParams p{};
  p.num_tokens = static_cast<int>(a.integer("numTokens", 0, MAX_I32));
  p.c_kv = a.ptr("cKv");
  p.c_kv_stride = a.integer("cKvStride", HEAD_DIM_V, MAX_I32);
  p.k_pe = a.ptr("kPe");
  p.k_pe_stride = a.integer("kPeStride", HEAD_DIM_QK - HEAD_DIM_V, MAX_I32);
  p.slot_mapping = static_cast<const int*>(a.ptr("slotMapping"));
  p.kcache = a.ptr("kcache");
  p.num_slots = a.integer("numBlocks", 1, MAX_I32 / PAGE_SIZE) * PAGE_SIZE;
  p.k_block_stride = a.integer("kBlockStride", 1, INT64_MAX / 2);
  p.k_row_stride = a.integer("kRowStride", HEAD_DIM_QK, MAX_I32);
  p.stream = static_cast<cudaStream_t>(a.stream("stream"));
  for (const auto& [name, v] : {std::pair<const char*, int64_t>{"cKvStride", p.c_kv_stride},
                                {"kPeStride", p.k_pe_stride},
                                {"kRowStride", p.k_row_stride},
                                {"kBlockStride", p.k_block_stride}})
    if (v % 8 != 0) a.fail(name, "must be a multiple of 8 elements (16 bytes)");
  check_cuda(a, run_kv_write(p));
  return info.Env().Undefined();
}

// timelineAttach({ stamps, count, capacity }), or timelineAttach({}) to detach: this addon's kernels
// stamp into the kernel timeline of @flashserve/cuda (its timelineStart's log), tagged
// (kernels/timeline.h). Measurement only (the decode bench's --timeline).
Napi::Value timeline_attach(const Napi::CallbackInfo& info) {
  Args a(info, "timelineAttach");
  void* stamps = a.ptr("stamps", true);
  flashserve::TimelineLog log = {nullptr, nullptr, 0};
  if (stamps != nullptr)
    log = {static_cast<unsigned long long*>(stamps), static_cast<unsigned int*>(a.ptr("count")),
           static_cast<unsigned>(a.integer("capacity", 1, MAX_I32))};
  try {
    flashserve::set_timeline(stamps != nullptr ? &log : nullptr);
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), std::string("timelineAttach: ") + e.what());
  }
  return info.Env().Undefined();
}

}  // namespace

void register_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("timelineAttach", Napi::Function::New(env, timeline_attach, "timelineAttach"));
  exports.Set("probe", Napi::Function::New(env, probe, "probe"));
  exports.Set("numSmParts", Napi::Function::New(env, num_sm_parts_js, "numSmParts"));
  exports.Set("getMlaMetadata", Napi::Function::New(env, get_mla_metadata, "getMlaMetadata"));
  exports.Set("mlaDecode", Napi::Function::New(env, mla_decode, "mlaDecode"));
  exports.Set("mlaDecodeUv", Napi::Function::New(env, mla_decode_uv, "mlaDecodeUv"));
  exports.Set("mlaDecodePortable", Napi::Function::New(env, mla_decode_portable, "mlaDecodePortable"));
  exports.Set("kvWrite", Napi::Function::New(env, kv_write, "kvWrite"));
}

}  // namespace flashserve::mla::binding
