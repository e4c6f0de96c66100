// CpuDevice ops against naive definitions, plus the MoE routers on hand-checked cases.

import { describe, expect, it } from 'vitest';
import { CpuDevice } from './cpu-device.js';
import { f16ToF32 } from './cpu-kernels.js';

const d = new CpuDevice();

function rand(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

const host = (t: Parameters<CpuDevice['toHost']>[0]) => Array.from(d.toHost(t));

function close(a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-5): void {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!), `index ${i}`).toBeLessThan(tol);
}

describe('dense ops', () => {
  it('linear is x @ w^T + b for any N (tail rows too)', () => {
    const T = 3;
    const K = 7;
    const N = 6;
    const x = rand(T * K, 1);
    const w = rand(N * K, 2);
    const b = rand(N, 3);
    const want: number[] = [];
    for (let t = 0; t < T; t++)
      for (let n = 0; n < N; n++) {
        let s = b[n]!;
        for (let k = 0; k < K; k++) s += x[t * K + k]! * w[n * K + k]!;
        want.push(s);
      }
    const y = d.linear(d.upload(x, [T, K], 'f32'), d.upload(w, [N, K], 'f32'), d.upload(b, [N], 'f32'));
    expect(y.shape).toEqual([T, N]);
    close(host(y), want);
  });

  it('bmm multiplies per head in both weight layouts', () => {
    const [T, h, a, b] = [2, 3, 4, 5];
    const x = rand(T * h * a, 4);
    const wT = rand(h * b * a, 5); // [h, b, a]
    const wN = new Float32Array(h * a * b); // the same matrices stored [h, a, b]
    for (let i = 0; i < h; i++)
      for (let r = 0; r < b; r++)
        for (let c = 0; c < a; c++) wN[(i * a + c) * b + r] = wT[(i * b + r) * a + c]!;
    const y1 = host(d.bmm(d.upload(x, [T, h, a], 'f32'), d.upload(wT, [h, b, a], 'f32'), true));
    const y2 = host(d.bmm(d.upload(x, [T, h, a], 'f32'), d.upload(wN, [h, a, b], 'f32'), false));
    close(y1, y2);
    let s = 0;
    for (let c = 0; c < a; c++) s += x[(1 * h + 2) * a + c]! * wT[(2 * b + 4) * a + c]!;
    expect(y1[(1 * h + 2) * b + 4]).toBeCloseTo(s, 5);
  });

  it('rmsNorm, addRmsNorm, add, scale and siluAndMul follow their definitions', () => {
    const x = rand(8, 6);
    const r = rand(8, 7);
    const w = rand(4, 8);
    const norm = (v: number[]) => {
      const ms = v.reduce((s, e) => s + e * e, 0) / v.length;
      return v.map((e, i) => (e / Math.sqrt(ms + 1e-6)) * w[i]!);
    };
    const xs = Array.from(x);
    const rows = (v: number[]) => [...norm(v.slice(0, 4)), ...norm(v.slice(4))];
    close(host(d.rmsNorm(d.upload(x, [2, 4], 'f32'), d.upload(w, [4], 'f32'), 1e-6)), rows(xs));
    const fused = d.addRmsNorm(
      d.upload(x, [2, 4], 'f32'),
      d.upload(r, [2, 4], 'f32'),
      d.upload(w, [4], 'f32'),
      1e-6,
    );
    const sum = xs.map((v, i) => v + r[i]!);
    close(host(fused.residual), sum);
    close(host(fused.out), rows(sum));
    close(host(d.add(d.upload(x, [8], 'f32'), d.upload(r, [8], 'f32'))), sum);
    close(
      host(d.scale(d.upload(x, [8], 'f32'), 2)),
      xs.map((v) => 2 * v),
    );
    const sm = host(d.siluAndMul(d.upload(x, [2, 4], 'f32')));
    const silu = (v: number) => v / (1 + Math.exp(-v));
    close(sm, [silu(xs[0]!) * xs[2]!, silu(xs[1]!) * xs[3]!, silu(xs[4]!) * xs[6]!, silu(xs[5]!) * xs[7]!]);
  });

  it('slices, concatenates, reshapes and gathers rows', () => {
    const x = d.upload(Float32Array.from([0, 1, 2, 3, 4, 5]), [2, 3], 'f32');
    expect(host(d.sliceLast(x, 1, 2))).toEqual([1, 2, 4, 5]);
    expect(host(d.concatLast([d.sliceLast(x, 2, 1), d.sliceLast(x, 0, 1)]))).toEqual([2, 0, 5, 3]);
    expect(d.reshape(x, [3, 2]).shape).toEqual([3, 2]);
    expect(host(d.embedding(x, d.upload(Int32Array.from([1, 1, 0]), [3], 'i32')))).toEqual([
      3, 4, 5, 3, 4, 5, 0, 1, 2,
    ]);
    expect(() => d.embedding(x, d.upload(Int32Array.from([2]), [1], 'i32'))).toThrow(
      /embedding: id 2 out of range/,
    );
    expect(() => d.reshape(x, [4])).toThrow(/reshape/);
    expect(() => d.linear(x, d.upload(new Float32Array(4), [2, 2], 'f32'))).toThrow(/linear/);
  });

  it('widens f16 including subnormals and infinities', () => {
    expect(Array.from(f16ToF32(Uint16Array.from([0x3c00, 0x0001, 0x7c00, 0xfc00, 0x8000])))).toEqual([
      1,
      2 ** -24,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      -0,
    ]);
  });
});

describe('rope', () => {
  const half = 2;
  const P = 4;
  const cos = new Float32Array(P * half);
  const sin = new Float32Array(P * half);
  for (let p = 0; p < P; p++)
    for (let i = 0; i < half; i++) {
      cos[p * half + i] = Math.cos(p / 10 ** i);
      sin[p * half + i] = Math.sin(p / 10 ** i);
    }
  const table = {
    cos: d.upload(cos, [P, half], 'f32'),
    sin: d.upload(sin, [P, half], 'f32'),
    rotaryDim: 4,
    maxPositions: P,
  };

  it('rotates only the last rotaryDim dims and pairs them as the style says', () => {
    const x = Float32Array.from([9, 1, 0, 0, 0]); // one token, one head, D = 5, rope dims 1..4
    const pos = d.upload(Int32Array.from([1]), [1], 'i32');
    const halfOut = host(d.rope(d.upload(x, [1, 1, 5], 'f32'), pos, table, 'half'));
    // 'half' pairs dim 1 with dim 3 (frequency 0).
    close(halfOut, [9, Math.cos(1), 0, Math.sin(1), 0], 1e-6);
    const x2 = Float32Array.from([9, 1, 0, 0, 0]);
    const inter = host(d.rope(d.upload(x2, [1, 1, 5], 'f32'), pos, table, 'interleave'));
    // 'interleave' pairs dim 1 with dim 2.
    close(inter, [9, Math.cos(1), Math.sin(1), 0, 0], 1e-6);
  });

  it('keeps q.k a function of the position difference', () => {
    const q = rand(4, 11);
    const k = rand(4, 12);
    const dotAt = (pq: number, pk: number) => {
      const a = host(
        d.rope(
          d.upload(q, [1, 1, 4], 'f32'),
          d.upload(Int32Array.from([pq]), [1], 'i32'),
          table,
          'interleave',
        ),
      );
      const b = host(
        d.rope(
          d.upload(k, [1, 1, 4], 'f32'),
          d.upload(Int32Array.from([pk]), [1], 'i32'),
          table,
          'interleave',
        ),
      );
      return a.reduce((s, v, i) => s + v * b[i]!, 0);
    };
    expect(dotAt(3, 1)).toBeCloseTo(dotAt(2, 0), 5);
  });

  it('mlaInputs ropes q, normalises the latent and ropes k_pe, like the separate ops', () => {
    const [T, h, D, L, R] = [2, 3, 6, 5, 4];
    const q = d.upload(rand(T * h * D, 31), [T, h, D], 'f32');
    const kv = d.upload(rand(T * (L + R), 32), [T, L + R], 'f32');
    const norm = d.upload(rand(L, 33), [L], 'f32');
    const pos = d.upload(Int32Array.from([3, 1]), [T], 'i32');
    for (const style of ['half', 'interleave'] as const) {
      const got = d.mlaInputs(q, kv, pos, table, style, norm, 1e-6);
      expect(got.q.shape).toEqual([T, h, D]);
      expect(got.cKv.shape).toEqual([T, L]);
      expect(got.kPe.shape).toEqual([T, R]);
      expect(host(got.q)).toEqual(host(d.rope(q, pos, table, style)));
      expect(host(got.cKv)).toEqual(host(d.rmsNorm(d.sliceLast(kv, 0, L), norm, 1e-6)));
      const kPe = d.rope(d.reshape(d.sliceLast(kv, L, R), [T, 1, R]), pos, table, style);
      expect(host(got.kPe)).toEqual(host(kPe));
    }
  });
});

describe('moe', () => {
  const logits = (rows: number[][]) =>
    d.upload(Float32Array.from(rows.flat()), [rows.length, rows[0]!.length], 'f32');

  it('v2 greedy: top-k softmax scores, scaled, not renormalised', () => {
    const r = d.moeRoute(logits([[0, 2, 1, 3]]), {
      kind: 'v2-softmax',
      topK: 2,
      nGroup: 1,
      topkGroup: 1,
      normTopkProb: false,
      routedScalingFactor: 2,
    });
    const z = 1 + Math.exp(2) + Math.exp(1) + Math.exp(3);
    expect(host(r.ids)).toEqual([3, 1]);
    close(host(r.weights), [(2 * Math.exp(3)) / z, (2 * Math.exp(2)) / z], 1e-6);
  });

  it('v2 group-limited: groups score their best expert', () => {
    // groups {0,1} best 5, {2,3} best 4.9, {4,5} best 4.8: keep 1 group -> experts 0 and 1 only.
    const r = d.moeRoute(logits([[5, -9, 4.9, 4.85, 4.8, 4.79]]), {
      kind: 'v2-softmax',
      topK: 2,
      nGroup: 3,
      topkGroup: 1,
      normTopkProb: false,
      routedScalingFactor: 1,
    });
    expect(host(r.ids)).toEqual([0, 1]);
  });

  it('v3: sigmoid scores, bias for choice only, groups score their top two, renormalised', () => {
    const bias = d.upload(Float32Array.from([0, 0, 0.6, 0]), [4], 'f32');
    // Group {0,1} scores sigmoid(.2)+sigmoid(.1) = 1.075 and {2,3} 2*sigmoid(-1) = 0.54 without the bias;
    // the bias on expert 2 lifts {2,3} to 1.14, so the (unbiased, equal) scores of 2 and 3 are used.
    const r = d.moeRoute(logits([[0.2, 0.1, -1, -1]]), {
      kind: 'v3-sigmoid',
      topK: 2,
      nGroup: 2,
      topkGroup: 1,
      normTopkProb: true,
      routedScalingFactor: 2.5,
      correctionBias: bias,
    });
    expect(host(r.ids)).toEqual([2, 3]);
    close(host(r.weights), [1.25, 1.25], 1e-6);
  });

  it('runs the chosen experts weighted, like a per-token loop', () => {
    const [T, H, E, I, k] = [3, 4, 3, 2, 2];
    const x = rand(T * H, 21);
    const gateUp = rand(E * 2 * I * H, 22);
    const down = rand(E * H * I, 23);
    const ids = Int32Array.from([0, 2, 1, 0, 2, 1]);
    const weights = Float32Array.from([0.7, 0.3, 1, 0.5, 0.25, 0.25]);
    const y = host(
      d.moeExperts(
        d.upload(x, [T, H], 'f32'),
        { ids: d.upload(ids, [T, k], 'i32'), weights: d.upload(weights, [T, k], 'f32') },
        { gateUp: d.upload(gateUp, [E, 2 * I, H], 'f32'), down: d.upload(down, [E, H, I], 'f32') },
      ),
    );
    const want = new Array<number>(T * H).fill(0);
    for (let t = 0; t < T; t++)
      for (let j = 0; j < k; j++) {
        const e = ids[t * k + j]!;
        const act: number[] = [];
        for (let i = 0; i < I; i++) {
          let g = 0;
          let u = 0;
          for (let c = 0; c < H; c++) {
            g += gateUp[(e * 2 * I + i) * H + c]! * x[t * H + c]!;
            u += gateUp[(e * 2 * I + I + i) * H + c]! * x[t * H + c]!;
          }
          act.push((g / (1 + Math.exp(-g))) * u);
        }
        for (let c = 0; c < H; c++) {
          let s = 0;
          for (let i = 0; i < I; i++) s += down[(e * H + c) * I + i]! * act[i]!;
          want[t * H + c]! += weights[t * k + j]! * s;
        }
      }
    close(y, want);
  });

  it('adds the shared experts when the layer has them', () => {
    const [T, H, E, I, S, k] = [2, 4, 3, 2, 6, 2];
    const x = d.upload(rand(T * H, 41), [T, H], 'f32');
    const routing = {
      ids: d.upload(Int32Array.from([2, 0, 1, 2]), [T, k], 'i32'),
      weights: d.upload(Float32Array.from([0.6, 0.4, 0.9, 0.1]), [T, k], 'f32'),
    };
    const routedOnly = {
      gateUp: d.upload(rand(E * 2 * I * H, 42), [E, 2 * I, H], 'f32'),
      down: d.upload(rand(E * H * I, 43), [E, H, I], 'f32'),
    };
    const shared = {
      gateUp: d.upload(rand(2 * S * H, 44), [2 * S, H], 'f32'),
      down: d.upload(rand(H * S, 45), [H, S], 'f32'),
    };
    const both = host(d.moeExperts(x, routing, { ...routedOnly, shared }));
    const routed = host(d.moeExperts(x, routing, routedOnly));
    const mlp = host(d.linear(d.siluAndMul(d.linear(x, shared.gateUp)), shared.down));
    close(
      both,
      routed.map((v, i) => v + mlp[i]!),
      1e-6,
    );
    expect(mlp.some((v) => Math.abs(v) > 1e-3)).toBe(true);
  });
});
