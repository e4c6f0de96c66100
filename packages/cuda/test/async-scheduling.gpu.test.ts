// Async scheduling on the CUDA device: mergeTokenIds (eager and inside graphs), sampleAsync against
// sample, pending results waited out of order, and tickets whose download slot was reused. The GPU
// parts skip, saying why, where CUDA is unavailable; the host fallback is checked everywhere.
import {
  CpuDevice,
  defaultSamplingParams,
  f32ToBf16,
  Rng,
  type SamplingParams,
  type SamplingRow,
  type Tensor,
} from '@flashserve/core';
import { describe, expect, it } from 'vitest';
import {
  CudaDevice,
  CudaSampler,
  cudaAvailability,
  type GpuSamplingParams,
  requireAddon,
} from '../src/index.js';
import type { NativeCuda } from '../src/native.js';

const avail = cudaAvailability();
const title = avail.available
  ? 'async scheduling on the GPU'
  : `async scheduling on the GPU (skipped: ${avail.reason})`;

function row(logitsRow: number, params: Partial<SamplingParams>, seed: number): SamplingRow {
  return {
    logitsRow,
    params: defaultSamplingParams(params),
    rng: new Rng(seed),
    promptTokens: [],
    outputCounts: new Map(),
    bannedTokenIds: [],
    promptTokenSet: undefined,
  };
}

/** Logits [R, V] with a distinct argmax per row, the rest spread out so tempered rows vary. */
function randomLogits(R: number, V: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const out = new Float32Array(R * V);
  for (let i = 0; i < out.length; i++) out[i] = 6 * rng.next() - 3;
  return out;
}

/** Greedy, top-k 1, a tempered row and a tempered top-p row, with fixed uniforms and 2 alternatives. */
function mixedParams(R: number): GpuSamplingParams {
  const pick = <T>(xs: T[]) => Array.from({ length: R }, (_, i) => xs[i % xs.length]!);
  return {
    temperature: Float32Array.from(pick([0, 1, 0.8, 1.2])),
    topK: Int32Array.from(pick([0, 1, 0, 0])),
    topP: Float32Array.from(pick([1, 1, 1, 0.9])),
    minP: new Float32Array(R),
    uniform: Float32Array.from(pick([0.5, 0.7, 0.3, 0.61])),
    numTopLogprobs: 2,
  };
}

describe('CudaSampler.sampleAsync without the GPU', () => {
  it('is undefined where sample() would use the host sampler (another device)', () => {
    const cpu = new CpuDevice();
    const logits = cpu.upload(new Float32Array(8), [2, 4], 'f32');
    const into = cpu.upload(new Int32Array(2), [2], 'i32');
    const rows = [row(0, { temperature: 0 }, 1), row(1, { temperature: 0 }, 2)];
    expect(new CudaSampler().sampleAsync(logits, cpu, rows, into)).toBeUndefined();
  });
});

describe.skipIf(!avail.available)(title, () => {
  const device = avail.available ? new CudaDevice() : undefined;
  const gpu = (): CudaDevice => device!;
  const i32 = (t: Tensor): number[] => [...(gpu().toHost(t) as Int32Array)];

  it('mergeTokenIds takes prev[rows[i]] where rows[i] >= 0, else ids[i]', () => {
    const d = gpu();
    const ids = d.upload(Int32Array.from([10, 11, 12, 13, 14, 15, 16]), [7], 'i32');
    const prev = d.upload(Int32Array.from([100, 101, 102]), [3], 'i32');
    // -1 keeps the host's id, rows repeat, and a row past prev (3) keeps the host's id too
    const rows = d.upload(Int32Array.from([-1, 0, 2, 2, -1, 1, 3]), [7], 'i32');
    expect(i32(d.mergeTokenIds(ids, prev, rows))).toEqual([10, 100, 102, 102, 14, 101, 16]);
    const none = d.upload(new Int32Array(0), [0], 'i32');
    expect(i32(d.mergeTokenIds(none, prev, none))).toEqual([]);
  });

  it('mergeTokenIds checks dtypes and shapes', () => {
    const d = gpu();
    const ids = d.upload(Int32Array.from([1, 2]), [2], 'i32');
    const prev = d.upload(Int32Array.from([5]), [1], 'i32');
    expect(() => d.mergeTokenIds(ids, prev, d.upload(Int32Array.from([0]), [1], 'i32'))).toThrow(
      'mergeTokenIds: rows [1] does not match ids [2]',
    );
    expect(() => d.mergeTokenIds(ids, d.uploadF32(Float32Array.from([5]), [1]), ids)).toThrow(
      'mergeTokenIds: prev must be i32, got f32',
    );
    expect(() => d.mergeTokenIds(d.reshape(ids, [1, 2]), prev, ids)).toThrow(
      'mergeTokenIds: ids must be 1-D, got [1, 2]',
    );
  });

  it('mergeTokenIds is captured and replayed inside graph()', () => {
    const d = gpu();
    const prev = d.upload(new Int32Array(4), [4], 'i32');
    const step = (ids: number[], rows: number[]): number[] => {
      const out = d.graph('async-merge-test', () =>
        d.mergeTokenIds(
          d.upload(Int32Array.from(ids), [ids.length], 'i32'),
          prev,
          d.upload(Int32Array.from(rows), [rows.length], 'i32'),
        ),
      );
      return i32(out);
    };
    // eager, capture, then replays: prev changes between steps as a sampler would write it
    for (let s = 0; s < 4; s++) {
      d.write(prev, Int32Array.from([40, 41, 42, 43].map((x) => x + 10 * s)), 'i32');
      const ids = [s, s + 1, s + 2];
      const rows = [s % 2 === 0 ? 3 : -1, -1, s % 4];
      const want = ids.map((id, i) => (rows[i]! >= 0 ? 40 + rows[i]! + 10 * s : id));
      expect(step(ids, rows)).toEqual(want);
    }
    d.resetGraphs();
  });

  it('sampleAsync returns what sample() does, and writes the ids into `into`', () => {
    const d = gpu();
    const R = 6;
    const V = 3000;
    const logits = d.uploadF32(randomLogits(R, V, 7), [R, V]);
    const params = mixedParams(R);
    const want = d.sample(logits, params);
    const into = d.zeros([R + 3], 'i32');
    const pending = d.sampleAsync(logits, params, into);
    const got = pending.wait();
    expect(got).toEqual(want);
    expect(pending.wait()).toBe(got);
    expect(i32(into).slice(0, R)).toEqual([...want.tokens]);
    // bf16 logits too (the model's usual output)
    const lb = d.upload(f32ToBf16(randomLogits(R, V, 8)), [R, V], 'bf16');
    expect(d.sampleAsync(lb, params, into).wait()).toEqual(d.sample(lb, params));
  });

  it('sampleAsync results waited in reverse order are each their own step', () => {
    const d = gpu();
    const R = 4;
    const V = 2000;
    const la = d.uploadF32(randomLogits(R, V, 11), [R, V]);
    const lb = d.uploadF32(randomLogits(R, V, 12), [R, V]);
    const params = mixedParams(R);
    const wantA = d.sample(la, params);
    const wantB = d.sample(lb, params);
    const intoA = d.zeros([R], 'i32');
    const intoB = d.zeros([R], 'i32');
    const pa = d.sampleAsync(la, params, intoA);
    const pb = d.sampleAsync(lb, params, intoB);
    expect(pb.wait()).toEqual(wantB);
    expect(pa.wait()).toEqual(wantA);
    expect(i32(intoA)).toEqual([...wantA.tokens]);
    expect(i32(intoB)).toEqual([...wantB.tokens]);
  });

  it('a pending result whose download slot was reused throws; the later ones still arrive', () => {
    const d = gpu();
    const R = 2;
    const V = 500;
    const logits = d.uploadF32(randomLogits(R, V, 13), [R, V]);
    const params = mixedParams(R);
    const want = d.sample(logits, params);
    const into = d.zeros([R], 'i32');
    // four slots: the fifth download takes the first one's
    const pending = Array.from({ length: 5 }, () => d.sampleAsync(logits, params, into));
    expect(() => pending[0]!.wait()).toThrow(/downloadWait: ticket \d+ is no longer valid/);
    for (const p of pending.slice(1)) expect(p.wait()).toEqual(want);
    const addon = requireAddon() as NativeCuda;
    expect(() => addon.downloadWait(2 ** 40, new Int32Array(4))).toThrow(/was never issued/);
  });

  it('sampleAsync checks `into`, the result size, and refuses graph capture', () => {
    const d = gpu();
    const R = 3;
    const logits = d.uploadF32(randomLogits(R, 100, 14), [R, 100]);
    const params = mixedParams(R);
    expect(() => d.sampleAsync(logits, params, d.zeros([R - 1], 'i32'))).toThrow(
      'sampleAsync: into must be i32 with at least 3 elements',
    );
    expect(() => d.sampleAsync(logits, params, d.zeros([R], 'f32'))).toThrow('sampleAsync: into must be i32');
    const big = 400;
    const lbig = d.zeros([big, 100], 'bf16');
    const pbig = mixedParams(big);
    expect(() => d.sampleAsync(lbig, { ...pbig, numTopLogprobs: 20 }, d.zeros([big], 'i32'))).toThrow(
      /more than one asynchronous download takes/,
    );
    const into = d.zeros([R], 'i32');
    const step = (): Tensor =>
      d.graph('async-sample-test', () => {
        d.sampleAsync(logits, params, into);
        return into;
      });
    step(); // a graph's first run is eager
    expect(step).toThrow('sampleAsync: not allowed inside a function run through graph()');
    d.resetGraphs();
  });

  it('CudaSampler.sampleAsync maps results like sample(), rows sharing a logits row included', () => {
    const d = gpu();
    const V = 1500;
    const logits = d.uploadF32(randomLogits(3, V, 15), [3, V]);
    // n = 2 choices of logits row 1 (gathered), a greedy row, and a tempered row with logprobs
    const rowsFor = (): SamplingRow[] => [
      row(1, { temperature: 0.9, seed: 1 }, 101),
      row(1, { temperature: 0.9, seed: 1 }, 102),
      row(0, { temperature: 0, logprobs: 3 }, 103),
      row(2, { temperature: 0.7, logprobs: 1, topK: 50 }, 104),
    ];
    const sampler = new CudaSampler();
    const want = sampler.sample(logits, d, rowsFor());
    const into = d.zeros([4], 'i32');
    const pending = sampler.sampleAsync(logits, d, rowsFor(), into);
    expect(pending).toBeDefined();
    const got = pending!.wait();
    expect(got).toEqual(want);
    expect(pending!.wait()).toBe(got);
    expect(i32(into)).toEqual(want.map((t) => t.tokenId));
    expect(sampler.counts).toEqual({ gpu: 2, host: 0 });
    // a row the kernel cannot sample: the caller goes to sample() (the host sampler)
    const penalised = [row(0, { temperature: 0, repetitionPenalty: 1.2 }, 105)];
    expect(sampler.sampleAsync(logits, d, penalised, into)).toBeUndefined();
    expect(sampler.counts).toEqual({ gpu: 2, host: 0 });
    expect(sampler.sampleAsync(logits, d, [], into)?.wait()).toEqual([]);
  });
});
