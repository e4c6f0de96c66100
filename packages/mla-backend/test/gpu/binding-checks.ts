// GPU checks of the Node binding, shared by test/mla.gpu.test.ts (vitest) and bench/binding-check.ts
// (a bundled script for GPU machines without node_modules). Each check returns ok/detail instead of
// throwing so a run reports all of them.
//   - both kernels against an fp32 host reference (causal s_q = 2, NaN in slots past each length,
//     a shuffled block table, few parts so the long request is split and combined);
//   - kvWrite stores [c_kv ; k_pe] at its slots and skips negative ones;
//   - the flashmla metadata builder on a decode step;
//   - bad arguments become JS errors naming the op.
import type { CommonAttentionMetadata } from '@flashserve/core';
import type { CudaDevice, CudaTensor } from '@flashserve/cuda';
import { FlashMlaMetadataBuilder, requireMlaAddon } from '../../src/index.js';

export interface CheckResult {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

const BF16_NAN = 0x7fc0;

function f32ToBf16Bits(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0]!;
  return (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
}

function bf16BitsToF32(b: number): number {
  return new Float32Array(new Uint32Array([b << 16]).buffer)[0]!;
}

function kernelsVsReference(d: CudaDevice, hopper: boolean): CheckResult[] {
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
  const valid = new Int32Array(numBlocks); // tokens held by each block; the rest are NaN
  let next = 0;
  for (let r = 0; r < b; r++)
    for (let p = 0; p < pages[r]!; p++) {
      const blk = perm[next++]!;
      table[r * maxBlocks + p] = blk;
      valid[blk] = Math.min(64, lens[r]! - p * 64);
    }
  const qBits = Uint16Array.from({ length: b * rows * 576 }, () => f32ToBf16Bits(rand() * 2 - 1));
  const kBits = new Uint16Array(numBlocks * 64 * 576);
  for (let blk = 0; blk < numBlocks; blk++)
    for (let t = 0; t < 64; t++)
      for (let i = 0; i < 576; i++)
        kBits[(blk * 64 + t) * 576 + i] = t < valid[blk]! ? f32ToBf16Bits(rand() * 2 - 1) : BF16_NAN;
  const q = d.upload(qBits, [b, sQ, hQ, 576], 'bf16') as CudaTensor;
  const kc = d.upload(kBits, [numBlocks, 64, 1, 576], 'bf16') as CudaTensor;
  const scale = 1 / Math.sqrt(192);

  // Row (s, h) of request r sees cache positions < len - (sQ - 1 - s).
  const ref = new Float64Array(b * rows * 512);
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
          for (let i = 0; i < 576; i++)
            acc += bf16BitsToF32(qBits[row + i]!) * bf16BitsToF32(kBits[base + i]!);
          sc[t] = acc * scale;
          mx = Math.max(mx, sc[t]!);
        }
        let sum = 0;
        for (let t = 0; t < n; t++) {
          sc[t] = Math.exp(sc[t]! - mx);
          sum += sc[t]!;
        }
        const o = (r * rows + s * hQ + h) * 512;
        for (let t = 0; t < n; t++) {
          const base = (table[r * maxBlocks + Math.floor(t / 64)]! * 64 + (t % 64)) * 576;
          const w = sc[t]! / sum;
          for (let i = 0; i < 512; i++) ref[o + i] = ref[o + i]! + w * bf16BitsToF32(kBits[base + i]!);
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
  const results: CheckResult[] = [];
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
    let bad = 0;
    for (let i = 0; i < ref.length; i++) {
      if (!Number.isFinite(got[i]!)) bad++;
      num += (got[i]! - ref[i]!) ** 2;
      den += ref[i]! ** 2;
    }
    const err = Math.sqrt(num / den);
    results.push({
      name: `${k} vs fp32 reference`,
      ok: bad === 0 && err < 1e-2,
      detail: `rel L2 ${err.toExponential(2)}, non-finite ${bad}`,
    });
  }
  return results;
}

function kvWriteCheck(d: CudaDevice): CheckResult {
  const addon = requireMlaAddon();
  const numBlocks = 2;
  const T = 3;
  const slots = Int32Array.from([70, -1, 5]);
  // bf16 uploads take raw 16-bit words
  const cKv = d.upload(
    Uint16Array.from({ length: T * 512 }, (_, i) => f32ToBf16Bits((i % 97) / 8)),
    [T, 512],
    'bf16',
  ) as CudaTensor;
  const kPe = d.upload(
    Uint16Array.from({ length: T * 64 }, (_, i) => f32ToBf16Bits(-(i % 13) / 4)),
    [T, 64],
    'bf16',
  ) as CudaTensor;
  const slot = d.upload(slots, [T], 'i32') as CudaTensor;
  const cache = d.zeros([numBlocks, 64, 1, 576], 'bf16') as CudaTensor;
  addon.kvWrite({
    cKv: cKv.ptr,
    cKvStride: 512,
    kPe: kPe.ptr,
    kPeStride: 64,
    slotMapping: slot.ptr,
    numTokens: T,
    kcache: cache.ptr,
    numBlocks,
    kBlockStride: 64 * 576,
    kRowStride: 576,
    stream: d.stream,
  });
  const c = d.toHost(cache) as Float32Array;
  const ck = d.toHost(cKv) as Float32Array;
  const kp = d.toHost(kPe) as Float32Array;
  let mismatches = 0;
  for (let t = 0; t < T; t++) {
    if (slots[t]! < 0) continue;
    for (let i = 0; i < 576; i++) {
      const want = i < 512 ? ck[t * 512 + i]! : kp[t * 64 + i - 512]!;
      if (c[slots[t]! * 576 + i] !== want) mismatches++;
    }
  }
  // Every other row of the cache must still be zero.
  let stray = 0;
  const written = new Set([...slots].filter((x) => x >= 0));
  for (let row = 0; row < numBlocks * 64; row++)
    if (!written.has(row)) for (let i = 0; i < 576; i++) if (c[row * 576 + i] !== 0) stray++;
  return {
    name: 'kvWrite stores [c_kv ; k_pe] at slots, skips negative ones',
    ok: mismatches === 0 && stray === 0,
    detail: `mismatches ${mismatches}, stray writes ${stray}`,
  };
}

function metadataBuilderCheck(d: CudaDevice): CheckResult {
  const b = 4;
  const seqLens = Int32Array.from([5, 64, 65, 700]);
  const maxBlocksPerReq = 11;
  const common: CommonAttentionMetadata = {
    numReqs: b,
    numTokens: b,
    queryStartLoc: Int32Array.from([0, 1, 2, 3, 4]),
    seqLens,
    numComputedTokens: Int32Array.from(seqLens, (x) => x - 1),
    positions: Int32Array.from(seqLens, (x) => x - 1),
    slotMapping: Int32Array.from([4, 64 + 63, 128 + 64, 256 + 699]),
    blockTables: Int32Array.from({ length: b * maxBlocksPerReq }, (_, i) => i),
    maxBlocksPerReq,
    blockSize: 64,
    maxQueryLen: 1,
    maxSeqLen: 700,
  };
  const model = {
    numLayers: 1,
    numHeads: 16,
    kvLoraRank: 512,
    qkNopeHeadDim: 128,
    qkRopeHeadDim: 64,
    vHeadDim: 128,
  };
  const meta = new FlashMlaMetadataBuilder(d, model).build(common);
  const launch = meta.launches[0]!;
  const splits = d.toHost(launch.numSplits) as Int32Array;
  const ok =
    meta.launches.length === 1 && splits[0] === 0 && splits[b]! >= b && splits[b]! <= b + launch.numParts;
  return {
    name: 'flashmla metadata builder on a decode step (one launch)',
    ok,
    detail: `launches ${meta.launches.length}, numParts ${launch.numParts}, num_splits [${[...splits].join(', ')}]`,
  };
}

function errorChecks(hopper: boolean): CheckResult {
  const addon = requireMlaAddon();
  const failures: string[] = [];
  const expectThrow = (fn: () => void, pattern: RegExp) => {
    try {
      fn();
      failures.push(`no error for ${pattern}`);
    } catch (e) {
      if (!pattern.test((e as Error).message)) failures.push(`"${(e as Error).message}" !~ ${pattern}`);
    }
  };
  expectThrow(() => addon.kvWrite({} as never), /^kvWrite: numTokens must be a number/);
  expectThrow(
    () => addon.getMlaMetadata({ cacheSeqlens: 3n } as never),
    /^getMlaMetadata: cacheSeqlens must be 16-byte aligned/,
  );
  if (!hopper) expectThrow(() => addon.mlaDecode({} as never), /^mlaDecode:/);
  return {
    name: 'bad arguments are JS errors naming the op',
    ok: failures.length === 0,
    detail: failures.join('; '),
  };
}

/** Runs every check; one that throws is reported as a failure with its error, and the rest still run. */
export function runBindingChecks(d: CudaDevice, hopper: boolean): CheckResult[] {
  const guarded = (name: string, fn: () => CheckResult | CheckResult[]): CheckResult[] => {
    try {
      const r = fn();
      return Array.isArray(r) ? r : [r];
    } catch (e) {
      return [{ name, ok: false, detail: `threw: ${(e as Error).message}` }];
    }
  };
  return [
    ...guarded('kernels vs fp32 reference', () => kernelsVsReference(d, hopper)),
    ...guarded('kvWrite', () => kvWriteCheck(d)),
    ...guarded('metadata builder', () => metadataBuilderCheck(d)),
    ...guarded('argument errors', () => errorChecks(hopper)),
  ];
}
