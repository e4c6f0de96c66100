// The fixtures through the real Engine: scheduler, KV cache manager (prefix caching on), chunked
// prefill under a small token budget, greedy sampling. Continuations must equal transformers'.

import { CpuDevice, defaultSamplingParams, Engine, referenceMlaBackend } from '@flashserve/core';
import { describe, expect, it } from 'vitest';
import { loadDeepseekModel } from '../src/index.js';
import { expected, fixtureDir, fixtureNames } from './support/fixtures.js';

describe.each(fixtureNames())('engine on fixture %s', (name) => {
  const exp = expected(name);

  it.each([64, 16])('generates the transformers greedy continuations at block size %i', async (blockSize) => {
    const model = loadDeepseekModel(fixtureDir(name), {
      device: new CpuDevice(),
      backend: referenceMlaBackend(),
    });
    const engine = new Engine({
      model,
      blockSize,
      numBlocks: 32,
      maxNumSeqs: 4,
      // Below the 21-token prompt, so prefill is chunked and mixed with the other request's decode.
      maxNumBatchedTokens: 12,
      maxModelLen: 128,
    });
    const params = defaultSamplingParams({ temperature: 0, maxTokens: exp.greedy.length, ignoreEos: true });
    const a = engine.addRequest({ promptTokenIds: exp.prompt, params });
    const b = engine.addRequest({ promptTokenIds: exp.prompt2, params });
    const [outA, outB] = await Promise.all([a.done(), b.done()]);
    expect(outA.outputs[0]!.tokenIds).toEqual(exp.greedy);
    expect(outB.outputs[0]!.tokenIds).toEqual(exp.greedy2);
    // The same prompt again is served from the prefix cache (its full blocks only) and must not change
    // the answer.
    const again = await engine.addRequest({ promptTokenIds: exp.prompt, params }).done();
    expect(again.outputs[0]!.tokenIds).toEqual(exp.greedy);
    expect(again.metrics.numCachedPromptTokens).toBe(Math.floor(exp.prompt.length / blockSize) * blockSize);
    await engine.shutdown();
  });
});
