// Prompt logprobs (vLLM's prompt_logprobs, OpenAI's echo + logprobs): each prompt token's logprob
// under the model given the tokens before it, whatever way the prompt is computed (one step, chunks,
// beside other requests, after a prefix-cache hit by someone else).

import { describe, expect, test } from 'vitest';
import type { RequestOutput, TokenLogprob } from '../src/engine/protocol.js';
import { FlashserveError } from '../src/errors.js';
import { collect } from './support/collect.js';
import { makeEngine, params, prompt } from './support/run-engine.js';
import { hashLogits } from './support/tiny-model.js';

const VOCAB = 258;

/** The reference: log-softmax in float64 of the tiny model's logits after tokens[0, p). */
function expected(tokens: readonly number[], p: number): { logprob: number; rank: number; best: number[] } {
  const row = new Float32Array(VOCAB);
  hashLogits(tokens.slice(0, p), row);
  let max = Number.NEGATIVE_INFINITY;
  for (const v of row) max = Math.max(max, v);
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  const target = row[tokens[p]!]!;
  const rank = 1 + row.filter((v) => v > target).length;
  const best = [...row.keys()].sort((a, b) => row[b]! - row[a]! || a - b);
  return { logprob: target - lse, rank, best };
}

function checkAgainstReference(
  tokens: readonly number[],
  got: readonly (TokenLogprob | null)[],
  top: number,
) {
  expect(got).toHaveLength(tokens.length);
  expect(got[0]).toBeNull();
  for (let p = 1; p < tokens.length; p++) {
    const e = expected(tokens, p);
    const lp = got[p]!;
    expect(lp.tokenId).toBe(tokens[p]);
    expect(lp.logprob).toBeCloseTo(e.logprob, 5);
    expect(lp.rank).toBe(e.rank);
    expect(lp.topLogprobs.map((t) => t.tokenId)).toEqual(e.best.slice(0, top));
  }
}

const finalOf = async (
  engine: ReturnType<typeof makeEngine>['engine'],
  tokens: number[],
  promptLogprobs: number,
  extra: Partial<Parameters<typeof params>[0]> = {},
): Promise<RequestOutput> =>
  (
    await collect(engine, {
      promptTokenIds: tokens,
      params: params({ maxTokens: 3, promptLogprobs, ...extra }),
    })
  ).final;

describe('prompt logprobs', () => {
  test('every prompt token gets its logprob, rank and top alternatives under the model', async () => {
    const { engine } = makeEngine();
    const tokens = prompt(3, 23);
    const final = await finalOf(engine, tokens, 4);
    checkAgainstReference(tokens, final.promptLogprobs!, 4);
    expect(final.outputs[0]!.tokenIds).toHaveLength(3);
  });

  test('chunked prefill beside other requests gives the same values as one step', async () => {
    const tokens = prompt(5, 70);
    const alone = await finalOf(makeEngine({ maxNumBatchedTokens: 128 }).engine, tokens, 2);
    const { engine } = makeEngine({ maxNumBatchedTokens: 16 });
    const others = [1, 2, 4].map((s) =>
      collect(engine, { promptTokenIds: prompt(s, 30), params: params({ maxTokens: 20 }) }),
    );
    const chunked = await finalOf(engine, tokens, 2);
    await Promise.all(others);
    expect(chunked.promptLogprobs).toEqual(alone.promptLogprobs);
    checkAgainstReference(tokens, chunked.promptLogprobs!, 2);
    expect(chunked.outputs[0]!.tokenIds).toEqual(alone.outputs[0]!.tokenIds);
  });

  test('a cached prefix is recomputed for the logprobs, and others still hit the cache', async () => {
    const { engine } = makeEngine();
    const tokens = prompt(8, 40);
    await collect(engine, { promptTokenIds: tokens, params: params({ maxTokens: 2 }) });
    const withLogprobs = await finalOf(engine, tokens, 0);
    expect(withLogprobs.metrics.numCachedPromptTokens).toBe(0);
    checkAgainstReference(tokens, withLogprobs.promptLogprobs!, 0);
    const plain = (await collect(engine, { promptTokenIds: tokens, params: params({ maxTokens: 2 }) })).final;
    expect(plain.metrics.numCachedPromptTokens).toBeGreaterThan(0);
    expect(plain.promptLogprobs).toBeUndefined();
  });

  test('with n choices the request carries one set; all blocks come back', async () => {
    const { engine } = makeEngine();
    const tokens = prompt(9, 17);
    const final = await finalOf(engine, tokens, 1, { n: 3, temperature: 1, seed: 7 });
    expect(final.outputs).toHaveLength(3);
    checkAgainstReference(tokens, final.promptLogprobs!, 1);
    const s = engine.stats();
    expect(s.numFreeBlocks).toBe(s.numTotalBlocks);
  });

  test('streamed: absent before the first token, then on every output', async () => {
    const { engine } = makeEngine({ maxNumBatchedTokens: 8, maxNumSeqs: 4 });
    const tokens = prompt(11, 30);
    const { chunks } = await collect(engine, {
      promptTokenIds: tokens,
      params: params({ promptLogprobs: 0 }),
    });
    const firstWithToken = chunks.findIndex((c) => c.outputs[0]!.newTokenIds.length > 0);
    expect(firstWithToken).toBeGreaterThanOrEqual(0);
    for (const [i, c] of chunks.entries()) {
      if (i < firstWithToken) expect(c.promptLogprobs).toBeUndefined();
      else expect(c.promptLogprobs).toHaveLength(tokens.length);
    }
  });

  test('a one-token prompt has only the null entry', async () => {
    const final = await finalOf(makeEngine().engine, [42], 3);
    expect(final.promptLogprobs).toEqual([null]);
  });

  test('out of range is a 400 naming prompt_logprobs', () => {
    const { engine } = makeEngine();
    for (const bad of [-1, 21, 1.5]) {
      let err: unknown;
      try {
        engine.addRequest({ promptTokenIds: [1, 2], params: params({ promptLogprobs: bad }) });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(FlashserveError);
      expect((err as FlashserveError).param).toBe('prompt_logprobs');
      expect((err as FlashserveError).status).toBe(400);
    }
  });
});
