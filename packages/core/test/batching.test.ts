// Continuous batching and preemption never change what a request produces.

import { describe, expect, test } from 'vitest';
import type { AddRequestInput, RequestOutput } from '../src/engine/protocol.js';
import { collect, runAlone } from './support/collect.js';
import { makeEngine, params, prompt, tokensOf } from './support/run-engine.js';

function workload(sampled: boolean): AddRequestInput[] {
  const reqs: AddRequestInput[] = [];
  for (let i = 0; i < 14; i++) {
    const p = sampled
      ? params({ temperature: 0.9, topP: 0.9, topK: 40, seed: 1000 + i, maxTokens: 4 + ((i * 5) % 17) })
      : params({ maxTokens: 4 + ((i * 5) % 17) });
    // Some prompts share prefixes so the prefix cache is exercised too.
    const base = prompt(i % 4, 8 + ((i * 7) % 33));
    reqs.push({ requestId: `r${i}`, promptTokenIds: [...base, ...prompt(100 + i, i % 3)], params: p });
  }
  return reqs;
}

async function runTogether(
  reqs: readonly AddRequestInput[],
  opts: Parameters<typeof makeEngine>[0],
): Promise<{ outs: RequestOutput[]; preemptions: number; maxBatch: number; freeAtEnd: boolean }> {
  const { engine, model } = makeEngine(opts);
  // Half arrive up front, the rest while the first ones are running.
  const first = reqs.slice(0, reqs.length / 2).map((r) => collect(engine, r));
  await new Promise((resolve) => setTimeout(resolve, 5));
  const rest = reqs.slice(reqs.length / 2).map((r) => collect(engine, r));
  const outs = (await Promise.all([...first, ...rest])).map((c) => c.final);
  const s = engine.stats();
  return {
    outs,
    preemptions: s.numPreemptions,
    maxBatch: model.maxBatchSeqs,
    freeAtEnd: s.numFreeBlocks === s.numTotalBlocks,
  };
}

describe.each([
  ['greedy', false],
  ['seeded sampling', true],
])('%s', (_name, sampled) => {
  const reqs = workload(sampled);
  let alone: RequestOutput[];

  test('batched with chunked prefill = each request alone', async () => {
    alone = await runAlone(() => makeEngine().engine, reqs);
    const together = await runTogether(reqs, { maxNumBatchedTokens: 16 });
    expect(together.maxBatch).toBeGreaterThan(4);
    expect(tokensOf(together.outs)).toEqual(tokensOf(alone));
    expect(together.outs.map((o) => o.outputs[0]!.text)).toEqual(alone.map((o) => o.outputs[0]!.text));
    expect(together.freeAtEnd).toBe(true);
  });

  test.each([
    ['with prefix caching', true],
    ['without prefix caching', false],
  ])('a cache too small for all completes every request by preemption, identically (%s)', async (_n, pc) => {
    // 24 blocks of 4 tokens: a few requests at a time at most.
    const small = await runTogether(reqs, { numBlocks: 24, enablePrefixCaching: pc });
    expect(small.preemptions).toBeGreaterThan(0);
    expect(tokensOf(small.outs)).toEqual(tokensOf(alone));
    expect(small.freeAtEnd).toBe(true);
  });
});

test('n choices: choice 0 matches the n=1 request with the same seed; batching does not change any', async () => {
  const p = params({ temperature: 1, seed: 42, n: 3, maxTokens: 10 });
  const pr = prompt(9, 13);
  const single = (await collect(makeEngine().engine, { promptTokenIds: pr, params: { ...p, n: 1 } })).final;
  const { engine } = makeEngine({ numBlocks: 40 });
  const others = [1, 2, 3].map((i) =>
    collect(engine, { promptTokenIds: prompt(i, 20), params: params({ maxTokens: 15 }) }),
  );
  const multi = (await collect(engine, { promptTokenIds: pr, params: p })).final;
  await Promise.all(others);
  expect(multi.outputs).toHaveLength(3);
  expect(multi.outputs[0]!.tokenIds).toEqual(single.outputs[0]!.tokenIds);
  expect(new Set(multi.outputs.map((o) => o.tokenIds.join())).size).toBeGreaterThan(1);
  const alone = (await collect(makeEngine().engine, { promptTokenIds: pr, params: p })).final;
  expect(tokensOf([multi])).toEqual(tokensOf([alone]));
  const s = engine.stats();
  expect(s.numFreeBlocks).toBe(s.numTotalBlocks);
});

test('n choices share the prompt blocks instead of copying them', async () => {
  const { engine } = makeEngine({ numBlocks: 100 });
  let peakUsed = 0;
  engine.events.on('step', () => {
    const s = engine.stats();
    peakUsed = Math.max(peakUsed, s.numTotalBlocks - s.numFreeBlocks);
  });
  // 40 prompt tokens = 10 full blocks shared; each of 4 choices then needs ceil(5 / 4) = 2 of its own.
  await collect(engine, {
    promptTokenIds: prompt(3, 40),
    params: params({ n: 4, maxTokens: 5, temperature: 1 }),
  });
  expect(peakUsed).toBeLessThanOrEqual(10 + 4 * 2);
});
