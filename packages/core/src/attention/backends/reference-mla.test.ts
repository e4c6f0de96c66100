// reference-mla against plain decompressed attention (per-head K = [W_UK c_kv ; k_pe], V = W_UV c_kv,
// causal softmax), over several requests with cached prefixes, at block sizes 1, 3, 16 and 64.

import { describe, expect, it } from 'vitest';
import { CpuDevice, cpuF32 } from '../../device/cpu-device.js';
import type { CommonAttentionMetadata } from '../common-metadata.js';
import { referenceMlaBackend } from './reference-mla.js';

function rand(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    out[i] = (s / 2 ** 32) * 2 - 1;
  }
  return out;
}

const spec = { numLayers: 1, numHeads: 3, kvLoraRank: 8, qkNopeHeadDim: 4, qkRopeHeadDim: 4, vHeadDim: 5 };
const { numHeads: H, kvLoraRank: L, qkNopeHeadDim: N, qkRopeHeadDim: R, vHeadDim: V } = spec;

describe.each([1, 3, 16, 64])('reference-mla at block size %i', (blockSize) => {
  it('equals decompressed causal attention over a two-step, two-request schedule', () => {
    const d = new CpuDevice();
    const backend = referenceMlaBackend();
    expect(backend.unsupportedReasons({ device: d, model: spec, blockSize })).toEqual([]);
    const layout = backend.cacheLayout({ device: d, model: spec, blockSize });
    expect(layout.entryWidth).toBe(L + R);
    const numBlocks = 40;
    const cache = backend.allocateCache(d, layout, numBlocks);
    // Garbage (NaN) in every slot nobody writes must never reach the output.
    cpuF32(cache.tensor, 'test').fill(Number.NaN);
    const impl = backend.impl(d, spec);
    const builder = backend.metadataBuilder(d, spec, layout);
    const wUk = rand(H * N * L, 1);
    const wUv = rand(H * V * L, 2);
    const weights = {
      wUk: d.upload(wUk, [H, N, L], 'f32'),
      wUv: d.upload(wUv, [H, V, L], 'f32'),
      softmaxScale: 0.4,
    };

    // Request lengths: A gets 5 then 3 tokens, B gets 2 then 1 (a decode step).
    const lens = [
      [5, 2],
      [3, 1],
    ];
    const blocks = [
      [7, 3, 11, 5, 2, 9, 13, 1],
      [20, 4, 30, 6, 8, 10, 12, 14],
    ].map((b) => b.map((x) => x % numBlocks));
    const history: { cKv: number[][]; kPe: number[][] }[] = [
      { cKv: [], kPe: [] },
      { cKv: [], kPe: [] },
    ];
    let seed = 100;
    for (const step of lens) {
      const T = step[0]! + step[1]!;
      const q = rand(T * H * (N + R), seed++);
      const cKv = rand(T * L, seed++);
      const kPe = rand(T * R, seed++);
      const positions: number[] = [];
      const slots: number[] = [];
      const numComputed: number[] = [];
      const seqLens: number[] = [];
      const qsl = [0];
      step.forEach((n, r) => {
        const start = history[r]!.cKv.length;
        numComputed.push(start);
        seqLens.push(start + n);
        for (let i = 0; i < n; i++) {
          const p = start + i;
          positions.push(p);
          slots.push(blocks[r]![Math.floor(p / blockSize)]! * blockSize + (p % blockSize));
        }
        qsl.push(qsl[qsl.length - 1]! + n);
      });
      const maxBlocksPerReq = Math.ceil(8 / blockSize);
      const tables = new Int32Array(2 * maxBlocksPerReq);
      for (const [r, b] of blocks.entries()) tables.set(b.slice(0, maxBlocksPerReq), r * maxBlocksPerReq);
      const md: CommonAttentionMetadata = {
        numReqs: 2,
        numTokens: T,
        queryStartLoc: Int32Array.from(qsl),
        seqLens: Int32Array.from(seqLens),
        numComputedTokens: Int32Array.from(numComputed),
        positions: Int32Array.from(positions),
        slotMapping: Int32Array.from(slots),
        blockTables: tables,
        maxBlocksPerReq,
        blockSize,
        maxQueryLen: Math.max(...step),
        maxSeqLen: Math.max(...seqLens),
      };
      const out = d.toHost(
        impl.forward(
          {
            q: d.upload(q, [T, H, N + R], 'f32'),
            cKv: d.upload(cKv, [T, L], 'f32'),
            kPe: d.upload(kPe, [T, R], 'f32'),
          },
          cache,
          weights,
          builder.build(md),
        ),
      );
      // Naive reference.
      let t = 0;
      step.forEach((n, r) => {
        const hist = history[r]!;
        for (let i = 0; i < n; i++, t++) {
          hist.cKv.push(Array.from(cKv.subarray(t * L, (t + 1) * L)));
          hist.kPe.push(Array.from(kPe.subarray(t * R, (t + 1) * R)));
        }
        for (let i = 0; i < n; i++) {
          const tok = qsl[r]! + i;
          const visible = numComputed[r]! + i + 1;
          for (let h = 0; h < H; h++) {
            const qb = (tok * H + h) * (N + R);
            const scores: number[] = [];
            for (let j = 0; j < visible; j++) {
              let s = 0;
              for (let nn = 0; nn < N; nn++) {
                let k = 0;
                for (let l = 0; l < L; l++) k += wUk[(h * N + nn) * L + l]! * hist.cKv[j]![l]!;
                s += q[qb + nn]! * k;
              }
              for (let rr = 0; rr < R; rr++) s += q[qb + N + rr]! * hist.kPe[j]![rr]!;
              scores.push(s * 0.4);
            }
            const m = Math.max(...scores);
            const e = scores.map((s) => Math.exp(s - m));
            const z = e.reduce((a, b) => a + b, 0);
            for (let v = 0; v < V; v++) {
              let o = 0;
              for (let j = 0; j < visible; j++) {
                let val = 0;
                for (let l = 0; l < L; l++) val += wUv[(h * V + v) * L + l]! * hist.cKv[j]![l]!;
                o += (e[j]! / z) * val;
              }
              expect(Math.abs(out[(tok * H + h) * V + v]! - o)).toBeLessThan(1e-5);
            }
          }
        }
      });
    }
  });
});

describe('reference-mla refusals', () => {
  it('runs on the CPU only and names why', () => {
    const backend = referenceMlaBackend();
    const fakeCuda = { info: { kind: 'cuda', name: 'H100', computeDType: 'bf16' } } as unknown as CpuDevice;
    expect(backend.unsupportedReasons({ device: fakeCuda, model: spec })).toEqual([
      'runs on the CPU device only (device is H100)',
    ]);
  });
});

describe('reference-mla registration', () => {
  it('is in the process-wide registry and wins "auto" on the CPU', async () => {
    const { attentionBackends } = await import('../registry.js');
    expect(attentionBackends.has('reference-mla')).toBe(true);
    expect(attentionBackends.resolve('auto', { device: new CpuDevice(), model: spec }).name).toBe(
      'reference-mla',
    );
  });
});
