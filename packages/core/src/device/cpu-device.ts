// The CPU Device: float32 storage and compute, synchronous. It is the numeric reference every other
// device is compared against, so each op is written for clarity of semantics first and speed second
// (the hot ones, linear and the MoE experts, are still tight loops: see cpu-kernels.ts).
//
// Tensors are CpuTensor objects over a Float32Array (or Int32Array for i32). bf16/f16 uploads are
// widened to float32 once, at upload. Views (`reshape`) share the array.

import { bf16ToF32, f16ToF32, matmulNn, matmulNt, mergeTokenIdsInto } from './cpu-kernels.js';
import { routeTokens, runExperts } from './cpu-moe.js';
import type {
  Device,
  DeviceInfo,
  DType,
  GatedMlpWeights,
  HostData,
  MlaInputs,
  MoeExpertWeights,
  MoeRouteParams,
  MoeRouting,
  RopeStyle,
  RopeTable,
  Tensor,
} from './device.js';

export class CpuTensor implements Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  /** Row-major contents; f32 tensors hold a Float32Array, i32 tensors an Int32Array. */
  readonly data: Float32Array | Int32Array;

  constructor(shape: readonly number[], dtype: DType, data: Float32Array | Int32Array) {
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.data = data;
  }
}

function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function shapeText(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** The Float32Array behind an f32 CpuTensor; throws naming the op for anything else. */
export function cpuF32(t: Tensor, op: string): Float32Array {
  if (!(t instanceof CpuTensor)) throw new Error(`${op}: tensor does not belong to the CPU device`);
  if (!(t.data instanceof Float32Array)) throw new Error(`${op}: expected a float tensor, got ${t.dtype}`);
  return t.data;
}

/** The Int32Array behind an i32 CpuTensor; throws naming the op for anything else. */
export function cpuI32(t: Tensor, op: string): Int32Array {
  if (!(t instanceof CpuTensor)) throw new Error(`${op}: tensor does not belong to the CPU device`);
  if (!(t.data instanceof Int32Array)) throw new Error(`${op}: expected an i32 tensor, got ${t.dtype}`);
  return t.data;
}

function toF32(data: HostData, dtype: DType, op: string): Float32Array {
  switch (dtype) {
    case 'f32':
      if (!(data instanceof Float32Array)) throw new Error(`${op}: f32 data must be a Float32Array`);
      return data;
    case 'bf16':
      if (!(data instanceof Uint16Array)) throw new Error(`${op}: bf16 data must be a Uint16Array`);
      return bf16ToF32(data);
    case 'f16':
      if (!(data instanceof Uint16Array)) throw new Error(`${op}: f16 data must be a Uint16Array`);
      return f16ToF32(data);
    case 'i32':
      throw new Error(`${op}: i32 is not a floating-point type`);
  }
}

function lastDim(t: Tensor): number {
  const d = t.shape[t.shape.length - 1];
  if (d === undefined) throw new Error('tensor has no dimensions');
  return d;
}

export class CpuDevice implements Device {
  readonly info: DeviceInfo = { kind: 'cpu', name: 'cpu (float32)', computeDType: 'f32' };

  // --- memory -----------------------------------------------------------------------------------
  upload(data: HostData, shape: readonly number[], dtype: DType): Tensor {
    if (data.length !== numel(shape)) {
      throw new Error(`upload: ${data.length} elements do not fill shape ${shapeText(shape)}`);
    }
    if (dtype === 'i32') {
      if (!(data instanceof Int32Array)) throw new Error('upload: i32 data must be an Int32Array');
      return new CpuTensor(shape, 'i32', data.slice());
    }
    const f = toF32(data, dtype, 'upload');
    return new CpuTensor(shape, 'f32', f === data ? f.slice() : f);
  }

  write(dst: Tensor, data: HostData, dtype: DType): void {
    if (!(dst instanceof CpuTensor)) throw new Error('write: tensor does not belong to the CPU device');
    if (data.length !== dst.data.length) {
      throw new Error(`write: ${data.length} elements for a tensor of shape ${shapeText(dst.shape)}`);
    }
    if (dst.data instanceof Int32Array) {
      if (!(data instanceof Int32Array)) throw new Error('write: i32 tensor needs Int32Array data');
      dst.data.set(data);
    } else dst.data.set(toF32(data, dtype, 'write'));
  }

  zeros(shape: readonly number[], dtype: DType): Tensor {
    const n = numel(shape);
    return dtype === 'i32'
      ? new CpuTensor(shape, 'i32', new Int32Array(n))
      : new CpuTensor(shape, 'f32', new Float32Array(n));
  }

  toHost(t: Tensor): Float32Array | Int32Array {
    if (!(t instanceof CpuTensor)) throw new Error('toHost: tensor does not belong to the CPU device');
    return t.data.slice();
  }

  release(_t: Tensor): void {
    // The garbage collector owns CPU memory.
  }

  // --- layout -----------------------------------------------------------------------------------
  reshape(x: Tensor, shape: readonly number[]): Tensor {
    if (!(x instanceof CpuTensor)) throw new Error('reshape: tensor does not belong to the CPU device');
    if (numel(shape) !== x.data.length) {
      throw new Error(`reshape: cannot view ${shapeText(x.shape)} as ${shapeText(shape)}`);
    }
    return new CpuTensor(shape, x.dtype, x.data);
  }

  sliceLast(x: Tensor, start: number, size: number): Tensor {
    const src = cpuF32(x, 'sliceLast');
    const d = lastDim(x);
    if (start < 0 || size < 0 || start + size > d) {
      throw new Error(`sliceLast: [${start}, ${start + size}) out of range for last dim ${d}`);
    }
    const rows = src.length / d;
    const out = new Float32Array(rows * size);
    for (let r = 0; r < rows; r++) out.set(src.subarray(r * d + start, r * d + start + size), r * size);
    return new CpuTensor([...x.shape.slice(0, -1), size], 'f32', out);
  }

  concatLast(parts: readonly Tensor[]): Tensor {
    const first = parts[0];
    if (first === undefined) throw new Error('concatLast: no tensors');
    const lead = first.shape.slice(0, -1);
    const rows = numel(lead);
    const widths = parts.map((p) => {
      if (p.shape.length !== first.shape.length || p.shape.slice(0, -1).some((d, i) => d !== lead[i])) {
        throw new Error(`concatLast: shapes ${shapeText(first.shape)} and ${shapeText(p.shape)} differ`);
      }
      return lastDim(p);
    });
    const total = widths.reduce((a, b) => a + b, 0);
    const out = new Float32Array(rows * total);
    let col = 0;
    parts.forEach((p, i) => {
      const src = cpuF32(p, 'concatLast');
      const w = widths[i]!;
      for (let r = 0; r < rows; r++) out.set(src.subarray(r * w, (r + 1) * w), r * total + col);
      col += w;
    });
    return new CpuTensor([...lead, total], 'f32', out);
  }

  // --- dense math -------------------------------------------------------------------------------
  embedding(table: Tensor, ids: Tensor): Tensor {
    const tab = cpuF32(table, 'embedding');
    const idx = cpuI32(ids, 'embedding');
    const [V, H] = table.shape as [number, number];
    const out = new Float32Array(idx.length * H);
    for (let t = 0; t < idx.length; t++) {
      const id = idx[t]!;
      if (id < 0 || id >= V) throw new Error(`embedding: id ${id} out of range [0, ${V})`);
      out.set(tab.subarray(id * H, (id + 1) * H), t * H);
    }
    return new CpuTensor([idx.length, H], 'f32', out);
  }

  mergeTokenIds(ids: Tensor, prev: Tensor, rows: Tensor): Tensor {
    const a = cpuI32(ids, 'mergeTokenIds');
    const out = mergeTokenIdsInto(
      a,
      cpuI32(prev, 'mergeTokenIds'),
      cpuI32(rows, 'mergeTokenIds'),
      new Int32Array(a.length),
    );
    return new CpuTensor([a.length], 'i32', out);
  }

  linear(x: Tensor, w: Tensor, bias?: Tensor): Tensor {
    const xs = cpuF32(x, 'linear');
    const ws = cpuF32(w, 'linear');
    const [N, K] = w.shape as [number, number];
    if (lastDim(x) !== K)
      throw new Error(`linear: x ${shapeText(x.shape)} does not match w ${shapeText(w.shape)}`);
    const T = xs.length / K;
    const out = new Float32Array(T * N);
    matmulNt(xs, 0, T, K, ws, 0, N, out, 0, bias === undefined ? undefined : cpuF32(bias, 'linear'));
    return new CpuTensor([...x.shape.slice(0, -1), N], 'f32', out);
  }

  bmm(x: Tensor, w: Tensor, transposeW: boolean): Tensor {
    const xs = cpuF32(x, 'bmm');
    const ws = cpuF32(w, 'bmm');
    const [T, h, a] = x.shape as [number, number, number];
    const [wh, w1, w2] = w.shape as [number, number, number];
    const b = transposeW ? w1 : w2;
    if (wh !== h || (transposeW ? w2 : w1) !== a) {
      throw new Error(
        `bmm: x ${shapeText(x.shape)} does not match w ${shapeText(w.shape)} (transposeW ${transposeW})`,
      );
    }
    const out = new Float32Array(T * h * b);
    const row = new Float32Array(b);
    for (let t = 0; t < T; t++) {
      for (let i = 0; i < h; i++) {
        const xOff = (t * h + i) * a;
        if (transposeW) matmulNt(xs, xOff, 1, a, ws, i * b * a, b, out, (t * h + i) * b);
        else {
          matmulNn(xs, xOff, 1, a, ws, i * a * b, b, row, 0);
          out.set(row, (t * h + i) * b);
        }
      }
    }
    return new CpuTensor([T, h, b], 'f32', out);
  }

  rmsNorm(x: Tensor, w: Tensor, eps: number): Tensor {
    const xs = cpuF32(x, 'rmsNorm');
    const out = new Float32Array(xs.length);
    rmsNormRows(xs, cpuF32(w, 'rmsNorm'), eps, lastDim(x), out);
    return new CpuTensor(x.shape, 'f32', out);
  }

  addRmsNorm(x: Tensor, residual: Tensor, w: Tensor, eps: number): { out: Tensor; residual: Tensor } {
    const xs = cpuF32(x, 'addRmsNorm');
    const rs = cpuF32(residual, 'addRmsNorm');
    if (xs.length !== rs.length) throw new Error('addRmsNorm: x and residual differ in shape');
    const sum = new Float32Array(xs.length);
    for (let i = 0; i < xs.length; i++) sum[i] = xs[i]! + rs[i]!;
    const out = new Float32Array(xs.length);
    rmsNormRows(sum, cpuF32(w, 'addRmsNorm'), eps, lastDim(x), out);
    return { out: new CpuTensor(x.shape, 'f32', out), residual: new CpuTensor(x.shape, 'f32', sum) };
  }

  add(a: Tensor, b: Tensor): Tensor {
    const as = cpuF32(a, 'add');
    const bs = cpuF32(b, 'add');
    if (as.length !== bs.length) throw new Error(`add: ${shapeText(a.shape)} vs ${shapeText(b.shape)}`);
    const out = new Float32Array(as.length);
    for (let i = 0; i < as.length; i++) out[i] = as[i]! + bs[i]!;
    return new CpuTensor(a.shape, 'f32', out);
  }

  scale(x: Tensor, s: number): Tensor {
    const xs = cpuF32(x, 'scale');
    const out = new Float32Array(xs.length);
    for (let i = 0; i < xs.length; i++) out[i] = xs[i]! * s;
    return new CpuTensor(x.shape, 'f32', out);
  }

  siluAndMul(x: Tensor): Tensor {
    const xs = cpuF32(x, 'siluAndMul');
    const d = lastDim(x);
    if (d % 2 !== 0) throw new Error(`siluAndMul: last dim ${d} is odd`);
    const I = d / 2;
    const rows = xs.length / d;
    const out = new Float32Array(rows * I);
    for (let r = 0; r < rows; r++) {
      const b = r * d;
      for (let i = 0; i < I; i++) {
        // Rounded like torch: silu(gate) is a float32 tensor before the product.
        const g = xs[b + i]!;
        out[r * I + i] = Math.fround(g / (1 + Math.exp(-g))) * xs[b + I + i]!;
      }
    }
    return new CpuTensor([...x.shape.slice(0, -1), I], 'f32', out);
  }

  rope(x: Tensor, positions: Tensor, table: RopeTable, style: RopeStyle): Tensor {
    const xs = cpuF32(x, 'rope');
    const pos = cpuI32(positions, 'rope');
    const cos = cpuF32(table.cos, 'rope');
    const sin = cpuF32(table.sin, 'rope');
    const [T, h, D] = x.shape as [number, number, number];
    const rot = table.rotaryDim;
    const half = rot / 2;
    if (rot > D || pos.length !== T)
      throw new Error(`rope: x ${shapeText(x.shape)}, ${pos.length} positions, rotaryDim ${rot}`);
    const out = xs.slice();
    for (let t = 0; t < T; t++) {
      const p = pos[t]!;
      if (p < 0 || p >= table.maxPositions)
        throw new Error(`rope: position ${p} out of range [0, ${table.maxPositions})`);
      const cb = p * half;
      for (let i = 0; i < h; i++) {
        const base = (t * h + i) * D + (D - rot);
        for (let j = 0; j < half; j++) {
          const c = cos[cb + j]!;
          const s = sin[cb + j]!;
          const a = style === 'half' ? base + j : base + 2 * j;
          const b = style === 'half' ? base + j + half : base + 2 * j + 1;
          const x1 = xs[a]!;
          const x2 = xs[b]!;
          // Each product rounded to float32 as torch does before the sum.
          out[a] = Math.fround(x1 * c) - Math.fround(x2 * s);
          out[b] = Math.fround(x2 * c) + Math.fround(x1 * s);
        }
      }
    }
    return new CpuTensor(x.shape, 'f32', out);
  }

  mlaInputs(
    q: Tensor,
    kv: Tensor,
    positions: Tensor,
    table: RopeTable,
    style: RopeStyle,
    kvNorm: Tensor,
    eps: number,
  ): MlaInputs {
    const R = table.rotaryDim;
    const width = lastDim(kv);
    const L = width - R;
    if (kv.shape.length !== 2 || L <= 0)
      throw new Error(`mlaInputs: kv ${shapeText(kv.shape)} is not [T, L + ${R}]`);
    const T = kv.shape[0]!;
    return {
      q: this.rope(q, positions, table, style),
      cKv: this.rmsNorm(this.sliceLast(kv, 0, L), kvNorm, eps),
      kPe: this.reshape(
        this.rope(this.reshape(this.sliceLast(kv, L, R), [T, 1, R]), positions, table, style),
        [T, R],
      ),
    };
  }

  // --- mixture of experts -----------------------------------------------------------------------
  moeRoute(routerLogits: Tensor, params: MoeRouteParams): MoeRouting {
    const logits = cpuF32(routerLogits, 'moeRoute');
    const [T, E] = routerLogits.shape as [number, number];
    const bias = params.correctionBias === undefined ? undefined : cpuF32(params.correctionBias, 'moeRoute');
    const { ids, weights } = routeTokens(logits, T, E, params, bias);
    return {
      ids: new CpuTensor([T, params.topK], 'i32', ids),
      weights: new CpuTensor([T, params.topK], 'f32', weights),
    };
  }

  moeExperts(x: Tensor, routing: MoeRouting, experts: MoeExpertWeights): Tensor {
    const xs = cpuF32(x, 'moeExperts');
    const [T, H] = x.shape as [number, number];
    const [E, twoI, gH] = experts.gateUp.shape as [number, number, number];
    if (gH !== H) throw new Error(`moeExperts: gateUp ${shapeText(experts.gateUp.shape)} vs hidden ${H}`);
    const topK = routing.ids.shape[1] ?? 0;
    const out = runExperts(
      xs,
      T,
      H,
      cpuI32(routing.ids, 'moeExperts'),
      cpuF32(routing.weights, 'moeExperts'),
      topK,
      cpuF32(experts.gateUp, 'moeExperts'),
      cpuF32(experts.down, 'moeExperts'),
      E,
      twoI / 2,
    );
    const routed = new CpuTensor([T, H], 'f32', out);
    return experts.shared === undefined ? routed : this.add(routed, this.#gatedMlp(x, experts.shared));
  }

  #gatedMlp(x: Tensor, w: GatedMlpWeights): Tensor {
    return this.linear(this.siluAndMul(this.linear(x, w.gateUp)), w.down);
  }
}

function rmsNormRows(xs: Float32Array, w: Float32Array, eps: number, D: number, out: Float32Array): void {
  if (w.length !== D) throw new Error(`rmsNorm: weight of ${w.length} for rows of ${D}`);
  const rows = xs.length / D;
  for (let r = 0; r < rows; r++) {
    const b = r * D;
    let ss = 0;
    for (let i = 0; i < D; i++) {
      const v = xs[b + i]!;
      ss += v * v;
    }
    const inv = 1 / Math.sqrt(Math.fround(ss / D) + eps);
    // transformers: weight * (x * rsqrt(var + eps)), the inner product rounded to float32 first.
    for (let i = 0; i < D; i++) out[b + i] = w[i]! * Math.fround(xs[b + i]! * inv);
  }
}
