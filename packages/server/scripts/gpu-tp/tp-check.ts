// Issue 11's correctness bar on a machine of several GPUs (run by gpu-tp.sh), through the real Engine
// with the paged cache, the GPU sampler and the flashmla backend, on the kv_lora_rank-512 fixture:
//   1. greedy continuations at TP = 2 (ranks as threads, GPUs 0 and 1, NCCL) equal TP = 1's for at
//      least the first 8 tokens, eagerly and with decode CUDA graphs (every rank captures and replays
//      its own graph, collectives included); and against transformers' reference;
//   2. a worker rank killed mid-request (its thread exits at its 4th forward) ends that request with
//      FS_ERR_ENGINE_MODEL_FAILED caused by FS_ERR_DISTRIBUTED_WORKER_FAILED, promptly; the next
//      request fails at once (group broken); close() returns; and GPU 0 still serves a new model;
//   3. a worker rank that dies during start-up (right after joining NCCL) makes the model's creation
//      fail with FS_ERR_DISTRIBUTED_WORKER_FAILED, promptly (rank 0's communicator aborted, once), and
//      GPU 0 still serves afterwards.
// Prints one JSON row per check and exits 1 if any fails.
// Usage: node tp-check.mjs <fixtureDir> <workerEntry.mjs> <faultyWorkerEntry.mjs>
import { pathToFileURL } from 'node:url';
import {
  defaultSamplingParams,
  Engine,
  FlashserveError,
  type Model,
  type RequestOutput,
} from '@flashserve/core';
import { CudaDevice, CudaSampler } from '@flashserve/cuda';
import { type ClosableModel, createTensorParallelModel } from '@flashserve/models';
import { cudaRankRuntime } from '../../src/runtime/cuda-ranks.js';
import { GREEDY_MIN, loadExpected, type Row, samePrefix } from '../gpu-e2e/common.js';

const [fixture, workerPath, faultyPath] = process.argv.slice(2);
if (fixture === undefined || workerPath === undefined || faultyPath === undefined) {
  console.error('usage: tp-check.mjs <fixtureDir> <workerEntry.mjs> <faultyWorkerEntry.mjs>');
  process.exit(2);
}
const exp = loadExpected(fixture);
const TOKENS = 12;
const BLOCK = 64;
const rows: Row[] = [];
const row = (check: string, value: string, limit: string, ok: boolean, note?: string) => {
  const r: Row = { check, value, limit, ok, ...(note === undefined ? {} : { note }) };
  rows.push(r);
  console.log(JSON.stringify(r));
};

const device = new CudaDevice({ deviceIndex: 0 });
const sampler = new CudaSampler();

function engineFor(model: Model, graphs: boolean): Engine {
  return new Engine({
    model,
    sampler,
    blockSize: BLOCK,
    numBlocks: 16,
    maxNumSeqs: 4,
    maxNumBatchedTokens: 256,
    maxModelLen: 256,
    ...(graphs ? { decodeGraphBatchSizes: [1, 2, 4] } : {}),
  });
}

async function model(tp: number, entry: string = workerPath!): Promise<ClosableModel> {
  return createTensorParallelModel({
    dir: fixture,
    tensorParallelSize: tp,
    rankRuntime: cudaRankRuntime(),
    device,
    backend: 'flashmla',
    workerEntry: pathToFileURL(entry),
    maxModelLen: 256,
  });
}

/** Greedy continuations of the fixture's two prompts, decoded together. */
async function greedy(m: Model, graphs: boolean): Promise<number[][]> {
  // Each engine allocates new caches; graphs captured over the previous ones (the same keys on GPU 0,
  // which every model here shares) must go.
  device.resetGraphs();
  const engine = engineFor(m, graphs);
  const params = defaultSamplingParams({ temperature: 0, maxTokens: TOKENS, ignoreEos: true });
  const outs = await Promise.all(
    [exp.prompt, exp.prompt2].map((p) => engine.addRequest({ promptTokenIds: p, params }).done()),
  );
  await engine.shutdown();
  return outs.map((o: RequestOutput) => [...o.outputs[0]!.tokenIds]);
}

/** What `p` rejected with, or undefined if it resolved. */
function failureOf(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  );
}

async function main(): Promise<void> {
  // 1. TP = 1 against TP = 2, eager and with graphs.
  const single = await model(1);
  const ref = await greedy(single, false);
  const refGraphs = await greedy(single, true);
  for (const [i, want] of [exp.greedy, exp.greedy2].entries()) {
    const n = samePrefix(ref[i]!, want);
    row(`TP=1 prompt ${i + 1} vs transformers`, `${n}/${TOKENS}`, `>= ${GREEDY_MIN}`, n >= GREEDY_MIN);
  }
  const split = await model(2);
  for (const [label, graphs] of [
    ['eager', false],
    ['graphs', true],
  ] as const) {
    const got = await greedy(split, graphs);
    for (const [i, want] of (graphs ? refGraphs : ref).entries()) {
      const n = samePrefix(got[i]!, want);
      row(
        `TP=2 ${label} prompt ${i + 1} vs TP=1 ${label}`,
        `${n}/${TOKENS}`,
        `>= ${GREEDY_MIN}`,
        n >= GREEDY_MIN,
        n < TOKENS ? `TP=2 ${got[i]!.join(',')} TP=1 ${want.join(',')}` : undefined,
      );
    }
  }
  await split.close();

  // 2. Kill rank 1 mid-request.
  process.env.FLASHSERVE_TEST_TP_FAULT = 'exit:1:4';
  const faulty = await model(2, faultyPath);
  delete process.env.FLASHSERVE_TEST_TP_FAULT;
  device.resetGraphs();
  const engine = engineFor(faulty, true);
  const params = defaultSamplingParams({ temperature: 0, maxTokens: TOKENS, ignoreEos: true });
  const t0 = performance.now();
  const err = await failureOf(engine.addRequest({ promptTokenIds: exp.prompt, params }).done());
  const ms = performance.now() - t0;
  const code = err instanceof FlashserveError ? err.code : String(err);
  const cause = (err as { cause?: unknown } | undefined)?.cause;
  const causeCode = cause instanceof FlashserveError ? cause.code : String(cause);
  row(
    'kill rank 1 mid-request: the request fails',
    `${code} <- ${causeCode} in ${ms.toFixed(0)} ms`,
    'ENGINE_MODEL_FAILED <- DISTRIBUTED_WORKER_FAILED, < 30 s',
    code === 'FS_ERR_ENGINE_MODEL_FAILED' && causeCode === 'FS_ERR_DISTRIBUTED_WORKER_FAILED' && ms < 30_000,
    err instanceof Error ? err.message : undefined,
  );
  const again = await failureOf(engine.addRequest({ promptTokenIds: exp.prompt2, params }).done());
  const againCause = (again as { cause?: unknown } | undefined)?.cause;
  row(
    'kill: the next request fails at once',
    againCause instanceof FlashserveError ? againCause.code : String(againCause),
    'FS_ERR_DISTRIBUTED_GROUP_BROKEN',
    againCause instanceof FlashserveError && againCause.code === 'FS_ERR_DISTRIBUTED_GROUP_BROKEN',
  );
  row(
    'kill: brokenReason',
    String(faulty.brokenReason),
    'names rank 1',
    /rank 1/.test(faulty.brokenReason ?? ''),
  );
  await engine.shutdown();
  const c0 = performance.now();
  const closed = await Promise.race([
    faulty.close().then(() => true),
    new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 15_000)),
  ]);
  const closeMs = performance.now() - c0;
  row(
    'kill: close() returns',
    closed ? `${closeMs.toFixed(0)} ms` : 'no (15 s)',
    '< 10 s',
    closed && closeMs < 10_000,
  );
  // GPU 0 is still usable: the single-GPU model decodes the same tokens again.
  const after = await greedy(single, false);
  const n = samePrefix(after[0]!, ref[0]!);
  row('kill: GPU 0 serves afterwards (TP=1 again)', `${n}/${TOKENS}`, `= ${TOKENS}`, n === TOKENS);
  await single.close();

  // 3. A worker rank dies during start-up, after NCCL's init (faulty-cuda-worker.ts, "start").
  process.env.FLASHSERVE_TEST_TP_FAULT = 'exit:1:start';
  const s0 = performance.now();
  const startErr = await Promise.race([
    model(2, faultyPath).then(
      async (m) => {
        await m.close();
        return 'created' as const;
      },
      (e: unknown) => e,
    ),
    new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 60_000)),
  ]);
  delete process.env.FLASHSERVE_TEST_TP_FAULT;
  const startMs = performance.now() - s0;
  const startCode = startErr instanceof FlashserveError ? startErr.code : String(startErr);
  row(
    'rank 1 dies at start-up: creation fails',
    `${startCode} in ${startMs.toFixed(0)} ms`,
    'FS_ERR_DISTRIBUTED_WORKER_FAILED, < 60 s',
    startCode === 'FS_ERR_DISTRIBUTED_WORKER_FAILED',
    startErr instanceof Error ? startErr.message : undefined,
  );
  if (startErr !== 'hung') {
    const single2 = await model(1);
    const again2 = await greedy(single2, false);
    const n2 = samePrefix(again2[0]!, ref[0]!);
    row('start-up death: GPU 0 serves afterwards (TP=1)', `${n2}/${TOKENS}`, `= ${TOKENS}`, n2 === TOKENS);
    await single2.close();
  }

  const failed = rows.filter((r) => !r.ok);
  console.log(failed.length === 0 ? 'tp-check: ALL OK' : `tp-check: ${failed.length} FAILED`);
  process.exit(failed.length === 0 ? 0 : 1);
}

main().catch((e: unknown) => {
  console.error(`tp-check: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  process.exit(1);
});
