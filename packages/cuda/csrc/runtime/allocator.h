// A caching device allocator for one stream.
//
// NOTE: every op runs on the runtime's compute stream, so a block given back can be handed out again
// at once: whatever reads it next is queued after whatever used it last (stream order), and no event
// is needed. The one exception, work on the aux stream (Runtime::fork_aux: the shared experts beside the
// routed ones), keeps its blocks until it has been joined back into the compute stream. Blocks are
// cached by rounded size because a model asks for the same shapes step after step; cudaFree (which
// synchronises) only happens in empty_cache() or to retry after an OOM.
//
// Blocks allocated while a CUDA graph is being captured come from a separate graph pool and never
// return to the general pool: a replayed graph writes its temporaries at the addresses it was
// captured with, so eager code must never be handed those addresses. Graphs replay one at a time on
// the same stream, so all graphs can share that pool (captured largest first, smaller ones reuse it).
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <unordered_map>

namespace flashserve {

struct AllocatorStats {
  size_t in_use = 0;       // bytes handed out and not given back
  size_t cached = 0;       // bytes held in free lists
  size_t graph_pool = 0;   // bytes owned by the graph pool (in use or free)
  size_t peak_in_use = 0;
  uint64_t cuda_mallocs = 0;
};

class CachingAllocator {
 public:
  void* allocate(size_t bytes);
  void release(void* ptr);
  // Frees cached general-pool blocks back to the driver (synchronises the device).
  void empty_cache();
  void set_graph_pool(bool on) { graph_mode_ = on; }
  bool graph_mode() const { return graph_mode_; }
  AllocatorStats stats() const { return stats_; }
  static size_t round_size(size_t bytes);

 private:
  struct Block {
    size_t size;
    bool graph;
  };
  // Returns a cached block of at least `size` bytes (its true size in *got), or null.
  static void* take_cached(std::multimap<size_t, void*>& pool, size_t size, size_t* got);
  std::unordered_map<void*, Block> live_;
  std::multimap<size_t, void*> free_;
  std::multimap<size_t, void*> graph_free_;
  bool graph_mode_ = false;
  AllocatorStats stats_;
};

}  // namespace flashserve
