// The sequence of collectives every rank of shm-group.test.ts runs; rank 0 runs it on the test's
// thread, the others in worker threads. Inputs depend on the rank so every result is checkable.

import type { SharedMemoryGroup } from '../../src/distributed/shm-group.js';

export type ScriptName = 'collectives' | 'rank1-skips' | 'rank1-aborts';

/** Rank-dependent input: x_r[i] = r + i / 8 (exact in float32 for the sizes used). */
export function input(rank: number, n: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => rank + (i % 1024) / 8);
}

export function collectiveScript(name: ScriptName, g: SharedMemoryGroup): number[][] {
  const out: number[][] = [];
  if (name === 'rank1-skips' && g.rank === 1) return out;
  if (name === 'rank1-aborts' && g.rank === 1) {
    g.abort('worker rank 1 failed: injected', 'worker-failed');
    return out;
  }
  // Larger than the 1000-element capacity the test uses: exercises chunking and both parities.
  out.push(Array.from(g.allReduceSum(input(g.rank, 2500))));
  out.push(Array.from(g.allGather(input(g.rank, 1300))));
  const root = g.worldSize - 1;
  const b = g.rank === root ? input(7, 1100) : new Float32Array(1100);
  out.push(Array.from(g.broadcast(b, root)));
  const ints = Int32Array.from({ length: 5 }, (_, i) => g.rank * 100 + i);
  out.push(Array.from(g.broadcast(ints, 0)));
  g.barrier();
  // Many small all-reduces back to back: a rank that raced ahead into a buffer still being read
  // would corrupt one of them.
  let acc = 0;
  for (let k = 0; k < 200; k++) acc += g.allReduceSum(Float32Array.of(g.rank + k))[0]!;
  out.push([acc]);
  return out;
}
