// The embedded default model: DeepSeek-V3's architecture at a size a CPU decodes quickly. Everything
// a real V3 checkpoint has is here (MLA with a query LoRA, a dense first layer, MoE with a shared
// expert, the sigmoid router with group-limited top-k and its correction bias, YaRN RoPE) and the
// vocabulary is the real tokenizer's 129,280 ids; only the widths are small. About 16.7M parameters,
// nearly all in the embedding and the LM head.
//
// NOTE: the keys follow the published DeepSeek-V3 config.json (rope_scaling with "type": "yarn",
// rope_theta at the top level), so the loader sees the spelling real checkpoints use.

export const EMBEDDED_MODEL_NAME = 'flashserve-tiny-deepseek-v3';

/** Bump when the config or the weight generator changes, so cached copies are rebuilt. */
export const EMBEDDED_MODEL_REVISION = 2;

export const EMBEDDED_CONFIG = {
  architectures: ['DeepseekV3ForCausalLM'],
  model_type: 'deepseek_v3',
  vocab_size: 129280,
  hidden_size: 64,
  intermediate_size: 128,
  moe_intermediate_size: 32,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 4,
  q_lora_rank: 32,
  kv_lora_rank: 32,
  qk_nope_head_dim: 16,
  qk_rope_head_dim: 16,
  v_head_dim: 16,
  first_k_dense_replace: 1,
  moe_layer_freq: 1,
  n_routed_experts: 8,
  n_shared_experts: 1,
  num_experts_per_tok: 2,
  n_group: 2,
  topk_group: 1,
  topk_method: 'noaux_tc',
  scoring_func: 'sigmoid',
  norm_topk_prob: true,
  routed_scaling_factor: 2.5,
  num_nextn_predict_layers: 0,
  hidden_act: 'silu',
  max_position_embeddings: 4096,
  rope_theta: 10000,
  rope_scaling: {
    type: 'yarn',
    factor: 4,
    original_max_position_embeddings: 1024,
    beta_fast: 32,
    beta_slow: 1,
    mscale: 1.0,
    mscale_all_dim: 1.0,
  },
  rms_norm_eps: 1e-6,
  attention_bias: false,
  attention_dropout: 0,
  initializer_range: 0.02,
  tie_word_embeddings: false,
  bos_token_id: 0,
  eos_token_id: 1,
  torch_dtype: 'bfloat16',
  use_cache: true,
} as const;

export type DeepseekV3Config = {
  readonly vocab_size: number;
  readonly hidden_size: number;
  readonly intermediate_size: number;
  readonly moe_intermediate_size: number;
  readonly num_hidden_layers: number;
  readonly num_attention_heads: number;
  readonly q_lora_rank: number | null;
  readonly kv_lora_rank: number;
  readonly qk_nope_head_dim: number;
  readonly qk_rope_head_dim: number;
  readonly v_head_dim: number;
  readonly first_k_dense_replace: number;
  readonly n_routed_experts: number;
  readonly n_shared_experts: number;
  readonly tie_word_embeddings: boolean;
};

export const EMBEDDED_GENERATION_CONFIG = {
  bos_token_id: 0,
  eos_token_id: 1,
  do_sample: true,
  temperature: 0.6,
  top_p: 0.95,
};
