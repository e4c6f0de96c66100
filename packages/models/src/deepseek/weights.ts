// The DeepSeek checkpoint layout (Hugging Face names and shapes), reading it onto a Device, and
// generating random ("dummy") weights of the same layout from a seed.
//
// Routed experts come either one module per expert (`mlp.experts.{e}.gate_proj.weight`, what the Hub
// and transformers' save_pretrained write) or fused (`mlp.experts.gate_up_proj` [E, 2I, H] and
// `mlp.experts.down_proj` [E, H, I], transformers 5's in-memory layout); both load.

import {
  type DeepseekConfig,
  type Device,
  type DType,
  type HostData,
  type HostTensor,
  loadTensorMismatch,
  loadTensorMissing,
  type Tensor,
  type WeightSource,
} from '@flashserve/core';
import { isMoeLayer } from './config.js';

/** Every tensor the model reads, with its shape, in the per-expert (Hub) layout. */
export function deepseekWeightManifest(c: DeepseekConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const H = c.hiddenSize;
  const heads = c.numAttentionHeads;
  const qkHead = c.qkNopeHeadDim + c.qkRopeHeadDim;
  m.set('model.embed_tokens.weight', [c.vocabSize, H]);
  for (let i = 0; i < c.numHiddenLayers; i++) {
    const p = `model.layers.${i}.`;
    m.set(`${p}input_layernorm.weight`, [H]);
    m.set(`${p}post_attention_layernorm.weight`, [H]);
    const a = `${p}self_attn.`;
    if (c.qLoraRank === null) m.set(`${a}q_proj.weight`, [heads * qkHead, H]);
    else {
      m.set(`${a}q_a_proj.weight`, [c.qLoraRank, H]);
      if (c.attentionBias) m.set(`${a}q_a_proj.bias`, [c.qLoraRank]);
      m.set(`${a}q_a_layernorm.weight`, [c.qLoraRank]);
      m.set(`${a}q_b_proj.weight`, [heads * qkHead, c.qLoraRank]);
    }
    m.set(`${a}kv_a_proj_with_mqa.weight`, [c.kvLoraRank + c.qkRopeHeadDim, H]);
    if (c.attentionBias) m.set(`${a}kv_a_proj_with_mqa.bias`, [c.kvLoraRank + c.qkRopeHeadDim]);
    m.set(`${a}kv_a_layernorm.weight`, [c.kvLoraRank]);
    m.set(`${a}kv_b_proj.weight`, [heads * (c.qkNopeHeadDim + c.vHeadDim), c.kvLoraRank]);
    m.set(`${a}o_proj.weight`, [H, heads * c.vHeadDim]);
    if (c.attentionBias) m.set(`${a}o_proj.bias`, [H]);
    const mlp = `${p}mlp.`;
    const moe = c.moe;
    if (moe !== null && isMoeLayer(c, i)) {
      const I = moe.moeIntermediateSize;
      m.set(`${mlp}gate.weight`, [moe.nRoutedExperts, H]);
      if (c.modelType === 'deepseek_v3') m.set(`${mlp}gate.e_score_correction_bias`, [moe.nRoutedExperts]);
      for (let e = 0; e < moe.nRoutedExperts; e++) {
        m.set(`${mlp}experts.${e}.gate_proj.weight`, [I, H]);
        m.set(`${mlp}experts.${e}.up_proj.weight`, [I, H]);
        m.set(`${mlp}experts.${e}.down_proj.weight`, [H, I]);
      }
      if (moe.nSharedExperts > 0) {
        const S = I * moe.nSharedExperts;
        m.set(`${mlp}shared_experts.gate_proj.weight`, [S, H]);
        m.set(`${mlp}shared_experts.up_proj.weight`, [S, H]);
        m.set(`${mlp}shared_experts.down_proj.weight`, [H, S]);
      }
    } else {
      m.set(`${mlp}gate_proj.weight`, [c.intermediateSize, H]);
      m.set(`${mlp}up_proj.weight`, [c.intermediateSize, H]);
      m.set(`${mlp}down_proj.weight`, [H, c.intermediateSize]);
    }
  }
  m.set('model.norm.weight', [H]);
  if (!c.tieWordEmbeddings) m.set('lm_head.weight', [c.vocabSize, H]);
  return m;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function concatHost(parts: readonly HostTensor[]): HostData {
  const first = parts[0]!;
  const total = parts.reduce((n, p) => n + p.data.length, 0);
  const out =
    first.data instanceof Float32Array
      ? new Float32Array(total)
      : first.data instanceof Int32Array
        ? new Int32Array(total)
        : new Uint16Array(total);
  let at = 0;
  for (const p of parts) {
    if (p.dtype !== first.dtype) throw new Error(`concatHost: mixed dtypes ${first.dtype} and ${p.dtype}`);
    out.set(p.data as never, at);
    at += p.data.length;
  }
  return out;
}

/** Reads named tensors from a WeightSource onto a Device, checking each against the manifest. */
export class WeightReader {
  readonly #src: WeightSource;
  readonly #device: Device;
  readonly #manifest: Map<string, number[]>;

  constructor(src: WeightSource, device: Device, config: DeepseekConfig) {
    this.#src = src;
    this.#device = device;
    this.#manifest = deepseekWeightManifest(config);
  }

  has(name: string): boolean {
    return this.#src.has(name);
  }

  /** Reads a tensor on the host, checking its shape against `shape` (or the manifest's). */
  host(name: string, shape?: readonly number[]): HostTensor {
    if (!this.#src.has(name)) throw loadTensorMissing(name, this.#src.description);
    const t = this.#src.read(name);
    const want = shape ?? this.#manifest.get(name);
    if (want !== undefined && !sameShape(t.shape, want)) {
      throw loadTensorMismatch(
        name,
        this.#src.description,
        `shape [${t.shape.join(', ')}], expected [${want.join(', ')}]`,
      );
    }
    if (t.dtype === 'i32')
      throw loadTensorMismatch(name, this.#src.description, 'integer tensor where weights are expected');
    return t;
  }

  tensor(name: string, shape?: readonly number[]): Tensor {
    const t = this.host(name, shape);
    return this.#device.upload(t.data, t.shape, t.dtype);
  }

  optional(name: string, shape?: readonly number[]): Tensor | undefined {
    return this.#src.has(name) ? this.tensor(name, shape) : undefined;
  }

  /** Tensors with the same trailing dims concatenated along dim 0 into one upload: [sum of rows, ...rest]. */
  concatRows(names: readonly string[], shape: readonly number[]): Tensor {
    const parts = names.map((n) => this.host(n));
    const rows = parts.reduce((n, p) => n + (p.shape[0] ?? 0), 0);
    return this.#device.upload(concatHost(parts), shape.length === 0 ? [rows] : shape, parts[0]!.dtype);
  }

  /** 1-D tensors joined into one upload; a number stands for that many zeros (a part with no tensor,
   * like q_proj's missing bias beside kv_a_proj_with_mqa's). */
  concatVectors(parts: readonly (string | number)[]): Tensor {
    const read = parts.map((p) => (typeof p === 'number' ? undefined : this.host(p)));
    const dtype = read.find((t) => t !== undefined)?.dtype ?? 'f32';
    const total = parts.reduce<number>(
      (n, p, i) => n + (typeof p === 'number' ? p : (read[i]!.shape[0] ?? 0)),
      0,
    );
    // A source that leaves weights to the device (empty host data, GpuDummyWeightSource) gets the
    // same empty upload for the joined vector.
    if (read.some((t) => t !== undefined && t.data.length === 0 && (t.shape[0] ?? 0) > 0))
      return this.#device.upload(new Float32Array(0), [total], 'f32');
    const data = concatHost(
      parts.map((p, i): HostTensor => {
        const t = read[i];
        if (t !== undefined) return t;
        const n = p as number;
        return { data: dtype === 'f32' ? new Float32Array(n) : new Uint16Array(n), dtype, shape: [n] };
      }),
    );
    return this.#device.upload(data, [data.length], dtype);
  }

  /** kv_b_proj [heads * (nope + v), kvLora] split into W_UK [heads, nope, kvLora] and W_UV [heads, v, kvLora]. */
  splitKvB(
    name: string,
    heads: number,
    nope: number,
    v: number,
    kvLora: number,
  ): { wUk: Tensor; wUv: Tensor } {
    const t = this.host(name);
    const d = t.data;
    const make = (len: number): HostData =>
      d instanceof Float32Array
        ? new Float32Array(len)
        : d instanceof Int32Array
          ? new Int32Array(len)
          : new Uint16Array(len);
    const uk = make(heads * nope * kvLora);
    const uv = make(heads * v * kvLora);
    for (let h = 0; h < heads; h++) {
      const base = h * (nope + v) * kvLora;
      uk.set(d.subarray(base, base + nope * kvLora) as never, h * nope * kvLora);
      uv.set(d.subarray(base + nope * kvLora, base + (nope + v) * kvLora) as never, h * v * kvLora);
    }
    return {
      wUk: this.#device.upload(uk, [heads, nope, kvLora], t.dtype),
      wUv: this.#device.upload(uv, [heads, v, kvLora], t.dtype),
    };
  }
}

/** Deterministic 32-bit PRNG (mulberry32) with Box-Muller normals. */
class Rng {
  #state: number;
  #spare: number | undefined;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  uniform(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  normal(): number {
    if (this.#spare !== undefined) {
      const s = this.#spare;
      this.#spare = undefined;
      return s;
    }
    const u = Math.max(this.uniform(), 1e-12);
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.#spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }
}

function hashName(name: string): number {
  let h = 2166136261;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
  return h >>> 0;
}

/**
 * Random weights of the config's shapes (for `--load-format dummy` and benchmarks): N(0, 1/fan_in)
 * matrices so activations stay O(1), unit norm weights, small router biases. Each tensor's values
 * depend only on (seed, name), so the same seed always builds the same model.
 */
export class DummyWeightSource implements WeightSource {
  readonly description: string;
  readonly #manifest: Map<string, number[]>;
  readonly #seed: number;

  constructor(config: DeepseekConfig, seed = 0) {
    this.#manifest = deepseekWeightManifest(config);
    this.#seed = seed;
    this.description = `dummy weights (seed ${seed})`;
  }

  names(): string[] {
    return [...this.#manifest.keys()];
  }

  has(name: string): boolean {
    return this.#manifest.has(name);
  }

  info(name: string): { dtype: string; shape: readonly number[] } {
    const shape = this.#manifest.get(name);
    if (shape === undefined) throw loadTensorMissing(name, this.description);
    return { dtype: 'F32', shape };
  }

  read(name: string): HostTensor {
    const shape = this.#manifest.get(name);
    if (shape === undefined) throw loadTensorMissing(name, this.description);
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    const rng = new Rng(hashName(name) ^ Math.imul(this.#seed, 0x9e3779b1));
    if (name.endsWith('norm.weight')) data.fill(1);
    else if (name.endsWith('.bias') || name.endsWith('e_score_correction_bias')) {
      for (let i = 0; i < n; i++) data[i] = 0.01 * rng.normal();
    } else {
      const scale = name === 'model.embed_tokens.weight' ? 1 : 1 / Math.sqrt(shape[shape.length - 1] ?? 1);
      for (let i = 0; i < n; i++) data[i] = rng.normal() * scale;
    }
    const dtype: DType = 'f32';
    return { data, dtype, shape };
  }
}
