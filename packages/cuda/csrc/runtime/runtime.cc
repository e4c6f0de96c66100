#include "runtime/runtime.h"

#include <cuda_bf16.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "runtime/check.h"

namespace flashserve {
namespace {

constexpr size_t RING_BYTES = size_t{64} << 20;
constexpr size_t GRAPH_ARENA_BYTES = size_t{32} << 20;
constexpr size_t ALIGN = 256;

size_t dtype_bytes(DType t) { return t == DType::BF16 || t == DType::F16 ? 2 : 4; }

float f16_bits_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  // subnormal: scale into a normal f32
      float f = static_cast<float>(man) * (1.0f / 16777216.0f);
      std::memcpy(&u, &f, 4);
      u |= sign;
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13);
  } else {
    u = sign | ((exp + 112) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round-to-nearest-even f32 -> bf16 on the host, NaN kept quiet.
uint16_t f32_to_bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float bf16_bits_to_f32(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace

// One runtime per thread: a tensor-parallel model runs each rank on its own thread (worker threads of
// one process, docs/tensor-parallel.md), each bound to its own GPU with its own stream, allocator and
// graphs. A thread that never calls init() (the supervisor) never touches the GPU.
Runtime& runtime() {
  thread_local Runtime rt;
  return rt;
}

void Runtime::init(int device) {
  if (stream_) {
    require(device == device_, "init: the CUDA runtime is already bound to device " + std::to_string(device_));
    return;
  }
  check_cuda(cudaSetDevice(device), "init (cudaSetDevice)");
  cudaDeviceProp prop{};
  check_cuda(cudaGetDeviceProperties(&prop, device), "init (cudaGetDeviceProperties)");
  props_.name = prop.name;
  props_.major = prop.major;
  props_.minor = prop.minor;
  props_.sms = prop.multiProcessorCount;
  props_.total_memory = prop.totalGlobalMem;
  check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "init (cudaStreamCreate)");
  check_cuda(cudaStreamCreateWithFlags(&side_stream_, cudaStreamNonBlocking), "init (cudaStreamCreate)");
  check_cuda(cudaStreamCreateWithFlags(&aux_stream_, cudaStreamNonBlocking), "init (cudaStreamCreate)");
  check_cuda(cudaEventCreateWithFlags(&aux_fork_, cudaEventDisableTiming), "init (cudaEventCreate)");
  check_cuda(cudaEventCreateWithFlags(&aux_join_, cudaEventDisableTiming), "init (cudaEventCreate)");
  check_cuda(cudaMallocHost(reinterpret_cast<void**>(&ring_), RING_BYTES), "init (pinned staging)");
  ring_size_ = RING_BYTES;
  check_cuda(cudaMallocHost(reinterpret_cast<void**>(&small_download_), SMALL_DOWNLOAD_BYTES),
             "init (pinned download buffer)");
  device_ = device;
}

void* Runtime::ring_reserve(size_t bytes) {
  bytes = (bytes + ALIGN - 1) / ALIGN * ALIGN;
  if (ring_head_ + bytes > ring_size_) {
    // NOTE: wrapping reuses memory that earlier queued copies may not have read yet; waiting for
    // the stream is rare (64 MiB of uploads) and simpler than tracking an event per region.
    check_cuda(cudaStreamSynchronize(stream_), "upload (waiting for staging memory)");
    ring_head_ = 0;
  }
  void* p = ring_ + ring_head_;
  ring_head_ += bytes;
  return p;
}

void* Runtime::graph_slot(size_t bytes, size_t* offset) {
  if (!graph_arena_) {
    // Allocated outside any capture (begin_capture calls here first with 0 bytes).
    check_cuda(cudaMallocHost(reinterpret_cast<void**>(&graph_arena_), GRAPH_ARENA_BYTES),
               "captureGraph (pinned staging)");
    graph_arena_size_ = GRAPH_ARENA_BYTES;
  }
  bytes = (bytes + ALIGN - 1) / ALIGN * ALIGN;
  require(graph_arena_head_ + bytes <= graph_arena_size_,
          "upload: graph staging memory exhausted (32 MiB); upload large tensors before capturing");
  *offset = graph_arena_head_;
  graph_arena_head_ += bytes;
  return graph_arena_ + *offset;
}

void Runtime::convert_into(void* dst_host, const void* src, DType src_dtype, DType dst_dtype, size_t n) {
  if (src_dtype == dst_dtype) {
    std::memcpy(dst_host, src, n * dtype_bytes(src_dtype));
  } else if (src_dtype == DType::F32 && dst_dtype == DType::BF16) {
    const float* s = static_cast<const float*>(src);
    uint16_t* d = static_cast<uint16_t*>(dst_host);
    for (size_t i = 0; i < n; ++i) d[i] = f32_to_bf16_bits(s[i]);
  } else if (src_dtype == DType::BF16 && dst_dtype == DType::F32) {
    const uint16_t* s = static_cast<const uint16_t*>(src);
    float* d = static_cast<float*>(dst_host);
    for (size_t i = 0; i < n; ++i) d[i] = bf16_bits_to_f32(s[i]);
  } else if (src_dtype == DType::F16 && (dst_dtype == DType::BF16 || dst_dtype == DType::F32)) {
    const uint16_t* s = static_cast<const uint16_t*>(src);
    for (size_t i = 0; i < n; ++i) {
      const float f = f16_bits_to_f32(s[i]);
      if (dst_dtype == DType::F32) {
        static_cast<float*>(dst_host)[i] = f;
      } else {
        static_cast<uint16_t*>(dst_host)[i] = f32_to_bf16_bits(f);
      }
    }
  } else {
    throw std::invalid_argument("upload: unsupported conversion");
  }
}

int64_t Runtime::upload(void* dst, const void* src, DType src_dtype, DType dst_dtype, size_t n) {
  const size_t out_bytes = n * dtype_bytes(dst_dtype);
  if (n == 0) return -1;
  if (state_ == GraphState::REPLAYING) {
    require(replaying_ && replay_index_ < replaying_->uploads.size(),
            "upload: the graph replay made more uploads than its capture");
    const Graph::Slot& slot = replaying_->uploads[replay_index_++];
    require(slot.bytes == out_bytes, "upload: the graph replay's upload sizes differ from its capture");
    convert_into(graph_arena_ + slot.offset, src, src_dtype, dst_dtype, n);
    return -1;  // the captured copy node moves it when the graph is launched
  }
  if (state_ == GraphState::CAPTURING) {
    size_t offset = 0;
    void* slot = graph_slot(out_bytes, &offset);
    convert_into(slot, src, src_dtype, dst_dtype, n);
    pending_->uploads.push_back({offset, out_bytes});
    check_cuda(cudaMemcpyAsync(dst, slot, out_bytes, cudaMemcpyHostToDevice, stream_), "upload (captured copy)");
    return static_cast<int64_t>(offset);
  }
  // Eager: chunk through the ring so any size works with bounded pinned memory.
  const size_t out_elem = dtype_bytes(dst_dtype), in_elem = dtype_bytes(src_dtype);
  const size_t chunk_elems = (ring_size_ / 4) / out_elem;
  for (size_t done = 0; done < n; done += chunk_elems) {
    const size_t cnt = n - done < chunk_elems ? n - done : chunk_elems;
    void* stage = ring_reserve(cnt * out_elem);
    convert_into(stage, static_cast<const char*>(src) + done * in_elem, src_dtype, dst_dtype, cnt);
    check_cuda(cudaMemcpyAsync(static_cast<char*>(dst) + done * out_elem, stage, cnt * out_elem,
                               cudaMemcpyHostToDevice, stream_),
               "upload (cudaMemcpyAsync)");
  }
  return -1;
}

void Runtime::write(void* dst, const void* src, DType src_dtype, DType dst_dtype, size_t n) {
  if (state_ != GraphState::CAPTURING) {
    // Eager and replay alike: the copy is queued before the graph launch that reads it.
    const GraphState saved = state_;
    state_ = GraphState::EAGER;
    try {
      upload(dst, src, src_dtype, dst_dtype, n);
    } catch (...) {
      state_ = saved;
      throw;
    }
    state_ = saved;
    return;
  }
  // NOTE: under capture the main stream records instead of running; the side stream is not part of
  // the capture (relaxed mode allows the synchronous copy), so the buffer holds the data when the
  // freshly captured graph is first launched.
  const size_t bytes = n * dtype_bytes(dst_dtype);
  std::vector<char> host(bytes);
  convert_into(host.data(), src, src_dtype, dst_dtype, n);
  check_cuda(cudaMemcpyAsync(dst, host.data(), bytes, cudaMemcpyHostToDevice, side_stream_), "write (side copy)");
  check_cuda(cudaStreamSynchronize(side_stream_), "write (side copy)");
}

void Runtime::upload_from_file(void* dst, const std::string& path, uint64_t offset, DType src_dtype, DType dst_dtype,
                               size_t n) {
  require(state_ == GraphState::EAGER, "uploadFromFile: not allowed while a CUDA graph is being captured or replayed");
  if (n == 0) return;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("uploadFromFile: cannot open " + path + ": " + std::strerror(errno));
  const size_t in_elem = dtype_bytes(src_dtype), out_elem = dtype_bytes(dst_dtype);
  const size_t chunk_elems = (ring_size_ / 4) / (in_elem > out_elem ? in_elem : out_elem);
  std::vector<char> scratch;
  try {
    for (size_t done = 0; done < n; done += chunk_elems) {
      const size_t cnt = n - done < chunk_elems ? n - done : chunk_elems;
      void* stage = ring_reserve(cnt * out_elem);
      // Same dtype: read straight into pinned memory. Otherwise through a scratch buffer, converted.
      char* into = static_cast<char*>(stage);
      if (src_dtype != dst_dtype) {
        scratch.resize(cnt * in_elem);
        into = scratch.data();
      }
      size_t got = 0;
      const size_t want = cnt * in_elem;
      while (got < want) {
        const ssize_t r = ::pread(fd, into + got, want - got, static_cast<off_t>(offset + done * in_elem + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
          throw std::runtime_error("uploadFromFile: reading " + path + " failed" +
                                   (r < 0 ? std::string(": ") + std::strerror(errno) : std::string(": file too short")));
        }
        got += static_cast<size_t>(r);
      }
      if (src_dtype != dst_dtype) convert_into(stage, scratch.data(), src_dtype, dst_dtype, cnt);
      check_cuda(cudaMemcpyAsync(static_cast<char*>(dst) + done * out_elem, stage, cnt * out_elem,
                                 cudaMemcpyHostToDevice, stream_),
                 "uploadFromFile (cudaMemcpyAsync)");
    }
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
}

void Runtime::download(void* dst, const void* src, DType src_dtype, size_t n) {
  require(state_ == GraphState::EAGER, "toHost: not allowed while a CUDA graph is being captured or replayed");
  const size_t elem = dtype_bytes(src_dtype);
  if (n * elem <= SMALL_DOWNLOAD_BYTES) {
    // A step's sampled ids and the like: queued at once behind the stream's work into a buffer of
    // its own (the ring may still feed queued uploads), so one wait covers the work and the copy.
    check_cuda(cudaMemcpyAsync(small_download_, src, n * elem, cudaMemcpyDeviceToHost, stream_),
               "toHost (cudaMemcpyAsync)");
    check_cuda(cudaStreamSynchronize(stream_), "toHost: an earlier GPU operation failed");
    ring_head_ = 0;  // the stream is idle: the whole ring is free
    convert_into(dst, small_download_, src_dtype, src_dtype == DType::BF16 ? DType::F32 : src_dtype, n);
    return;
  }
  const size_t chunk_elems = (ring_size_ / 2) / elem;
  for (size_t done = 0; done < n; done += chunk_elems) {
    const size_t cnt = n - done < chunk_elems ? n - done : chunk_elems;
    check_cuda(cudaStreamSynchronize(stream_), "toHost: an earlier GPU operation failed");
    ring_head_ = 0;  // the stream is idle: the whole ring is free
    void* stage = ring_reserve(cnt * elem);
    check_cuda(cudaMemcpyAsync(stage, static_cast<const char*>(src) + done * elem, cnt * elem,
                               cudaMemcpyDeviceToHost, stream_),
               "toHost (cudaMemcpyAsync)");
    check_cuda(cudaStreamSynchronize(stream_), "toHost: an earlier GPU operation failed");
    convert_into(static_cast<char*>(dst) + done * 4, stage, src_dtype, src_dtype == DType::BF16 ? DType::F32 : src_dtype,
                 cnt);
  }
  ring_head_ = 0;
}

uint64_t Runtime::download_async(const void* src, size_t bytes) {
  require(state_ == GraphState::EAGER, "not allowed while a CUDA graph is being captured or replayed");
  require(bytes <= SMALL_DOWNLOAD_BYTES, std::to_string(bytes) + " bytes is more than one download may take (" +
                                             std::to_string(SMALL_DOWNLOAD_BYTES) + "); use toHost");
  if (!async_downloads_[0].host) {
    char* pinned = nullptr;
    check_cuda(cudaMallocHost(reinterpret_cast<void**>(&pinned), SMALL_DOWNLOAD_BYTES * ASYNC_DOWNLOAD_SLOTS),
               "pinned download slots (cudaMallocHost)");
    for (int i = 0; i < ASYNC_DOWNLOAD_SLOTS; ++i) {
      check_cuda(cudaEventCreateWithFlags(&async_downloads_[i].done, cudaEventDisableTiming),
                 "download event (cudaEventCreate)");
    }
    // Last, so that a failure above retries the whole set-up next time.
    for (int i = 0; i < ASYNC_DOWNLOAD_SLOTS; ++i) async_downloads_[i].host = pinned + i * SMALL_DOWNLOAD_BYTES;
  }
  const uint64_t ticket = next_ticket_;
  AsyncDownload& slot = async_downloads_[ticket % ASYNC_DOWNLOAD_SLOTS];
  if (slot.ticket != 0 && !slot.waited) {
    // Nobody has waited for the download in this slot yet: its copy must land before this one's.
    const std::string what = "waiting for download " + std::to_string(slot.ticket) + " to free its slot";
    check_cuda(cudaEventSynchronize(slot.done), what.c_str());
  }
  slot.ticket = 0;  // the slot's earlier ticket is gone whatever happens next
  check_cuda(cudaMemcpyAsync(slot.host, src, bytes, cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync");
  check_cuda(cudaEventRecord(slot.done, stream_), "cudaEventRecord");
  slot.ticket = ticket;
  slot.bytes = bytes;
  slot.waited = false;
  ++next_ticket_;
  return ticket;
}

void Runtime::download_wait(uint64_t ticket, void* dst, size_t dst_bytes) {
  require(state_ == GraphState::EAGER, "not allowed while a CUDA graph is being captured or replayed");
  AsyncDownload& slot = async_downloads_[ticket % ASYNC_DOWNLOAD_SLOTS];
  require(ticket != 0 && slot.ticket == ticket,
          "ticket " + std::to_string(ticket) +
              (ticket != 0 && ticket < next_ticket_
                   ? " is no longer valid: its slot went to a later download (at most " +
                         std::to_string(ASYNC_DOWNLOAD_SLOTS) + " are kept)"
                   : " was never issued by downloadAsync"));
  require(dst_bytes >= slot.bytes, "destination of " + std::to_string(dst_bytes) + " bytes for a download of " +
                                       std::to_string(slot.bytes));
  check_cuda(cudaEventSynchronize(slot.done), "the GPU work before the download (cudaEventSynchronize)");
  slot.waited = true;
  std::memcpy(dst, slot.host, slot.bytes);
}

void Runtime::synchronize(const char* op) { check_cuda(cudaStreamSynchronize(stream_), op); }

cudaStream_t Runtime::fork_aux(const char* op) {
  check_cuda(cudaEventRecord(aux_fork_, stream_), op);
  check_cuda(cudaStreamWaitEvent(aux_stream_, aux_fork_, 0), op);
  return aux_stream_;
}

void Runtime::join_aux(const char* op) {
  check_cuda(cudaEventRecord(aux_join_, aux_stream_), op);
  check_cuda(cudaStreamWaitEvent(stream_, aux_join_, 0), op);
}

void Runtime::begin_capture() {
  require(state_ == GraphState::EAGER, "captureGraph: a capture or replay is already in progress");
  size_t unused = 0;
  graph_slot(0, &unused);  // allocate the pinned arena before capturing
  graphs_.push_back(std::make_unique<Graph>());
  pending_ = graphs_.back().get();
  check_cuda(cudaEventCreateWithFlags(&pending_->done, cudaEventDisableTiming), "captureGraph (event)");
  check_cuda(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed), "captureGraph (begin)");
  allocator_.set_graph_pool(true);
  state_ = GraphState::CAPTURING;
}

int Runtime::end_capture() {
  require(state_ == GraphState::CAPTURING, "captureGraph: no capture in progress");
  state_ = GraphState::EAGER;
  allocator_.set_graph_pool(false);
  cudaGraph_t graph = nullptr;
  check_cuda(cudaStreamEndCapture(stream_, &graph), "captureGraph (end)");
  cudaError_t err = cudaGraphInstantiate(&pending_->exec, graph, 0);
  cudaGraphDestroy(graph);
  check_cuda(err, "captureGraph (instantiate)");
  pending_ = nullptr;
  return static_cast<int>(graphs_.size()) - 1;
}

void Runtime::abort_capture() {
  if (state_ != GraphState::CAPTURING) return;
  state_ = GraphState::EAGER;
  allocator_.set_graph_pool(false);
  cudaGraph_t graph = nullptr;
  cudaStreamEndCapture(stream_, &graph);
  if (graph) cudaGraphDestroy(graph);
  cudaGetLastError();
  pending_ = nullptr;
}

void Runtime::begin_replay(int id) {
  require(state_ == GraphState::EAGER, "replayGraph: a capture or replay is already in progress");
  require(id >= 0 && id < static_cast<int>(graphs_.size()) && graphs_[id]->exec, "replayGraph: unknown graph");
  replaying_ = graphs_[id].get();
  // The previous launch of this graph may still be reading its staging slots.
  check_cuda(cudaEventSynchronize(replaying_->done), "replayGraph (waiting for the previous replay)");
  replay_index_ = 0;
  state_ = GraphState::REPLAYING;
}

void Runtime::cancel_replay() {
  if (state_ != GraphState::REPLAYING) return;
  state_ = GraphState::EAGER;
  replaying_ = nullptr;
}

char* Runtime::graph_arena() {
  size_t unused = 0;
  graph_slot(0, &unused);
  return graph_arena_;
}

void Runtime::launch_graph(int id, size_t host_written) {
  require(id >= 0 && id < static_cast<int>(graphs_.size()) && graphs_[id]->exec, "replayGraph: unknown graph");
  Graph* g = graphs_[id].get();
  if (state_ == GraphState::REPLAYING) {
    // The host fills either every slot itself or none (CudaDevice decides per graph at capture).
    const bool complete = replaying_ == g && (host_written == 0 || replay_index_ == 0) &&
                          host_written + replay_index_ == g->uploads.size();
    state_ = GraphState::EAGER;
    replaying_ = nullptr;
    require(complete, "replayGraph: the replay pass made fewer uploads than the capture");
  }
  check_cuda(cudaGraphLaunch(g->exec, stream_), "replayGraph (launch)");
  check_cuda(cudaEventRecord(g->done, stream_), "replayGraph (event)");
}

void Runtime::destroy_graph(int id) {
  if (id < 0 || id >= static_cast<int>(graphs_.size()) || !graphs_[id]->exec) return;
  cudaGraphExecDestroy(graphs_[id]->exec);
  cudaEventDestroy(graphs_[id]->done);
  graphs_[id]->exec = nullptr;
}

}  // namespace flashserve
