// The tensors of a DeepSeek-V3 checkpoint in Hugging Face naming, with shapes [out, in] as
// transformers stores Linear weights, and how each is initialised: norms at one, the router's
// correction bias small, the embedding N(0, 1) and every matrix N(0, 1/fan_in).
//
// NOTE: not transformers' N(0, 0.02) init: at these widths that makes the LM head's logits nearly
// uniform over 129k tokens. Fan-in scaling keeps activations O(1) through the layers, so the random
// model prefers some tokens over others the way a trained one does.

import type { DeepseekV3Config } from './config.js';

export interface TensorSpec {
  readonly name: string;
  readonly shape: readonly [number] | readonly [number, number];
  /** normal: N(0, std^2); ones; small: N(0, 0.01^2). */
  readonly init: 'normal' | 'ones' | 'small';
  readonly std: number;
}

export function deepseekV3TensorSpecs(c: DeepseekV3Config): TensorSpec[] {
  const specs: TensorSpec[] = [];
  const linear = (name: string, out: number, inp: number, std = 1 / Math.sqrt(inp)) =>
    specs.push({ name, shape: [out, inp], init: 'normal', std });
  const norm = (name: string, dim: number) => specs.push({ name, shape: [dim], init: 'ones', std: 0 });
  const h = c.hidden_size;
  const qkHead = c.qk_nope_head_dim + c.qk_rope_head_dim;
  const heads = c.num_attention_heads;
  linear('model.embed_tokens.weight', c.vocab_size, h, 1);
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    norm(`${p}.input_layernorm.weight`, h);
    norm(`${p}.post_attention_layernorm.weight`, h);
    if (c.q_lora_rank === null) {
      linear(`${p}.self_attn.q_proj.weight`, heads * qkHead, h);
    } else {
      linear(`${p}.self_attn.q_a_proj.weight`, c.q_lora_rank, h);
      norm(`${p}.self_attn.q_a_layernorm.weight`, c.q_lora_rank);
      linear(`${p}.self_attn.q_b_proj.weight`, heads * qkHead, c.q_lora_rank);
    }
    linear(`${p}.self_attn.kv_a_proj_with_mqa.weight`, c.kv_lora_rank + c.qk_rope_head_dim, h);
    norm(`${p}.self_attn.kv_a_layernorm.weight`, c.kv_lora_rank);
    linear(`${p}.self_attn.kv_b_proj.weight`, heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank);
    linear(`${p}.self_attn.o_proj.weight`, h, heads * c.v_head_dim);
    const mlp = (prefix: string, inter: number) => {
      linear(`${prefix}.gate_proj.weight`, inter, h);
      linear(`${prefix}.up_proj.weight`, inter, h);
      linear(`${prefix}.down_proj.weight`, h, inter);
    };
    if (l < c.first_k_dense_replace) {
      mlp(`${p}.mlp`, c.intermediate_size);
      continue;
    }
    linear(`${p}.mlp.gate.weight`, c.n_routed_experts, h);
    specs.push({
      name: `${p}.mlp.gate.e_score_correction_bias`,
      shape: [c.n_routed_experts],
      init: 'small',
      std: 0.01,
    });
    for (let e = 0; e < c.n_routed_experts; e++) mlp(`${p}.mlp.experts.${e}`, c.moe_intermediate_size);
    if (c.n_shared_experts > 0) mlp(`${p}.mlp.shared_experts`, c.moe_intermediate_size * c.n_shared_experts);
  }
  norm('model.norm.weight', h);
  if (!c.tie_word_embeddings) linear('lm_head.weight', c.vocab_size, h);
  return specs;
}

export function numElements(spec: TensorSpec): number {
  return spec.shape.reduce((a, b) => a * b, 1);
}
