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
