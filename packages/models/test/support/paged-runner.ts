// Drives a Model step by step the way the engine does: a paged KV cache with a simple block
// allocator, hand-built CommonAttentionMetadata, several sequences batched per step, prompts
// prefilled in chunks, then greedy decoding one token per step.

import type { CommonAttentionMetadata, Model } from '@flashserve/core';

export interface SequenceResult {
  /** Logits at the last prompt position. */
  readonly promptLogits: Float32Array;
  /** Greedy continuation (argmax of each step's logits). */
  readonly generated: number[];
}

export function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

interface Seq {
  readonly tokens: number[];
  readonly promptLen: number;
  /** Tokens whose KV is in the cache. */
  computed: number;
  readonly blocks: number[];
  promptLogits: Float32Array | undefined;
  readonly generated: number[];
}

/**
 * Runs every prompt to `steps` greedy tokens. Each step takes from every unfinished sequence either
 * its next prefill chunk (at most `chunk` tokens) or its one pending decode token. Blocks are handed
 * out from a shuffled free list so block tables are not the identity.
 */
export function runGreedy(
  model: Model,
  prompts: readonly (readonly number[])[],
  opts: { blockSize: number; chunk: number; steps: number; numBlocks?: number },
): SequenceResult[] {
  const { blockSize, chunk, steps } = opts;
  const numBlocks = opts.numBlocks ?? 64;
  model.allocateKvCache(numBlocks, blockSize);
  // A fixed scramble of block ids; block 0 stays unused so a zeroed table entry would be caught.
  const free: number[] = [];
  for (let i = 1; i < numBlocks; i++) free.push((i * 37) % numBlocks || numBlocks - 1);
  const freeSet = [...new Set(free)];
  const seqs: Seq[] = prompts.map((p) => ({
    tokens: [...p],
    promptLen: p.length,
    computed: 0,
    blocks: [],
    promptLogits: undefined,
    generated: [],
  }));

  const done = (s: Seq) => s.generated.length >= steps;
  while (!seqs.every(done)) {
    const active = seqs.filter((s) => !done(s));
    const queryStartLoc = [0];
    const tokenIds: number[] = [];
    const positions: number[] = [];
    const slotMapping: number[] = [];
    const seqLens: number[] = [];
    const numComputed: number[] = [];
    const logitsIndices: number[] = [];
    const logitsOwners: Seq[] = [];
    for (const s of active) {
      const start = s.computed;
      const end = start < s.promptLen ? Math.min(s.promptLen, start + chunk) : s.tokens.length;
      while (s.blocks.length * blockSize < end) {
        const b = freeSet.shift();
        if (b === undefined) throw new Error('runGreedy: out of KV blocks');
        s.blocks.push(b);
      }
      for (let p = start; p < end; p++) {
        tokenIds.push(s.tokens[p]!);
        positions.push(p);
        slotMapping.push(s.blocks[Math.floor(p / blockSize)]! * blockSize + (p % blockSize));
      }
      numComputed.push(start);
      seqLens.push(end);
      queryStartLoc.push(tokenIds.length);
      if (end >= s.promptLen) {
        logitsIndices.push(tokenIds.length - 1);
        logitsOwners.push(s);
      }
      s.computed = end;
    }
    const maxBlocksPerReq = Math.max(...active.map((s) => s.blocks.length));
    const blockTables = new Int32Array(active.length * maxBlocksPerReq);
    for (const [r, s] of active.entries()) blockTables.set(s.blocks, r * maxBlocksPerReq);
    const queryLens = active.map((_, r) => queryStartLoc[r + 1]! - queryStartLoc[r]!);
    const attention: CommonAttentionMetadata = {
      numReqs: active.length,
      numTokens: tokenIds.length,
      queryStartLoc: Int32Array.from(queryStartLoc),
      seqLens: Int32Array.from(seqLens),
      numComputedTokens: Int32Array.from(numComputed),
      positions: Int32Array.from(positions),
      slotMapping: Int32Array.from(slotMapping),
      blockTables,
      maxBlocksPerReq,
      blockSize,
      maxQueryLen: Math.max(...queryLens),
      maxSeqLen: Math.max(...seqLens),
    };
    if (logitsIndices.length === 0) {
      model.forward({ tokenIds: Int32Array.from(tokenIds), attention, logitsIndices: new Int32Array(0) });
      continue;
    }
    const logits = model.device.toHost(
      model.forward({
        tokenIds: Int32Array.from(tokenIds),
        attention,
        logitsIndices: Int32Array.from(logitsIndices),
      }),
    ) as Float32Array;
    const V = logits.length / logitsIndices.length;
    logitsOwners.forEach((s, j) => {
      const row = logits.slice(j * V, (j + 1) * V);
      if (s.promptLogits === undefined) s.promptLogits = row;
      const next = argmax(row);
      s.generated.push(next);
      s.tokens.push(next);
    });
  }
  return seqs.map((s) => ({ promptLogits: s.promptLogits!, generated: s.generated }));
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
