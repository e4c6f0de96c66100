// Property tests of the KV cache manager against a model of what each block must contain.

import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { KvCacheManager } from './kv-cache-manager.js';
import { SeqBlocks } from './seq-blocks.js';

const BLOCK = 4;

interface Seq {
  tokens: number[];
  numComputed: number;
  blocks: SeqBlocks;
}

/** The manager plus a shadow of the cache contents: which token each slot holds. */
class Harness {
  readonly kv: KvCacheManager;
  readonly live: Seq[] = [];
  readonly preempted: Seq[] = [];
  readonly content: Int32Array;

  constructor(numBlocks: number, prefixCaching = true) {
    this.kv = new KvCacheManager({ numBlocks, blockSize: BLOCK, enablePrefixCaching: prefixCaching });
    this.content = new Int32Array(numBlocks * BLOCK).fill(-1);
  }

  /** Computes tokens [from, to) of seq: writes the shadow, then offers full blocks to the cache. */
  #compute(seq: Seq, from: number, to: number): void {
    for (let p = from; p < to; p++) {
      this.content[seq.blocks.blockIds[Math.floor(p / BLOCK)]! * BLOCK + (p % BLOCK)] = seq.tokens[p]!;
    }
    seq.numComputed = to;
    this.kv.cacheComputedBlocks(seq.blocks, seq.tokens, to);
  }

  admit(seq: Seq): boolean {
    const prefix = this.kv.findCachedPrefix(seq.blocks, seq.tokens, seq.tokens.length);
    if (!this.kv.allocateSlots(seq.blocks, prefix.numTokens, seq.tokens.length - prefix.numTokens, prefix)) {
      expect(seq.blocks.blockIds).toEqual([]);
      return false;
    }
    seq.numComputed = prefix.numTokens;
    this.#compute(seq, prefix.numTokens, seq.tokens.length);
    this.live.push(seq);
    return true;
  }

  grow(seq: Seq, token: number): void {
    seq.tokens.push(token);
    const before = [...seq.blocks.blockIds];
    if (this.kv.allocateSlots(seq.blocks, seq.numComputed, seq.tokens.length - seq.numComputed)) {
      this.#compute(seq, seq.numComputed, seq.tokens.length);
    } else {
      expect(seq.blocks.blockIds).toEqual(before);
      seq.tokens.pop();
    }
  }

  fork(parent: Seq): void {
    const child: Seq = { tokens: parent.tokens.slice(), numComputed: 0, blocks: new SeqBlocks() };
    child.numComputed = this.kv.fork(parent.blocks, parent.numComputed, child.blocks);
    // The child's unshared tail is recomputed into a block of its own.
    if (!this.kv.allocateSlots(child.blocks, child.numComputed, child.tokens.length - child.numComputed)) {
      this.kv.free(child.blocks);
      return;
    }
    this.#compute(child, child.numComputed, child.tokens.length);
    this.live.push(child);
  }

  free(i: number): Seq {
    const [seq] = this.live.splice(i, 1);
    this.kv.free(seq!.blocks);
    return seq!;
  }

  preempt(i: number): void {
    const seq = this.free(i);
    seq.numComputed = 0;
    this.preempted.push(seq);
  }

  readmit(i: number): void {
    const seq = this.preempted[i]!;
    if (this.admit(seq)) this.preempted.splice(i, 1);
  }

  check(): void {
    const pool = this.kv.pool;
    const held = new Map<number, number>();
    for (const s of this.live) {
      expect(s.blocks.blockIds.length).toBeGreaterThanOrEqual(Math.ceil(s.numComputed / BLOCK));
      for (const b of s.blocks.blockIds) held.set(b, (held.get(b) ?? 0) + 1);
      // Every computed token is where the block table says (catches reuse of a wrong or evicted block).
      for (let p = 0; p < s.numComputed; p++) {
        expect(this.content[s.blocks.blockIds[Math.floor(p / BLOCK)]! * BLOCK + (p % BLOCK)]).toBe(
          s.tokens[p],
        );
      }
    }
    for (const s of this.preempted) expect(s.blocks.blockIds).toEqual([]);
    const free = new Set(pool.freeBlockIds());
    expect(free.size).toBe(pool.numFreeBlocks);
    for (let b = 1; b < pool.numBlocks; b++) {
      expect(pool.refCount(b)).toBe(held.get(b) ?? 0);
      expect(free.has(b)).toBe(!held.has(b));
    }
    expect(held.has(0)).toBe(false);
  }
}

type Op =
  | { kind: 'admit'; template: number; suffix: number[] }
  | { kind: 'grow'; seq: number; token: number }
  | { kind: 'fork'; seq: number }
  | { kind: 'finish'; seq: number }
  | { kind: 'abort'; seq: number }
  | { kind: 'preempt'; seq: number }
  | { kind: 'readmit'; seq: number };

// Few templates and a tiny alphabet so prompts share prefixes often.
const TEMPLATES = [
  [1, 2, 3, 4, 5, 6, 7, 8, 9],
  [1, 2, 3, 4, 9, 9, 9, 9],
  [5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5],
];
const token = fc.integer({ min: 0, max: 5 });
const index = fc.nat(20);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('admit' as const),
      template: fc.nat(TEMPLATES.length - 1),
      suffix: fc.array(token, { maxLength: 6 }),
    }),
  },
  fc.record({
    kind: fc.constant('admit' as const),
    template: fc.nat(TEMPLATES.length - 1),
    suffix: fc.array(token, { maxLength: 6 }),
  }),
  fc.record({ kind: fc.constant('grow' as const), seq: index, token }),
  fc.record({ kind: fc.constant('fork' as const), seq: index }),
  fc.record({ kind: fc.constant('finish' as const), seq: index }),
  fc.record({ kind: fc.constant('abort' as const), seq: index }),
  fc.record({ kind: fc.constant('preempt' as const), seq: index }),
  fc.record({ kind: fc.constant('readmit' as const), seq: index }),
);

function apply(h: Harness, op: Op): void {
  const live = h.live.length;
  switch (op.kind) {
    case 'admit':
      h.admit({
        tokens: [...TEMPLATES[op.template]!, ...op.suffix],
        numComputed: 0,
        blocks: new SeqBlocks(),
      });
      return;
    case 'grow':
      if (live > 0) h.grow(h.live[op.seq % live]!, op.token);
      return;
    case 'fork':
      if (live > 0) h.fork(h.live[op.seq % live]!);
      return;
    case 'finish':
    case 'abort':
      if (live > 0) h.free(op.seq % live);
      return;
    case 'preempt':
      if (live > 0) h.preempt(op.seq % live);
      return;
    case 'readmit':
      if (h.preempted.length > 0) h.readmit(op.seq % h.preempted.length);
      return;
  }
}

describe('KvCacheManager properties', () => {
  test.each([
    ['with prefix caching', true],
    ['without prefix caching', false],
  ])(
    'after any admit/grow/fork/finish/abort/preempt sequence every block is free or referenced exactly (%s)',
    (_n, pc) => {
      fc.assert(
        // Small pools so that cached blocks are evicted and re-hit often.
        fc.property(
          fc.integer({ min: 3, max: 12 }),
          fc.array(opArb, { maxLength: 120 }),
          (numBlocks, ops) => {
            const h = new Harness(numBlocks, pc);
            for (const op of ops) {
              apply(h, op);
              h.check();
            }
            while (h.live.length > 0) h.free(0);
            h.check();
            expect(h.kv.numFreeBlocks).toBe(h.kv.numUsableBlocks);
          },
        ),
        { numRuns: 300 },
      );
    },
  );

  test('a prompt sharing a prefix with a finished one reuses exactly the full shared blocks', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 50 }), { minLength: 1, maxLength: 40 }),
        fc.nat(40),
        fc.array(fc.integer({ min: 0, max: 50 }), { minLength: 1, maxLength: 10 }),
        (a, sharedLen, tail) => {
          const k = Math.min(sharedLen, a.length);
          // b shares exactly k tokens with a: its next token differs.
          const b = [...a.slice(0, k), (a[k] ?? 0) + 51, ...tail];
          const h = new Harness(64);
          const seqA: Seq = { tokens: [...a], numComputed: 0, blocks: new SeqBlocks() };
          expect(h.admit(seqA)).toBe(true);
          const aBlocks = [...seqA.blocks.blockIds];
          h.free(0);
          const seqB: Seq = { tokens: b, numComputed: 0, blocks: new SeqBlocks() };
          const prefix = h.kv.findCachedPrefix(seqB.blocks, b, b.length);
          const expectedBlocks = Math.min(Math.floor(k / BLOCK), Math.floor((b.length - 1) / BLOCK));
          expect(prefix.numTokens).toBe(expectedBlocks * BLOCK);
          expect(prefix.blockIds).toEqual(aBlocks.slice(0, expectedBlocks));
          expect(h.admit(seqB)).toBe(true);
          h.check();
        },
      ),
      { numRuns: 300 },
    );
  });
});

test('allocateSlots is all or nothing and counts idle cached blocks it adopts', () => {
  const h = new Harness(5); // 4 usable blocks
  const a: Seq = { tokens: [1, 2, 3, 4, 5, 6, 7, 8, 9], numComputed: 0, blocks: new SeqBlocks() };
  h.admit(a); // 3 blocks, 2 of them full and cached
  h.free(0);
  // 3 free-but-cached plus 1 never used. A prompt hitting both cached blocks and needing 3 more
  // blocks must fail: the 2 adopted blocks come out of the same free queue.
  const b: Seq = {
    tokens: [1, 2, 3, 4, 5, 6, 7, 8, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    numComputed: 0,
    blocks: new SeqBlocks(),
  };
  const prefix = h.kv.findCachedPrefix(b.blocks, b.tokens, b.tokens.length);
  expect(prefix.numTokens).toBe(8);
  expect(h.kv.allocateSlots(b.blocks, 8, b.tokens.length - 8, prefix)).toBe(false);
  expect(h.kv.numFreeBlocks).toBe(4);
  expect(h.kv.counters.prefixCacheHits).toBe(0);
  h.check();
});

test('an evicted block is never served as a prefix hit', () => {
  const h = new Harness(4); // 3 usable blocks
  h.admit({ tokens: [1, 2, 3, 4, 5], numComputed: 0, blocks: new SeqBlocks() });
  h.free(0);
  // Needs all 3 blocks, so the cached [1, 2, 3, 4] block is evicted and overwritten.
  h.admit({ tokens: [9, 9, 9, 9, 9, 9, 9, 9, 9], numComputed: 0, blocks: new SeqBlocks() });
  h.free(0);
  const again: Seq = { tokens: [1, 2, 3, 4, 5], numComputed: 0, blocks: new SeqBlocks() };
  expect(h.kv.findCachedPrefix(again.blocks, again.tokens, 5).numTokens).toBe(0);
  h.admit(again);
  h.check();
});
