// Ready-made configs for models that need no checkpoint directory: dummy-weight servers, benchmarks
// and tests. Each is a config.json object in the Hub spelling, parsed by core like any other.

import { type DeepseekConfig, parseDeepseekConfig } from '@flashserve/core';

/** ~9.7M parameters, DeepSeek-V3-shaped: q_lora, 8 heads, 128 + 32 latent, 1 dense + 7 MoE layers
 * (8 routed experts, top-2, 4 groups, 1 shared), YaRN off, vocab 4096. Decodes at tens of tokens/s on
 * the CPU device. */
export const TINY_DEEPSEEK_V3_CONFIG = {
  model_type: 'deepseek_v3',
  architectures: ['DeepseekV3ForCausalLM'],
  vocab_size: 4096,
  hidden_size: 256,
  intermediate_size: 1024,
  moe_intermediate_size: 96,
  num_hidden_layers: 8,
  num_attention_heads: 8,
  num_key_value_heads: 8,
  q_lora_rank: 128,
  kv_lora_rank: 128,
  qk_nope_head_dim: 32,
  qk_rope_head_dim: 32,
  v_head_dim: 32,
  first_k_dense_replace: 1,
  n_routed_experts: 8,
  n_shared_experts: 1,
  num_experts_per_tok: 2,
  n_group: 4,
  topk_group: 2,
  norm_topk_prob: true,
  routed_scaling_factor: 2.5,
  rope_interleave: true,
  max_position_embeddings: 4096,
  rope_theta: 10000,
  rope_scaling: null,
  rms_norm_eps: 1e-6,
  bos_token_id: 0,
  eos_token_id: 1,
} as const;

export function tinyDeepseekConfig(): DeepseekConfig {
  return parseDeepseekConfig(TINY_DEEPSEEK_V3_CONFIG, 'TINY_DEEPSEEK_V3_CONFIG');
}

/** DeepSeek-V2-Lite's config.json (deepseek-ai/DeepSeek-V2-Lite, 16B, 2.4B active), the fields the
 * model reads: the shapes of the GPU benchmarks (with dummy weights). */
export const DEEPSEEK_V2_LITE_CONFIG = {
  architectures: ['DeepseekV2ForCausalLM'],
  model_type: 'deepseek_v2',
  vocab_size: 102400,
  hidden_size: 2048,
  intermediate_size: 10944,
  moe_intermediate_size: 1408,
  num_hidden_layers: 27,
  num_attention_heads: 16,
  num_key_value_heads: 16,
  n_shared_experts: 2,
  n_routed_experts: 64,
  num_experts_per_tok: 6,
  routed_scaling_factor: 1.0,
  topk_method: 'greedy',
  n_group: 1,
  topk_group: 1,
  norm_topk_prob: false,
  scoring_func: 'softmax',
  first_k_dense_replace: 1,
  moe_layer_freq: 1,
  kv_lora_rank: 512,
  q_lora_rank: null,
  qk_nope_head_dim: 128,
  qk_rope_head_dim: 64,
  v_head_dim: 128,
  hidden_act: 'silu',
  max_position_embeddings: 163840,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  rope_scaling: {
    type: 'yarn',
    factor: 40,
    original_max_position_embeddings: 4096,
    beta_fast: 32,
    beta_slow: 1,
    // biome-ignore lint/suspicious/noApproximativeNumericConstant: the checkpoint's own value
    mscale: 0.707,
    // biome-ignore lint/suspicious/noApproximativeNumericConstant: the checkpoint's own value
    mscale_all_dim: 0.707,
  },
  attention_bias: false,
  tie_word_embeddings: false,
  bos_token_id: 100000,
  eos_token_id: 100001,
};
