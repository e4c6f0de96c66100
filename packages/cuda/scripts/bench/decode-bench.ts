// The decode benchmark of issue 8: a model with DeepSeek-V2-Lite's shapes and dummy weights on one
// GPU. Decode tokens/s at batch 1, 8, 32, 128, 256 with 1k-token contexts (CUDA graphs, GPU greedy
// sampling), prefill tokens/s, and each decode step beside its floor: bytes of the active weights
// plus the KV cache read, over the copy bandwidth measured in the same run. Two steps are timed: the
// synchronous one (the sampled ids are read back before the next step is launched) and async
// scheduling's (the server's default on CUDA: each step launched with its ids taken on the GPU from the
// previous sampling, before that sampling is read back).
//
// Usage (GPU machine): node decode-bench.mjs [--batches 1,8,32] [--ctx 1024] [--steps 20] [--warmup 20] [--no-prefill]
// (--no-prefill skips the prefill figure and its second copy of the weights: for quick A/B runs, e.g.
// under FLASHSERVE_NO_PDL=1 or FLASHSERVE_MOE_SMALL_MAX_TOKENS=0.)
// --timeline [--timeline-steps N]: after each batch's figures, a graph of the step captured with the
// kernel timeline on (csrc/kernels/timeline.h) and replayed N times: where the step's time goes, op by op.
// Needs addons built with the stamps (CMake option FLASHSERVE_KERNEL_TIMELINE=ON; a default build refuses).
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type PerformanceEntry, PerformanceObserver } from 'node:perf_hooks';
import {
  type AttentionBackend,
  attentionBackends,
  type DeepseekConfig,
  type Device,
  type ForwardBatch,
  loadDeepseekConfig,
} from '@flashserve/core';
// Imported for its side effect: it registers "flashmla" and "cuda-mla" in core's registry.
import { mlaAvailability, requireMlaAddon } from '../../../mla-backend/src/index.js';
import {
  createDeepseekModelFromWeights,
  deepseekWeightManifest,
  mlaSpec,
} from '../../../models/src/index.js';
import { CudaDevice, GpuDummyWeightSource } from '../../src/index.js';
import { KvOnlyAttentionBackend } from './kv-only-attention.js';
import { formatTimeline, summarizeTimeline } from './timeline.js';
import { decodeBatch, floorBytes, V2_LITE } from './v2-lite.js';

// V8's garbage-collection pauses on the main thread: they fall inside the timed steps (a batch-1 step
// waits for the host's replay pass), so each row reports those of its timed graph steps.
const gcEntries: PerformanceEntry[] = [];
const gcObserver = new PerformanceObserver((list) => {
  gcEntries.push(...list.getEntries());
});
gcObserver.observe({ entryTypes: ['gc'] });

/** GC pauses that began in [t0, t1) (performance.now() times): their count and total ms. */
function gcPauses(t0: number, t1: number): { count: number; ms: number } {
  let count = 0;
  let ms = 0;
  for (const e of gcEntries) {
    if (e.startTime >= t0 && e.startTime < t1) {
      count++;
      ms += e.duration;
    }
  }
  return { count, ms };
}

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}

/** The GPU attention backend named by BENCH_BACKEND (default flashmla), if registered and able. */
function gpuBackend(device: Device, config: DeepseekConfig): AttentionBackend | undefined {
  const name = process.env.BENCH_BACKEND ?? 'flashmla';
  if (!attentionBackends.has(name)) {
    console.log(`attention backend ${name} is not registered`);
    return undefined;
  }
  const b = attentionBackends.get(name);
  const reasons = b.unsupportedReasons({ device, model: mlaSpec(config), blockSize: 64 });
  if (reasons.length > 0) {
    console.log(`attention backend ${name} cannot run: ${reasons.join('; ')}`);
    return undefined;
  }
  return b;
}

function prefillBatch(reqs: number, len: number, blockSize: number): ForwardBatch {
  const perReq = Math.ceil(len / blockSize);
  const T = reqs * len;
  const blockTables = Int32Array.from({ length: reqs * perReq }, (_, i) => i + 1);
  const positions = Int32Array.from({ length: T }, (_, i) => i % len);
  const slotMapping = Int32Array.from({ length: T }, (_, i) => {
    const r = Math.floor(i / len);
    const p = i % len;
    return blockTables[r * perReq + Math.floor(p / blockSize)]! * blockSize + (p % blockSize);
  });
  return {
    tokenIds: Int32Array.from({ length: T }, (_, i) => (i * 31 + 7) % 100000),
    attention: {
      numReqs: reqs,
      numTokens: T,
      queryStartLoc: Int32Array.from({ length: reqs + 1 }, (_, i) => i * len),
      seqLens: new Int32Array(reqs).fill(len),
      numComputedTokens: new Int32Array(reqs),
      positions,
      slotMapping,
      blockTables,
      maxBlocksPerReq: perReq,
      blockSize,
      maxQueryLen: len,
      maxSeqLen: len,
    },
    logitsIndices: Int32Array.from({ length: reqs }, (_, i) => (i + 1) * len - 1),
  };
}

async function main(): Promise<void> {
  const batches = arg('batches', '1,8,32,128,256').split(',').map(Number);
  const ctx = Number(arg('ctx', '1024'));
  const steps = Number(arg('steps', '20'));
  const warmup = Number(arg('warmup', '20'));
  const blockSize = 64;
  const dir = mkdtempSync(join(tmpdir(), 'v2lite-'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(V2_LITE));
  const config = loadDeepseekConfig(dir);
  const device = new CudaDevice({ dummyEmptyUploadsSeed: 7 });
  const decodeBackend = gpuBackend(device, config) ?? new KvOnlyAttentionBackend();
  const bw = device.measureCopyBandwidth();
  console.log(
    `device ${device.info.name}; copy bandwidth ${bw.toFixed(0)} GB/s; decode attention: ${decodeBackend.name}`,
  );
  const build = (backend: AttentionBackend) =>
    createDeepseekModelFromWeights(config, new GpuDummyWeightSource(deepseekWeightManifest(config)), {
      device,
      backend,
      maxModelLen: 8192,
    });

  // Prefill: 4 requests x 1024 tokens in one step (eager), attention excluded: the GPU MLA kernels
  // are decode kernels (one query length, at most 64, per step).
  let t0 = performance.now();
  let prefillModel: ReturnType<typeof build> | undefined;
  let preS = Number.NaN;
  if (!process.argv.includes('--no-prefill')) {
    prefillModel = build(new KvOnlyAttentionBackend());
    device.synchronize();
    console.log(
      `built dummy V2-Lite in ${((performance.now() - t0) / 1000).toFixed(1)} s, ${(device.memStats().inUse / 2 ** 30).toFixed(1)} GiB on the GPU`,
    );
    prefillModel.allocateKvCache(4 * 16 + 8, blockSize);
    const pre = prefillBatch(4, 1024, blockSize);
    device.toHost(prefillModel.forward(pre));
    t0 = performance.now();
    const preIters = 3;
    for (let i = 0; i < preIters; i++) device.release(prefillModel.forward(pre));
    device.synchronize();
    preS = (performance.now() - t0) / 1000 / preIters;
    console.log(
      `prefill 4 x 1024 tokens: ${(preS * 1000).toFixed(1)} ms/step, ${(4096 / preS).toFixed(0)} tokens/s`,
    );
  }

  // Decode: the same dummy weights again (the first model's stay: both fit in 80 GB) with the GPU
  // attention backend when one can run.
  const model =
    decodeBackend instanceof KvOnlyAttentionBackend && prefillModel !== undefined
      ? prefillModel
      : build(decodeBackend);
  const backend = decodeBackend;
  const maxB = Math.max(...batches);
  const perReq = Math.ceil((ctx + 1) / blockSize);
  model.allocateKvCache(maxB * perReq + 64, blockSize);

  const greedy = (rows: number) => ({
    temperature: new Float32Array(rows),
    topK: new Int32Array(rows),
    topP: new Float32Array(rows).fill(1),
    minP: new Float32Array(rows),
    uniform: new Float32Array(rows),
  });
  const results: Record<string, number | string>[] = [];
  for (const B of batches) {
    const batch = decodeBatch(B, ctx, blockSize, 1);
    const params = greedy(B);
    // Eager step (forward + GPU sampling), after one warm-up.
    device.sample(model.forward(batch), params);
    t0 = performance.now();
    for (let i = 0; i < 3; i++) device.sample(model.forward(batch), params);
    const eagerMs = (performance.now() - t0) / 3;
    // Graph: warm-up, capture, then `warmup` untimed replays (a server replays thousands of steps:
    // the host's replay pass is timed once V8 has compiled it, not while it still interprets it),
    // then the timed replays.
    const key = `decode-${B}`;
    for (let i = 0; i < 2 + warmup; i++)
      device.sample(
        device.graph(key, () => model.forward(batch)),
        params,
      );
    t0 = performance.now();
    let hostMs = 0;
    for (let i = 0; i < steps; i++) {
      // The replay pass's own host time (the graph launches at its last upload, so most of it
      // overlaps the GPU; the rest of the step waits for the sampled ids).
      const h0 = performance.now();
      const logits = device.graph(key, () => model.forward(batch));
      hostMs += performance.now() - h0;
      device.sample(logits, params);
    }
    const tEnd = performance.now();
    const graphMs = (tEnd - t0) / steps;
    // GC entries reach the observer asynchronously: let them arrive (after the timing).
    await new Promise((resolve) => setTimeout(resolve, 20));
    const gc = gcPauses(t0, tEnd);
    hostMs /= steps;
    // The forward alone, replays queued back to back (no sampling, no host round trip per step).
    t0 = performance.now();
    for (let i = 0; i < steps; i++) device.graph(key, () => model.forward(batch));
    device.synchronize();
    const fwdMs = (performance.now() - t0) / steps;
    // What a step adds to the forward: sampling alone (launch, kernel, ids to the host, the wait) on
    // logits already on the GPU, and a bare 4-byte round trip for comparison.
    const resident = model.forward(batch);
    device.synchronize();
    t0 = performance.now();
    for (let i = 0; i < steps; i++) device.sample(resident, params);
    const sampleMs = (performance.now() - t0) / steps;
    const probe = device.upload(new Int32Array(1), [1], 'i32');
    t0 = performance.now();
    for (let i = 0; i < steps; i++) device.toHost(probe);
    const roundTripMs = (performance.now() - t0) / steps;
    device.release(resident);
    device.release(probe);
    if (B === 1 || B === 32) {
      // Per-op host timing of one eager forward (each launch synchronised: includes ~10 us of sync
      // overhead per launch, so it ranks ops rather than measuring the graph's time).
      device.startProfile();
      device.release(model.forward(batch));
      const prof = device.stopProfile();
      const total = prof.reduce((a, p) => a + p[1], 0);
      console.log(
        `profile B=${B}: ${prof.reduce((a, p) => a + p[2], 0)} launches, ${total.toFixed(2)} ms with syncs`,
      );
      for (const [name, ms, calls] of prof.slice(0, 14))
        console.log(
          `  ${name.padEnd(48)} ${ms.toFixed(3).padStart(8)} ms ${String(calls).padStart(5)} calls`,
        );
    }
    // Async scheduling's step, as the engine runs it: launch step i+1 (its ids merged on the GPU,
    // mergeTokenIds included), then wait for step i's sampled ids. Its own graph: its uploads include
    // the merge's rows.
    // NOTE: the rows are all -1 (every id from the host, as in the synchronous step): merging the
    // sampled ids would feed every row the token the dummy weights favour, so a batch would route all
    // its rows to the same 6 experts and read far fewer weights than the step it is compared with.
    const sampledIds = device.zeros([B], 'i32');
    const asyncBatch = {
      ...batch,
      prevTokenIds: { ids: sampledIds, rows: new Int32Array(B).fill(-1) },
    };
    const asyncKey = `decode-async-${B}`;
    const launch = () =>
      device.sampleAsync(
        device.graph(asyncKey, () => model.forward(asyncBatch)),
        params,
        sampledIds,
      );
    const pipelined = (n: number) => {
      let pending = launch();
      for (let i = 0; i < n; i++) {
        const next = launch();
        pending.wait();
        pending = next;
      }
      pending.wait();
    };
    pipelined(2 + warmup);
    t0 = performance.now();
    pipelined(steps - 1);
    const asyncMs = (performance.now() - t0) / steps;
    device.release(sampledIds);
    const fb = floorBytes(config, B, ctx);
    const floorMs = ((fb.weights + fb.kv) / (bw * 1e9)) * 1000;
    const row = {
      batch: B,
      ctx,
      eager_step_ms: +eagerMs.toFixed(2),
      graph_step_ms: +graphMs.toFixed(2),
      graph_fwd_ms: +fwdMs.toFixed(2),
      replay_host_ms: +hostMs.toFixed(2),
      sample_ms: +sampleMs.toFixed(3),
      round_trip_ms: +roundTripMs.toFixed(3),
      tok_s: +((B / graphMs) * 1000).toFixed(0),
      floor_ms: +floorMs.toFixed(2),
      x_floor: +(graphMs / floorMs).toFixed(2),
      async_step_ms: +asyncMs.toFixed(2),
      async_tok_s: +((B / asyncMs) * 1000).toFixed(0),
      async_x_floor: +(asyncMs / floorMs).toFixed(2),
      weights_gb: +(fb.weights / 1e9).toFixed(2),
      kv_gb: +(fb.kv / 1e9).toFixed(2),
      // GC pauses during the timed graph steps: how many, and their ms per step.
      gc_pauses: gc.count,
      gc_ms_per_step: +(gc.ms / steps).toFixed(4),
    };
    results.push(row);
    console.log(JSON.stringify(row));
    if (process.argv.includes('--timeline')) {
      // A graph of its own, captured with the timeline on so that its launches are named; its first
      // two calls (eager, then capture + launch) and a few replays are not kept.
      const capacity = 1 << 14;
      const log = device.startTimeline(capacity);
      const mla = mlaAvailability().available ? requireMlaAddon() : undefined;
      mla?.timelineAttach({ ...log, capacity });
      const tkey = `timeline-${B}`;
      const step = () =>
        device.sample(
          device.graph(tkey, () => model.forward(batch)),
          params,
        );
      for (let i = 0; i < 5; i++) step();
      device.takeTimeline();
      const taken = [];
      for (let i = 0; i < Number(arg('timeline-steps', '30')); i++) {
        step();
        taken.push(device.takeTimeline());
      }
      mla?.timelineAttach({});
      device.stopTimeline();
      console.log(`timeline B=${B}, step ${graphMs.toFixed(3)} ms`);
      console.log(formatTimeline(summarizeTimeline(taken), 40));
    }
  }
  if (process.env.OUT)
    writeFileSync(
      join(process.env.OUT, 'bench.json'),
      JSON.stringify({ backend: backend.name, bw, results }, null, 1),
    );
  console.log(
    `\nattention: ${backend.name}; copy ${bw.toFixed(0)} GB/s; prefill ${Number.isNaN(preS) ? 'skipped' : `${(4096 / preS).toFixed(0)} tok/s`}`,
  );
  console.log('graph = forward + GPU greedy sampling + ids to host, one step after the other');
  console.log(
    'async = the same step pipelined (async scheduling, the server default); fwd = graph replays alone',
  );
  console.log('host = the replay pass on the host (overlaps the GPU after the last upload)');
  console.log(
    'batch  eager ms  graph ms    fwd ms   host ms     tok/s  floor ms  x floor  async ms  async tok/s  x floor',
  );
  const col = (v: number | string | undefined, w: number) => String(v).padStart(w);
  for (const r of results) {
    console.log(
      `${col(r.batch, 5)} ${col(r.eager_step_ms, 9)} ${col(r.graph_step_ms, 9)} ${col(r.graph_fwd_ms, 9)} ${col(r.replay_host_ms, 9)} ${col(r.tok_s, 9)} ${col(r.floor_ms, 9)} ${col(r.x_floor, 8)} ${col(r.async_step_ms, 9)} ${col(r.async_tok_s, 12)} ${col(r.async_x_floor, 8)}`,
    );
  }
}

await main();
