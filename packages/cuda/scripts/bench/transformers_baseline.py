"""transformers' `generate` on DeepSeek-V2-Lite shapes with random weights: the baseline that issue 8's
"10x at batch 32" is measured against, run on the same GPU in the same call as our own figures.

For each batch size: a 1024-token random prompt per sequence, then `generate` twice (1 new token and
1 + STEPS new tokens, greedy, min_new_tokens forcing the length); decode step = the difference over
STEPS. Weights are transformers' own random initialisation, in bf16, made on the GPU (no checkpoint).

Usage: python3 transformers_baseline.py [--batch 1,32] [--steps 16] [--ctx 1024]
"""

import argparse
import json
import time

import torch
import transformers

V2_LITE = dict(
    vocab_size=102400, hidden_size=2048, intermediate_size=10944, moe_intermediate_size=1408,
    num_hidden_layers=27, num_attention_heads=16, num_key_value_heads=16, n_shared_experts=2,
    n_routed_experts=64, num_experts_per_tok=6, routed_scaling_factor=1.0, topk_method="greedy",
    n_group=1, topk_group=1, norm_topk_prob=False, first_k_dense_replace=1, kv_lora_rank=512,
    q_lora_rank=None, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
    max_position_embeddings=163840, rms_norm_eps=1e-6, bos_token_id=0, eos_token_id=1,
)
ROPE = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0, "original_max_position_embeddings": 4096,
        "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707}


def build_model():
    try:
        config = transformers.DeepseekV2Config(rope_parameters=ROPE, **V2_LITE)
    except TypeError:
        rope = dict(ROPE)
        theta = rope.pop("rope_theta")
        config = transformers.DeepseekV2Config(rope_theta=theta, rope_scaling=rope, **V2_LITE)
    # Built straight on the GPU in bf16: transformers' own initialisation draws the random weights.
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = transformers.DeepseekV2ForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    model.eval()
    return model


def timed_generate(model, ids, new_tokens):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                   min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", default="1,32")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--ctx", type=int, default=1024)
    args = ap.parse_args()
    print("transformers", transformers.__version__, "torch", torch.__version__, torch.cuda.get_device_name())
    t0 = time.perf_counter()
    model = build_model()
    n = sum(p.numel() for p in model.parameters())
    print(f"built {n / 1e9:.2f}B params in {time.perf_counter() - t0:.1f}s")
    for b in [int(x) for x in args.batch.split(",")]:
        ids = torch.randint(2, 102400, (b, args.ctx), device="cuda")
        timed_generate(model, ids[:, :64], 2)  # warm-up
        prefill = timed_generate(model, ids, 1)
        full = timed_generate(model, ids, 1 + args.steps)
        step = (full - prefill) / args.steps
        print(json.dumps({"batch": b, "ctx": args.ctx, "prefill_s": prefill, "decode_step_ms": step * 1e3,
                          "decode_tok_s": b / step}))
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
