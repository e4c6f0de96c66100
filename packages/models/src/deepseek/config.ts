// What the DeepSeek model derives from the loaded config (@flashserve/core's DeepseekConfig): the
// attention spec a backend sees, the softmax scale, each layer's MLP kind and the router parameters.
// Formulas follow transformers 5.17's modeling_deepseek_v2.py / modeling_deepseek_v3.py.

import type { DeepseekConfig, MlaModelSpec, MoeRouteParams, RopeStyle, Tensor } from '@flashserve/core';

export function mlaSpec(config: DeepseekConfig): MlaModelSpec {
  return {
    numLayers: config.numHiddenLayers,
    numHeads: config.numAttentionHeads,
    kvLoraRank: config.kvLoraRank,
    qkNopeHeadDim: config.qkNopeHeadDim,
    qkRopeHeadDim: config.qkRopeHeadDim,
    vHeadDim: config.vHeadDim,
  };
}

/** YaRN's magnitude correction: 0.1 * m * ln(s) + 1 for s > 1, else 1. */
export function yarnMscale(scale: number, m: number): number {
  return scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1;
}

/** 1/sqrt(qk_nope + qk_rope), times mscale(factor, mscale_all_dim)^2 under YaRN when mscale_all_dim is set.
 * NOTE: uses the configured `factor`, not the max/original position ratio the RoPE tables use. */
export function softmaxScale(config: DeepseekConfig): number {
  let scale = (config.qkNopeHeadDim + config.qkRopeHeadDim) ** -0.5;
  const yarn = config.rope.yarn;
  if (yarn?.mscaleAllDim) {
    const m = yarnMscale(yarn.factor, yarn.mscaleAllDim);
    scale *= m * m;
  }
  return scale;
}

/** V3 keeps DeepSeek's interleaved pairs when rope_interleave is set; V2 always pairs adjacent dims. */
export function ropeStyle(config: DeepseekConfig): RopeStyle {
  return config.ropeInterleave ? 'interleave' : 'half';
}

/** Layer i runs MoE when the model has experts and i >= first_k_dense_replace (transformers ignores
 * moe_layer_freq, and so do we). */
export function isMoeLayer(config: DeepseekConfig, layer: number): boolean {
  return config.moe !== null && layer >= config.moe.firstKDenseReplace;
}

/** Router parameters of every MoE layer; `correctionBias` is the layer's own (V3). */
export function routeParams(config: DeepseekConfig, correctionBias: Tensor | undefined): MoeRouteParams {
  const moe = config.moe;
  if (moe === null) throw new Error('routeParams: the model has no MoE layers');
  if (config.modelType === 'deepseek_v2') {
    const grouped = moe.topkMethod === 'group_limited_greedy';
    return {
      kind: 'v2-softmax',
      topK: moe.numExpertsPerTok,
      nGroup: grouped ? moe.nGroup : 1,
      topkGroup: grouped ? moe.topkGroup : 1,
      // NOTE: transformers' V2 router never renormalises, whatever norm_topk_prob says.
      normTopkProb: false,
      routedScalingFactor: moe.routedScalingFactor,
    };
  }
  return {
    kind: 'v3-sigmoid',
    topK: moe.numExpertsPerTok,
    nGroup: moe.nGroup,
    topkGroup: moe.topkGroup,
    normTopkProb: moe.normTopkProb,
    routedScalingFactor: moe.routedScalingFactor,
    ...(correctionBias === undefined ? {} : { correctionBias }),
  };
}
