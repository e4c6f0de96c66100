// CudaDevice against core's CpuDevice (the fp32 reference) op by op, on random inputs. Each check
// reports the relative L2 error of the CUDA result (bf16 storage) against the CPU result.
import {
  bf16ToF32,
  CpuDevice,
  type Device,
  f32ToBf16,
  type MoeRouteParams,
  type RopeTable,
  type Tensor,
} from '@flashserve/core';
import type { CudaDevice } from '../../src/index.js';

export interface CheckRow {
  readonly name: string;
  readonly value: number;
  readonly limit: number;
  readonly ok: boolean;
  readonly note?: string;
}

export function relL2(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = (got[i] ?? Number.NaN) - ref[i]!;
    num += d * d;
    den += ref[i]! * ref[i]!;
  }
  const r = Math.sqrt(num / (den || 1));
  return got.length === ref.length ? r : Number.POSITIVE_INFINITY;
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random numbers already representable in bf16, so both devices start from identical inputs. */
function randArray(n: number, r: () => number, lo = -1, hi = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * r();
  return bf16ToF32(f32ToBf16(a));
}

const BF16_TOL = 1e-2;

/** V2 routing of the MoE checks: softmax top-3, and group-limited (4 groups, keep 2, renormalised). */
const V2_TOP3: MoeRouteParams = {
  kind: 'v2-softmax',
  topK: 3,
  nGroup: 1,
  topkGroup: 1,
  normTopkProb: false,
  routedScalingFactor: 1,
};
const V2_TOP3_GROUPED: MoeRouteParams = { ...V2_TOP3, nGroup: 4, topkGroup: 2, normTopkProb: true };
/** V3's noaux_tc routing (sigmoid scores, group-limited, the correction bias on its device). */
const v3Top4Grouped = (correctionBias: Tensor): MoeRouteParams => ({
  kind: 'v3-sigmoid',
  topK: 4,
  nGroup: 4,
  topkGroup: 2,
  normTopkProb: true,
  routedScalingFactor: 2.5,
  correctionBias,
});

/** Runs every op check; returns one row per check. */
export function runOpChecks(gpu: CudaDevice): CheckRow[] {
  const cpu = new CpuDevice();
  const rows: CheckRow[] = [];
  const r = rng(42);
  const both = (data: Float32Array | Int32Array, shape: number[]): [Tensor, Tensor] => {
    const dt = data instanceof Int32Array ? 'i32' : 'f32';
    return [gpu.upload(data, shape, dt), cpu.upload(data, shape, dt)];
  };
  /** Routed experts (16 of [2 x 24, 64]) and a shared MLP (inter 40), the same on both devices. */
  const sharedExpertSet = () => {
    const E = 16;
    const H = 64;
    const I = 24;
    const S = 40;
    const [gug, guc] = both(randArray(E * 2 * I * H, r, -0.2, 0.2), [E, 2 * I, H]);
    const [dg, dc] = both(randArray(E * H * I, r, -0.2, 0.2), [E, H, I]);
    const [sgg, sgc] = both(randArray(2 * S * H, r, -0.2, 0.2), [2 * S, H]);
    const [sdg, sdc] = both(randArray(H * S, r, -0.2, 0.2), [H, S]);
    return {
      E,
      H,
      expG: { gateUp: gug, down: dg, shared: { gateUp: sgg, down: sdg } },
      expC: { gateUp: guc, down: dc, shared: { gateUp: sgc, down: sdc } },
    };
  };
  const cmp = (name: string, g: Tensor, c: Tensor, limit = BF16_TOL): void => {
    const v = relL2(gpu.toHost(g), cpu.toHost(c));
    rows.push({ name, value: v, limit, ok: v <= limit });
  };
  const run = (name: string, fn: () => void): void => {
    try {
      fn();
    } catch (err) {
      rows.push({ name, value: Number.NaN, limit: 0, ok: false, note: (err as Error).message });
    }
  };
  const pair = <T>(f: (d: Device, i: 0 | 1) => T): [T, T] => [f(gpu, 0), f(cpu, 1)];

  run('embedding', () => {
    const [tg, tc] = both(randArray(100 * 64, r), [100, 64]);
    const [ig, ic] = both(Int32Array.from([3, 99, 0, 42, 42]), [5]);
    cmp('embedding', gpu.embedding(tg, ig), cpu.embedding(tc, ic), 5e-3);
  });
  run('linear', () => {
    const [xg, xc] = both(randArray(7 * 96, r), [7, 96]);
    const [wg, wc] = both(randArray(80 * 96, r), [80, 96]);
    const [bg, bc] = both(randArray(80, r), [80]);
    cmp('linear', gpu.linear(xg, wg), cpu.linear(xc, wc));
    cmp('linear + bias', gpu.linear(xg, wg, bg), cpu.linear(xc, wc, bc));
    cmp('linearF32', gpu.linearF32(xg, wg), cpu.linear(xc, wc));
    // Decode-step row counts past the skinny kernel's two rows, with a K that is not a multiple of 64.
    for (const rows of [3, 33, 64]) {
      const [x2g, x2c] = both(randArray(rows * 136, r), [rows, 136]);
      const [w2g, w2c] = both(randArray(1000 * 136, r, -0.2, 0.2), [1000, 136]);
      cmp(`linear (${rows} rows)`, gpu.linear(x2g, w2g), cpu.linear(x2c, w2c));
    }
  });
  run('bmm', () => {
    const [xg, xc] = both(randArray(5 * 4 * 32, r), [5, 4, 32]);
    const [w1g, w1c] = both(randArray(4 * 48 * 32, r), [4, 48, 32]);
    const [w2g, w2c] = both(randArray(4 * 32 * 40, r), [4, 32, 40]);
    cmp('bmm transposeW (grouped path)', gpu.bmm(xg, w1g, true), cpu.bmm(xc, w1c, true));
    cmp('bmm (grouped path)', gpu.bmm(xg, w2g, false), cpu.bmm(xc, w2c, false));
    const [xbg, xbc] = both(randArray(80 * 4 * 32, r), [80, 4, 32]);
    cmp('bmm transposeW (cuBLASLt path)', gpu.bmm(xbg, w1g, true), cpu.bmm(xbc, w1c, true));
    cmp('bmm (cuBLASLt path)', gpu.bmm(xbg, w2g, false), cpu.bmm(xbc, w2c, false));
    const [x20g, x20c] = both(randArray(20 * 4 * 32, r), [20, 4, 32]);
    cmp('bmm (grouped path, 64-row tiles)', gpu.bmm(x20g, w2g, false), cpu.bmm(x20c, w2c, false));
    for (const T of [1, 2]) {
      const [x1g, x1c] = both(randArray(T * 4 * 32, r), [T, 4, 32]);
      cmp(`bmm transposeW (skinny path, ${T} tokens)`, gpu.bmm(x1g, w1g, true), cpu.bmm(x1c, w1c, true));
      cmp(`bmm (skinny path, ${T} tokens)`, gpu.bmm(x1g, w2g, false), cpu.bmm(x1c, w2c, false));
    }
  });
  run('rmsNorm', () => {
    const [xg, xc] = both(randArray(6 * 512, r, -3, 3), [6, 512]);
    const [rg, rc] = both(randArray(6 * 512, r), [6, 512]);
    const [wg, wc] = both(randArray(512, r, 0.5, 1.5), [512]);
    cmp('rmsNorm', gpu.rmsNorm(xg, wg, 1e-6), cpu.rmsNorm(xc, wc, 1e-6));
    const a = gpu.addRmsNorm(xg, rg, wg, 1e-6);
    const b = cpu.addRmsNorm(xc, rc, wc, 1e-6);
    cmp('addRmsNorm out', a.out, b.out);
    cmp('addRmsNorm residual', a.residual, b.residual, 5e-3);
  });
  run('addRmsNormLinear', () => {
    // 1-2 rows: the fused launch (skinny_gemm.h's norm form), which must equal the CPU composition
    // within bf16 and the device's own rmsNorm/addRmsNorm + linear bit for bit; 5 rows: the two ops.
    const K = 2048;
    const N = 300;
    const [nwg, nwc] = both(randArray(K, r, 0.5, 1.5), [K]);
    const [wg, wc] = both(randArray(N * K, r, -0.05, 0.05), [N, K]);
    const [bg, bc] = both(randArray(N, r), [N]);
    for (const T of [1, 2, 5]) {
      const [xg, xc] = both(randArray(T * K, r, -3, 3), [T, K]);
      const [rg, rc] = both(randArray(T * K, r), [T, K]);
      for (const withResidual of [true, false]) {
        const tag = `addRmsNormLinear ${T} rows${withResidual ? '' : ', no residual'}`;
        const g = gpu.addRmsNormLinear(xg, withResidual ? rg : undefined, nwg, 1e-6, wg, bg, true);
        const cn = withResidual ? cpu.addRmsNorm(xc, rc, nwc, 1e-6) : undefined;
        const cNormed = cn?.out ?? cpu.rmsNorm(xc, nwc, 1e-6);
        cmp(`${tag}: out vs CPU`, g.out, cpu.linear(cNormed, wc, bc));
        cmp(`${tag}: normed vs CPU`, g.normed!, cNormed);
        if (cn !== undefined) cmp(`${tag}: residual vs CPU`, g.residual!, cn.residual, 5e-3);
        const un = withResidual ? gpu.addRmsNorm(xg, rg, nwg, 1e-6) : undefined;
        const uNormed = un?.out ?? gpu.rmsNorm(xg, nwg, 1e-6);
        const pairs: [Tensor, Tensor][] = [
          [g.out, gpu.linear(uNormed, wg, bg)],
          [g.normed!, uNormed],
        ];
        if (un !== undefined) pairs.push([g.residual!, un.residual]);
        let diff = 0;
        for (const [a, b] of pairs) {
          const ha = gpu.toHost(a);
          const hb = gpu.toHost(b);
          diff += ha.length === hb.length ? 0 : 1;
          for (let i = 0; i < ha.length; i++) diff += Object.is(ha[i], hb[i]) ? 0 : 1;
        }
        rows.push({
          name: `${tag}: elements differing from the two ops`,
          value: diff,
          limit: 0,
          ok: diff === 0,
        });
        // Without keepNormed: no normed rows, the same out.
        const g2 = gpu.addRmsNormLinear(xg, withResidual ? rg : undefined, nwg, 1e-6, wg);
        const plain = gpu.toHost(gpu.linear(uNormed, wg));
        const got = gpu.toHost(g2.out);
        const same = g2.normed === undefined && got.every((v, i) => Object.is(v, plain[i]));
        rows.push({ name: `${tag}: no bias, not kept`, value: same ? 0 : 1, limit: 0, ok: same });
      }
    }
  });
  run('add/scale/siluAndMul', () => {
    const [ag, ac] = both(randArray(3 * 64, r), [3, 64]);
    const [bg, bc] = both(randArray(3 * 64, r), [3, 64]);
    cmp('add', gpu.add(ag, bg), cpu.add(ac, bc));
    cmp('scale', gpu.scale(ag, 0.37), cpu.scale(ac, 0.37));
    cmp('siluAndMul', gpu.siluAndMul(ag), cpu.siluAndMul(ac));
  });
  run('slice/concat/reshape', () => {
    const [ag, ac] = both(randArray(4 * 3 * 10, r), [4, 3, 10]);
    cmp('sliceLast', gpu.sliceLast(ag, 3, 5), cpu.sliceLast(ac, 3, 5), 5e-3);
    // One row: a view into x that outlives x's release.
    const [og, oc] = both(randArray(20, r), [1, 20]);
    const view = gpu.sliceLast(og, 8, 12);
    gpu.release(og);
    cmp('sliceLast of one row (a view)', view, cpu.sliceLast(oc, 8, 12), 5e-3);
    const [bg, bc] = both(randArray(4 * 3 * 6, r), [4, 3, 6]);
    cmp('concatLast', gpu.concatLast([ag, bg]), cpu.concatLast([ac, bc]), 5e-3);
    cmp('reshape', gpu.reshape(ag, [12, 10]), cpu.reshape(ac, [12, 10]), 5e-3);
  });
  run('rope', () => {
    const maxPos = 64;
    const half = 32;
    const cos = new Float32Array(maxPos * half);
    const sin = new Float32Array(maxPos * half);
    for (let p = 0; p < maxPos; p++)
      for (let j = 0; j < half; j++) {
        const f = p * 10000 ** (-j / half);
        cos[p * half + j] = Math.cos(f) * 1.2;
        sin[p * half + j] = Math.sin(f) * 1.2;
      }
    const [tg, tc] = pair<RopeTable>((d) => ({
      cos: d.upload(cos, [maxPos, half], 'f32'),
      sin: d.upload(sin, [maxPos, half], 'f32'),
      rotaryDim: 64,
      maxPositions: maxPos,
    }));
    const [xg, xc] = both(randArray(5 * 3 * 96, r), [5, 3, 96]);
    const [pg, pc] = both(Int32Array.from([0, 1, 7, 63, 20]), [5]);
    for (const style of ['half', 'interleave'] as const) {
      cmp(`rope ${style}`, gpu.rope(xg, pg, tg, style), cpu.rope(xc, pc, tc, style));
    }
    // MLA's inputs: q [T, 3, 96] (rope on the last 64), kv [T, 128 + 64].
    const [kvg, kvc] = both(randArray(5 * 192, r, -2, 2), [5, 192]);
    const [ng, nc] = both(randArray(128, r, 0.5, 1.5), [128]);
    for (const style of ['half', 'interleave'] as const) {
      const a = gpu.mlaInputs(xg, kvg, pg, tg, style, ng, 1e-6);
      const b = cpu.mlaInputs(xc, kvc, pc, tc, style, nc, 1e-6);
      cmp(`mlaInputs ${style} q`, a.q, b.q);
      cmp(`mlaInputs ${style} cKv`, a.cKv, b.cKv);
      cmp(`mlaInputs ${style} kPe`, a.kPe, b.kPe);
    }
  });
  run('mlaAbsorbQuery', () => {
    // [q_nope @ W_UK ; q_pe] per head against bmm + slices + concat on the CPU, at each path's sizes.
    const [h, nope, rope, L] = [4, 32, 16, 48];
    const [wg, wc] = both(randArray(h * nope * L, r, -0.3, 0.3), [h, nope, L]);
    for (const T of [1, 2, 9, 70]) {
      const [qg, qc] = both(randArray(T * h * (nope + rope), r), [T, h, nope + rope]);
      const want = cpu.concatLast([
        cpu.bmm(cpu.sliceLast(qc, 0, nope), wc, false),
        cpu.sliceLast(qc, nope, rope),
      ]);
      cmp(`mlaAbsorbQuery (${T} tokens)`, gpu.mlaAbsorbQuery(qg, wg), want);
      // With the cache write: token t to slot 2t + 1, the last one a padding row (slot -1).
      const slots = Int32Array.from({ length: T }, (_, t) => (t === T - 1 && T > 1 ? -1 : 2 * t + 1));
      const cKv = randArray(T * L, r);
      const kPe = randArray(T * rope, r);
      const numSlots = 2 * T + 2;
      const cache = gpu.zeros([numSlots, 1, 1, L + rope], 'bf16');
      const q2 = gpu.mlaAbsorbQuery(qg, wg, {
        cache,
        cKv: gpu.upload(cKv, [T, L], 'f32'),
        kPe: gpu.upload(kPe, [T, rope], 'f32'),
        slotMapping: gpu.upload(slots, [T], 'i32'),
      });
      cmp(`mlaAbsorbQuery + cache write (${T} tokens): query`, q2, want);
      const wantCache = new Float32Array(numSlots * (L + rope));
      for (let t = 0; t < T; t++) {
        const s = slots[t]!;
        if (s < 0) continue;
        wantCache.set(cKv.subarray(t * L, (t + 1) * L), s * (L + rope));
        wantCache.set(kPe.subarray(t * rope, (t + 1) * rope), s * (L + rope) + L);
      }
      const v = relL2(gpu.toHost(cache), wantCache);
      rows.push({
        name: `mlaAbsorbQuery + cache write (${T} tokens): cache rows`,
        value: v,
        limit: 0,
        ok: v === 0,
      });
    }
  });
  run('mlaInputs folded into mlaAbsorbQuery', () => {
    // At 1-2 tokens mlaInputs is held back and launched with the absorbed query that reads its outputs
    // (CudaDevice: #takeMlaInputs). Against the two launches (a synchronize between them enqueues the
    // held mlaInputs on its own) bit for bit, every output of both; against CpuDevice; and a held
    // mlaInputs read directly (toHost) equals them.
    const [h, nope, R, L, maxPos] = [4, 32, 16, 64, 40];
    const half = R / 2;
    const cos = randArray(maxPos * half, r);
    const sin = randArray(maxPos * half, r);
    const [tg, tc] = pair<RopeTable>((d) => ({
      cos: d.upload(cos, [maxPos, half], 'f32'),
      sin: d.upload(sin, [maxPos, half], 'f32'),
      rotaryDim: R,
      maxPositions: maxPos,
    }));
    const [ng, nc] = both(randArray(L, r, 0.5, 1.5), [L]);
    const [wg, wc] = both(randArray(h * nope * L, r, -0.3, 0.3), [h, nope, L]);
    const bits = (a: Float32Array | Int32Array, b: Float32Array | Int32Array): number => {
      let n = a.length === b.length ? 0 : Number.POSITIVE_INFINITY;
      for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) n++;
      return n;
    };
    for (const T of [1, 2]) {
      for (const style of ['half', 'interleave'] as const) {
        const tag = `(${T} tokens, ${style})`;
        const [qg, qc] = both(randArray(T * h * (nope + R), r), [T, h, nope + R]);
        const [kvg, kvc] = both(randArray(T * (L + R), r, -2, 2), [T, L + R]);
        const [pg, pc] = both(
          Int32Array.from({ length: T }, (_, t) => (13 * t + 3) % maxPos),
          [T],
        );
        // Token t to slot 2t + 1, the last one a padding row (slot -1).
        const slotMapping = gpu.upload(
          Int32Array.from({ length: T }, (_, t) => (t === T - 1 && T > 1 ? -1 : 2 * t + 1)),
          [T],
          'i32',
        );
        const absorb = (split: boolean) => {
          // NOTE: the cache first: zeros is a launch, which would enqueue the held mlaInputs.
          const cache = gpu.zeros([2 * T + 2, 1, 1, L + R], 'bf16');
          const inputs = gpu.mlaInputs(qg, kvg, pg, tg, style, ng, 1e-6);
          if (split) gpu.synchronize();
          const q = gpu.mlaAbsorbQuery(inputs.q, wg, {
            cache,
            cKv: inputs.cKv,
            kPe: inputs.kPe,
            slotMapping,
          });
          return [inputs.q, inputs.cKv, inputs.kPe, q, cache].map((t) => gpu.toHost(t));
        };
        const folded = absorb(false);
        const split = absorb(true);
        let diff = 0;
        for (let i = 0; i < folded.length; i++) diff += bits(folded[i]!, split[i]!);
        rows.push({
          name: `mlaInputs folded ${tag}: == 2 launches (#diff)`,
          value: diff,
          limit: 0,
          ok: diff === 0,
        });
        const held = gpu.mlaInputs(qg, kvg, pg, tg, style, ng, 1e-6);
        const direct = [held.q, held.cKv, held.kPe].map((t) => gpu.toHost(t));
        let dDiff = 0;
        for (let i = 0; i < direct.length; i++) dDiff += bits(direct[i]!, split[i]!);
        rows.push({
          name: `mlaInputs held ${tag}, read directly == eager (#diff)`,
          value: dDiff,
          limit: 0,
          ok: dDiff === 0,
        });
        const c = cpu.mlaInputs(qc, kvc, pc, tc, style, nc, 1e-6);
        const want = cpu.concatLast([
          cpu.bmm(cpu.sliceLast(c.q, 0, nope), wc, false),
          cpu.sliceLast(c.q, nope, R),
        ]);
        const refs = [c.q, c.cKv, c.kPe, want].map((t) => cpu.toHost(t));
        const names = ['q', 'cKv', 'kPe', 'absorbed query'];
        for (let i = 0; i < refs.length; i++) {
          const v = relL2(folded[i]!, refs[i]!);
          rows.push({
            name: `mlaInputs folded ${tag}: ${names[i]} vs CPU`,
            value: v,
            limit: BF16_TOL,
            ok: v <= BF16_TOL,
          });
        }
      }
    }
  });
  run('moe', () => {
    const T = 9;
    const E = 16;
    const H = 64;
    const I = 24;
    const [lg, lc] = both(randArray(T * E, r, -2, 2), [T, E]);
    const [bg, bc] = both(randArray(E, r, -0.1, 0.1), [E]);
    const params: [MoeRouteParams, MoeRouteParams][] = [
      [V2_TOP3, V2_TOP3],
      [V2_TOP3_GROUPED, V2_TOP3_GROUPED],
      [v3Top4Grouped(bg), v3Top4Grouped(bc)],
    ];
    const [xg, xc] = both(randArray(T * H, r), [T, H]);
    const [gug, guc] = both(randArray(E * 2 * I * H, r, -0.2, 0.2), [E, 2 * I, H]);
    const [dg, dc] = both(randArray(E * H * I, r, -0.2, 0.2), [E, H, I]);
    for (const [pgp, pcp] of params) {
      const name = `${pgp.kind} group ${pgp.nGroup}/${pgp.topkGroup}`;
      // Logits go through f32 on both sides; bf16 rounding of logits can reorder near-ties, so ids
      // are compared as sets per token and weights by relative error.
      const rg = gpu.moeRoute(lg, pgp);
      const rc = cpu.moeRoute(lc, pcp);
      const idsG = gpu.toHost(rg.ids);
      const idsC = cpu.toHost(rc.ids);
      let mismatch = 0;
      for (let i = 0; i < idsC.length; i++) if (idsG[i] !== idsC[i]) mismatch++;
      rows.push({ name: `moeRoute ${name} ids mismatched`, value: mismatch, limit: 1, ok: mismatch <= 1 });
      cmp(`moeRoute ${name} weights`, rg.weights, rc.weights, 2e-2);
      cmp(
        `moeExperts (${name} routing)`,
        gpu.moeExperts(xg, gpuRouting(gpu, cpu, rc), { gateUp: gug, down: dg }),
        cpu.moeExperts(xc, rc, { gateUp: guc, down: dc }),
        2e-2,
      );
    }
  });
  run('moe with shared experts', () => {
    // Routed + shared experts in one op: the small-batch path (1-3 tokens) and the grouped path with
    // the shared MLP added by the combine (4, 9 and 32 tokens, and 512 on the cuBLASLt prefill path).
    const { E, H, expG, expC } = sharedExpertSet();
    const params = V2_TOP3;
    for (const T of [1, 2, 3, 4, 9, 32, 512]) {
      const rc = cpu.moeRoute(cpu.upload(randArray(T * E, r, -2, 2), [T, E], 'f32'), params);
      const [xg, xc] = both(randArray(T * H, r), [T, H]);
      cmp(
        `moeExperts + shared (${T} tokens)`,
        gpu.moeExperts(xg, gpuRouting(gpu, cpu, rc), expG),
        cpu.moeExperts(xc, rc, expC),
        2e-2,
      );
      if (T > 3 && T < 512) {
        // The grouped path runs the shared MLP on the aux stream and the combine adds it: the same bits
        // as the routed experts alone plus the shared MLP through the public ops (the combine rounds
        // the routed sum to bf16, then adds and rounds again, as add does).
        const routedOnly = gpu.moeExperts(xg, gpuRouting(gpu, cpu, rc), {
          gateUp: expG.gateUp,
          down: expG.down,
        });
        const sharedOut = gpu.linear(gpu.siluAndMul(gpu.linear(xg, expG.shared.gateUp)), expG.shared.down);
        const fused = gpu.toHost(gpu.moeExperts(xg, gpuRouting(gpu, cpu, rc), expG));
        const apart = gpu.toHost(gpu.add(routedOnly, sharedOut));
        let diff = fused.length === apart.length ? 0 : Number.POSITIVE_INFINITY;
        for (let i = 0; i < fused.length; i++) if (!Object.is(fused[i], apart[i])) diff++;
        rows.push({
          name: `moeExperts + shared (${T} tokens) = routed + shared MLP by ops (differing values)`,
          value: diff,
          limit: 0,
          ok: diff === 0,
        });
      }
      if (T <= 3)
        cmp(
          `moeExperts small path, routed only (${T} tokens)`,
          gpu.moeExperts(xg, gpuRouting(gpu, cpu, rc), { gateUp: expG.gateUp, down: expG.down }),
          cpu.moeExperts(xc, rc, { gateUp: expC.gateUp, down: expC.down }),
          2e-2,
        );
    }
  });
  run('moeRouteExperts', () => {
    // The router folded into the small expert kernels (1-2 tokens), and the grouped path's one call
    // (9 and 32 tokens: router, experts, shared MLP on the aux stream), against moeRoute + moeExperts on
    // the GPU (bit for bit) and against the CPU device: V2 greedy with bf16 logits (as the model's
    // gate writes them), V2 group-limited, V3 sigmoid + bias; with shared experts.
    const { E, H, expG, expC } = sharedExpertSet();
    const [bg, bc] = both(randArray(E, r, -0.1, 0.1), [E]);
    const v2 = V2_TOP3;
    const v2g = V2_TOP3_GROUPED;
    const configs: [string, MoeRouteParams, MoeRouteParams, 'bf16' | 'f32'][] = [
      ['v2 greedy, bf16 logits', v2, v2, 'bf16'],
      ['v2 group-limited', v2g, v2g, 'f32'],
      ['v3 noaux_tc', v3Top4Grouped(bg), v3Top4Grouped(bc), 'f32'],
    ];
    for (const T of [1, 2, 9, 32]) {
      for (const [name, pg, pc, dt] of configs) {
        const logits = randArray(T * E, r, -2, 2);
        // upload stores bf16 (f32 host data rounded); uploadF32 keeps f32. The CPU sees the same values.
        const lg = dt === 'bf16' ? gpu.upload(logits, [T, E], 'f32') : gpu.uploadF32(logits, [T, E]);
        const lc = cpu.upload(dt === 'bf16' ? gpu.toHost(lg) : logits, [T, E], 'f32');
        const [xg, xc] = both(randArray(T * H, r), [T, H]);
        const folded = gpu.toHost(gpu.moeRouteExperts(xg, lg, pg, expG));
        const rg = gpu.moeRoute(lg, pg);
        const split = gpu.toHost(gpu.moeExperts(xg, rg, expG));
        let diff = folded.length === split.length ? 0 : Number.POSITIVE_INFINITY;
        for (let i = 0; i < folded.length; i++) if (!Object.is(folded[i], split[i])) diff++;
        rows.push({
          name: `moeRouteExperts ${name} (${T} tokens) = moeRoute + moeExperts (differing values)`,
          value: diff,
          limit: 0,
          ok: diff === 0,
        });
        const v = relL2(folded, cpu.toHost(cpu.moeExperts(xc, cpu.moeRoute(lc, pc), expC)));
        rows.push({
          name: `moeRouteExperts ${name} (${T} tokens) vs CPU`,
          value: v,
          limit: 2e-2,
          ok: v <= 2e-2,
        });
      }
    }
  });
  run('moe prefill path', () => {
    // 512 tokens x top-2 over 8 experts: 128 rows per expert takes the per-expert cuBLASLt path.
    const T = 512;
    const E = 8;
    const H = 64;
    const I = 40;
    const lc = cpu.upload(randArray(T * E, r, -2, 2), [T, E], 'f32');
    const params: MoeRouteParams = {
      kind: 'v2-softmax',
      topK: 2,
      nGroup: 1,
      topkGroup: 1,
      normTopkProb: true,
      routedScalingFactor: 1,
    };
    const rc = cpu.moeRoute(lc, params);
    const [xg, xc] = both(randArray(T * H, r), [T, H]);
    const [gug, guc] = both(randArray(E * 2 * I * H, r, -0.2, 0.2), [E, 2 * I, H]);
    const [dg, dc] = both(randArray(E * H * I, r, -0.2, 0.2), [E, H, I]);
    cmp(
      'moeExperts prefill path (128 rows per expert)',
      gpu.moeExperts(xg, gpuRouting(gpu, cpu, rc), { gateUp: gug, down: dg }),
      cpu.moeExperts(xc, rc, { gateUp: guc, down: dc }),
      2e-2,
    );
  });
  run('sample', () => {
    const R = 3;
    const V = 1000;
    const logits = new Float32Array(R * V);
    for (let i = 0; i < logits.length; i++) logits[i] = 6 * r() - 3;
    const res = gpu.sample(gpu.uploadF32(logits, [R, V]), {
      temperature: Float32Array.from([0, 1, 0.8]),
      topK: Int32Array.from([0, 1, 0]),
      topP: Float32Array.from([1, 1, 1e-6]),
      minP: new Float32Array(R),
      uniform: Float32Array.from([0.5, 0.7, 0.3]),
      numTopLogprobs: 2,
    });
    let bad = 0;
    let lpErr = 0;
    for (let row = 0; row < R; row++) {
      const l = logits.subarray(row * V, (row + 1) * V);
      let best = 0;
      for (let i = 1; i < V; i++) if (l[i]! > l[best]!) best = i;
      // greedy, top-k 1 and a tiny top-p all reduce to the argmax
      if (res.tokens[row] !== best || res.topIds[row * 2] !== best) bad++;
      const mx = l[best]!;
      let z = 0;
      for (let i = 0; i < V; i++) z += Math.exp(l[i]! - mx);
      lpErr = Math.max(lpErr, Math.abs(res.logprobs[row]! - (l[best]! - mx - Math.log(z))));
    }
    rows.push({
      name: 'sample: greedy / top-k 1 / top-p 1e-6 pick the argmax',
      value: bad,
      limit: 0,
      ok: bad === 0,
    });
    rows.push({
      name: 'sample: logprob of the chosen token (abs err)',
      value: lpErr,
      limit: 1e-4,
      ok: lpErr <= 1e-4,
    });
  });
  return rows;
}

/** The CPU routing moved to the GPU, so expert outputs are compared on identical routing. */
function gpuRouting(
  gpu: CudaDevice,
  cpu: CpuDevice,
  rc: { ids: Tensor; weights: Tensor },
): { ids: Tensor; weights: Tensor } {
  return {
    ids: gpu.upload(cpu.toHost(rc.ids) as Int32Array, rc.ids.shape, 'i32'),
    weights: gpu.uploadF32(cpu.toHost(rc.weights) as Float32Array, rc.weights.shape),
  };
}
