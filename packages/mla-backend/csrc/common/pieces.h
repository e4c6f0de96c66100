// Walks the pieces (request, page range) of one part of the split-KV schedule, in order. Every
// role of every kernel that consumes the schedule uses this, so they agree on every page.
#pragma once

#include "params.h"

namespace flashserve::mla {

struct Piece {
  int req;
  int page_begin;  // first page (64 tokens) of the request in this piece
  int page_end;    // one past the last
};

struct PieceIter {
  const DecodeParams& p;
  SchedPart part;
  int req;
  __device__ PieceIter(const DecodeParams& params, const SchedPart& sp) : p(params), part(sp), req(sp.begin_req) {}
  __device__ bool next(Piece& out) {
    while (req <= part.end_req && req < p.b) {
      const int r = req++;
      const int len = __ldcg(p.cache_seqlens + r);  // L2: the producer may read it before its PDL wait
      const int pages = len > 0 ? (len + PAGE_SIZE - 1) / PAGE_SIZE : 0;
      const int b = r == part.begin_req ? part.begin_page : 0;
      const int e = r == part.end_req ? part.end_page : pages;
      if (b < e) {
        out = Piece{r, b, e};
        return true;
      }
    }
    return false;
  }
};

// Where a piece's result goes: straight to out/lse when the request is in one piece, else to its
// partial slot in o_accum/lse_accum.
__device__ __forceinline__ int piece_slot(const DecodeParams& p, const SchedPart& part, int req, bool* split) {
  const int first = p.num_splits[req];
  *split = p.num_splits[req + 1] - first > 1;
  return first + (req == part.begin_req ? part.begin_split : 0);
}

}  // namespace flashserve::mla
