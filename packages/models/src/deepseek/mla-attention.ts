// One DeepSeek MLA attention layer on the Device. The model computes the projections, the latent
// normalisation and RoPE; the attention backend caches [c_kv ; k_pe] and attends (absorbed form).
//
//   x [T, H] -> [q | kv] = x @ [W_q ; W_kv_a]^T        (one Linear: both read x; the model runs it,
//                                                       folding the input norm into it where it can)
//     q  [T, h, nope + rope]   (q_proj's rows, or q_a_proj's -> RMSNorm -> q_b_proj)
//     kv [T, kvLora + rope]    (kv_a_proj_with_mqa's rows)
//   mlaInputs: RoPE on q's rope dims, c_kv = RMSNorm(kv[:, :kvLora]), k_pe = RoPE(kv[:, kvLora:])
//   backend(q, c_kv, k_pe) -> [T, h, v] -> o_proj -> [T, H]
//
// NOTE: the two projections of x are stacked into one weight at load time: at a decode step a Linear
// is bound by its launch and the first load's latency as much as by its bytes, so one launch over
// both beats two. At one token the slices of its output are views (no copies).

import type {
  DeepseekConfig,
  Device,
  KvCache,
  MlaAttentionImpl,
  MlaLayerWeights,
  RopeStyle,
  RopeTable,
  Tensor,
} from '@flashserve/core';
import type { WeightReader } from './weights.js';

/** transformers builds q_a_layernorm and kv_a_layernorm with the RMSNorm default eps, not rms_norm_eps. */
const LATENT_NORM_EPS = 1e-6;

/** How q continues from its rows of the joint projection: as is, or q_a -> RMSNorm -> q_b. */
type QueryWeights =
  | { readonly kind: 'direct' }
  | { readonly kind: 'lora'; readonly qANorm: Tensor; readonly qB: Tensor };

export class MlaAttention {
  readonly #c: DeepseekConfig;
  readonly #q: QueryWeights;
  /** [qRows + kvLora + rope, H]: q_proj (or q_a_proj) rows, then kv_a_proj_with_mqa rows. */
  readonly #qKvA: Tensor;
  readonly #qKvABias: Tensor | undefined;
  /** Rows of #qKvA that belong to the query: h * (nope + rope), or q_lora_rank. */
  readonly #qRows: number;
  readonly #kvANorm: Tensor;
  readonly #oProj: Tensor;
  readonly #oBias: Tensor | undefined;
  /** W_UK / W_UV and the softmax scale, handed to the backend. */
  readonly weights: MlaLayerWeights;

  constructor(config: DeepseekConfig, layer: number, w: WeightReader, scale: number) {
    this.#c = config;
    const p = `model.layers.${layer}.self_attn.`;
    const H = config.hiddenSize;
    const kvRows = config.kvLoraRank + config.qkRopeHeadDim;
    const qName = config.qLoraRank === null ? `${p}q_proj` : `${p}q_a_proj`;
    this.#qRows =
      config.qLoraRank ?? config.numAttentionHeads * (config.qkNopeHeadDim + config.qkRopeHeadDim);
    this.#q =
      config.qLoraRank === null
        ? { kind: 'direct' }
        : { kind: 'lora', qANorm: w.tensor(`${p}q_a_layernorm.weight`), qB: w.tensor(`${p}q_b_proj.weight`) };
    this.#qKvA = w.concatRows(
      [`${qName}.weight`, `${p}kv_a_proj_with_mqa.weight`],
      [this.#qRows + kvRows, H],
    );
    // transformers' q_proj has no bias; q_a_proj and kv_a_proj_with_mqa have one under attention_bias.
    this.#qKvABias = config.attentionBias
      ? w.concatVectors([
          config.qLoraRank === null ? this.#qRows : `${qName}.bias`,
          `${p}kv_a_proj_with_mqa.bias`,
        ])
      : undefined;
    this.#kvANorm = w.tensor(`${p}kv_a_layernorm.weight`);
    this.#oProj = w.tensor(`${p}o_proj.weight`);
    this.#oBias = config.attentionBias ? w.tensor(`${p}o_proj.bias`) : undefined;
    const { wUk, wUv } = w.splitKvB(
      `${p}kv_b_proj.weight`,
      config.numAttentionHeads,
      config.qkNopeHeadDim,
      config.vHeadDim,
      config.kvLoraRank,
    );
    this.weights = { wUk, wUv, softmaxScale: scale };
  }

  /** The joint [q | kv_a] projection's weight and bias: the model computes it (with the input norm
   * folded in where the device can) and hands the result to `forward`. */
  get projection(): { readonly weight: Tensor; readonly bias: Tensor | undefined } {
    return { weight: this.#qKvA, bias: this.#qKvABias };
  }

  /** qkv [T, qRows + L + R] (the `projection` of the normed input; released here) -> [T, H].
   * `positions` i32 [T]. */
  forward<M>(
    d: Device,
    qkv: Tensor,
    positions: Tensor,
    rope: RopeTable,
    style: RopeStyle,
    impl: MlaAttentionImpl<M>,
    cache: KvCache,
    metadata: M,
  ): Tensor {
    const c = this.#c;
    const T = qkv.shape[0] ?? 0;
    const heads = c.numAttentionHeads;
    const L = c.kvLoraRank;
    const R = c.qkRopeHeadDim;

    const qRaw = d.sliceLast(qkv, 0, this.#qRows);
    const kv = d.sliceLast(qkv, this.#qRows, L + R);
    d.release(qkv);
    let qFlat = qRaw;
    if (this.#q.kind === 'lora') {
      const qaNorm = d.rmsNorm(qRaw, this.#q.qANorm, LATENT_NORM_EPS);
      d.release(qRaw);
      qFlat = d.linear(qaNorm, this.#q.qB);
      d.release(qaNorm);
    }
    // q [T, h, nope + rope] with RoPE on the last `rope` dims of each head; c_kv [T, L]; k_pe [T, R].
    const inputs = d.mlaInputs(
      d.reshape(qFlat, [T, heads, c.qkNopeHeadDim + R]),
      kv,
      positions,
      rope,
      style,
      this.#kvANorm,
      LATENT_NORM_EPS,
    );
    d.release(qFlat);
    d.release(kv);

    const o = impl.forward(inputs, cache, this.weights, metadata); // [T, h, v]
    d.release(inputs.q);
    d.release(inputs.cKv);
    d.release(inputs.kPe);
    const out = d.linear(d.reshape(o, [T, heads * c.vHeadDim]), this.#oProj, this.#oBias);
    d.release(o);
    return out;
  }
}
