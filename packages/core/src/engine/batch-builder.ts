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
    this.#logitsIndices = new Int32Array(maxNumSeqs);
  }

  build<S extends Sequence>(out: SchedulerOutput<S>): BuiltBatch<S> {
    const bs = this.#blockSize;
    const numReqs = out.scheduled.length;
    this.#ensure(numReqs, out.totalNumTokens);
    const tokenIds = this.#tokenIds;
    const positions = this.#positions;
    const slots = this.#slotMapping;
    const sampling: S[] = [];
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
      for (let pos = start; pos < start + n; pos++, t++) {
        tokenIds[t] = tokens[pos]!;
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
      if (seqLen === seq.numTokens) {
        this.#logitsIndices[sampling.length] = t - 1;
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
        logitsIndices: this.#logitsIndices.subarray(0, sampling.length),
      },
      sampling,
    };
  }

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
      this.#logitsIndices = new Int32Array(numReqs);
    }
  }
}
