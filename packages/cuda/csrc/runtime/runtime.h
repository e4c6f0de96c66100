// The CUDA runtime of one thread: one device, one compute stream, the caching allocator, pinned host
// staging for transfers, and captured CUDA graphs. runtime() is per thread (runtime.cc says why).
//
// Transfers: host data is converted (f32 -> bf16 and so on) while it is written into pinned staging
// memory, then copied to the device asynchronously on the stream. Under graph capture an upload's
// staging slot belongs to the graph (the copy node reads it at every replay); during the replay pass
// the same uploads, in the same order, write their new data into those slots instead.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/elementwise.h"
#include "runtime/allocator.h"

namespace flashserve {

struct DeviceProps {
  std::string name;
  int major = 0, minor = 0, sms = 0;
  size_t total_memory = 0;
};

enum class GraphState { EAGER, CAPTURING, REPLAYING };

class Runtime {
 public:
  // Idempotent; throws naming what failed.
  void init(int device);
  bool initialised() const { return stream_ != nullptr; }
  cudaStream_t stream() const { return stream_; }
  const DeviceProps& props() const { return props_; }
  CachingAllocator& allocator() { return allocator_; }

  // Host -> device: `n` elements of `src_dtype` at `src` become `dst_dtype` at `dst`.
  // src_dtype F32 may be converted to BF16; BF16 as raw 16-bit words; I32 as is.
  // Returns, while a graph is being captured, the byte offset in graph_arena() of the staging slot
  // the captured copy reads (a replay pass may refill it there itself); else -1.
  int64_t upload(void* dst, const void* src, DType src_dtype, DType dst_dtype, size_t n);
  // Like upload, but never captured: during capture it runs synchronously on a side stream, so a
  // persistent input buffer can be refilled before each replay.
  void write(void* dst, const void* src, DType src_dtype, DType dst_dtype, size_t n);
  // File -> device without a host copy of the whole tensor: `n` elements of `src_dtype` at byte
  // `offset` of the file at `path` are read chunk by chunk straight into pinned staging (converted
  // there when the dtypes differ) and copied asynchronously. Eager only.
  void upload_from_file(void* dst, const std::string& path, uint64_t offset, DType src_dtype, DType dst_dtype, size_t n);
  // Device -> host, converting bf16 to f32 (`dst` holds n floats) or copying i32/f32. Synchronises.
  void download(void* dst, const void* src, DType src_dtype, size_t n);
  // Device -> host without waiting (async scheduling: a step's sampled ids come back while the next
  // step runs): queues a copy of `bytes` (at most SMALL_DOWNLOAD_BYTES) behind the stream's work into
  // one of ASYNC_DOWNLOAD_SLOTS pinned slots and returns its ticket (1, 2, ...). A ticket holds its
  // slot until ASYNC_DOWNLOAD_SLOTS later downloads; one that was never waited for is waited for
  // then, before its slot is overwritten, and is invalid from then on. Eager only.
  uint64_t download_async(const void* src, size_t bytes);
  // Blocks until the ticket's copy (and so the work queued before it) is done and copies its bytes to
  // `dst`, which holds `dst_bytes`. Throws for a ticket that is unknown or whose slot was reused, and
  // names the failure if the GPU work before the copy failed. Eager only.
  void download_wait(uint64_t ticket, void* dst, size_t dst_bytes);
  void synchronize(const char* op);

  // --- a second compute stream, for work that may run beside the stream's own ---
  // fork_aux orders the aux stream after everything queued on stream() so far and returns it;
  // join_aux orders everything queued on stream() from then on after the aux stream's work. Under
  // capture both become edges of the graph (the aux stream joins the capture through the event).
  // Until the join, the aux stream's buffers must stay allocated: the caching allocator is not
  // stream-aware, so a buffer released while the aux stream still reads it could be handed to
  // stream() work that runs at the same time.
  cudaStream_t fork_aux(const char* op);
  void join_aux(const char* op);

  // --- graphs ---
  GraphState graph_state() const { return state_; }
  void begin_capture();
  int end_capture();  // returns the graph id
  void abort_capture();
  void begin_replay(int graph);
  void cancel_replay();          // a replay pass that failed midway
  // Also ends a replay pass; `host_written`: the replay's slots the host filled in graph_arena()
  // itself instead of through upload (all of them, or 0).
  void launch_graph(int graph, size_t host_written = 0);
  // The pinned memory holding every graph's staging slots (allocated at the first capture, never
  // moved or freed), and its size.
  char* graph_arena();
  size_t graph_arena_size() const { return graph_arena_size_; }
  void destroy_graph(int graph);

 private:
  struct Graph {
    cudaGraphExec_t exec = nullptr;
    struct Slot {
      size_t offset, bytes;
    };
    std::vector<Slot> uploads;
    cudaEvent_t done = nullptr;
  };
  // Writes converted host data into pinned memory at `dst_host`.
  static void convert_into(void* dst_host, const void* src, DType src_dtype, DType dst_dtype, size_t n);
  // Pinned ring for eager uploads; returns a pointer to `bytes` of staging (syncs when wrapping).
  void* ring_reserve(size_t bytes);
  void* graph_slot(size_t bytes, size_t* offset);

  int device_ = -1;
  cudaStream_t stream_ = nullptr;
  cudaStream_t side_stream_ = nullptr;  // write()'s copies during capture
  cudaStream_t aux_stream_ = nullptr;   // fork_aux / join_aux
  cudaEvent_t aux_fork_ = nullptr, aux_join_ = nullptr;
  DeviceProps props_;
  CachingAllocator allocator_;
  static constexpr size_t SMALL_DOWNLOAD_BYTES = 64 << 10;
  char* small_download_ = nullptr;  // pinned: downloads of at most SMALL_DOWNLOAD_BYTES
  // download_async's ring, allocated at its first use: ticket t has slot t % ASYNC_DOWNLOAD_SLOTS.
  // NOTE: four slots let the engine keep a step or two of results in flight with room to spare; each
  // is SMALL_DOWNLOAD_BYTES of pinned memory.
  static constexpr int ASYNC_DOWNLOAD_SLOTS = 4;
  struct AsyncDownload {
    char* host = nullptr;  // pinned, SMALL_DOWNLOAD_BYTES
    cudaEvent_t done = nullptr;  // recorded after the copy
    uint64_t ticket = 0;  // 0: holds no download
    size_t bytes = 0;
    bool waited = false;
  };
  AsyncDownload async_downloads_[ASYNC_DOWNLOAD_SLOTS];
  uint64_t next_ticket_ = 1;
  char* ring_ = nullptr;
  size_t ring_size_ = 0, ring_head_ = 0;
  char* graph_arena_ = nullptr;
  size_t graph_arena_size_ = 0, graph_arena_head_ = 0;
  GraphState state_ = GraphState::EAGER;
  std::vector<std::unique_ptr<Graph>> graphs_;
  Graph* pending_ = nullptr;  // the graph being captured
  Graph* replaying_ = nullptr;
  size_t replay_index_ = 0;
};

Runtime& runtime();

}  // namespace flashserve
