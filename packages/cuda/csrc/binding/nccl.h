// NCCL for tensor parallelism, loaded at run time: the addon never links against NCCL, so it builds
// where no NCCL headers or libraries exist (CI) and loads where NCCL is absent (one-GPU machines).
//
// JS surface (pointers are bigint device addresses, `stream` a bigint cudaStream_t):
//   ncclLoad(paths: string[]) -> { ok: true, path, version } | { ok: false, reason }
//       dlopen()s the first path that loads and has every entry point; later calls return the same.
//   ncclGetUniqueId() -> Uint8Array(128)                       (rank 0; sent to the other ranks)
//   ncclCommInitRank(uniqueId, worldSize, rank) -> bigint comm (blocks until every rank has joined;
//       the calling thread's current CUDA device is the rank's GPU)
//   ncclAllReduce(comm, send, recv, count, dtype, stream)       (sum)
//   ncclAllGather(comm, send, recv, sendCount, dtype, stream)
//   ncclBroadcast(comm, send, recv, count, dtype, root, stream)
//   ncclCommAbort(comm), ncclCommDestroy(comm)
// `dtype` is NCCL's own enum value (the TS side maps f32/bf16/i32 to it).
#pragma once
#include <napi.h>

namespace flashserve {
void register_nccl(Napi::Env env, Napi::Object exports);
}  // namespace flashserve
