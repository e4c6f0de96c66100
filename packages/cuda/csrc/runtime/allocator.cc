#include "runtime/allocator.h"

#include <cuda_runtime_api.h>

#include <cstdio>
#include <string>

#include "runtime/check.h"

namespace flashserve {
namespace {

constexpr size_t SMALL_ROUND = 512;
constexpr size_t LARGE_ROUND = size_t{2} << 20;
constexpr size_t LARGE_FROM = size_t{16} << 20;
constexpr double MIB = 1024.0 * 1024.0;

std::string mib(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / MIB);
  return buf;
}

}  // namespace

size_t CachingAllocator::round_size(size_t bytes) {
  if (bytes == 0) bytes = 1;
  const size_t unit = bytes >= LARGE_FROM ? LARGE_ROUND : SMALL_ROUND;
  return (bytes + unit - 1) / unit * unit;
}

void* CachingAllocator::take_cached(std::multimap<size_t, void*>& pool, size_t size, size_t* got) {
  auto it = pool.lower_bound(size);
  // NOTE: a cached block at most 1/8 larger is accepted; a much larger one stays for its own size so
  // that small temporaries do not pin big blocks.
  if (it == pool.end() || it->first > size + size / 8) return nullptr;
  void* ptr = it->second;
  *got = it->first;
  pool.erase(it);
  return ptr;
}

void* CachingAllocator::allocate(size_t bytes) {
  const size_t size = round_size(bytes);
  auto& pool = graph_mode_ ? graph_free_ : free_;
  size_t got = 0;
  void* ptr = take_cached(pool, size, &got);
  if (ptr) {
    if (!graph_mode_) stats_.cached -= got;
  } else {
    got = size;
    cudaError_t err = cudaMalloc(&ptr, size);
    if (err == cudaErrorMemoryAllocation && !graph_mode_ && stats_.cached > 0) {
      cudaGetLastError();  // clear the (non-sticky) OOM before retrying
      empty_cache();
      err = cudaMalloc(&ptr, size);
    }
    if (err != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      cudaGetLastError();
      if (err == cudaErrorMemoryAllocation) {
        throw OutOfMemory("out of GPU memory: asked for " + mib(size) + " with " + mib(stats_.in_use) +
                              " in use by flashserve, " + mib(free_b) + " free of " + mib(total_b),
                          size);
      }
      check_cuda(err, "cudaMalloc");
    }
    ++stats_.cuda_mallocs;
    if (graph_mode_) stats_.graph_pool += size;
  }
  live_[ptr] = Block{got, graph_mode_};
  stats_.in_use += got;
  if (stats_.in_use > stats_.peak_in_use) stats_.peak_in_use = stats_.in_use;
  return ptr;
}

void CachingAllocator::release(void* ptr) {
  if (!ptr) return;
  auto it = live_.find(ptr);
  if (it == live_.end()) return;  // not ours (or already given back): ignore rather than corrupt
  const Block b = it->second;
  live_.erase(it);
  stats_.in_use -= b.size;
  if (b.graph) {
    graph_free_.emplace(b.size, ptr);
  } else {
    free_.emplace(b.size, ptr);
    stats_.cached += b.size;
  }
}

void CachingAllocator::empty_cache() {
  if (free_.empty()) return;
  // Work queued on the stream may still use cached blocks' former contents' neighbours; a device
  // synchronisation makes cudaFree safe and is what cudaFree would do anyway.
  check_cuda(cudaDeviceSynchronize(), "emptyCache (cudaDeviceSynchronize)");
  for (auto& [size, ptr] : free_) cudaFree(ptr);
  free_.clear();
  stats_.cached = 0;
}

}  // namespace flashserve
