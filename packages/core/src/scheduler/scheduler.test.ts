import { describe, expect, test } from 'vitest';
import { KvCacheManager } from '../kv-cache/kv-cache-manager.js';
import { Scheduler } from './scheduler.js';
import { Sequence } from './sequence.js';

function setup(numBlocks: number, maxNumBatchedTokens: number, maxNumSeqs = 8) {
  const kv = new KvCacheManager({ numBlocks: numBlocks + 1, blockSize: 4, enablePrefixCaching: false });
  const sched = new Scheduler<Sequence>(kv, { maxNumSeqs, maxNumBatchedTokens });
  return { kv, sched };
}

const seq = (len: number, reserved = 1) =>
  new Sequence(
    Array.from({ length: len }, (_, i) => i),
    len,
    reserved,
  );

/** Pretends the forward ran and every sampling sequence got one more token. */
function finishStep(sched: Scheduler<Sequence>, out: ReturnType<Scheduler<Sequence>['schedule']>) {
  sched.onStepComputed(out);
  for (const s of out.scheduled) if (s.numComputedTokens === s.numTokens) s.tokens.push(7);
}

describe('Scheduler', () => {
  test('long prompts are prefilled in chunks under the token budget; decodes come first', () => {
    const { sched } = setup(64, 10);
    const a = seq(3);
    const b = seq(25);
    sched.add(a);
    sched.add(b);
    let out = sched.schedule();
    expect(out.scheduled).toEqual([a, b]);
    expect(out.numNewTokens).toEqual([3, 7]);
    finishStep(sched, out);
    out = sched.schedule();
    // a decodes one token, b gets the rest of the budget.
    expect(out.numNewTokens).toEqual([1, 9]);
    expect(out.totalNumTokens).toBe(10);
    finishStep(sched, out);
    out = sched.schedule();
    expect(out.numNewTokens).toEqual([1, 9]);
    expect(b.numComputedTokens).toBe(16);
  });

  test('no room: the most recently admitted running sequence is preempted and requeued first', () => {
    const { sched, kv } = setup(6, 100);
    const [a, b, c, d] = [seq(8), seq(7), seq(7), seq(4)];
    for (const s of [a, b, c]) sched.add(s);
    let out = sched.schedule();
    // 2 + 2 + 2 blocks: the cache is full.
    expect(out.scheduled).toEqual([a, b, c]);
    finishStep(sched, out);
    sched.add(d);
    out = sched.schedule();
    // a needs a third block: c (admitted last) is preempted; b still fits in its second block.
    expect(out.preempted).toEqual([c]);
    expect(out.scheduled).toEqual([a, b]);
    expect(c.status).toBe('waiting');
    expect(c.blocks.blockIds).toEqual([]);
    expect(c.numComputedTokens).toBe(0);
    // Nothing is admitted in a step that preempted.
    expect(d.status).toBe('waiting');
    expect(sched.numPreemptions).toBe(1);
    finishStep(sched, out);
    sched.finish(a);
    out = sched.schedule();
    // c went back to the front of the queue, ahead of d.
    expect(out.scheduled.slice(1)).toEqual([c, d]);
    expect(kv.numFreeBlocks).toBeGreaterThanOrEqual(0);
  });

  test('a sequence preempts itself when it is the last one and still does not fit', () => {
    const { sched } = setup(3, 100);
    const [a, b] = [seq(4), seq(7)];
    sched.add(a);
    sched.add(b);
    let out = sched.schedule();
    finishStep(sched, out);
    // a wants a second block, b a third: only 0 free. b (last) goes; then a fits.
    out = sched.schedule();
    expect(out.preempted).toEqual([b]);
    expect(out.scheduled).toEqual([a]);
  });

  test('maxNumSeqs counts the choices an n > 1 sequence will fork into', () => {
    const { sched } = setup(64, 100, 4);
    const multi = seq(5, 3);
    const other = seq(5);
    const third = seq(5);
    sched.add(multi);
    sched.add(other);
    sched.add(third);
    const out = sched.schedule();
    expect(out.scheduled).toEqual([multi, other]);
    expect(sched.numRunning).toBe(4);
  });

  test('finish works in any state and frees blocks', () => {
    const { sched, kv } = setup(8, 100);
    const [a, b] = [seq(5), seq(5)];
    sched.add(a);
    sched.add(b);
    sched.finish(b); // waiting
    const out = sched.schedule();
    expect(out.scheduled).toEqual([a]);
    sched.finish(a); // running
    sched.finish(a); // idempotent
    expect(kv.numFreeBlocks).toBe(8);
    expect(sched.numWaiting).toBe(0);
    expect(sched.numRunning).toBe(0);
    expect(sched.schedule().scheduled).toEqual([]);
  });
});
