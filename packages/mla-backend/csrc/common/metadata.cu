// Splits the flattened (request, page) work list into num_parts near-equal contiguous chunks.
//
// Cost model: request r costs SCHED_FIXED_COST_PAGES + ceil(len_r / 64) units, laid out on one axis
// in request order (its fixed cost first, then its pages). Part p covers the units
// [p * per_part, (p + 1) * per_part) with per_part = ceil(total / num_parts); a cut that lands in a
// request's fixed cost moves to its first page. Requests cut in their interior get several
// "pieces" (splits), whose partial results the combine kernel merges.
//
//   request:   |fix|p0 p1 p2 p3 p4 p5|fix|p0 p1|fix|p0 p1 p2 ...
//   parts:     |<--- part 0 --->|<--- part 1 --->|<--- part 2 ...
//                               ^ cut inside request 0 at page 4: request 0 has 2 splits
//
// One block does everything: b is at most a few thousand and this runs once per step.
#include "common/metadata.h"

namespace flashserve::mla {
namespace {

constexpr int THREADS = 1024;
constexpr int MAX_PARTS = 1024;

__device__ __forceinline__ int pages_of(int len) { return len > 0 ? (len + PAGE_SIZE - 1) / PAGE_SIZE : 0; }

// Exclusive block-wide scan of one value per thread; returns the prefix and sets *total.
__device__ int block_exclusive_scan(int v, int* warp_sums, int* total) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  int x = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    int y = __shfl_up_sync(0xffffffffu, x, o);
    if (lane >= o) x += y;
  }
  if (lane == 31) warp_sums[warp] = x;
  __syncthreads();
  if (warp == 0) {
    int s = warp_sums[lane];
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      int y = __shfl_up_sync(0xffffffffu, s, o);
      if (lane >= o) s += y;
    }
    warp_sums[lane] = s;  // inclusive
  }
  __syncthreads();
  const int before = warp > 0 ? warp_sums[warp - 1] : 0;
  *total = warp_sums[31];
  __syncthreads();  // warp_sums is reused by the next call
  return before + x - v;
}

// The request holding cost position pos: the last r with cost_prefix[r] <= pos (cost_prefix has
// b + 1 entries, the last being the total).
__device__ int find_request(const int* cost_prefix, int b, long long pos) {
  int lo = 0, hi = b;  // answer in [0, b]
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (cost_prefix[mid] <= pos) lo = mid; else hi = mid - 1;
  }
  return lo;
}

__global__ void __launch_bounds__(THREADS) get_mla_metadata_kernel(MetadataParams p) {
  __shared__ int warp_sums[32];
  __shared__ int cut_req[MAX_PARTS + 1];
  __shared__ int cut_page[MAX_PARTS + 1];
  // NOTE: num_splits [b + 1] first serves as scratch for the cost prefix; it is overwritten with the
  // split prefix once every cut has been found.
  int* cost_prefix = p.num_splits;
  int carry = 0;
  for (int base = 0; base < p.b; base += THREADS) {
    const int r = base + threadIdx.x;
    const int cost = r < p.b ? SCHED_FIXED_COST_PAGES + pages_of(p.cache_seqlens[r]) : 0;
    int chunk_total;
    const int before = block_exclusive_scan(cost, warp_sums, &chunk_total);
    if (r < p.b) cost_prefix[r] = carry + before;
    carry += chunk_total;
  }
  if (threadIdx.x == 0) cost_prefix[p.b] = carry;
  __syncthreads();
  const int total = carry;
  const long long per_part = (total + p.num_parts - 1) / p.num_parts;

  for (int i = threadIdx.x; i <= p.num_parts; i += THREADS) {
    const long long pos = per_part * i;
    int r, page;
    if (pos >= total || i == p.num_parts) {
      r = p.b;
      page = 0;
    } else {
      r = find_request(cost_prefix, p.b, pos);
      const long long into = pos - cost_prefix[r] - SCHED_FIXED_COST_PAGES;
      page = into > 0 ? static_cast<int>(into) : 0;
    }
    cut_req[i] = r;
    cut_page[i] = page;
  }
  __syncthreads();

  for (int i = threadIdx.x; i < p.num_parts; i += THREADS) {
    SchedPart part{};
    part.begin_req = cut_req[i];
    part.begin_page = cut_page[i];
    part.end_req = cut_req[i + 1];
    part.end_page = cut_page[i + 1];
    // A part that starts inside a request continues it: count the earlier cuts inside it.
    int k = 0;
    if (part.begin_page > 0)
      for (int j = i; j >= 1 && cut_req[j] == part.begin_req && cut_page[j] > 0; --j) ++k;
    part.begin_split = k;
    reinterpret_cast<SchedPart*>(p.sched_meta)[i] = part;
  }
  __syncthreads();  // every read of cost_prefix is done

  // splits(r) = (r has pages) + number of cuts strictly inside r. Cuts are sorted, so the cuts
  // inside r are a contiguous run found by binary search.
  carry = 0;
  for (int base = 0; base < p.b; base += THREADS) {
    const int r = base + threadIdx.x;
    int splits = 0;
    if (r < p.b) {
      splits = pages_of(p.cache_seqlens[r]) > 0 ? 1 : 0;
      int lo = 0, hi = p.num_parts + 1;  // first cut with (req, page) > (r, 0)
      while (lo < hi) {
        const int mid = (lo + hi) / 2;
        const bool after = cut_req[mid] > r || (cut_req[mid] == r && cut_page[mid] > 0);
        if (after) hi = mid; else lo = mid + 1;
      }
      for (int j = lo; j <= p.num_parts && cut_req[j] == r; ++j) splits += cut_page[j] > 0 ? 1 : 0;
    }
    int chunk_total;
    const int before = block_exclusive_scan(splits, warp_sums, &chunk_total);
    if (r < p.b) p.num_splits[r] = carry + before;
    carry += chunk_total;
  }
  if (threadIdx.x == 0) p.num_splits[p.b] = carry;
}

}  // namespace

cudaError_t run_get_mla_metadata(const MetadataParams& params) {
  if (params.num_parts < 1 || params.num_parts > MAX_PARTS) return cudaErrorInvalidValue;
  get_mla_metadata_kernel<<<1, THREADS, 0, params.stream>>>(params);
  return cudaGetLastError();
}

}  // namespace flashserve::mla
