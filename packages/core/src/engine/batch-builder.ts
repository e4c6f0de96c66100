// Builds a step's ForwardBatch (token ids, positions, slot mapping, block tables, query offsets,
// logits rows) once, from the scheduler's output and the sequences' block tables.
//
// NOTE: the arrays are views into buffers reused every step. They are valid until the next build();
// model.forward runs synchronously inside the step and must copy (upload) what it keeps.

import type { CommonAttentionMetadata } from '../attention/common-metadata.js';
import type { SchedulerOutput } from '../scheduler/output.js';
import type { Sequence } from '../scheduler/sequence.js';
import type { ForwardBatch } from './model.js';

export interface BuiltBatch<S extends Sequence> {
  readonly batch: ForwardBatch;
  /** Sequences that sample this step (their last scheduled token ends their known tokens), in
   * logits-row order. */
  readonly sampling: S[];
  /** samplingRows[i]: the logits row sampling[i] samples from. */
  readonly samplingRows: readonly number[];
  /** Runs of logits rows at prompt positions, for sequences that want prompt logprobs: rows
   * [firstRow, firstRow + count) are the logits after positions [firstPos, firstPos + count), i.e.
   * the distributions of prompt tokens firstPos + 1 .. firstPos + count. */
  readonly promptLogits: readonly PromptLogitsRun<S>[];
}

export interface PromptLogitsRun<S extends Sequence> {
  readonly seq: S;
  readonly firstRow: number;
  readonly firstPos: number;
  readonly count: number;
}

export class BatchBuilder {
  readonly #blockSize: number;
  #tokenIds: Int32Array;
  #positions: Int32Array;
  #slotMapping: Int32Array;
  #queryStartLoc: Int32Array;
  #seqLens: Int32Array;
  #numComputed: Int32Array;
  #logitsIndices: Int32Array;
  #blockTables = new Int32Array(1024);

  constructor(blockSize: number, maxNumBatchedTokens: number, maxNumSeqs: number) {
    this.#blockSize = blockSize;
    this.#tokenIds = new Int32Array(maxNumBatchedTokens);
    this.#positions = new Int32Array(maxNumBatchedTokens);
    this.#slotMapping = new Int32Array(maxNumBatchedTokens);
    this.#queryStartLoc = new Int32Array(maxNumSeqs + 1);
    this.#seqLens = new Int32Array(maxNumSeqs);
    this.#numComputed = new Int32Array(maxNumSeqs);
    // One row per sampling sequence, or per token when prompt logprobs are asked for.
    this.#logitsIndices = new Int32Array(Math.max(maxNumSeqs, maxNumBatchedTokens));
  }

  /** `unknownTail`: tokens each scheduled sequence has beyond its `tokens` (1 for a step launched by
   * async scheduling before the previous step's tokens are back: its last token is a placeholder 0
   * here, taken from the device through ForwardBatch.prevTokenIds). */
  build<S extends Sequence>(out: SchedulerOutput<S>, unknownTail = 0): BuiltBatch<S> {
    const bs = this.#blockSize;
    const numReqs = out.scheduled.length;
    this.#ensure(numReqs, out.totalNumTokens);
    const tokenIds = this.#tokenIds;
    const positions = this.#positions;
    const slots = this.#slotMapping;
    const sampling: S[] = [];
    const samplingRows: number[] = [];
    const promptLogits: PromptLogitsRun<S>[] = [];
    let rows = 0;
    let t = 0;
    let maxQueryLen = 0;
    let maxSeqLen = 0;
    let maxBlocks = 1;
    for (let i = 0; i < numReqs; i++) {
      const seq = out.scheduled[i]!;
      const n = out.numNewTokens[i]!;
      const start = seq.numComputedTokens;
      const blockIds = seq.blocks.blockIds;
      const tokens = seq.tokens;
      this.#queryStartLoc[i] = t;
      if (seq.wantsPromptLogits) {
        // Positions before the prompt's last one predict prompt tokens; the last one samples.
        const count = Math.min(start + n, seq.promptLen - 1) - start;
        if (count > 0) {
          promptLogits.push({ seq, firstRow: rows, firstPos: start, count });
          for (let k = 0; k < count; k++) this.#logitsIndices[rows++] = t + k;
        }
      }
      const known = tokens.length;
      for (let pos = start; pos < start + n; pos++, t++) {
        tokenIds[t] = pos < known ? tokens[pos]! : 0;
        positions[t] = pos;
        const block = (pos / bs) | 0;
        slots[t] = blockIds[block]! * bs + (pos - block * bs);
      }
      const seqLen = start + n;
      this.#seqLens[i] = seqLen;
      this.#numComputed[i] = start;
      if (n > maxQueryLen) maxQueryLen = n;
      if (seqLen > maxSeqLen) maxSeqLen = seqLen;
      if (blockIds.length > maxBlocks) maxBlocks = blockIds.length;
      if (seqLen === seq.numTokens + unknownTail) {
        samplingRows.push(rows);
        this.#logitsIndices[rows++] = t - 1;
        sampling.push(seq);
      }
    }
    this.#queryStartLoc[numReqs] = t;

    if (this.#blockTables.length < numReqs * maxBlocks) {
      this.#blockTables = new Int32Array(Math.max(numReqs * maxBlocks, this.#blockTables.length * 2));
    }
    const tables = this.#blockTables.subarray(0, numReqs * maxBlocks);
    for (let i = 0; i < numReqs; i++) {
      const blockIds = out.scheduled[i]!.blocks.blockIds;
      const row = i * maxBlocks;
      for (let j = 0; j < blockIds.length; j++) tables[row + j] = blockIds[j]!;
      // Padding points at the null block (0), which no request owns.
      tables.fill(0, row + blockIds.length, row + maxBlocks);
    }

    const attention: CommonAttentionMetadata = {
      numReqs,
      numTokens: t,
      queryStartLoc: this.#queryStartLoc.subarray(0, numReqs + 1),
      seqLens: this.#seqLens.subarray(0, numReqs),
      numComputedTokens: this.#numComputed.subarray(0, numReqs),
      positions: positions.subarray(0, t),
      slotMapping: slots.subarray(0, t),
      blockTables: tables,
      maxBlocksPerReq: maxBlocks,
      blockSize: bs,
      maxQueryLen,
      maxSeqLen,
    };
    return {
      batch: {
        tokenIds: tokenIds.subarray(0, t),
        attention,
        logitsIndices: this.#logitsIndices.subarray(0, rows),
      },
      sampling,
      samplingRows,
      promptLogits,
    };
  }

  /**
   * The decode-graph copy of a decode-only batch (see decodeGraphSize), padded to `size` requests
   * with block tables `tableWidth` wide, so every step of one size has the same shapes:
   *   rows [0, numReqs): the batch's own (token, position, slot, length, block-table row);
   *   rows [numReqs, size): padding: token 0 at position 0, slot -1 (no KV is written), length 1,
   *   block-table row all null block (0), no device token (prevTokenIds row -1); every row wants logits (logitsIndices = 0..size-1), so
   *   row r of the logits is the batch's row r and padding rows come last, to be ignored.
   * Views into buffers reused by the next padDecode call.
   */
  padDecode(batch: ForwardBatch, size: number, tableWidth: number): ForwardBatch {
    const a = batch.attention;
    const n = a.numReqs;
    if (decodeGraphSize(batch, [size]) === undefined)
      throw new Error(`padDecode: not a decode-only batch of at most ${size} requests`);
    if (a.maxBlocksPerReq > tableWidth)
      throw new Error(
        `padDecode: block tables of ${a.maxBlocksPerReq} blocks exceed the width ${tableWidth}`,
      );
    let p = this.#pad;
    if (p === undefined || p.size !== size || p.tableWidth !== tableWidth) {
      p = {
        size,
        tableWidth,
        tokenIds: new Int32Array(size),
        positions: new Int32Array(size),
        slots: new Int32Array(size),
        seqLens: new Int32Array(size),
        numComputed: new Int32Array(size),
        queryStartLoc: Int32Array.from({ length: size + 1 }, (_, i) => i),
        logitsIndices: Int32Array.from({ length: size }, (_, i) => i),
        blockTables: new Int32Array(size * tableWidth),
        prevRows: new Int32Array(size).fill(-1),
        tableRows: 0,
      };
      this.#pad = p;
    }
    p.tokenIds.set(batch.tokenIds);
    p.tokenIds.fill(0, n);
    p.positions.set(a.positions);
    p.positions.fill(0, n);
    p.slots.set(a.slotMapping);
    p.slots.fill(-1, n);
    p.seqLens.set(a.seqLens);
    p.seqLens.fill(1, n);
    p.numComputed.set(a.numComputedTokens);
    p.numComputed.fill(0, n);
    const mb = a.maxBlocksPerReq;
    const w = tableWidth;
    // Rows beyond those written last time are still zero; clear only what may hold old entries.
    const dirty = Math.max(p.tableRows, n);
    for (let r = 0; r < n; r++) {
      p.blockTables.set(a.blockTables.subarray(r * mb, (r + 1) * mb), r * w);
      p.blockTables.fill(0, r * w + mb, (r + 1) * w);
    }
    p.blockTables.fill(0, n * w, dirty * w);
    p.tableRows = n;
    const prev = batch.prevTokenIds;
    if (prev !== undefined) {
      p.prevRows.set(prev.rows);
      p.prevRows.fill(-1, n);
    }
    const attention: CommonAttentionMetadata = {
      numReqs: size,
      numTokens: size,
      queryStartLoc: p.queryStartLoc,
      seqLens: p.seqLens,
      numComputedTokens: p.numComputed,
      positions: p.positions,
      slotMapping: p.slots,
      blockTables: p.blockTables,
      maxBlocksPerReq: w,
      blockSize: a.blockSize,
      maxQueryLen: 1,
      maxSeqLen: a.maxSeqLen,
    };
    return {
      tokenIds: p.tokenIds,
      attention,
      logitsIndices: p.logitsIndices,
      ...(prev === undefined ? {} : { prevTokenIds: { ids: prev.ids, rows: p.prevRows } }),
    };
  }

  #pad: PadBuffers | undefined;

  #ensure(numReqs: number, numTokens: number): void {
    if (this.#tokenIds.length < numTokens) {
      this.#tokenIds = new Int32Array(numTokens);
      this.#positions = new Int32Array(numTokens);
      this.#slotMapping = new Int32Array(numTokens);
    }
    if (this.#seqLens.length < numReqs) {
      this.#queryStartLoc = new Int32Array(numReqs + 1);
      this.#seqLens = new Int32Array(numReqs);
      this.#numComputed = new Int32Array(numReqs);
    }
    if (this.#logitsIndices.length < Math.max(numReqs, numTokens)) {
      this.#logitsIndices = new Int32Array(Math.max(numReqs, numTokens));
    }
  }
}

interface PadBuffers {
  readonly size: number;
  readonly tableWidth: number;
  readonly tokenIds: Int32Array;
  readonly positions: Int32Array;
  readonly slots: Int32Array;
  readonly seqLens: Int32Array;
  readonly numComputed: Int32Array;
  readonly queryStartLoc: Int32Array;
  readonly logitsIndices: Int32Array;
  readonly blockTables: Int32Array;
  readonly prevRows: Int32Array;
  /** Block-table rows holding entries from the last call (the rest are zero). */
  tableRows: number;
}

/**
 * The decode-graph size a batch runs at, or undefined when it must run eagerly: a graph replays a
 * decode-only step, so every request has exactly one query token and samples (logits row r is
 * request r), and there are at most `ladder`'s largest size of them. Returns the smallest size of
 * `ladder` (ascending) that holds the batch.
 */
export function decodeGraphSize(batch: ForwardBatch, ladder: readonly number[]): number | undefined {
  const a = batch.attention;
  const n = a.numReqs;
  if (n < 1 || a.numTokens !== n || batch.logitsIndices.length !== n) return undefined;
  for (let r = 0; r < n; r++) {
    if (a.queryStartLoc[r + 1]! - a.queryStartLoc[r]! !== 1 || batch.logitsIndices[r] !== r) return undefined;
  }
  for (const size of ladder) if (size >= n) return size;
  return undefined;
}
