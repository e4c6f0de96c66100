// Abort, failure, limits and shutdown: every way a request can end gives its blocks back.

import { describe, expect, test } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import { FlashserveError } from '../src/errors.js';
import { collect } from './support/collect.js';
import { makeEngine, params, prompt } from './support/run-engine.js';

function allFree(engine: Engine): boolean {
  const s = engine.stats();
  return s.numFreeBlocks === s.numTotalBlocks;
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    if (e instanceof FlashserveError) return `${e.status} ${e.code} ${e.param ?? ''}`.trim();
    throw e;
  }
  return undefined;
}

describe('abort', () => {
  test('mid-prefill frees every block', async () => {
    const { engine } = makeEngine({ maxNumBatchedTokens: 8, maxNumSeqs: 4 });
    const h = engine.addRequest({ promptTokenIds: prompt(1, 60), params: params() });
    let steps = 0;
    let usedBeforeAbort = 0;
    engine.events.on('step', () => {
      if (++steps === 2) {
        const s = engine.stats();
        usedBeforeAbort = s.numTotalBlocks - s.numFreeBlocks;
        h.abort();
      }
    });
    const final = await h.done();
    expect(usedBeforeAbort).toBeGreaterThan(0);
    expect(final.outputs[0]!.finishReason).toBe('abort');
    expect(final.outputs[0]!.tokenIds).toEqual([]);
    expect(allFree(engine)).toBe(true);
    expect(engine.stats().numRunning).toBe(0);
  });

  test('mid-decode, from inside an output listener, frees every block', async () => {
    const { engine } = makeEngine();
    const other = collect(engine, { promptTokenIds: prompt(2, 9), params: params({ maxTokens: 30 }) });
    const h = engine.addRequest({
      requestId: 'victim',
      promptTokenIds: prompt(1, 10),
      params: params({ maxTokens: 50 }),
    });
    engine.events.on('output', (o) => {
      if (o.requestId === 'victim' && o.outputs[0]!.tokenIds.length === 3) engine.abort('victim');
    });
    const final = await h.done();
    expect(final.outputs[0]!.finishReason).toBe('abort');
    expect(final.outputs[0]!.tokenIds.length).toBe(3);
    const o = await other;
    expect(o.final.outputs[0]!.tokenIds).toHaveLength(30);
    expect(allFree(engine)).toBe(true);
  });

  test('leaving a for-await loop early aborts the request', async () => {
    const { engine } = makeEngine();
    const h = engine.addRequest({ promptTokenIds: prompt(1, 10), params: params({ maxTokens: 100 }) });
    for await (const o of h) if (o.outputs[0]!.tokenIds.length >= 2) break;
    expect((await h.done()).outputs[0]!.finishReason).toBe('abort');
    expect(allFree(engine)).toBe(true);
  });

  test('an n-choice request aborted before its choices fork reports every choice aborted', async () => {
    const { engine } = makeEngine({ maxNumBatchedTokens: 4, maxNumSeqs: 4 });
    const h = engine.addRequest({ promptTokenIds: prompt(1, 30), params: params({ n: 3 }) });
    engine.events.once('step', () => h.abort());
    const final = await h.done();
    expect(final.outputs.map((o) => o.finishReason)).toEqual(['abort', 'abort', 'abort']);
    expect(allFree(engine)).toBe(true);
  });

  test('a waiting request can be aborted while idle, at once', async () => {
    const { engine } = makeEngine();
    const h = engine.addRequest({ requestId: 'w', promptTokenIds: [1, 2, 3], params: params() });
    engine.abort('w');
    expect((await h.done()).outputs[0]!.finishReason).toBe('abort');
    expect(engine.stats().numWaiting).toBe(0);
    engine.abort('w'); // finished ids are ignored
    engine.abort('never-existed');
  });
});

describe('addRequest validation', () => {
  const { engine } = makeEngine({ maxModelLen: 64, maxWaitingRequests: 2, numBlocks: 12 });

  test.each([
    ['empty prompt', [], {}, '400 FS_ERR_REQUEST_PROMPT_EMPTY prompt'],
    [
      'prompt + max_tokens over maxModelLen',
      prompt(1, 60),
      { maxTokens: 5 },
      '400 FS_ERR_REQUEST_TOO_LONG max_tokens',
    ],
    ['token outside the vocabulary', [1, 999], {}, '400 FS_ERR_REQUEST_PARAM_INVALID prompt'],
    ['negative temperature', [1], { temperature: -1 }, '400 FS_ERR_REQUEST_PARAM_INVALID temperature'],
    ['top_p 0', [1], { topP: 0 }, '400 FS_ERR_REQUEST_PARAM_INVALID top_p'],
    ['top_k -2', [1], { topK: -2 }, '400 FS_ERR_REQUEST_PARAM_INVALID top_k'],
    ['n 0', [1], { n: 0 }, '400 FS_ERR_REQUEST_PARAM_INVALID n'],
    ['max_tokens 0', [1], { maxTokens: 0 }, '400 FS_ERR_REQUEST_PARAM_INVALID max_tokens'],
    ['logprobs 21', [1], { logprobs: 21 }, '400 FS_ERR_REQUEST_PARAM_INVALID logprobs'],
    ['empty stop string', [1], { stop: [''] }, '400 FS_ERR_REQUEST_PARAM_INVALID stop'],
    ['fractional seed', [1], { seed: 1.5 }, '400 FS_ERR_REQUEST_PARAM_INVALID seed'],
    [
      'logit bias on a token outside the vocabulary',
      [1],
      { logitBias: new Map([[999, 1]]) },
      '400 FS_ERR_REQUEST_PARAM_INVALID logit_bias',
    ],
    [
      'logit bias above 100',
      [1],
      { logitBias: new Map([[3, 100.5]]) },
      '400 FS_ERR_REQUEST_PARAM_INVALID logit_bias',
    ],
    [
      'more KV than the whole cache',
      prompt(1, 40),
      { maxTokens: 20 },
      '400 FS_ERR_REQUEST_EXCEEDS_KV_CACHE max_tokens',
    ],
  ])('%s -> 400', (_name, tokens, p, expected) => {
    expect(codeOf(() => engine.addRequest({ promptTokenIds: tokens, params: params(p) }))).toBe(expected);
  });

  test('a full waiting queue -> 503, a duplicate id -> 400', () => {
    engine.addRequest({ requestId: 'a', promptTokenIds: [1], params: params() });
    expect(codeOf(() => engine.addRequest({ requestId: 'a', promptTokenIds: [1], params: params() }))).toBe(
      '400 FS_ERR_REQUEST_DUPLICATE_ID',
    );
    engine.addRequest({ promptTokenIds: [1], params: params() });
    expect(codeOf(() => engine.addRequest({ promptTokenIds: [1], params: params() }))).toBe(
      '503 FS_ERR_ENGINE_OVERLOADED',
    );
  });
});

test('a model failure fails that step’s requests with a clear error, frees their blocks, and the engine goes on', async () => {
  let failNext = false;
  const { engine } = makeEngine({
    model: {
      failWhen: () => {
        const fail = failNext;
        failNext = false;
        return fail;
      },
    },
  });
  const errors: string[] = [];
  engine.events.on('error', (e, id) => errors.push(`${id}: ${e.message}`));
  const h = engine.addRequest({
    requestId: 'doomed',
    promptTokenIds: prompt(1, 10),
    params: params({ maxTokens: 50 }),
  });
  engine.events.once('step', () => {
    failNext = true;
  });
  await expect(h.done()).rejects.toMatchObject({ code: 'FS_ERR_ENGINE_MODEL_FAILED', status: 500 });
  await expect(async () => {
    for await (const _ of h);
  }).rejects.toThrow(/injected failure/);
  expect(errors).toEqual(['doomed: the model failed during a forward pass: tiny model: injected failure']);
  expect(allFree(engine)).toBe(true);
  const ok = await collect(engine, { promptTokenIds: prompt(2, 10), params: params({ maxTokens: 5 }) });
  expect(ok.final.outputs[0]!.tokenIds).toHaveLength(5);
});

test('a step that breaks after forward (Model.checkStep) fails its requests before any of its tokens go out', async () => {
  let broken = false;
  const { engine } = makeEngine({ model: { stepBrokeWhen: () => broken } });
  const seen: number[] = [];
  const h = engine.addRequest({ promptTokenIds: prompt(3, 6), params: params({ maxTokens: 50 }) });
  engine.events.on('output', (o) => seen.push(o.outputs[0]!.tokenIds.length));
  engine.events.on('step', () => {
    if (seen.length === 3) broken = true;
  });
  await expect(h.done()).rejects.toMatchObject({
    code: 'FS_ERR_ENGINE_MODEL_FAILED',
    message: expect.stringMatching(/the step broke after forward/),
  });
  // The broken step's token never reached the request's outputs.
  expect(Math.max(...seen)).toBe(3);
  expect(allFree(engine)).toBe(true);
  broken = false;
  const ok = await collect(engine, { promptTokenIds: prompt(4, 6), params: params({ maxTokens: 4 }) });
  expect(ok.final.outputs[0]!.tokenIds).toHaveLength(4);
});

describe('shutdown', () => {
  test('drains running requests within drainMs, then refuses new ones with 503', async () => {
    const { engine } = makeEngine();
    const h = engine.addRequest({ promptTokenIds: prompt(1, 10), params: params({ maxTokens: 8 }) });
    await engine.shutdown({ drainMs: 10_000 });
    expect((await h.done()).outputs[0]!.finishReason).toBe('length');
    expect(codeOf(() => engine.addRequest({ promptTokenIds: [1], params: params() }))).toBe(
      '503 FS_ERR_ENGINE_SHUT_DOWN',
    );
  });

  test('aborts what is left after drainMs', async () => {
    const { engine } = makeEngine();
    const h = engine.addRequest({ promptTokenIds: prompt(1, 10), params: params({ maxTokens: 1000 }) });
    await engine.shutdown({ drainMs: 5 });
    expect((await h.done()).outputs[0]!.finishReason).toBe('abort');
    expect(allFree(engine)).toBe(true);
  });
});

test('the step loop yields to the event loop between steps', async () => {
  const { engine } = makeEngine();
  let ticks = 0;
  let stepsSeen = 0;
  const timer = setInterval(() => ticks++, 0);
  engine.events.on('step', () => stepsSeen++);
  await collect(engine, { promptTokenIds: prompt(1, 10), params: params({ maxTokens: 200 }) });
  clearInterval(timer);
  expect(stepsSeen).toBeGreaterThanOrEqual(200);
  expect(ticks).toBeGreaterThan(5);
});

test('events and the iterator agree; stats count tokens', async () => {
  const { engine } = makeEngine();
  const seen: string[] = [];
  engine.events.on('output', (o) => seen.push(o.outputs[0]!.newText));
  let finished = 0;
  engine.events.on('finished', () => finished++);
  const { final, chunks } = await collect(engine, {
    promptTokenIds: prompt(1, 7),
    params: params({ maxTokens: 9 }),
  });
  expect(seen.join('')).toBe(final.outputs[0]!.text);
  expect(chunks.map((c) => c.outputs[0]!.newText).join('')).toBe(final.outputs[0]!.text);
  expect(finished).toBe(1);
  expect(final.metrics.firstTokenTime).toBeGreaterThanOrEqual(final.metrics.arrivalTime);
  expect(final.metrics.finishedTime).toBeGreaterThanOrEqual(final.metrics.firstTokenTime!);
  const s = engine.stats();
  expect(s.promptTokensTotal).toBe(7);
  expect(s.generationTokensTotal).toBe(9);
});

test('a listener that throws is reported on "error" and does not stop the loop', async () => {
  const { engine } = makeEngine();
  const errors: string[] = [];
  engine.events.on('error', (e) => errors.push(e.message));
  engine.events.on('output', () => {
    throw new Error('listener bug');
  });
  const { final } = await collect(engine, { promptTokenIds: prompt(1, 5), params: params({ maxTokens: 4 }) });
  expect(final.outputs[0]!.tokenIds).toHaveLength(4);
  expect(errors.length).toBeGreaterThan(0);
  expect(errors.every((m) => m === 'listener bug')).toBe(true);
});

test('a sampler that throws fails the step’s requests instead of leaving them hanging', async () => {
  let calls = 0;
  const { engine } = makeEngine({
    sampler: {
      sample: () => {
        calls++;
        throw new Error('sampler bug');
      },
    },
  });
  const h = engine.addRequest({ promptTokenIds: prompt(1, 5), params: params() });
  await expect(h.done()).rejects.toMatchObject({ code: 'FS_ERR_ENGINE_STEP_FAILED' });
  expect(calls).toBe(1);
  expect(allFree(engine)).toBe(true);
});

describe('engine options', () => {
  test('the KV pool is sized from a memory budget and the model’s bytes per block', () => {
    // The tiny model takes blockSize * 8 bytes per block: 32 bytes at block size 4.
    const { engine } = makeEngine({ numBlocks: undefined, kvCacheMemoryBytes: 3200 });
    expect(engine.stats().numTotalBlocks).toBe(99); // 100 minus the null block
  });

  test.each([
    ['neither numBlocks nor kvCacheMemoryBytes', { numBlocks: undefined }, /exactly one/],
    ['both', { kvCacheMemoryBytes: 1000 }, /exactly one/],
    ['block size 0', { blockSize: 0 }, /blockSize/],
    ['a token budget below maxNumSeqs', { maxNumBatchedTokens: 8, maxNumSeqs: 16 }, /at least maxNumSeqs/],
    ['maxModelLen past the model', { maxModelLen: 100_000 }, /maxPositionEmbeddings/],
    ['a budget below two blocks', { numBlocks: undefined, kvCacheMemoryBytes: 40 }, /at least 2/],
  ])('%s is FS_ERR_ENGINE_CONFIG_INVALID', (_name, opts, message) => {
    let err: unknown;
    try {
      makeEngine(opts);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FlashserveError);
    expect((err as FlashserveError).code).toBe('FS_ERR_ENGINE_CONFIG_INVALID');
    expect((err as FlashserveError).message).toMatch(message);
  });
});
