// Tensor parallelism on the CPU (issue 11): for every fixture whose head and intermediate counts
// divide, TP = 2 and TP = 4 must give TP = 1's greedy continuations and last-position logits within
// 1e-4, both driven step by step through the paged cache and through the real Engine. A worker that
// dies, throws or hangs mid-request must end the request with a clear error, never hang.

import { fileURLToPath } from 'node:url';
import {
  CpuDevice,
  defaultSamplingParams,
  Engine,
  FlashserveError,
  loadDeepseekConfig,
  parseDeepseekConfig,
  referenceMlaBackend,
} from '@flashserve/core';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { bundleWorker } from '../../../test-support/bundle-worker.js';
import {
  type ClosableModel,
  createDeepseekModelFromWeights,
  createTensorParallelModel,
  DummyWeightSource,
  loadDeepseekModel,
  TINY_DEEPSEEK_V3_CONFIG,
  tensorParallelUnsupportedReasons,
} from '../src/index.js';
import { expected, fixtureDir, fixtureNames } from './support/fixtures.js';
import { maxAbsDiff, runGreedy } from './support/paged-runner.js';

const TOLERANCE = 1e-4;
let entry: URL;
let faultyEntry: URL;
const open: ClosableModel[] = [];

beforeAll(() => {
  entry = bundleWorker(fileURLToPath(new URL('../src/deepseek/tp-worker.ts', import.meta.url)));
  faultyEntry = bundleWorker(fileURLToPath(new URL('./support/tp-faulty-worker.ts', import.meta.url)));
});

afterEach(async () => {
  await Promise.all(open.splice(0).map((m) => m.close()));
});

async function tpModel(dir: string, size: number, extra: { timeoutMs?: number; faulty?: boolean } = {}) {
  const m = await createTensorParallelModel({
    dir,
    tensorParallelSize: size,
    workerEntry: extra.faulty ? faultyEntry : entry,
    ...(extra.timeoutMs === undefined ? {} : { collectiveTimeoutMs: extra.timeoutMs }),
  });
  open.push(m);
  return m;
}

function engineFor(model: ClosableModel): Engine {
  return new Engine({
    model,
    blockSize: 16,
    numBlocks: 32,
    maxNumSeqs: 4,
    maxNumBatchedTokens: 12,
    maxModelLen: 128,
  });
}

const cases = fixtureNames().flatMap((name) =>
  [2, 4]
    .filter((n) => tensorParallelUnsupportedReasons(loadDeepseekConfig(fixtureDir(name)), n).length === 0)
    .map((size) => ({ name, size })),
);

describe.each(cases)('fixture $name at TP = $size', ({ name, size }) => {
  const exp = expected(name);

  it('matches TP = 1 through the paged cache and through the engine', async () => {
    const single = loadDeepseekModel(fixtureDir(name), {
      device: new CpuDevice(),
      backend: referenceMlaBackend(),
    });
    const opts = { blockSize: 16, chunk: 8, steps: exp.greedy.length };
    const [a1, b1] = runGreedy(single, [exp.prompt, exp.prompt2], opts);
    const tp = await tpModel(fixtureDir(name), size);
    const [a, b] = runGreedy(tp, [exp.prompt, exp.prompt2], opts);
    for (const [got, want, ref] of [
      [a!, a1!, exp.logits],
      [b!, b1!, exp.logits2],
    ] as const) {
      const err = maxAbsDiff(got.promptLogits, want.promptLogits);
      expect(err, `logits max abs error vs TP = 1: ${err}`).toBeLessThan(TOLERANCE);
      expect(maxAbsDiff(got.promptLogits, ref)).toBeLessThan(TOLERANCE);
      expect(got.generated).toEqual(want.generated);
    }

    // The engine: scheduler, KV cache manager with prefix caching, chunked prefill mixed with decode.
    const engine = engineFor(tp);
    const params = defaultSamplingParams({ temperature: 0, maxTokens: exp.greedy.length, ignoreEos: true });
    const [oa, ob] = await Promise.all([
      engine.addRequest({ promptTokenIds: exp.prompt, params }).done(),
      engine.addRequest({ promptTokenIds: exp.prompt2, params }).done(),
    ]);
    expect(oa.outputs[0]!.tokenIds).toEqual(a1!.generated);
    expect(ob.outputs[0]!.tokenIds).toEqual(b1!.generated);
    await engine.shutdown();
  });
});

describe('vocabulary padding', () => {
  it('a vocabulary that does not divide by the size is padded and trimmed', async () => {
    const raw = {
      ...TINY_DEEPSEEK_V3_CONFIG,
      vocab_size: 1001,
      num_hidden_layers: 2,
      num_attention_heads: 4,
    };
    const config = parseDeepseekConfig(raw, 'padded');
    const single = createDeepseekModelFromWeights(config, new DummyWeightSource(config, 3), {
      device: new CpuDevice(),
      backend: referenceMlaBackend(),
    });
    const m = await createTensorParallelModel({
      config,
      dummySeed: 3,
      tensorParallelSize: 4,
      workerEntry: entry,
    });
    open.push(m);
    const prompt = Array.from({ length: 9 }, (_, i) => (i * 97 + 5) % 1001);
    const opts = { blockSize: 16, chunk: 64, steps: 4 };
    const [want] = runGreedy(single, [prompt], opts);
    const [got] = runGreedy(m, [prompt], opts);
    expect(got!.promptLogits.length).toBe(1001);
    expect(maxAbsDiff(got!.promptLogits, want!.promptLogits)).toBeLessThan(TOLERANCE);
    expect(got!.generated).toEqual(want!.generated);
  });
});

describe('configuration', () => {
  it('refuses a size that does not divide the heads, naming the count', async () => {
    const err = await createTensorParallelModel({
      dir: fixtureDir('v2-lora-yarn-bf16'),
      tensorParallelSize: 4,
      workerEntry: entry,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FlashserveError);
    expect((err as FlashserveError).code).toBe('FS_ERR_DISTRIBUTED_CONFIG_INVALID');
    expect((err as Error).message).toMatch(
      /num_attention_heads \(2\) is not divisible by the tensor-parallel size 4/,
    );
  });
});

describe('failures end the request with a clear error', () => {
  const fixture = fixtureDir('v2-nolora-greedy');
  const exp = expected('v2-nolora-greedy');

  it.each([
    { kind: 'exit', code: 'FS_ERR_DISTRIBUTED_WORKER_FAILED', text: /worker rank 1 exited with code 7/ },
    { kind: 'throw', code: 'FS_ERR_DISTRIBUTED_WORKER_FAILED', text: /worker rank 1 failed: injected fault/ },
    { kind: 'spin', code: 'FS_ERR_DISTRIBUTED_TIMEOUT', text: /rank\(s\) 1 never arrived/ },
  ])('a worker that does "$kind" mid-request', async ({ kind, code, text }) => {
    process.env.FLASHSERVE_TEST_TP_FAULT = `${kind}:1:4`;
    let m: ClosableModel;
    try {
      m = await tpModel(fixture, 2, { faulty: true, timeoutMs: 1000 });
    } finally {
      delete process.env.FLASHSERVE_TEST_TP_FAULT;
    }
    const engine = engineFor(m);
    const params = defaultSamplingParams({ temperature: 0, maxTokens: 12, ignoreEos: true });
    const t0 = performance.now();
    const err = await engine
      .addRequest({ promptTokenIds: exp.prompt, params })
      .done()
      .catch((e: unknown) => e);
    expect(performance.now() - t0).toBeLessThan(15_000);
    expect(err).toBeInstanceOf(FlashserveError);
    expect((err as FlashserveError).code).toBe('FS_ERR_ENGINE_MODEL_FAILED');
    expect(((err as Error).cause as FlashserveError).code).toBe(code);
    expect((err as Error).message).toMatch(text);
    expect(m.brokenReason).toMatch(text);

    // The group stays broken: the next request fails at once with the reason, and the engine lives on.
    const again = await engine
      .addRequest({ promptTokenIds: exp.prompt2, params })
      .done()
      .catch((e: unknown) => e);
    expect(((again as Error).cause as FlashserveError).code).toBe('FS_ERR_DISTRIBUTED_GROUP_BROKEN');
    expect((again as Error).message).toMatch(text);
    await engine.shutdown();
  });

  it('a worker that exits at start-up, right after joining its group, fails the creation', async () => {
    process.env.FLASHSERVE_TEST_TP_FAULT = 'exit:1:start';
    const t0 = performance.now();
    let err: unknown;
    try {
      err = await tpModel(fixture, 2, { faulty: true, timeoutMs: 1000 }).then(
        async (m) => {
          await m.close();
          return 'created';
        },
        (e: unknown) => e,
      );
    } finally {
      delete process.env.FLASHSERVE_TEST_TP_FAULT;
    }
    expect(performance.now() - t0).toBeLessThan(15_000);
    expect(err).toBeInstanceOf(FlashserveError);
    expect((err as FlashserveError).code).toBe('FS_ERR_DISTRIBUTED_WORKER_FAILED');
    expect((err as Error).message).toMatch(/worker rank 1 exited with code 7/);
  });
});
