// The kernels through the Node binding on a real GPU: flashmla (Hopper only) and cuda-mla against an
// fp32 host reference on the same bf16 inputs; and CUDA failures / bad arguments as JS errors naming
// the op. Skips, saying why, where the addon or a GPU is unavailable (CI, machines without a GPU).
// The full kernel suite (shapes up to b = 300, lengths to 20000, NaN-poisoned slots) is the
// standalone scripts/gpu-suite.sh; this checks the binding end to end.
import { CudaDevice, type CudaTensor, cudaAvailability } from '@flashserve/cuda';
import { describe, expect, it } from 'vitest';
import { mlaAvailability, requireMlaAddon } from '../src/index.js';

const mla = mlaAvailability();
const cuda = cudaAvailability();
const why = !mla.available ? mla.reason : !cuda.available ? `@flashserve/cuda: ${cuda.reason}` : '';
const title = why ? `MLA kernels through the binding (skipped: ${why})` : 'MLA kernels through the binding';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

describe.skipIf(why !== '')(title, () => {
  const device = why === '' ? new CudaDevice() : undefined;
  const hopper = mla.available && mla.devices[0]!.major === 9;

  it('matches an fp32 host reference (both kernels, causal s_q = 2, split requests)', () => {
    const d = device!;
    const addon = requireMlaAddon();
    const b = 3;
    const sQ = 2;
    const hQ = 16;
    const lens = [1, 100, 1300];
    const rows = sQ * hQ;
    const pages = lens.map((l) => Math.ceil(l / 64));
    const maxBlocks = Math.max(...pages);
    const numBlocks = pages.reduce((a, p) => a + p, 0) + 3;
    const rand = rng(Date.now());
    const perm = [...Array(numBlocks).keys()].sort(() => rand() - 0.5);
    const table = new Int32Array(b * maxBlocks);
    let next = 0;
    for (let r = 0; r < b; r++) for (let p = 0; p < pages[r]!; p++) table[r * maxBlocks + p] = perm[next++]!;
    const qHost = Float32Array.from({ length: b * rows * 576 }, () => rand() * 2 - 1);
    const kHost = Float32Array.from({ length: numBlocks * 64 * 576 }, () => rand() * 2 - 1);
    const q = d.upload(qHost, [b, sQ, hQ, 576], 'bf16') as CudaTensor;
    const kc = d.upload(kHost, [numBlocks, 64, 1, 576], 'bf16') as CudaTensor;
    const qv = d.toHost(q) as Float32Array;
    const kv = d.toHost(kc) as Float32Array;
    const scale = 1 / Math.sqrt(192);

    // Reference: row (s, h) of request r sees cache positions < len - (sQ - 1 - s).
    const ref = new Float32Array(b * rows * 512);
    for (let r = 0; r < b; r++)
      for (let s = 0; s < sQ; s++)
        for (let h = 0; h < hQ; h++) {
          const n = lens[r]! - (sQ - 1 - s);
          const row = (r * rows + s * hQ + h) * 576;
          const sc = new Float64Array(Math.max(n, 0));
          let mx = -Infinity;
          for (let t = 0; t < n; t++) {
            const base = (table[r * maxBlocks + Math.floor(t / 64)]! * 64 + (t % 64)) * 576;
            let acc = 0;
            for (let i = 0; i < 576; i++) acc += qv[row + i]! * kv[base + i]!;
            sc[t] = acc * scale;
            mx = Math.max(mx, sc[t]!);
          }
          let sum = 0;
          for (let t = 0; t < n; t++) sum += sc[t] = Math.exp(sc[t]! - mx);
          const o = (r * rows + s * hQ + h) * 512;
          for (let t = 0; t < n; t++) {
            const base = (table[r * maxBlocks + Math.floor(t / 64)]! * 64 + (t % 64)) * 576;
            const w = sc[t]! / sum;
            for (let i = 0; i < 512; i++) ref[o + i] = ref[o + i]! + w * kv[base + i]!;
          }
        }

    const seq = d.upload(Int32Array.from(lens), [b], 'i32') as CudaTensor;
    const bt = d.upload(table, [b, maxBlocks], 'i32') as CudaTensor;
    const numParts = 7; // few parts: the 1300-token request is cut into several pieces
    const sched = d.empty([numParts, 8], 'i32');
    const splits = d.empty([b + 1], 'i32');
    addon.getMlaMetadata({
      cacheSeqlens: seq.ptr,
      b,
      qRows: rows,
      numParts,
      schedMeta: sched.ptr,
      numSplits: splits.ptr,
      stream: d.stream,
    });
    const kernels = hopper ? (['mlaDecode', 'mlaDecodePortable'] as const) : (['mlaDecodePortable'] as const);
    for (const k of kernels) {
      const out = d.empty([b, sQ, hQ, 512], 'bf16');
      const lse = d.empty([b, hQ, sQ], 'f32');
      const oAccum = d.empty([b + numParts, rows, 512], 'f32');
      const lseAccum = d.empty([b + numParts, rows], 'f32');
      addon[k]({
        b,
        sQ,
        hQ,
        q: q.ptr,
        qBatchStride: rows * 576,
        qRowStride: 576,
        kcache: kc.ptr,
        numBlocks,
        kBlockStride: 64 * 576,
        kRowStride: 576,
        blockTable: bt.ptr,
        blockTableStride: maxBlocks,
        maxBlocksPerSeq: maxBlocks,
        cacheSeqlens: seq.ptr,
        out: out.ptr,
        oBatchStride: rows * 512,
        oRowStride: 512,
        lse: lse.ptr,
        oAccum: oAccum.ptr,
        lseAccum: lseAccum.ptr,
        schedMeta: sched.ptr,
        numSplits: splits.ptr,
        numParts,
        softmaxScale: scale,
        stream: d.stream,
      });
      const got = d.toHost(out) as Float32Array;
      let num = 0;
      let den = 0;
      for (let i = 0; i < ref.length; i++) {
        num += (got[i]! - ref[i]!) ** 2;
        den += ref[i]! ** 2;
      }
      expect(Math.sqrt(num / den), k).toBeLessThan(1e-2);
    }
  });

  it('turns bad arguments into JS errors naming the op', () => {
    const addon = requireMlaAddon();
    expect(() => addon.kvWrite({} as never)).toThrow(/^kvWrite: numTokens must be a number/);
    expect(() => addon.getMlaMetadata({ cacheSeqlens: 3n } as never)).toThrow(
      /^getMlaMetadata: cacheSeqlens must be 16-byte aligned/,
    );
    if (!hopper) expect(() => addon.mlaDecode({} as never)).toThrow(/^mlaDecode:/);
  });
});
