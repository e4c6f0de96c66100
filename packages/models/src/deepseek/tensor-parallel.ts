// Tensor parallelism for DeepSeek-V2/V3, in the Megatron/vLLM scheme: how one rank of N slices the
// checkpoint, and the vocabulary-parallel embedding and LM head.
//
// Per layer, rank r of N holds:
//   attention  q_proj / q_b_proj rows and kv_b_proj rows of heads [r*h/N, (r+1)*h/N) (column
//              parallel: no communication), o_proj columns of the same heads (row parallel: its output
//              is a partial sum, all-reduced once). q_a_proj, kv_a_proj_with_mqa and their norms are
//              replicated, so every rank computes the same latent c_kv / k_pe and keeps the whole
//              latent KV cache (MLA has one KV head: splitting it would save nothing per token).
//   MLP        gate/up rows and down columns of intermediate slice r (dense MLP, every routed expert
//              and the shared experts alike); routed + shared partials are added first, then one
//              all-reduce per layer. The router (gate.weight, e_score_correction_bias) is replicated
//              and sees identical input on every rank, so every rank picks the same experts.
//   vocabulary embed_tokens and lm_head rows [r*V', (r+1)*V') with V' = ceil(V/N) (zero padding past
//              V). Embedding: each rank looks up only its own ids (others hit a zero row), then one
//              all-reduce. LM head: each rank computes its V' logits, one all-gather, columns
//              reordered rank-major and trimmed to V.
// Biases of row-parallel layers (o_proj with attention_bias) are kept on rank 0 only, so the
// all-reduce adds them once.
//
// The rank's model is the ordinary DeepseekModel built from a "shard config" (h/N heads, I/N widths)
// and a ShardedWeightSource that serves the slices under the checkpoint's own names and the shard
// config's shapes; model.ts only calls the three hooks below.

import type {
  DeepseekConfig,
  Device,
  HostData,
  HostTensor,
  ProcessGroup,
  Tensor,
  WeightSource,
} from '@flashserve/core';
import type { DeepseekTensorParallelHooks } from './model.js';

/** Why `config` cannot be split `size` ways; empty means it can. */
export function tensorParallelUnsupportedReasons(config: DeepseekConfig, size: number): string[] {
  if (!Number.isInteger(size) || size < 1)
    return [`tensor-parallel size must be a positive integer, got ${size}`];
  const reasons: string[] = [];
  const need = (what: string, n: number) => {
    if (n % size !== 0) reasons.push(`${what} (${n}) is not divisible by the tensor-parallel size ${size}`);
  };
  need('num_attention_heads', config.numAttentionHeads);
  need('intermediate_size', config.intermediateSize);
  if (config.moe !== null) need('moe_intermediate_size', config.moe.moeIntermediateSize);
  return reasons;
}

/** The config one rank's DeepseekModel is built from: per-rank head and intermediate counts. */
export function shardConfig(config: DeepseekConfig, size: number): DeepseekConfig {
  return {
    ...config,
    numAttentionHeads: config.numAttentionHeads / size,
    intermediateSize: config.intermediateSize / size,
    moe:
      config.moe === null
        ? null
        : { ...config.moe, moeIntermediateSize: config.moe.moeIntermediateSize / size },
  };
}

/** A benchmark dummy the device fills at upload (an empty array for a non-empty shape; see
 * @flashserve/cuda's GpuDummyWeightSource): sharding keeps it empty, with the shard's shape. */
function deviceFilled(t: HostTensor): boolean {
  return t.data.length === 0 && t.shape.every((n) => n > 0);
}

function emptyLike(d: HostData, n: number): HostData {
  return d instanceof Float32Array
    ? new Float32Array(n)
    : d instanceof Int32Array
      ? new Int32Array(n)
      : new Uint16Array(n);
}

/** Rows [start, start + count) of a row-major [rows, cols] array; rows past the end stay zero. */
function takeRows(d: HostData, cols: number, start: number, count: number): HostData {
  const out = emptyLike(d, count * cols);
  const end = Math.min(d.length, (start + count) * cols);
  if (end > start * cols) out.set(d.subarray(start * cols, end) as never);
  return out;
}

/** Columns [start, start + count) of every row of a row-major [rows, cols] array. */
function takeCols(d: HostData, cols: number, start: number, count: number): HostData {
  const rows = d.length / cols;
  const out = emptyLike(d, rows * count);
  for (let i = 0; i < rows; i++) {
    out.set(d.subarray(i * cols + start, i * cols + start + count) as never, i * count);
  }
  return out;
}

const HEAD_ROWS = /\.self_attn\.(q_proj|q_b_proj)\.weight$/;
const KV_B = /\.self_attn\.kv_b_proj\.weight$/;
const O_PROJ = /\.self_attn\.o_proj\.weight$/;
const O_BIAS = /\.self_attn\.o_proj\.bias$/;
const COL_PARALLEL = /\.mlp\.(shared_experts\.|experts\.\d+\.)?(gate_proj|up_proj)\.weight$/;
const ROW_PARALLEL = /\.mlp\.(shared_experts\.|experts\.\d+\.)?down_proj\.weight$/;
const FUSED_GATE_UP = /\.mlp\.experts\.gate_up_proj$/;
const FUSED_DOWN = /\.mlp\.experts\.down_proj$/;

/**
 * One rank's view of a checkpoint: the same tensor names, each sliced for rank `rank` of `size`
 * (shapes are those of shardConfig). Replicated tensors pass through. The embedding and LM head are
 * not served (VocabParallelHooks reads them from the full source).
 *
 * NOTE: each tensor is read whole and sliced on the host, so loading costs one full tensor of host
 * memory at a time per rank (safetensors reads tensor by tensor), not a whole checkpoint.
 */
export class ShardedWeightSource implements WeightSource {
  readonly description: string;
  readonly #src: WeightSource;
  readonly #rank: number;
  readonly #size: number;

  constructor(src: WeightSource, rank: number, size: number) {
    this.#src = src;
    this.#rank = rank;
    this.#size = size;
    this.description = `${src.description}, tensor-parallel shard ${rank} of ${size}`;
  }

  names(): string[] {
    return this.#src.names();
  }

  has(name: string): boolean {
    return this.#src.has(name);
  }

  info(name: string): { readonly dtype: string; readonly shape: readonly number[] } {
    const i = this.#src.info(name);
    return { dtype: i.dtype, shape: this.#shape(name, i.shape) };
  }

  read(name: string): HostTensor {
    const t = this.#src.read(name);
    const shape = this.#shape(name, t.shape);
    if (shape === t.shape) return t;
    if (deviceFilled(t)) return { dtype: t.dtype, shape, data: t.data };
    return { dtype: t.dtype, shape, data: this.#slice(name, t) };
  }

  /** Per-rank shape (the input array itself when the tensor is replicated). */
  #shape(name: string, s: readonly number[]): readonly number[] {
    const N = this.#size;
    const [a = 0, b = 0, c = 0] = s;
    if (HEAD_ROWS.test(name) || KV_B.test(name) || COL_PARALLEL.test(name)) return [a / N, b];
    if (O_PROJ.test(name) || ROW_PARALLEL.test(name)) return [a, b / N];
    if (FUSED_GATE_UP.test(name)) return [a, b / N, c];
    if (FUSED_DOWN.test(name)) return [a, b, c / N];
    return s;
  }

  #slice(name: string, t: HostTensor): HostData {
    const r = this.#rank;
    const N = this.#size;
    const [a = 0, b = 0, c = 0] = t.shape;
    const d = t.data;
    // Head-major rows (q: [h * (nope + rope)], kv_b: [h * (nope + v)]) and MLP rows split alike.
    if (HEAD_ROWS.test(name) || KV_B.test(name) || COL_PARALLEL.test(name))
      return takeRows(d, b, (r * a) / N, a / N);
    if (O_PROJ.test(name) || ROW_PARALLEL.test(name)) return takeCols(d, b, (r * b) / N, b / N);
    if (FUSED_GATE_UP.test(name)) {
      // Per expert [2I, H]: gate rows [0, I), up rows [I, 2I); this rank takes slice r of each half.
      const I = b / 2;
      const Il = I / N;
      const out = emptyLike(d, a * 2 * Il * c);
      for (let e = 0; e < a; e++) {
        const base = e * b * c;
        out.set(d.subarray(base + r * Il * c, base + (r + 1) * Il * c) as never, e * 2 * Il * c);
        out.set(
          d.subarray(base + (I + r * Il) * c, base + (I + (r + 1) * Il) * c) as never,
          (e * 2 + 1) * Il * c,
        );
      }
      return out;
    }
    if (FUSED_DOWN.test(name)) return takeCols(d, c, (r * c) / N, c / N);
    throw new Error(`ShardedWeightSource: no slicing rule for ${name}`);
  }

  /** A row-parallel bias is added once: rank 0 keeps it, the others read zeros. */
  static isRowParallelBias(name: string): boolean {
    return O_BIAS.test(name);
  }
}

/** ShardedWeightSource plus the rank-0-only row-parallel biases. */
export function shardWeights(src: WeightSource, rank: number, size: number): WeightSource {
  const sharded = new ShardedWeightSource(src, rank, size);
  if (rank === 0) return sharded;
  return {
    description: sharded.description,
    names: () => sharded.names(),
    has: (n) => sharded.has(n),
    info: (n) => sharded.info(n),
    read: (n) => {
      const t = sharded.read(n);
      return ShardedWeightSource.isRowParallelBias(n) ? { ...t, data: emptyLike(t.data, t.data.length) } : t;
    },
  };
}

/** The hooks model.ts calls on a tensor-parallel rank: vocabulary-parallel tables and the collectives. */
export class VocabParallelHooks implements DeepseekTensorParallelHooks {
  /** Time this rank spent inside collectives (waiting for the slowest rank included), for benchmarks. */
  readonly stats = { collectives: 0, collectiveMs: 0 };
  readonly #group: ProcessGroup;
  readonly #vocab: number;
  /** Rows per rank: ceil(V / N). */
  readonly #shardRows: number;
  readonly #first: number;
  /** lmHead's row order for this step, uploaded by embed(). */
  #order: Tensor | undefined;
  /** [shardRows + 1, H]: this rank's rows, then one zero row that other ranks' ids map to. */
  readonly #embed: Tensor;
  /** [shardRows, H]: this rank's output rows (zero past V). */
  readonly #lmHead: Tensor;

  constructor(src: WeightSource, config: DeepseekConfig, group: ProcessGroup, device: Device) {
    this.#group = group;
    const V = config.vocabSize;
    const H = config.hiddenSize;
    const Vs = Math.ceil(V / group.worldSize);
    this.#vocab = V;
    this.#shardRows = Vs;
    this.#first = group.rank * Vs;
    const embed = src.read('model.embed_tokens.weight');
    // Benchmark dummies filled on the device stay empty (their "not mine" row is random too: the
    // numbers do not matter there, only the shapes and the traffic).
    const table = deviceFilled(embed) ? embed.data : takeRows(embed.data, H, this.#first, Vs + 1);
    // The extra row may hold the next rank's first row: it must be the zero "not mine" row.
    table.fill(0, Vs * H);
    this.#embed = device.upload(table, [Vs + 1, H], embed.dtype);
    const lm = config.tieWordEmbeddings && !src.has('lm_head.weight') ? embed : src.read('lm_head.weight');
    const head = deviceFilled(lm) ? lm.data : takeRows(lm.data, H, this.#first, Vs);
    this.#lmHead = device.upload(head, [Vs, H], lm.dtype);
  }

  embed(d: Device, tokenIds: Int32Array, _ids: Tensor, logitsRows: number): Tensor {
    // lmHead's reorder of the gathered logits, uploaded now (see the hook's contract): row i of the
    // result is rank 0's row i, then rank 1's, ...: index i * N + r picks row r * R + i of [N * R, Vs].
    const N = this.#group.worldSize;
    const R = logitsRows;
    if (this.#order !== undefined) d.release(this.#order);
    this.#order = undefined;
    // One row (batch-1 decode) is already in order: [N, 1, Vs] is [1, N * Vs].
    if (R > 1) {
      const order = new Int32Array(N * R);
      for (let i = 0; i < R; i++) for (let r = 0; r < N; r++) order[i * N + r] = r * R + i;
      this.#order = d.upload(order, [N * R], 'i32');
    }
    const Vs = this.#shardRows;
    const local = new Int32Array(tokenIds.length);
    for (let i = 0; i < tokenIds.length; i++) {
      const j = tokenIds[i]! - this.#first;
      local[i] = j >= 0 && j < Vs ? j : Vs;
    }
    const ids = d.upload(local, [local.length], 'i32');
    const partial = d.embedding(this.#embed, ids);
    d.release(ids);
    // Exactly one rank contributes a non-zero row per token, so the sum is exact.
    const full = this.#timed(() => this.#group.allReduceSum(partial));
    d.release(partial);
    return full;
  }

  reduce(_d: Device, x: Tensor): Tensor {
    return this.#timed(() => this.#group.allReduceSum(x));
  }

  lmHead(d: Device, x: Tensor): Tensor {
    const N = this.#group.worldSize;
    const R = x.shape[0] ?? 0;
    const Vs = this.#shardRows;
    const local = d.linear(x, this.#lmHead); // [R, Vs]
    const gathered = this.#timed(() => this.#group.allGather(local)); // [N, R, Vs]
    d.release(local);
    // Rank-major [N, R, Vs] -> [R, N * Vs]: one gather of rows in the order embed() uploaded.
    let picked = gathered;
    if (R > 1) {
      const order = this.#order;
      if (order === undefined || order.shape[0] !== N * R) {
        throw new Error(`lmHead: embed() prepared ${order?.shape[0] ?? 0} rows of order, not ${N * R}`);
      }
      const rows = d.reshape(gathered, [N * R, Vs]);
      picked = d.embedding(rows, order); // [R * N, Vs]
      d.release(gathered);
      d.release(order);
      this.#order = undefined;
    }
    // A view that keeps picked's memory alive (CUDA views hold a reference), released by the caller.
    const joined = d.reshape(picked, [R, N * Vs]);
    d.release(picked);
    if (N * Vs === this.#vocab) return joined;
    const trimmed = d.sliceLast(joined, 0, this.#vocab);
    d.release(joined);
    return trimmed;
  }

  #timed(f: () => Tensor): Tensor {
    const t0 = performance.now();
    try {
      return f();
    } finally {
      this.stats.collectives++;
      this.stats.collectiveMs += performance.now() - t0;
    }
  }
}
