// One DeepSeek MLA attention layer on the Device. The model computes the projections, the latent
// normalisation and RoPE; the attention backend caches [c_kv ; k_pe] and attends (absorbed form).
//
//   x [T, H] -> q [T, h, nope + rope]   (q_proj, or q_a_proj -> RMSNorm -> q_b_proj; RoPE on the rope dims)
//            -> kv [T, kvLora + rope]   (kv_a_proj_with_mqa)
//                 c_kv = RMSNorm(kv[:, :kvLora])   k_pe = RoPE(kv[:, kvLora:])
//   backend(q, c_kv, k_pe) -> [T, h, v] -> o_proj -> [T, H]

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

type QueryWeights =
  | { readonly kind: 'direct'; readonly qProj: Tensor }
  | {
      readonly kind: 'lora';
      readonly qA: Tensor;
      readonly qABias: Tensor | undefined;
      readonly qANorm: Tensor;
      readonly qB: Tensor;
    };

export class MlaAttention {
  readonly #c: DeepseekConfig;
  readonly #q: QueryWeights;
  readonly #kvA: Tensor;
  readonly #kvABias: Tensor | undefined;
  readonly #kvANorm: Tensor;
  readonly #oProj: Tensor;
  readonly #oBias: Tensor | undefined;
  /** W_UK / W_UV and the softmax scale, handed to the backend. */
  readonly weights: MlaLayerWeights;

  constructor(config: DeepseekConfig, layer: number, w: WeightReader, scale: number) {
    this.#c = config;
    const p = `model.layers.${layer}.self_attn.`;
    this.#q =
      config.qLoraRank === null
        ? { kind: 'direct', qProj: w.tensor(`${p}q_proj.weight`) }
        : {
            kind: 'lora',
            qA: w.tensor(`${p}q_a_proj.weight`),
            qABias: config.attentionBias ? w.tensor(`${p}q_a_proj.bias`) : undefined,
            qANorm: w.tensor(`${p}q_a_layernorm.weight`),
            qB: w.tensor(`${p}q_b_proj.weight`),
          };
    this.#kvA = w.tensor(`${p}kv_a_proj_with_mqa.weight`);
    this.#kvABias = config.attentionBias ? w.tensor(`${p}kv_a_proj_with_mqa.bias`) : undefined;
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

  /** x [T, H] -> [T, H]. `positions` i32 [T]. */
  forward<M>(
    d: Device,
    x: Tensor,
    positions: Tensor,
    rope: RopeTable,
    style: RopeStyle,
    impl: MlaAttentionImpl<M>,
    cache: KvCache,
    metadata: M,
  ): Tensor {
    const c = this.#c;
    const T = x.shape[0] ?? 0;
    const heads = c.numAttentionHeads;
    const L = c.kvLoraRank;
    const R = c.qkRopeHeadDim;

    let qFlat: Tensor;
    if (this.#q.kind === 'direct') qFlat = d.linear(x, this.#q.qProj);
    else {
      const qa = d.linear(x, this.#q.qA, this.#q.qABias);
      const qaNorm = d.rmsNorm(qa, this.#q.qANorm, LATENT_NORM_EPS);
      d.release(qa);
      qFlat = d.linear(qaNorm, this.#q.qB);
      d.release(qaNorm);
    }
    // [T, h, nope + rope]; RoPE rotates the last `rope` dims of each head.
    const q = d.rope(d.reshape(qFlat, [T, heads, c.qkNopeHeadDim + R]), positions, rope, style);
    d.release(qFlat);

    const kv = d.linear(x, this.#kvA, this.#kvABias); // [T, L + R]
    const cKvRaw = d.sliceLast(kv, 0, L);
    const cKv = d.rmsNorm(cKvRaw, this.#kvANorm, LATENT_NORM_EPS); // [T, L]
    const kPeRaw = d.sliceLast(kv, L, R);
    const kPeRot = d.rope(d.reshape(kPeRaw, [T, 1, R]), positions, rope, style);
    const kPe = d.reshape(kPeRot, [T, R]);
    d.release(kv);
    d.release(cKvRaw);
    d.release(kPeRaw);

    const o = impl.forward({ q, cKv, kPe }, cache, this.weights, metadata); // [T, h, v]
    d.release(q);
    d.release(cKv);
    d.release(kPeRot);
    const out = d.linear(d.reshape(o, [T, heads * c.vHeadDim]), this.#oProj, this.#oBias);
    d.release(o);
    return out;
  }
}
