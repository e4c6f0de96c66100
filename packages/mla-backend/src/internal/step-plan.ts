// How one engine step (any mix of prefill chunks and decodes) becomes launches of the MLA decode
// kernels, which take one query length s_q per launch, every request causal over its own cache.
//
// Each request's query tokens are cut, from the front, into pieces of at most `maxPiece` tokens. A
// piece is a kernel "request" of its own: it attends over the request's block table with
// cache_seqlen = the request's context before the step + the tokens up to the piece's end, so the
// kernel's causal rule (query row i of s_q sees positions < len - (s_q - 1 - i)) is exactly the
// request's causal rule. Every token of the step is in the cache before attention runs (the KV
// write comes first), so later tokens of the same request are present but masked.
//
// Consecutive pieces with the same length form one launch ("run"): their query rows are contiguous
// in the step's flattened [T, h, 576] query and [T, h, 512] output, so a run is addressed by a
// pointer offset and batch stride s_q * h rows, with no gather or scatter. The scheduler lists
// decodes together, so a typical step is one decode run plus one or two runs per prefill chunk.

import type { CommonAttentionMetadata } from '@flashserve/core';

/** Query tokens of one piece the kernels accept (the binding's limit on s_q). */
export const MAX_PIECE_LEN = 64;

export interface StepRun {
  /** Index of the run's first piece (rows of the per-piece seqLens / block tables). */
  readonly firstPiece: number;
  /** Pieces in the run: the kernel's batch size b. */
  readonly numPieces: number;
  /** Query tokens per piece: the kernel's s_q. */
  readonly sQ: number;
  /** The run's first query token in the step's flattened tokens. */
  readonly tokenStart: number;
  /** Where the run's cache lengths start in `seqLensPadded` (a multiple of 4: 16-byte aligned). */
  readonly seqLensAt: number;
  /** Where the run's block-table rows start in `blockTablesPadded` (a multiple of 4). */
  readonly tableAt: number;
}

export interface StepPlan {
  /** [numPieces] cache length each piece attends over (causal end of its last token). */
  readonly pieceSeqLens: Int32Array;
  /** [numPieces * maxBlocksPerReq] the block table row of each piece's request. */
  readonly pieceBlockTables: Int32Array;
  /** Request of each piece. */
  readonly pieceReq: Int32Array;
  readonly runs: readonly StepRun[];
  /** Per run, its pieces' cache lengths, each run's segment 16-byte aligned (the kernels' binding
   * takes only 16-byte aligned device pointers); what goes to the GPU. */
  readonly seqLensPadded: Int32Array;
  /** Per run, its pieces' block-table rows (stride maxBlocksPerReq), segments 16-byte aligned. */
  readonly blockTablesPadded: Int32Array;
}

const align4 = (n: number): number => (n + 3) & ~3;

/** The maximum piece length from FLASHSERVE_MLA_MAX_PIECE (1..64), else MAX_PIECE_LEN. */
export function maxPieceFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.FLASHSERVE_MLA_MAX_PIECE;
  if (raw === undefined || raw === '') return MAX_PIECE_LEN;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > MAX_PIECE_LEN)
    throw new Error(`FLASHSERVE_MLA_MAX_PIECE must be an integer in [1, ${MAX_PIECE_LEN}] (got ${raw})`);
  return n;
}

export function planStep(common: CommonAttentionMetadata, maxPiece = MAX_PIECE_LEN): StepPlan {
  if (!Number.isInteger(maxPiece) || maxPiece < 1 || maxPiece > MAX_PIECE_LEN)
    throw new Error(`planStep: maxPiece must be an integer in [1, ${MAX_PIECE_LEN}] (got ${maxPiece})`);
  const { numReqs, queryStartLoc, seqLens, blockTables, maxBlocksPerReq: mb } = common;
  if (queryStartLoc.length !== numReqs + 1)
    throw new Error(`planStep: queryStartLoc has ${queryStartLoc.length} entries for ${numReqs} requests`);
  if (queryStartLoc[numReqs] !== common.numTokens)
    throw new Error(
      `planStep: queryStartLoc ends at ${queryStartLoc[numReqs]}, numTokens is ${common.numTokens}`,
    );
  const decode = planDecodeStep(common);
  if (decode !== undefined) return decode;
  let numPieces = 0;
  for (let r = 0; r < numReqs; r++) {
    const qLen = queryStartLoc[r + 1]! - queryStartLoc[r]!;
    if (qLen < 0) throw new Error(`planStep: request ${r} has a negative query length`);
    if (qLen > seqLens[r]!)
      throw new Error(`planStep: request ${r} has ${qLen} query tokens but a sequence of ${seqLens[r]}`);
    numPieces += Math.ceil(qLen / maxPiece);
  }
  const pieceSeqLens = new Int32Array(numPieces);
  const pieceBlockTables = new Int32Array(numPieces * mb);
  const pieceReq = new Int32Array(numPieces);
  const spans: { firstPiece: number; numPieces: number; sQ: number; tokenStart: number }[] = [];
  let open: { firstPiece: number; numPieces: number; sQ: number; tokenStart: number } | undefined;
  let p = 0;
  for (let r = 0; r < numReqs; r++) {
    const q0 = queryStartLoc[r]!;
    const qLen = queryStartLoc[r + 1]! - q0;
    const context = seqLens[r]! - qLen;
    const row = blockTables.subarray(r * mb, (r + 1) * mb);
    for (let off = 0; off < qLen; off += maxPiece) {
      const sQ = Math.min(maxPiece, qLen - off);
      pieceSeqLens[p] = context + off + sQ;
      pieceBlockTables.set(row, p * mb);
      pieceReq[p] = r;
      // Pieces are visited in token order, so a run of equal lengths is contiguous in the tokens.
      if (open !== undefined && open.sQ === sQ) open.numPieces++;
      else {
        if (open !== undefined) spans.push(open);
        open = { firstPiece: p, numPieces: 1, sQ, tokenStart: q0 + off };
      }
      p++;
    }
  }
  if (open !== undefined) spans.push(open);
  // Device copies: each run's segment starts 16-byte aligned, so a run is addressed by an offset.
  const runs: StepRun[] = [];
  let lensEnd = 0;
  let tableEnd = 0;
  for (const sp of spans) {
    const seqLensAt = align4(lensEnd);
    const tableAt = align4(tableEnd);
    runs.push({ ...sp, seqLensAt, tableAt });
    lensEnd = seqLensAt + sp.numPieces;
    tableEnd = tableAt + sp.numPieces * mb;
  }
  const seqLensPadded = new Int32Array(Math.max(lensEnd, 1));
  const blockTablesPadded = new Int32Array(Math.max(tableEnd, 1));
  for (const r of runs) {
    seqLensPadded.set(pieceSeqLens.subarray(r.firstPiece, r.firstPiece + r.numPieces), r.seqLensAt);
    blockTablesPadded.set(
      pieceBlockTables.subarray(r.firstPiece * mb, (r.firstPiece + r.numPieces) * mb),
      r.tableAt,
    );
  }
  return { pieceSeqLens, pieceBlockTables, pieceReq, runs, seqLensPadded, blockTablesPadded };
}

/**
 * The plan of a decode-only step (one query token per request), the step a CUDA graph replays: each
 * request is one piece and one launch covers them all, so the step's own cache lengths and block
 * tables are already what goes to the GPU and are passed on without copies. Runs on the host before
 * the step's graph can launch (its uploads are the graph's inputs), so it allocates one small array.
 * undefined when the step is not decode-only (planStep's general path, which also reports bad input).
 */
function planDecodeStep(common: CommonAttentionMetadata): StepPlan | undefined {
  const { numReqs, queryStartLoc, seqLens, blockTables, maxBlocksPerReq: mb } = common;
  if (numReqs < 1 || common.numTokens !== numReqs) return undefined;
  if (seqLens.length !== numReqs || blockTables.length !== numReqs * mb) return undefined;
  for (let r = 0; r < numReqs; r++) {
    if (queryStartLoc[r + 1]! - queryStartLoc[r]! !== 1 || seqLens[r]! < 1) return undefined;
  }
  const pieceReq = new Int32Array(numReqs);
  for (let r = 0; r < numReqs; r++) pieceReq[r] = r;
  return {
    pieceSeqLens: seqLens,
    pieceBlockTables: blockTables,
    pieceReq,
    runs: [{ firstPiece: 0, numPieces: numReqs, sQ: 1, tokenStart: 0, seqLensAt: 0, tableAt: 0 }],
    seqLensPadded: seqLens,
    blockTablesPadded: blockTables,
  };
}
