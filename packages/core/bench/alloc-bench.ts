// Allocator benchmark (issue 3): O(1) block allocation, and the KV cache manager's cost per decode
// step when every running request grows by one token.
// Run: pnpm --filter @flashserve/core bench:alloc

import { BlockPool } from '../src/kv-cache/block-pool.js';
import { KvCacheManager } from '../src/kv-cache/kv-cache-manager.js';
import { SeqBlocks } from '../src/kv-cache/seq-blocks.js';

const ns = (ms: number, ops: number) => ((ms * 1e6) / ops).toFixed(1);

function poolAllocFree(numBlocks: number, rounds: number): void {
  const pool = new BlockPool(numBlocks + 1);
  const ids = new Int32Array(numBlocks);
  let best = Number.POSITIVE_INFINITY;
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    for (let i = 0; i < numBlocks; i++) ids[i] = pool.allocate();
    for (let i = numBlocks - 1; i >= 0; i--) pool.release(ids[i]!);
    best = Math.min(best, performance.now() - t0);
  }
  console.log(
    `BlockPool: allocate + free ${numBlocks.toLocaleString('en')} blocks: ${best.toFixed(1)} ms ` +
      `(${ns(best, 2 * numBlocks)} ns per op, best of ${rounds})`,
  );
}

/** numReqs requests with promptLen-token prompts, each growing one token per step. */
function growingOnce(
  numReqs: number,
  promptLen: number,
  steps: number,
  blockSize: number,
  prefixCaching: boolean,
) {
  const blocksPerReq = Math.ceil((promptLen + steps + 1) / blockSize);
  const kv = new KvCacheManager({
    numBlocks: numReqs * blocksPerReq + 1,
    blockSize,
    enablePrefixCaching: prefixCaching,
  });
  const seqs: { tokens: number[]; computed: number; blocks: SeqBlocks }[] = [];
  for (let r = 0; r < numReqs; r++) {
    // Distinct prompts, so every full block is hashed and inserted into the prefix map.
    const tokens = Array.from({ length: promptLen }, (_, i) => (r * 7919 + i * 31) % 100_000);
    const blocks = new SeqBlocks();
    const prefix = kv.findCachedPrefix(blocks, tokens, tokens.length);
    if (!kv.allocateSlots(blocks, prefix.numTokens, tokens.length - prefix.numTokens, prefix))
      throw new Error('full');
    kv.cacheComputedBlocks(blocks, tokens, tokens.length);
    seqs.push({ tokens, computed: tokens.length, blocks });
  }
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  for (let s = 0; s < steps; s++) {
    for (const seq of seqs) {
      seq.tokens.push(s & 1023);
      if (!kv.allocateSlots(seq.blocks, seq.computed, 1)) throw new Error('out of blocks');
      seq.computed++;
      kv.cacheComputedBlocks(seq.blocks, seq.tokens, seq.computed);
    }
  }
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const t1 = performance.now();
  for (const seq of seqs) kv.free(seq.blocks);
  const freeMs = performance.now() - t1;
  if (kv.numFreeBlocks !== kv.numUsableBlocks) throw new Error('leak');
  return {
    perStepUs: (ms * 1000) / steps,
    // CPU time is robust against the process being descheduled on a shared machine.
    cpuPerStepUs: (cpu.user + cpu.system) / steps,
    perTokenNs: (ms * 1e6) / (numReqs * steps),
    freeMs,
  };
}

/** The same loop without the manager: what the harness itself costs per step. */
function harnessOnce(numReqs: number, steps: number): number {
  const seqs = Array.from({ length: numReqs }, () => ({ tokens: [] as number[], computed: 0 }));
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) {
    for (const seq of seqs) {
      seq.tokens.push(s & 1023);
      seq.computed++;
    }
  }
  return ((performance.now() - t0) * 1000) / steps;
}

/** Median of `runs` runs: the machine is shared, so single runs are noisy. */
function growing(
  numReqs: number,
  promptLen: number,
  steps: number,
  blockSize: number,
  prefixCaching: boolean,
) {
  const runs = Array.from({ length: 5 }, () =>
    growingOnce(numReqs, promptLen, steps, blockSize, prefixCaching),
  );
  runs.sort((a, b) => a.perStepUs - b.perStepUs);
  const med = runs[2]!;
  const harness = Array.from({ length: 5 }, () => harnessOnce(numReqs, steps)).sort((a, b) => a - b)[2]!;
  console.log(
    `KvCacheManager: ${numReqs.toLocaleString('en')} requests x ${steps} steps, block ${blockSize}, ` +
      `prefix caching ${prefixCaching ? 'on ' : 'off'}: ${med.perStepUs.toFixed(1)} us per step ` +
      `(min ${runs[0]!.perStepUs.toFixed(1)}; CPU ${med.cpuPerStepUs.toFixed(1)} us; ` +
      `${med.perTokenNs.toFixed(1)} ns per request-token); ` +
      `freeing all: ${med.freeMs.toFixed(1)} ms; the harness alone: ${harness.toFixed(1)} us per step`,
  );
}

poolAllocFree(1_000_000, 5);
for (const pc of [true, false]) {
  growing(10_000, 512, 256, 64, pc);
  growing(256, 512, 1024, 64, pc);
}
