// Async scheduling (EngineOptions.asyncScheduling): a decode step is launched before the previous
// step's tokens are read back, its input ids taken on the device. These tests pin down what the
// random-workload property (engine-property.test.ts) cannot see: that the pipeline really overlaps,
// how much extra work a stop costs, and how aborts and failures mid-pipeline end.

import { describe, expect, test } from 'vitest';
import type { Device, Tensor } from '../src/device/device.js';
import type { AddRequestInput } from '../src/engine/protocol.js';
import { HostSampler } from '../src/sampling/host-sampler.js';
import type { PendingSample, SampledToken, Sampler, SamplingRow } from '../src/sampling/sampler.js';
import { collect } from './support/collect.js';
import { makeEngine, params, prompt, tokensOf } from './support/run-engine.js';
import { scriptedLogits } from './support/tiny-model.js';

/** The host sampler, with a log of when each queued sampling is waited for. */
class LoggingSampler implements Sampler {
  readonly #inner = new HostSampler();
  readonly log: string[];
  failWaits = false;
  #n = 0;
  constructor(log: string[]) {
    this.log = log;
  }
  sample(logits: Tensor, device: Device, rows: readonly SamplingRow[]): SampledToken[] {
    this.log.push('sample');
    return this.#inner.sample(logits, device, rows);
  }
  sampleAsync(logits: Tensor, device: Device, rows: readonly SamplingRow[], into: Tensor): PendingSample {
    const id = ++this.#n;
    this.log.push(`queue ${id}`);
    const pending = this.#inner.sampleAsync(logits, device, rows, into)!;
    return {
      wait: () => {
        this.log.push(`wait ${id}`);
        if (this.failWaits) throw new Error('device lost while sampling');
        return pending.wait();
      },
    };
  }
}

function asyncEngine(opts: Parameters<typeof makeEngine>[0] = {}) {
  const log: string[] = [];
  const sampler = new LoggingSampler(log);
  const made = makeEngine({
    asyncScheduling: true,
    sampler,
    ...opts,
    model: { readsDeviceTokenIds: true, ...opts.model },
  });
  const forward = made.model.forward.bind(made.model);
  made.model.forward = (batch) => {
    log.push(batch.prevTokenIds?.rows.some((r) => r >= 0) ? 'forward (device ids)' : 'forward');
    return forward(batch);
  };
  return { ...made, log, sampler };
}

const req = (id: string, over: Parameters<typeof params>[0] = {}, len = 9): AddRequestInput => ({
  requestId: id,
  promptTokenIds: prompt(id.length * 31 + id.charCodeAt(0), len),
  params: params(over),
});

describe('async scheduling', () => {
  test('launches each decode step before waiting for the step before it', async () => {
    const { engine, log } = asyncEngine();
    expect(engine.asyncScheduling).toBe(true);
    const out = (await collect(engine, req('a', { maxTokens: 5 }))).final;
    expect(out.outputs[0]!.tokenIds).toHaveLength(5);
    // Prefill (its sampling queued), then each continuation is launched with the ids on the device
    // before the previous sampling is waited for; the last token needs no further step.
    expect(log).toEqual([
      'forward',
      'queue 1',
      'forward (device ids)',
      'wait 1',
      'queue 2',
      'forward (device ids)',
      'wait 2',
      'queue 3',
      'forward (device ids)',
      'wait 3',
      'queue 4',
      'forward (device ids)',
      'wait 4',
      'queue 5',
      'wait 5',
    ]);
    expect(engine.stats().numFreeBlocks).toBe(engine.stats().numTotalBlocks);
  });

  test('the same tokens as the synchronous engine, for greedy, seeded, n = 2 and penalties', async () => {
    const reqs = [
      req('g', { maxTokens: 14 }),
      req('s', { maxTokens: 11, temperature: 0.9, topP: 0.8, seed: 5 }),
      req('n', { maxTokens: 9, temperature: 1, seed: 9, n: 2 }),
      req('p', { maxTokens: 10, presencePenalty: 1.5, repetitionPenalty: 1.3 }),
    ];
    const run = async (asyncScheduling: boolean) => {
      const { engine } = makeEngine({ asyncScheduling, model: { readsDeviceTokenIds: true } });
      return tokensOf((await Promise.all(reqs.map((r) => collect(engine, r)))).map((c) => c.final));
    };
    expect(await run(true)).toEqual(await run(false));
  });

  test('a length stop costs no extra step; a stop token costs one, whose token is dropped', async () => {
    // The script emits 7 then 42 (a stop id) at the third output token.
    const model = { logits: scriptedLogits(9, [7, 7, 42, 7, 7, 7], 7) };
    const sync = makeEngine({ model: { ...model, readsDeviceTokenIds: true } });
    const pipelined = asyncEngine({ model });
    for (const { engine } of [sync, pipelined]) {
      const len = (await collect(engine, req('l', { maxTokens: 4 }))).final;
      expect(len.outputs[0]!.tokenIds).toEqual([7, 7, 42, 7]);
      const stop = (await collect(engine, req('t', { maxTokens: 6, stopTokenIds: [42] }))).final;
      expect(stop.outputs[0]).toMatchObject({ tokenIds: [7, 7, 42], finishReason: 'stop', stopReason: 42 });
      expect(engine.stats().numFreeBlocks).toBe(engine.stats().numTotalBlocks);
    }
    // 4 forwards for 4 tokens, then 3 for 3 tokens plus the one launched before the stop was seen.
    expect(sync.model.numForwards).toBe(4 + 3);
    expect(pipelined.model.numForwards).toBe(4 + 3 + 1);
  });

  test('an abort while a step is in flight frees the blocks and leaves the others alone', async () => {
    const { engine } = asyncEngine();
    const alone = (await collect(makeEngine().engine, req('b', { maxTokens: 20 }))).final;
    const a = engine.addRequest(req('a', { maxTokens: 40 }));
    const b = engine.addRequest(req('b', { maxTokens: 20 }));
    let seen = 0;
    for await (const out of a) {
      if (++seen === 3) {
        // Outside any step (the loop runs on setImmediate): a step of 'a' is in flight now.
        await new Promise((resolve) => setImmediate(resolve));
        engine.abort('a');
      }
      if (out.finished) break;
    }
    const aOut = await a.done();
    expect(aOut.outputs[0]!.finishReason).toBe('abort');
    expect(aOut.outputs[0]!.tokenIds.length).toBeLessThan(40);
    expect(tokensOf([await b.done()])).toEqual(tokensOf([alone]));
    expect(engine.stats().numFreeBlocks).toBe(engine.stats().numTotalBlocks);
  });

  test('a waiting request ends the pipeline for a step and is admitted at once', async () => {
    const { engine, log } = asyncEngine();
    const first = engine.addRequest(req('a', { maxTokens: 12 }));
    let second: Promise<unknown> | undefined;
    engine.events.on('step', () => {
      if (second === undefined) second = collect(engine, req('late', { maxTokens: 3 }));
    });
    await first.done();
    await second;
    // The late request's prefill ran in a plain step ('forward' without device ids) after the start.
    expect(log.filter((e) => e === 'forward').length).toBe(2);
    expect(engine.stats().numFreeBlocks).toBe(engine.stats().numTotalBlocks);
  });

  test('a forward that fails mid-pipeline fails its requests, and the engine serves the next', async () => {
    let failAt = -1;
    let forwards = 0;
    const { engine } = asyncEngine({
      model: {
        failWhen: (batch) => ++forwards === failAt && batch.prevTokenIds !== undefined,
      },
    });
    failAt = 4;
    await expect(engine.addRequest(req('x', { maxTokens: 20 })).done()).rejects.toMatchObject({
      code: 'FS_ERR_ENGINE_MODEL_FAILED',
    });
    expect(engine.stats().numFreeBlocks).toBe(engine.stats().numTotalBlocks);
    const after = (await collect(engine, req('y', { maxTokens: 4 }))).final;
    expect(after.outputs[0]!.tokenIds).toHaveLength(4);
  });

  test('a sampling that fails when waited for fails its requests, and the engine goes on', async () => {
    const { engine, sampler } = asyncEngine();
    let outputs = 0;
    engine.events.on('output', () => {
      if (++outputs === 2) sampler.failWaits = true;
    });
    await expect(engine.addRequest(req('x', { maxTokens: 20 })).done()).rejects.toMatchObject({
      code: 'FS_ERR_ENGINE_STEP_FAILED',
      message: expect.stringMatching(/device lost while sampling/),
    });
    expect(engine.stats().numFreeBlocks).toBe(engine.stats().numTotalBlocks);
    sampler.failWaits = false;
    expect((await collect(engine, req('y', { maxTokens: 3 }))).final.outputs[0]!.tokenIds).toHaveLength(3);
  });

  test('off where the model does not read device token ids (it is never given any)', async () => {
    const { engine } = makeEngine({ asyncScheduling: true });
    expect(engine.asyncScheduling).toBe(false);
    // The tiny model throws if handed device token ids it does not read.
    const out = (await collect(engine, req('a', { maxTokens: 6 }))).final;
    expect(out.outputs[0]!.tokenIds).toHaveLength(6);
  });

  test('shutdown waits for the step in flight', async () => {
    const { engine, log } = asyncEngine();
    const h = engine.addRequest(req('a', { maxTokens: 100 }));
    await new Promise((resolve) => setTimeout(resolve, 5));
    await engine.shutdown();
    expect((await h.done()).outputs[0]!.finishReason).toBe('abort');
    // Every queued sampling was waited for before shutdown returned.
    const queued = log.filter((e) => e.startsWith('queue')).length;
    expect(log.filter((e) => e.startsWith('wait')).length).toBe(queued);
    expect(engine.stats().numFreeBlocks).toBe(engine.stats().numTotalBlocks);
  });
});
