// config.json of a DeepSeek-V2/V3 checkpoint -> one typed, validated config.
//
// Two spellings exist for RoPE and both are accepted:
//   - Hub checkpoints: top-level `rope_theta` plus `rope_scaling: {type|rope_type, factor, ...}` or null;
//   - transformers >= 5: `rope_parameters: {rope_type, rope_theta, factor, ...}`.
// Both normalise to `rope` below. Defaults are transformers 5.17's DeepseekV2Config/DeepseekV3Config
// defaults, so a config that leaves a field out means what it means to transformers.

import { join } from 'node:path';
import { loadConfigUnsupported } from '../errors.js';
import { JsonFields, type JsonObject, readJsonObject } from './json-file.js';

export type DeepseekModelType = 'deepseek_v2' | 'deepseek_v3';

/** RoPE settings in one spelling. `yarn` is null for plain RoPE. */
export interface RopeConfig {
  readonly theta: number;
  readonly yarn: YarnConfig | null;
}

export interface YarnConfig {
  /** `factor` exactly as configured (the softmax mscale uses this one). */
  readonly factor: number;
  readonly originalMaxPositionEmbeddings: number | undefined;
  readonly betaFast: number;
  readonly betaSlow: number;
  readonly mscale: number | undefined;
  readonly mscaleAllDim: number | undefined;
  /** Explicit cos/sin scale, overriding the one derived from mscale. */
  readonly attentionFactor: number | undefined;
  /** Round the correction range to whole dims (transformers' default true). */
  readonly truncate: boolean;
}

export interface MoeConfig {
  readonly nRoutedExperts: number;
  readonly nSharedExperts: number;
  readonly numExpertsPerTok: number;
  readonly moeIntermediateSize: number;
  /** Layers [0, firstKDenseReplace) use the dense MLP; the rest are MoE. */
  readonly firstKDenseReplace: number;
  readonly nGroup: number;
  readonly topkGroup: number;
  /** V2 only: 'greedy' or 'group_limited_greedy'. V3 always routes group-limited on sigmoid scores. */
  readonly topkMethod: string;
  readonly normTopkProb: boolean;
  readonly routedScalingFactor: number;
}

export interface DeepseekConfig {
  readonly modelType: DeepseekModelType;
  readonly vocabSize: number;
  readonly hiddenSize: number;
  /** Dense MLP width (layers before firstKDenseReplace, or every layer without MoE). */
  readonly intermediateSize: number;
  readonly numHiddenLayers: number;
  readonly numAttentionHeads: number;
  /** null: queries come from one q_proj; otherwise q_a_proj -> RMSNorm -> q_b_proj. */
  readonly qLoraRank: number | null;
  readonly kvLoraRank: number;
  readonly qkNopeHeadDim: number;
  readonly qkRopeHeadDim: number;
  readonly vHeadDim: number;
  readonly rmsNormEps: number;
  readonly maxPositionEmbeddings: number;
  readonly rope: RopeConfig;
  /** Pair RoPE dims (2i, 2i+1) rather than (i, i + d/2). V2 always does; V3 per `rope_interleave`. */
  readonly ropeInterleave: boolean;
  readonly attentionBias: boolean;
  readonly mlpBias: boolean;
  readonly tieWordEmbeddings: boolean;
  /** null for a dense model. */
  readonly moe: MoeConfig | null;
  readonly bosTokenId: number | null;
  readonly eosTokenIds: readonly number[];
}

function parseRope(f: JsonFields, file: string): RopeConfig {
  // transformers 5 spelling first; fall back to the Hub's.
  const params = f.object('rope_parameters');
  let theta: number;
  let scaling: JsonFields | undefined;
  let ropeType: string;
  if (params !== undefined) {
    theta = params.numOr('rope_theta', f.numOr('rope_theta', 10000));
    scaling = params;
    ropeType = params.str('rope_type', params.str('type', 'default'));
  } else {
    theta = f.numOr('rope_theta', 10000);
    scaling = f.object('rope_scaling');
    ropeType = scaling === undefined ? 'default' : scaling.str('rope_type', scaling.str('type', 'default'));
  }
  if (ropeType === 'default' || scaling === undefined) return { theta, yarn: null };
  if (ropeType !== 'yarn') {
    throw loadConfigUnsupported(file, `RoPE type "${ropeType}" (supported: default, yarn)`);
  }
  const factor = scaling.num('factor');
  return {
    theta,
    yarn: {
      factor,
      originalMaxPositionEmbeddings: scaling.has('original_max_position_embeddings')
        ? scaling.int('original_max_position_embeddings')
        : undefined,
      // transformers: `get("beta_fast") or 32`, so 0 also means the default.
      betaFast: scaling.numOr('beta_fast', 32) || 32,
      betaSlow: scaling.numOr('beta_slow', 1) || 1,
      mscale: scaling.numOrUndefined('mscale'),
      mscaleAllDim: scaling.numOrUndefined('mscale_all_dim'),
      attentionFactor: scaling.numOrUndefined('attention_factor'),
      truncate: scaling.bool('truncate', true),
    },
  };
}

/** Validates and normalises a parsed config.json; `file` is used in error messages. */
export function parseDeepseekConfig(raw: JsonObject, file: string): DeepseekConfig {
  const f = new JsonFields(raw, file);
  const modelType = f.str('model_type', '');
  if (modelType !== 'deepseek_v2' && modelType !== 'deepseek_v3') {
    throw loadConfigUnsupported(file, `model_type "${modelType}" (supported: deepseek_v2, deepseek_v3)`);
  }
  const v3 = modelType === 'deepseek_v3';
  const quant = f.object('quantization_config');
  if (quant !== undefined) {
    // DeepSeek-V3/R1 ship FP8 block-quantized weights; only unquantized (bf16/f16/f32) checkpoints load.
    throw loadConfigUnsupported(
      file,
      `quantized checkpoint (quant_method "${quant.str('quant_method', 'unknown')}"); convert it to bf16 first`,
    );
  }
  const hiddenAct = f.str('hidden_act', 'silu');
  if (hiddenAct !== 'silu') throw loadConfigUnsupported(file, `hidden_act "${hiddenAct}" (supported: silu)`);

  const numHiddenLayers = f.int('num_hidden_layers');
  const numAttentionHeads = f.int('num_attention_heads');
  const nRouted = f.intOrNull('n_routed_experts') ?? (v3 ? 256 : 64);
  const firstKDenseReplace = f.intOr('first_k_dense_replace', v3 ? 3 : 0);
  let moe: MoeConfig | null = null;
  if (nRouted > 0 && firstKDenseReplace < numHiddenLayers) {
    const nGroup = f.intOrNull('n_group') ?? (v3 ? 8 : 1);
    const topkGroup = f.intOrNull('topk_group') ?? (v3 ? 4 : 1);
    const topkMethod = v3 ? 'noaux_tc' : f.str('topk_method', 'greedy');
    const numExpertsPerTok = f.intOrNull('num_experts_per_tok') ?? (v3 ? 8 : 0);
    if (!v3 && topkMethod !== 'greedy' && topkMethod !== 'group_limited_greedy') {
      throw loadConfigUnsupported(
        file,
        `topk_method "${topkMethod}" (supported: greedy, group_limited_greedy)`,
      );
    }
    if (nRouted % nGroup !== 0)
      throw loadConfigUnsupported(file, `n_routed_experts ${nRouted} is not a multiple of n_group ${nGroup}`);
    if (topkGroup > nGroup) throw loadConfigUnsupported(file, `topk_group ${topkGroup} > n_group ${nGroup}`);
    if (numExpertsPerTok < 1 || numExpertsPerTok > nRouted) {
      throw loadConfigUnsupported(file, `num_experts_per_tok ${numExpertsPerTok} must be in [1, ${nRouted}]`);
    }
    moe = {
      nRoutedExperts: nRouted,
      nSharedExperts: f.intOrNull('n_shared_experts') ?? (v3 ? 1 : 2),
      numExpertsPerTok,
      moeIntermediateSize: f.intOr('moe_intermediate_size', v3 ? 2048 : 1407),
      firstKDenseReplace,
      nGroup,
      topkGroup,
      topkMethod,
      normTopkProb: f.bool('norm_topk_prob', v3),
      routedScalingFactor: f.numOr('routed_scaling_factor', v3 ? 2.5 : 1.0),
    };
  }
  const cfg: DeepseekConfig = {
    modelType,
    vocabSize: f.int('vocab_size'),
    hiddenSize: f.int('hidden_size'),
    intermediateSize: f.intOr('intermediate_size', v3 ? 18432 : 11008),
    numHiddenLayers,
    numAttentionHeads,
    qLoraRank: f.has('q_lora_rank') ? f.int('q_lora_rank') : raw['q_lora_rank'] === null ? null : 1536,
    kvLoraRank: f.intOr('kv_lora_rank', 512),
    qkNopeHeadDim: f.intOr('qk_nope_head_dim', 128),
    qkRopeHeadDim: f.intOr('qk_rope_head_dim', 64),
    vHeadDim: f.intOr('v_head_dim', 128),
    rmsNormEps: f.numOr('rms_norm_eps', 1e-6),
    maxPositionEmbeddings: f.intOr('max_position_embeddings', v3 ? 4096 : 2048),
    rope: parseRope(f, file),
    ropeInterleave: v3 ? f.bool('rope_interleave', true) : true,
    attentionBias: f.bool('attention_bias', false),
    mlpBias: f.bool('mlp_bias', false),
    tieWordEmbeddings: f.bool('tie_word_embeddings', false),
    moe,
    bosTokenId: f.intOrNull('bos_token_id'),
    eosTokenIds: f.intList('eos_token_id'),
  };
  for (const [k, v] of [
    ['vocab_size', cfg.vocabSize],
    ['hidden_size', cfg.hiddenSize],
    ['num_attention_heads', cfg.numAttentionHeads],
    ['kv_lora_rank', cfg.kvLoraRank],
    ['v_head_dim', cfg.vHeadDim],
    ['num_hidden_layers', cfg.numHiddenLayers],
  ] as const) {
    if (v < 1) throw loadConfigUnsupported(file, `${k} must be positive (got ${v})`);
  }
  if (cfg.qkRopeHeadDim < 2 || cfg.qkRopeHeadDim % 2 !== 0) {
    throw loadConfigUnsupported(
      file,
      `qk_rope_head_dim must be a positive even number (got ${cfg.qkRopeHeadDim})`,
    );
  }
  if (cfg.mlpBias) throw loadConfigUnsupported(file, 'mlp_bias true is not supported');
  return cfg;
}

/** Reads and normalises `<dir>/config.json`. */
export function loadDeepseekConfig(dir: string, fileName = 'config.json'): DeepseekConfig {
  const file = join(dir, fileName);
  return parseDeepseekConfig(readJsonObject(file, 'it describes the model architecture'), file);
}
