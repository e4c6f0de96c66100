// Prefix caching: shared full blocks are reused, and reuse never changes a request's output.

import { expect, test } from 'vitest';
import { collect } from './support/collect.js';
import { makeEngine, params, prompt } from './support/run-engine.js';

test('a prompt sharing a prefix with a finished one reuses exactly the full shared blocks', async () => {
  const { engine } = makeEngine(); // block size 4
  const shared = prompt(1, 34);
  const a = await collect(engine, { promptTokenIds: [...shared, 7, 7], params: params() });
  expect(a.final.metrics.numCachedPromptTokens).toBe(0);
  const bPrompt = [...shared, 9, 9, 9];
  const b = await collect(engine, { promptTokenIds: bPrompt, params: params() });
  // 34 shared tokens = 8 full blocks (32 tokens); the 9th block differs.
  expect(b.final.metrics.numCachedPromptTokens).toBe(32);
  const fresh = await collect(makeEngine().engine, { promptTokenIds: bPrompt, params: params() });
  expect(b.final.outputs[0]!.tokenIds).toEqual(fresh.final.outputs[0]!.tokenIds);
  const s = engine.stats();
  expect(s.prefixCacheHits).toBe(32);
  expect(s.prefixCacheQueries).toBe(36 + 37);
});

test('an identical prompt still recomputes its last token', async () => {
  const { engine } = makeEngine();
  const p = prompt(2, 16);
  const first = await collect(engine, { promptTokenIds: p, params: params() });
  const again = await collect(engine, { promptTokenIds: p, params: params() });
  // 16 tokens = 4 full blocks, but at most 15 tokens can hit, so 3 blocks.
  expect(again.final.metrics.numCachedPromptTokens).toBe(12);
  expect(again.final.outputs[0]!.tokenIds).toEqual(first.final.outputs[0]!.tokenIds);
});

test('blocks are keyed by the whole prefix, not by their own tokens', async () => {
  const { engine } = makeEngine();
  const block2 = [5, 6, 7, 8];
  await collect(engine, { promptTokenIds: [1, 2, 3, 4, ...block2, 9], params: params() });
  const other = [11, 12, 13, 14, ...block2, 9];
  const b = await collect(engine, { promptTokenIds: other, params: params() });
  expect(b.final.metrics.numCachedPromptTokens).toBe(0);
  const fresh = await collect(makeEngine().engine, { promptTokenIds: other, params: params() });
  expect(b.final.outputs[0]!.tokenIds).toEqual(fresh.final.outputs[0]!.tokenIds);
});

test('generated tokens are cached too: a follow-up turn reuses prompt and answer', async () => {
  const { engine } = makeEngine();
  const p = prompt(3, 10);
  const first = await collect(engine, { promptTokenIds: p, params: params({ maxTokens: 14 }) });
  const followUp = [...p, ...first.final.outputs[0]!.tokenIds, 1, 2, 3];
  const b = await collect(engine, { promptTokenIds: followUp, params: params() });
  // 10 + 14 = 24 tokens; the last generated token was never computed, so 23 are cached -> 5 blocks.
  expect(b.final.metrics.numCachedPromptTokens).toBe(20);
});

test('with prefix caching off nothing is reused', async () => {
  const { engine } = makeEngine({ enablePrefixCaching: false });
  const p = prompt(2, 16);
  await collect(engine, { promptTokenIds: p, params: params() });
  const again = await collect(engine, { promptTokenIds: p, params: params() });
  expect(again.final.metrics.numCachedPromptTokens).toBe(0);
  expect(engine.stats().prefixCacheQueries).toBe(0);
});
