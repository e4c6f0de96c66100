// Decode steps through Device.graph: which steps qualify and at what size (the ladder), how a batch
// is padded (dummy rows write no KV and their logits rows are ignored), and that an engine over a
// graph-capable fake device warms up, captures once per ladder size, replays afterwards, and
// produces exactly what the eager engine produces.

import { describe, expect, test } from 'vitest';
import type { CommonAttentionMetadata } from '../src/attention/common-metadata.js';
import type { Device, Tensor } from '../src/device/device.js';
import { BatchBuilder, decodeGraphSize } from '../src/engine/batch-builder.js';
import { Engine } from '../src/engine/engine.js';
import type { ForwardBatch, Model } from '../src/engine/model.js';
import type { AddRequestInput, RequestOutput, StepStats } from '../src/engine/protocol.js';
import { collect } from './support/collect.js';
import { HostTensor, makeHostDevice } from './support/host-device.js';
import { params, prompt, tokensOf } from './support/run-engine.js';
import { TinyModel } from './support/tiny-model.js';

/** A decode batch of `n` requests with the given lengths and block-table rows of width `mb`. */
function decodeBatch(lens: readonly number[], mb: number, bs = 4): ForwardBatch {
  const n = lens.length;
  const tables = new Int32Array(n * mb);
  for (let r = 0; r < n; r++)
    for (let j = 0; j < Math.ceil(lens[r]! / bs); j++) tables[r * mb + j] = 1 + r * mb + j;
  const positions = Int32Array.from(lens, (l) => l - 1);
  const attention: CommonAttentionMetadata = {
    numReqs: n,
    numTokens: n,
    queryStartLoc: Int32Array.from({ length: n + 1 }, (_, i) => i),
    seqLens: Int32Array.from(lens),
    numComputedTokens: Int32Array.from(lens, (l) => l - 1),
    positions,
    slotMapping: Int32Array.from(
      lens,
      (l, r) => tables[r * mb + Math.floor((l - 1) / bs)]! * bs + ((l - 1) % bs),
    ),
    blockTables: tables,
    maxBlocksPerReq: mb,
    blockSize: bs,
    maxQueryLen: 1,
    maxSeqLen: Math.max(...lens),
  };
  return {
    tokenIds: Int32Array.from(lens, (l) => 100 + l),
    attention,
    logitsIndices: Int32Array.from({ length: n }, (_, i) => i),
  };
}

describe('decodeGraphSize (the ladder choice)', () => {
  const ladder = [1, 2, 4, 8];
  test('the smallest size that holds the batch; none beyond the largest', () => {
    expect(decodeGraphSize(decodeBatch([5], 4), ladder)).toBe(1);
    expect(decodeGraphSize(decodeBatch([5, 6, 7], 4), ladder)).toBe(4);
    expect(decodeGraphSize(decodeBatch([5, 6, 7, 8, 9], 4), ladder)).toBe(8);
    expect(decodeGraphSize(decodeBatch(Array(9).fill(5), 4), ladder)).toBeUndefined();
    expect(decodeGraphSize(decodeBatch([5], 4), [])).toBeUndefined();
  });

  test('only decode-only steps where every request samples', () => {
    const b = decodeBatch([5, 6], 4);
    // A prefill chunk (2 query tokens) in the step: eager.
    const mixed: ForwardBatch = {
      ...b,
      tokenIds: new Int32Array(3),
      attention: { ...b.attention, numTokens: 3, queryStartLoc: Int32Array.of(0, 2, 3), maxQueryLen: 2 },
      logitsIndices: Int32Array.of(1, 2),
    };
    expect(decodeGraphSize(mixed, ladder)).toBeUndefined();
    // A one-token prefill chunk that does not sample (logits rows are not 0..n-1): eager.
    expect(decodeGraphSize({ ...b, logitsIndices: Int32Array.of(1) }, ladder)).toBeUndefined();
  });
});

describe('BatchBuilder.padDecode (padding)', () => {
  test('real rows first and unchanged; padding rows write no KV and attend over one null-block token', () => {
    const b = decodeBatch([5, 9, 2], 3);
    const p = new BatchBuilder(4, 64, 16).padDecode(b, 8, 6);
    const a = p.attention;
    expect(a.numReqs).toBe(8);
    expect(a.numTokens).toBe(8);
    expect([...p.tokenIds]).toEqual([105, 109, 102, 0, 0, 0, 0, 0]);
    expect([...a.positions]).toEqual([4, 8, 1, 0, 0, 0, 0, 0]);
    expect([...a.slotMapping]).toEqual([...b.attention.slotMapping, -1, -1, -1, -1, -1]);
    expect([...a.seqLens]).toEqual([5, 9, 2, 1, 1, 1, 1, 1]);
    expect([...a.numComputedTokens]).toEqual([4, 8, 1, 0, 0, 0, 0, 0]);
    expect([...a.queryStartLoc]).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    expect([...p.logitsIndices]).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(a.maxBlocksPerReq).toBe(6);
    expect(a.maxQueryLen).toBe(1);
    for (let r = 0; r < 8; r++) {
      const row = [...a.blockTables.subarray(r * 6, (r + 1) * 6)];
      const want =
        r < 3 ? [...b.attention.blockTables.subarray(r * 3, (r + 1) * 3), 0, 0, 0] : Array(6).fill(0);
      expect(row).toEqual(want);
    }
  });

  test('reused buffers: a smaller batch after a larger one leaves no stale table rows', () => {
    const builder = new BatchBuilder(4, 64, 16);
    builder.padDecode(decodeBatch([5, 9, 2, 7], 3), 4, 5);
    const p = builder.padDecode(decodeBatch([6], 2), 4, 5);
    expect([...p.attention.blockTables.subarray(5)]).toEqual(Array(15).fill(0));
    expect([...p.attention.slotMapping]).toEqual([p.attention.slotMapping[0]!, -1, -1, -1]);
  });

  test('refuses what a graph cannot replay', () => {
    const builder = new BatchBuilder(4, 64, 16);
    expect(() => builder.padDecode(decodeBatch([5, 6, 7], 4), 2, 4)).toThrow('at most 2');
    expect(() => builder.padDecode(decodeBatch([5], 4), 2, 3)).toThrow('exceed the width');
  });
});

type GraphEvent = { key: string; phase: 'warmup' | 'capture' | 'replay' };

/** Host device with `graph`: 1st call per key eager, 2nd "captured", later "replayed", each checked
 * to see the same input and output shapes as its capture (what a CUDA graph needs). */
function graphDevice(): { device: Device; events: GraphEvent[] } {
  const base = makeHostDevice();
  const events: GraphEvent[] = [];
  const calls = new Map<string, number>();
  const captured = new Map<string, string>();
  const device: Device = {
    ...base,
    graph(key: string, fn: () => Tensor): Tensor {
      const n = (calls.get(key) ?? 0) + 1;
      calls.set(key, n);
      const out = fn();
      const shape = out.shape.join('x');
      if (n === 2) captured.set(key, shape);
      if (n > 2 && captured.get(key) !== shape) throw new Error(`replay of ${key} changed shape`);
      events.push({ key, phase: n === 1 ? 'warmup' : n === 2 ? 'capture' : 'replay' });
      return out;
    },
  };
  return { device, events };
}

/** The tiny model behind padding the way a GPU model sees it: padding rows (slot -1, a suffix) write
 * no KV and get garbage logits (NaN), which the samplers must never read. */
class PaddedTinyModel implements Model {
  readonly info;
  readonly #inner = new TinyModel({ readsDeviceTokenIds: true });
  readonly readsDeviceTokenIds = true;
  readonly paddedShapes: string[] = [];
  /** Per graph key: whether its steps merge device token ids (a capture's uploads are fixed). */
  readonly #graphInputs = new Map<string, boolean>();
  /** Graph steps that took some token ids from the device (async scheduling). */
  deviceTokenGraphSteps = 0;
  constructor(readonly device: Device) {
    this.info = this.#inner.info;
  }
  kvCacheBytesPerBlock(bs: number): number {
    return this.#inner.kvCacheBytesPerBlock(bs);
  }
  allocateKvCache(numBlocks: number, bs: number): void {
    this.#inner.allocateKvCache(numBlocks, bs);
  }
  forward(batch: ForwardBatch): Tensor {
    const a = batch.attention;
    const key = batch.graphKey;
    if (key !== undefined) {
      const merges = batch.prevTokenIds !== undefined;
      if ((this.#graphInputs.get(key) ?? merges) !== merges) throw new Error(`${key}: its inputs changed`);
      this.#graphInputs.set(key, merges);
      if (batch.prevTokenIds?.rows.some((r) => r >= 0)) this.deviceTokenGraphSteps++;
    }
    let k = 0;
    while (k < a.numReqs && a.slotMapping[k]! >= 0) k++;
    for (let r = k; r < a.numReqs; r++)
      if (a.slotMapping[r]! >= 0) throw new Error('padding is not a suffix');
    if (k === a.numReqs) return this.#inner.forward(batch);
    this.paddedShapes.push(`${a.numReqs}x${a.maxBlocksPerReq}`);
    const inner: ForwardBatch = {
      tokenIds: batch.tokenIds.subarray(0, k),
      attention: {
        ...a,
        numReqs: k,
        numTokens: k,
        queryStartLoc: a.queryStartLoc.subarray(0, k + 1),
        seqLens: a.seqLens.subarray(0, k),
        numComputedTokens: a.numComputedTokens.subarray(0, k),
        positions: a.positions.subarray(0, k),
        slotMapping: a.slotMapping.subarray(0, k),
        blockTables: a.blockTables.subarray(0, k * a.maxBlocksPerReq),
      },
      logitsIndices: batch.logitsIndices.subarray(0, k),
      ...(batch.prevTokenIds === undefined
        ? {}
        : { prevTokenIds: { ids: batch.prevTokenIds.ids, rows: batch.prevTokenIds.rows.subarray(0, k) } }),
    };
    const real = this.#inner.forward(inner) as HostTensor;
    const V = this.info.vocabSize;
    const out = new Float32Array(a.numReqs * V).fill(Number.NaN);
    out.set(real.data as Float32Array);
    return new HostTensor([a.numReqs, V], 'f32', out);
  }
}

/** The engine every test here runs: a small cache and batch, the given decode-graph ladder (if any). */
function smallEngine(model: Model, ladder: readonly number[] | undefined, asyncScheduling = false): Engine {
  return new Engine({
    asyncScheduling,
    model,
    blockSize: 4,
    numBlocks: 256,
    maxNumSeqs: 16,
    maxNumBatchedTokens: 64,
    maxModelLen: 256,
    ...(ladder === undefined ? {} : { decodeGraphBatchSizes: ladder }),
  });
}

async function run(
  reqs: readonly AddRequestInput[],
  ladder: readonly number[] | undefined,
  asyncScheduling = false,
): Promise<{
  outs: RequestOutput[];
  events: GraphEvent[];
  steps: StepStats[];
  model: PaddedTinyModel;
  fallbacks: number[];
}> {
  const { device, events } = graphDevice();
  const model = new PaddedTinyModel(device);
  const engine = smallEngine(model, ladder, asyncScheduling);
  const steps: StepStats[] = [];
  engine.events.on('step', (s) => steps.push(s));
  const fallbacks: number[] = [];
  engine.events.on('graphFallback', (f) => fallbacks.push(f.batchSize));
  const outs = (await Promise.all(reqs.map((r) => collect(engine, r)))).map((c) => c.final);
  return { outs, events, steps, model, fallbacks };
}

describe('engine decode graphs on a graph-capable device', () => {
  // 6 requests of different lengths and output lengths: the decode batch shrinks 6 -> 1 as they
  // finish, visiting ladder sizes 8, 4, 2 and 1; greedy and seeded sampling, n = 2 included.
  const reqs: AddRequestInput[] = Array.from({ length: 6 }, (_, i) => ({
    requestId: `r${i}`,
    promptTokenIds: prompt(i, 3 + i * 5),
    params:
      i % 2 === 0
        ? params({ maxTokens: 6 + i * 4 })
        : params({ temperature: 0.8, topP: 0.9, seed: 7 + i, maxTokens: 6 + i * 4, n: i === 3 ? 2 : 1 }),
  }));

  test('capture once per ladder size, replay afterwards, outputs identical to eager', async () => {
    const eager = await run(reqs, undefined);
    expect(eager.events).toEqual([]);
    const graphs = await run(reqs, [1, 2, 4, 8]);
    expect(tokensOf(graphs.outs)).toEqual(tokensOf(eager.outs));
    expect(graphs.fallbacks).toEqual([]);
    expect(graphs.outs.map((o) => o.outputs.map((c) => c.finishReason))).toEqual(
      eager.outs.map((o) => o.outputs.map((c) => c.finishReason)),
    );

    const byKey = new Map<string, string[]>();
    for (const e of graphs.events) byKey.set(e.key, [...(byKey.get(e.key) ?? []), e.phase]);
    expect([...byKey.keys()].sort()).toEqual(['decode-1', 'decode-2', 'decode-4', 'decode-8']);
    for (const phases of byKey.values()) {
      expect(phases[0]).toBe('warmup');
      expect(phases.filter((p) => p === 'capture')).toHaveLength(phases.length > 1 ? 1 : 0);
      expect(phases.slice(2).every((p) => p === 'replay')).toBe(true);
    }
    expect(graphs.events.filter((e) => e.phase === 'replay').length).toBeGreaterThan(10);
    // Padded batches always have the ladder size and the fixed table width (ceil(256 / 4) = 64).
    expect(graphs.model.paddedShapes.length).toBeGreaterThan(0);
    for (const s of graphs.model.paddedShapes) expect(s).toMatch(/^(2|4|8)x64$/);
    // Steps report the graph size; prefill steps ran eagerly.
    const graphSteps = graphs.steps.filter((s) => s.graphBatchSize !== undefined);
    expect(graphSteps.length).toBe(graphs.events.length);
    for (const s of graphSteps) {
      expect(s.numPrefillTokens).toBe(0);
      expect(s.graphBatchSize).toBeGreaterThanOrEqual(s.numScheduledSeqs);
    }
    expect(graphs.steps.some((s) => s.numPrefillTokens > 0 && s.graphBatchSize === undefined)).toBe(true);
  });

  test('with async scheduling: graphs take their ids from the device, outputs identical to eager', async () => {
    const eager = await run(reqs, undefined);
    const pipelined = await run(reqs, [1, 2, 4, 8], true);
    expect(tokensOf(pipelined.outs)).toEqual(tokensOf(eager.outs));
    expect(pipelined.events.filter((e) => e.phase === 'replay').length).toBeGreaterThan(10);
    expect(pipelined.model.deviceTokenGraphSteps).toBeGreaterThan(10);
    expect(pipelined.fallbacks).toEqual([]);
    // A fork ends the pipeline for one step: that decode-only step goes through the same graph as the
    // continuations around it, without device ids (a prompt of whole blocks: the children share all
    // of it and decode one token each), and must not change the graph's inputs.
    const fork: AddRequestInput[] = [
      { requestId: 'f', promptTokenIds: prompt(9, 8), params: params({ n: 2, temperature: 1, seed: 3 }) },
    ];
    const forked = await run(fork, [1, 2, 4, 8], true);
    expect(tokensOf(forked.outs)).toEqual(tokensOf((await run(fork, undefined)).outs));
    expect(forked.fallbacks).toEqual([]);
    expect(forked.model.deviceTokenGraphSteps).toBeGreaterThan(3);
  });

  test('batches beyond the largest size run eagerly', async () => {
    const graphs = await run(reqs, [1, 2]);
    expect(tokensOf(graphs.outs)).toEqual(tokensOf((await run(reqs, undefined)).outs));
    for (const s of graphs.steps) if (s.numScheduledSeqs > 2) expect(s.graphBatchSize).toBeUndefined();
    expect(new Set(graphs.events.map((e) => e.key))).toEqual(new Set(['decode-1', 'decode-2']));
  });

  test('a device without graph (the CPU) ignores the ladder', async () => {
    const model = new TinyModel();
    const engine = smallEngine(model, [1, 2, 4, 8]);
    const steps: StepStats[] = [];
    engine.events.on('step', (s) => steps.push(s));
    await Promise.all(reqs.map((r) => collect(engine, r)));
    expect(steps.every((s) => s.graphBatchSize === undefined)).toBe(true);
  });

  test('a graph that fails falls back to eager for that size, without failing the step', async () => {
    const { device } = graphDevice();
    let failures = 0;
    const failing: Device = {
      ...device,
      graph(key: string, fn: () => Tensor): Tensor {
        if (key === 'decode-2') {
          failures++;
          throw new Error('capture failed');
        }
        return device.graph!(key, fn);
      },
    };
    const model = new PaddedTinyModel(failing);
    const engine = smallEngine(model, [1, 2, 4, 8]);
    const fallbacks: number[] = [];
    engine.events.on('graphFallback', (f) => fallbacks.push(f.batchSize));
    const outs = (await Promise.all(reqs.map((r) => collect(engine, r)))).map((c) => c.final);
    expect(tokensOf(outs)).toEqual(tokensOf((await run(reqs, undefined)).outs));
    expect(failures).toBe(1);
    expect(fallbacks).toEqual([2]);
  });
});
