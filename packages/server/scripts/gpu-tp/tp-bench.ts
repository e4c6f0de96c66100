// Issue 11's benchmark (run by gpu-tp.sh, one process per tensor-parallel size so that each starts
// from clean GPUs): DeepSeek-V2-Lite shapes with dummy weights over `--tp` GPUs (ranks as threads,
// NCCL), flashmla, decode steps through CUDA graphs (every rank replays its own, collectives
// included) with GPU greedy sampling, at each batch over `--ctx`-token contexts. Each step beside its
// floor: the bytes one GPU must read (its shard of the weights, the replicated latent cache) over the
// copy bandwidth measured here, plus the step's collectives measured alone (gpu-nccl.sh --step, read
// from --collectives). Prints one JSON row per batch.
// Usage: node tp-bench.mjs --tp 2 --worker tp-cuda-worker.mjs [--batches 1,32,128] [--ctx 1024]
//        [--steps 30] [--warmup 20] [--collectives rank0.log]
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseDeepseekConfig } from '@flashserve/core';
import { CudaDevice } from '@flashserve/cuda';
import { createTensorParallelModel, TensorParallelModel } from '@flashserve/models';
import { decodeBatch, floorBytes, V2_LITE } from '../../../cuda/scripts/bench/v2-lite.js';
import { cudaRankRuntime } from '../../src/runtime/cuda-ranks.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}

/** Collective ms per step alone, by batch, from gpu-nccl.sh --step's JSON lines (graph replays). */
function collectivesAlone(path: string): Map<number, number> {
  const out = new Map<number, number>();
  if (path === '') return out;
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line.startsWith('{"step_collectives"')) continue;
    const r = JSON.parse(line) as { step_collectives: { batch: number }; graph_ms: number };
    out.set(r.step_collectives.batch, r.graph_ms);
  }
  return out;
}

async function main(): Promise<void> {
  const tp = Number(arg('tp', '1'));
  const worker = arg('worker', '');
  const batches = arg('batches', '1,32,128').split(',').map(Number);
  const ctx = Number(arg('ctx', '1024'));
  const steps = Number(arg('steps', '30'));
  const warmup = Number(arg('warmup', '20'));
  const alone = collectivesAlone(arg('collectives', ''));
  const blockSize = 64;
  const seed = 7;
  const config = parseDeepseekConfig(V2_LITE, 'DeepSeek-V2-Lite shapes');
  const device = new CudaDevice({ deviceIndex: 0, dummyEmptyUploadsSeed: seed });
  const bw = device.measureCopyBandwidth();
  const t0 = performance.now();
  const model = await createTensorParallelModel({
    config,
    dummySeed: seed,
    tensorParallelSize: tp,
    rankRuntime: cudaRankRuntime({ dummySeed: seed }),
    device,
    backend: 'flashmla',
    ...(worker === '' ? {} : { workerEntry: pathToFileURL(worker) }),
    maxModelLen: 8192,
  });
  device.synchronize();
  console.log(
    `TP=${tp}: dummy V2-Lite on ${tp} GPU(s) in ${((performance.now() - t0) / 1000).toFixed(1)} s; GPU 0 holds ${(device.memStats().inUse / 2 ** 30).toFixed(1)} GiB; copy ${bw.toFixed(0)} GB/s`,
  );
  const perReq = Math.ceil((ctx + 1) / blockSize);
  model.allocateKvCache(Math.max(...batches) * perReq + 64, blockSize);
  for (const B of batches) {
    const params = {
      temperature: new Float32Array(B),
      topK: new Int32Array(B),
      topP: new Float32Array(B).fill(1),
      minP: new Float32Array(B),
      uniform: new Float32Array(B),
    };
    const key = `decode-${B}`;
    const batch = { ...decodeBatch(B, ctx, blockSize, 1), graphKey: key };
    // Eager steps (no graph key: every rank runs them eagerly), after one warm-up.
    const eager = { ...batch, graphKey: undefined };
    device.sample(model.forward(eager), params);
    let s0 = performance.now();
    for (let i = 0; i < 3; i++) device.sample(model.forward(eager), params);
    const eagerMs = (performance.now() - s0) / 3;
    // Graphs: eager, capture, then untimed replays while V8 compiles the replay pass, then timed.
    for (let i = 0; i < 2 + warmup; i++)
      device.sample(
        device.graph(key, () => model.forward(batch)),
        params,
      );
    s0 = performance.now();
    for (let i = 0; i < steps; i++)
      device.sample(
        device.graph(key, () => model.forward(batch)),
        params,
      );
    const stepMs = (performance.now() - s0) / steps;
    if (model instanceof TensorParallelModel) model.checkStep();
    const fb = floorBytes(config, B, ctx, tp);
    const memMs = ((fb.weights + fb.kv) / (bw * 1e9)) * 1000;
    const collMs = tp === 1 ? 0 : (alone.get(B) ?? Number.NaN);
    const floorMs = memMs + collMs;
    console.log(
      JSON.stringify({
        tp,
        batch: B,
        ctx,
        eager_step_ms: +eagerMs.toFixed(3),
        step_ms: +stepMs.toFixed(3),
        tok_s: +((B / stepMs) * 1000).toFixed(0),
        per_gpu_gb: +((fb.weights + fb.kv) / 1e9).toFixed(3),
        mem_floor_ms: +memMs.toFixed(3),
        collectives_alone_ms: +collMs.toFixed(3),
        floor_ms: +floorMs.toFixed(3),
        x_floor: +(stepMs / floorMs).toFixed(3),
        collective_share: tp === 1 ? 0 : +(collMs / stepMs).toFixed(3),
      }),
    );
  }
  await model.close();
  process.exit(0);
}

main().catch((e: unknown) => {
  console.error(`tp-bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  process.exit(1);
});
