// DeepSeek-V2/V3 causal LM on a Device and an attention backend, implementing the engine's Model.
//
// One forward runs the step's flattened tokens through every layer:
//   h = embed(ids); per layer: x = RMSNorm(h + residual); h = attn(x); x = RMSNorm(h + residual); h = mlp(x)
//   logits = lm_head(RMSNorm(h + residual)) for the rows in logitsIndices only.
// Each RMSNorm goes to the device together with the Linear that reads it (addRmsNormLinear: [q | kv_a],
// the router gate or the dense gate_up, lm_head), which a device may run as one launch.
// The backend's metadata is built once per forward and shared by every layer.

import { basename } from 'node:path';
import {
  type AttentionBackend,
  type AttentionMetadataBuilder,
  type DeepseekConfig,
  type Device,
  type ForwardBatch,
  type KvCache,
  type KvCacheLayout,
  loadDeepseekConfig,
  type MlaAttentionImpl,
  type MlaModelSpec,
  type Model,
  type ModelInfo,
  type RopeStyle,
  type RopeTable,
  SafetensorsCheckpoint,
  type Tensor,
  type WeightSource,
} from '@flashserve/core';
import { isMoeLayer, mlaSpec, ropeStyle, softmaxScale } from './config.js';
import { MlaAttention } from './mla-attention.js';
import { DenseMlp, MoeBlock } from './moe.js';
import { addRmsNormLinear } from './norm-linear.js';
import { buildRopeTable } from './rope.js';
import { WeightReader } from './weights.js';

export interface DeepseekModelOptions {
  readonly device: Device;
  readonly backend: AttentionBackend;
  /** Reported by /v1/models; defaults to the checkpoint directory's name. */
  readonly name?: string;
  /** Longest sequence to support (sizes the RoPE table); defaults to max_position_embeddings. */
  readonly maxModelLen?: number;
  /** Makes this model one rank of a tensor-parallel group (tensor-parallel.ts). The config and the
   * weights are then the rank's shard (h/N heads, I/N intermediate); the embedding and the LM head are
   * left to the hooks, and every row-parallel output (o_proj, MLP) goes through `reduce`. */
  readonly tensorParallel?: DeepseekTensorParallelHooks;
}

/** What a tensor-parallel rank does differently from a single-device model; see tensor-parallel.ts. */
export interface DeepseekTensorParallelHooks {
  /** Token ids (host copy and device tensor) -> the full hidden states [T, H], identical on every rank.
   * `logitsRows`: how many rows lmHead will get this step (it uploads what it needs for them here,
   * before the first layer: a graph replay launches after the step's last upload). */
  embed(d: Device, tokenIds: Int32Array, ids: Tensor, logitsRows: number): Tensor;
  /** COLLECTIVE: sums a row-parallel partial output over the ranks: [T, H] -> new [T, H]. */
  reduce(d: Device, x: Tensor): Tensor;
  /** COLLECTIVE: final normed rows [R, H] -> full-vocabulary logits [R, V]. */
  lmHead(d: Device, x: Tensor): Tensor;
}

interface Layer {
  readonly inputNorm: Tensor;
  readonly postNorm: Tensor;
  readonly attn: MlaAttention;
  readonly mlp: DenseMlp | MoeBlock;
}

interface KvState<M> {
  readonly layout: KvCacheLayout;
  readonly caches: readonly KvCache[];
  readonly builder: AttentionMetadataBuilder<M>;
  readonly impls: readonly MlaAttentionImpl<M>[];
}

export class DeepseekModel implements Model {
  readonly info: ModelInfo;
  readonly device: Device;
  readonly config: DeepseekConfig;
  readonly spec: MlaModelSpec;
  readonly #backend: AttentionBackend;
  readonly #tp: DeepseekTensorParallelHooks | undefined;
  /** Undefined under tensor parallelism (the hooks own the vocabulary-parallel tables). */
  readonly #embed: Tensor | undefined;
  readonly #layers: Layer[] = [];
  readonly #finalNorm: Tensor;
  readonly #lmHead: Tensor | undefined;
  readonly #rope: RopeTable;
  readonly #ropeStyle: RopeStyle;
  #kv: KvState<unknown> | undefined;
  /** Async scheduling: forward merges device token ids (ForwardBatch.prevTokenIds). Not under tensor
   * parallelism, whose vocabulary-parallel embedding maps the ids on the host. */
  readonly readsDeviceTokenIds: boolean;

  constructor(config: DeepseekConfig, weights: WeightSource, options: DeepseekModelOptions) {
    const d = options.device;
    this.device = d;
    this.config = config;
    this.spec = mlaSpec(config);
    this.#backend = options.backend;
    const maxLen = Math.min(
      options.maxModelLen ?? config.maxPositionEmbeddings,
      config.maxPositionEmbeddings,
    );
    this.info = {
      name: options.name ?? 'deepseek',
      vocabSize: config.vocabSize,
      maxPositionEmbeddings: maxLen,
    };
    const reasons = this.#backend.unsupportedReasons({ device: d, model: this.spec });
    if (reasons.length > 0)
      throw new Error(`attention backend ${this.#backend.name} cannot run this model: ${reasons.join('; ')}`);

    const w = new WeightReader(weights, d, config);
    this.#tp = options.tensorParallel;
    this.readsDeviceTokenIds = this.#tp === undefined && d.mergeTokenIds !== undefined;
    this.#embed = this.#tp === undefined ? w.tensor('model.embed_tokens.weight') : undefined;
    const scale = softmaxScale(config);
    for (let i = 0; i < config.numHiddenLayers; i++) {
      const p = `model.layers.${i}.`;
      this.#layers.push({
        inputNorm: w.tensor(`${p}input_layernorm.weight`),
        postNorm: w.tensor(`${p}post_attention_layernorm.weight`),
        attn: new MlaAttention(config, i, w, scale),
        mlp: isMoeLayer(config, i)
          ? new MoeBlock(config, i, w)
          : new DenseMlp(w, `${p}mlp.`, config.hiddenSize, config.intermediateSize),
      });
    }
    this.#finalNorm = w.tensor('model.norm.weight');
    // Tied checkpoints usually omit lm_head.weight; the embedding then doubles as the output matrix.
    this.#lmHead =
      this.#tp !== undefined
        ? undefined
        : config.tieWordEmbeddings && !w.has('lm_head.weight')
          ? this.#embed
          : w.tensor('lm_head.weight', [config.vocabSize, config.hiddenSize]);
    this.#rope = buildRopeTable(d, config, maxLen);
    this.#ropeStyle = ropeStyle(config);
  }

  kvCacheBytesPerBlock(blockSize: number): number {
    return this.#backend.cacheLayout({ device: this.device, model: this.spec, blockSize }).bytesPerBlock;
  }

  allocateKvCache(numBlocks: number, blockSize: number): void {
    const d = this.device;
    const layout = this.#backend.cacheLayout({ device: d, model: this.spec, blockSize });
    const caches: KvCache[] = [];
    const impls: MlaAttentionImpl<unknown>[] = [];
    for (let i = 0; i < this.config.numHiddenLayers; i++) {
      caches.push(this.#backend.allocateCache(d, layout, numBlocks));
      impls.push(this.#backend.impl(d, this.spec));
    }
    this.#kv = { layout, caches, builder: this.#backend.metadataBuilder(d, this.spec, layout), impls };
  }

  /** The step's token ids on the device: uploaded, with those the previous step sampled on the device
   * merged in (async scheduling). */
  #tokenIds(batch: ForwardBatch): Tensor {
    const d = this.device;
    const T = batch.tokenIds.length;
    const uploaded = d.upload(batch.tokenIds, [T], 'i32');
    const prev = batch.prevTokenIds;
    if (prev === undefined) return uploaded;
    if (!this.readsDeviceTokenIds || d.mergeTokenIds === undefined) {
      throw new Error('DeepseekModel.forward: device token ids given to a model that cannot merge them');
    }
    const rows = d.upload(prev.rows, [T], 'i32');
    const merged = d.mergeTokenIds(uploaded, prev.ids, rows);
    d.release(uploaded);
    d.release(rows);
    return merged;
  }

  forward(batch: ForwardBatch): Tensor {
    const kv = this.#kv;
    if (kv === undefined) throw new Error('DeepseekModel.forward: allocateKvCache was not called');
    const d = this.device;
    const md = batch.attention;
    if (md.blockSize !== kv.layout.blockSize) {
      throw new Error(
        `DeepseekModel.forward: batch block size ${md.blockSize}, cache block size ${kv.layout.blockSize}`,
      );
    }
    const T = batch.tokenIds.length;
    const metadata = kv.builder.build(md);
    const ids = this.#tokenIds(batch);
    const positions = d.upload(md.positions, [T], 'i32');
    // NOTE: every upload comes before the first layer, so a device replaying this step as a graph can
    // launch it as soon as the inputs are in place (CudaDevice.graph).
    // A decode step wants every row's logits: then the rows go to the final norm as they are (no gathers).
    const allRows = isIdentity(batch.logitsIndices, T);
    const rows = allRows ? undefined : d.upload(batch.logitsIndices, [batch.logitsIndices.length], 'i32');
    const eps = this.config.rmsNormEps;

    let h =
      this.#tp === undefined
        ? d.embedding(this.#embed!, ids)
        : this.#tp.embed(d, batch.tokenIds, ids, batch.logitsIndices.length);
    let residual: Tensor | undefined;
    for (let i = 0; i < this.#layers.length; i++) {
      const layer = this.#layers[i]!;
      // Each norm runs folded into the Linear after it (addRmsNormLinear); the hidden state and the
      // residual stream are full [T, H] on every tensor-parallel rank, so that holds there too.
      const proj = layer.attn.projection;
      const n1 = addRmsNormLinear(d, h, residual, layer.inputNorm, eps, proj.weight, proj.bias);
      if (residual !== undefined) {
        d.release(h);
        d.release(residual);
      }
      const res1 = n1.residual ?? h;
      // Attention at decode sizes is latency-bound: a device may fetch the MLP's first weight (the dense
      // gate/up, or the shared experts' gate/up, which the MoE reads whatever the routing) meanwhile.
      const prefetch = layer.mlp.firstWeight;
      if (prefetch !== undefined) d.prefetch?.(prefetch);
      const a0 = layer.attn.forward(
        d,
        n1.out,
        positions,
        this.#rope,
        this.#ropeStyle,
        kv.impls[i]!,
        kv.caches[i]!,
        metadata,
      );
      const a = this.#reduce(a0);
      const mlp = layer.mlp;
      const n2 = addRmsNormLinear(
        d,
        a,
        res1,
        layer.postNorm,
        eps,
        mlp.inputLinear,
        undefined,
        mlp.needsInput,
      );
      d.release(a);
      d.release(res1);
      residual = n2.residual!;
      h = this.#reduce(
        mlp instanceof MoeBlock ? mlp.forwardFrom(d, n2.out, n2.normed!) : mlp.forwardFrom(d, n2.out),
      );
      if (n2.normed !== undefined) d.release(n2.normed);
    }
    // Only the rows that need logits go through the final norm and lm_head.
    const hSel = rows === undefined ? h : d.embedding(h, rows);
    const rSel = residual === undefined || rows === undefined ? residual : d.embedding(residual, rows);
    if (rows !== undefined) {
      d.release(h);
      if (residual !== undefined) d.release(residual);
    }
    let logits: Tensor;
    if (this.#tp === undefined) {
      const f = addRmsNormLinear(d, hSel, rSel, this.#finalNorm, eps, this.#lmHead!);
      if (f.residual !== undefined) d.release(f.residual);
      logits = f.out;
    } else {
      let normed: Tensor;
      if (rSel === undefined) {
        normed = d.rmsNorm(hSel, this.#finalNorm, eps);
      } else {
        const r = d.addRmsNorm(hSel, rSel, this.#finalNorm, eps);
        d.release(r.residual);
        normed = r.out;
      }
      logits = this.#tp.lmHead(d, normed);
      d.release(normed);
    }
    for (const t of [ids, positions, hSel]) d.release(t);
    if (rows !== undefined) d.release(rows);
    if (rSel !== undefined) d.release(rSel);
    return logits;
  }

  /** Under tensor parallelism, the sum of a row-parallel partial output over the ranks. */
  #reduce(x: Tensor): Tensor {
    if (this.#tp === undefined) return x;
    const y = this.#tp.reduce(this.device, x);
    this.device.release(x);
    return y;
  }
}

/** Whether `indices` is 0, 1, ..., n - 1. */
function isIdentity(indices: Int32Array, n: number): boolean {
  if (indices.length !== n) return false;
  for (let i = 0; i < n; i++) if (indices[i] !== i) return false;
  return true;
}

/** Builds the model from a config and any WeightSource (a checkpoint, or DummyWeightSource). */
export function createDeepseekModelFromWeights(
  config: DeepseekConfig,
  weights: WeightSource,
  options: DeepseekModelOptions,
): DeepseekModel {
  return new DeepseekModel(config, weights, options);
}

/** Loads config.json and the safetensors weights of a Hugging Face model directory. */
export function loadDeepseekModel(dir: string, options: DeepseekModelOptions): DeepseekModel {
  const config = loadDeepseekConfig(dir);
  const checkpoint = new SafetensorsCheckpoint(dir);
  try {
    return new DeepseekModel(config, checkpoint, { ...options, name: options.name ?? basename(dir) });
  } finally {
    checkpoint.close();
  }
}
