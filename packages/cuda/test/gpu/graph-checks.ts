// CUDA graphs through CudaDevice.graph: a chain of ops (upload, embedding, GEMMs, norms, RoPE, MoE
// routing and experts) run eagerly and through a captured graph with fresh inputs each step; every
// replay must equal the eager result exactly (same kernels, same inputs).
import type { MoeRouteParams, RopeTable, Tensor } from '@flashserve/core';
import type { CudaDevice } from '../../src/index.js';
import { type CheckRow, relL2 } from './op-checks.js';

export function runGraphChecks(d: CudaDevice): CheckRow[] {
  const rows: CheckRow[] = [];
  const T = 4;
  const V = 300;
  const H = 128;
  const E = 8;
  const I = 64;
  const heads = 2;
  const headDim = 96;
  const table = d.randomUniform([V, H], 1, 0.5);
  const wq = d.randomUniform([heads * headDim, H], 2, 0.1);
  const norm = d.randomUniform([H], 3, 0.1);
  const gate = d.randomUniform([E, H], 4, 0.1);
  const gateUp = d.randomUniform([E, 2 * I, H], 5, 0.1);
  const down = d.randomUniform([E, H, I], 6, 0.1);
  const lmHead = d.randomUniform([V, H], 7, 0.1);
  const maxPos = 128;
  const cos = new Float32Array(maxPos * 32).map((_, i) => Math.cos(i * 0.01));
  const sin = new Float32Array(maxPos * 32).map((_, i) => Math.sin(i * 0.01));
  const rope: RopeTable = {
    cos: d.upload(cos, [maxPos, 32], 'f32'),
    sin: d.upload(sin, [maxPos, 32], 'f32'),
    rotaryDim: 64,
    maxPositions: maxPos,
  };
  const route: MoeRouteParams = {
    kind: 'v2-softmax',
    topK: 2,
    nGroup: 1,
    topkGroup: 1,
    normTopkProb: true,
    routedScalingFactor: 1,
  };
  const persistentPositions = d.zeros([T], 'i32');

  const step = (ids: Int32Array, pos: Int32Array): Tensor => {
    const idsT = d.upload(ids, [T], 'i32');
    d.write(persistentPositions, pos, 'i32');
    const h = d.embedding(table, idsT);
    const x = d.rmsNorm(h, norm, 1e-6);
    const q = d.rope(
      d.reshape(d.linear(x, wq), [T, heads, headDim]),
      persistentPositions,
      rope,
      'interleave',
    );
    const qs = d.sliceLast(q, 32, 64);
    const routing = d.moeRoute(d.linear(x, gate), route);
    const m = d.moeExperts(x, routing, { gateUp, down });
    const y = d.add(m, d.scale(h, 0.5));
    const mixed = d.concatLast([d.reshape(qs, [T, heads * 64]), y]);
    return d.linearF32(d.sliceLast(mixed, heads * 64, H), lmHead);
  };

  let maxErr = 0;
  let ok = true;
  let note: string | undefined;
  // Calls of the graphed function that ran to their end: replays stop at the last host input (the
  // write of the positions) unless FLASHSERVE_FULL_REPLAY=1.
  let ranToEnd = 0;
  try {
    for (let i = 0; i < 5; i++) {
      const ids = Int32Array.from({ length: T }, (_, j) => (i * 31 + j * 7) % V);
      const pos = Int32Array.from({ length: T }, (_, j) => (i * 5 + j) % maxPos);
      const eager = d.toHost(step(ids, pos));
      const viaGraph = d.toHost(
        d.graph('check', () => {
          const out = step(ids, pos);
          ranToEnd++;
          return out;
        }),
      );
      const err = relL2(viaGraph, eager);
      maxErr = Math.max(maxErr, err);
      if (!(err === 0)) ok = false;
    }
  } catch (err) {
    ok = false;
    maxErr = Number.NaN;
    note = (err as Error).stack;
  }
  rows.push({ name: 'graph warm-up, capture, 3 replays == eager', value: maxErr, limit: 0, ok, note });
  const fullReplay = process.env.FLASHSERVE_FULL_REPLAY === '1';
  rows.push({
    name: `graph replays ${fullReplay ? 'run to the end' : 'stop at the last host input'} (calls run to the end)`,
    value: ranToEnd,
    limit: fullReplay ? 5 : 2,
    ok: ranToEnd === (fullReplay ? 5 : 2),
  });
  d.resetGraphs();
  rows.push(mlaFoldGraphCheck(d, rope));
  rows.push(hostStagingGraphCheck(d));
  rows.push(forkedMoeGraphCheck(d));
  return rows;
}

/** The grouped expert path with shared experts (12 tokens): the shared MLP runs on the runtime's aux
 * stream, forked after the router's input and joined before the combine, so the capture holds two
 * branches. Fresh inputs each step; graph == eager. */
function forkedMoeGraphCheck(d: CudaDevice): CheckRow {
  const [T, H, E, I, S] = [12, 64, 8, 32, 48];
  const gate = d.randomUniform([E, H], 21, 0.1);
  const experts = {
    gateUp: d.randomUniform([E, 2 * I, H], 22, 0.1),
    down: d.randomUniform([E, H, I], 23, 0.1),
    shared: { gateUp: d.randomUniform([2 * S, H], 24, 0.1), down: d.randomUniform([H, S], 25, 0.1) },
  };
  const route: MoeRouteParams = {
    kind: 'v2-softmax',
    topK: 2,
    nGroup: 1,
    topkGroup: 1,
    normTopkProb: false,
    routedScalingFactor: 1,
  };
  const step = (i: number): Tensor => {
    const x = d.upload(
      new Float32Array(T * H).map((_, j) => Math.sin(i * 3.3 + j * 0.21)),
      [T, H],
      'f32',
    );
    return d.moeRouteExperts(x, d.linear(x, gate), route, experts);
  };
  return exactGraphRow(
    d,
    'grouped MoE, shared experts on the aux stream (12 tokens): graph == eager',
    (i) => {
      const eager = d.toHost(step(i));
      return relL2(d.toHost(d.graph('forked-moe', () => step(i))), eager);
    },
  );
}

/** A step whose inputs are all uploads of device bytes (i32 ids, raw bf16 words), as a decode step's
 * are: its replays write them into their staging slots from JS (GraphRecord.hostStaging), not through
 * the addon. Fresh inputs each step; graph == eager. */
function hostStagingGraphCheck(d: CudaDevice): CheckRow {
  const [V, H, T] = [64, 32, 3];
  const table = d.randomUniform([V, H], 11, 0.5);
  const bf16Words = (i: number): Uint16Array => {
    const f = Float32Array.from({ length: T * H }, (_, j) => Math.sin(i * 1.7 + j * 0.11));
    const w = new Uint16Array(f.buffer);
    return Uint16Array.from({ length: T * H }, (_, j) => w[2 * j + 1]!); // the high half: bf16
  };
  const step = (i: number): Tensor => {
    const ids = d.upload(
      Int32Array.from({ length: T }, (_, j) => (i * 13 + j * 5) % V),
      [T],
      'i32',
    );
    const x = d.upload(bf16Words(i), [T, H], 'bf16');
    return d.add(d.embedding(table, ids), x);
  };
  return exactGraphRow(d, 'graph inputs staged from JS (i32, bf16 words): graph == eager', (i) => {
    const eager = d.toHost(step(i));
    return relL2(d.toHost(d.graph('host-staging', () => step(i))), eager);
  });
}

/** A decode step's mlaInputs folded into mlaAbsorbQuery (1 token): through a graph == eager, the
 * query and the cache row, with fresh inputs each step. */
function mlaFoldGraphCheck(d: CudaDevice, rope: RopeTable): CheckRow {
  const [h, nope, R, L] = [2, 32, 64, 128];
  const wUk = d.randomUniform([h, nope, L], 8, 0.1);
  const kvNorm = d.randomUniform([L], 9, 0.3);
  const cache = d.zeros([16, 1, 1, L + R], 'bf16');
  const step = (i: number): Tensor => {
    // Uploads (graph inputs), not randomUniform: a replay would repeat the captured seed.
    const q = d.upload(
      new Float32Array(h * (nope + R)).map((_, j) => Math.sin(i * 7.1 + j * 0.37)),
      [1, h, nope + R],
      'f32',
    );
    const kv = d.upload(
      new Float32Array(L + R).map((_, j) => Math.cos(i * 3.3 + j * 0.21)),
      [1, L + R],
      'f32',
    );
    const positions = d.upload(Int32Array.of((i * 9) % rope.maxPositions), [1], 'i32');
    const slots = d.upload(Int32Array.of(i % 16), [1], 'i32');
    const inputs = d.mlaInputs(q, kv, positions, rope, 'half', kvNorm, 1e-6);
    return d.mlaAbsorbQuery(inputs.q, wUk, { cache, cKv: inputs.cKv, kPe: inputs.kPe, slotMapping: slots });
  };
  const zeroCache = (): void => d.write(cache, new Uint16Array(16 * (L + R)), 'bf16');
  return exactGraphRow(d, 'mlaInputs folded into mlaAbsorbQuery: graph == eager', (i) => {
    // The cache emptied before each run: both must leave exactly one row in it.
    zeroCache();
    const eager = d.toHost(step(i));
    const eagerCache = d.toHost(cache);
    zeroCache();
    const viaGraph = d.toHost(d.graph('mla-fold', () => step(i)));
    return Math.max(relL2(viaGraph, eager), relL2(d.toHost(cache), eagerCache));
  });
}

/** Five steps, `compare(i)` giving step i's error through a graph against eager: a row that passes
 * only when every error is exactly 0 (the graphs are dropped after). */
function exactGraphRow(d: CudaDevice, name: string, compare: (i: number) => number): CheckRow {
  let maxErr = 0;
  let ok = true;
  let note: string | undefined;
  try {
    for (let i = 0; i < 5; i++) {
      const err = compare(i);
      maxErr = Math.max(maxErr, err);
      if (!(err === 0)) ok = false;
    }
  } catch (err) {
    ok = false;
    maxErr = Number.NaN;
    note = (err as Error).stack;
  }
  d.resetGraphs();
  return { name, value: maxErr, limit: 0, ok, note };
}
