#!/usr/bin/env python3
"""Builds the DeepSeek-V2/V3 test fixtures with Hugging Face transformers' own model classes.

Each fixture is a tiny random checkpoint saved with `save_pretrained` plus `expected.json`: for fixed
prompts, the last-position logits of transformers' forward pass and a 12-token greedy continuation
(every step recomputed from scratch, no KV cache, so the reference is as plain as it gets), the RoPE
inverse frequencies and attention scaling transformers computed, and the tensor names it saved.

Runs on CPU in float32 with eager attention, so the numbers do not depend on GPU kernels or TF32.
Weights of bf16/f16 fixtures are rounded to that type before the reference is computed, so a loader
that widens them to float32 sees exactly the weights the reference used.

Usage: python3 gen_fixtures.py --out DIR [--only NAME ...]
Needs torch and transformers (>= 5); the tokenizer fixture also needs `tokenizers`.
"""

import argparse
import json
import math
import os
import sys
import traceback

import torch

GREEDY_STEPS = 12


def prompt_ids(seed, length, vocab):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab, (length,), generator=g).tolist()


# Shapes are chosen to cover the model's branches; every checkpoint stays well under 2 MB except the
# GPU-shaped one (kv_lora_rank 512, qk_rope_head_dim 64: the real DeepSeek latent layout), kept ~3 MB.
FIXTURES = [
    {
        # V2-Lite-like: no q_lora_rank, greedy softmax router, shared experts, plain RoPE.
        "name": "v2-nolora-greedy",
        "arch": "v2",
        "dtype": "f32",
        "spelling": "hub",
        "config": dict(
            vocab_size=256, hidden_size=64, intermediate_size=96, moe_intermediate_size=32,
            num_hidden_layers=2, num_attention_heads=4, q_lora_rank=None, kv_lora_rank=32,
            qk_nope_head_dim=16, qk_rope_head_dim=16, v_head_dim=16, first_k_dense_replace=1,
            n_routed_experts=8, n_shared_experts=2, num_experts_per_tok=2, topk_method="greedy",
            n_group=1, topk_group=1, routed_scaling_factor=1.0, norm_topk_prob=False,
            max_position_embeddings=256, rms_norm_eps=1e-6,
        ),
        "rope": {"rope_type": "default", "rope_theta": 10000.0},
    },
    {
        # V2 with q_lora_rank, YaRN with mscale (V2 style), bf16 storage.
        "name": "v2-lora-yarn-bf16",
        "arch": "v2",
        "dtype": "bf16",
        "spelling": "rope_parameters",
        "config": dict(
            vocab_size=256, hidden_size=64, intermediate_size=96, moe_intermediate_size=24,
            num_hidden_layers=3, num_attention_heads=2, q_lora_rank=48, kv_lora_rank=24,
            qk_nope_head_dim=24, qk_rope_head_dim=8, v_head_dim=16, first_k_dense_replace=1,
            n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=3,
            topk_method="greedy", n_group=1, topk_group=1, routed_scaling_factor=2.0,
            norm_topk_prob=False, max_position_embeddings=256, rms_norm_eps=1e-6,
        ),
        "rope": {
            "rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "mscale": 0.707,
            "mscale_all_dim": 0.707, "original_max_position_embeddings": 64, "beta_fast": 32,
            "beta_slow": 1,
        },
    },
    {
        # V2's group-limited greedy router (group score = max softmax score in the group).
        "name": "v2-group-limited",
        "arch": "v2",
        "dtype": "f32",
        "spelling": "rope_parameters",
        "config": dict(
            vocab_size=256, hidden_size=64, intermediate_size=96, moe_intermediate_size=16,
            num_hidden_layers=2, num_attention_heads=4, q_lora_rank=32, kv_lora_rank=32,
            qk_nope_head_dim=16, qk_rope_head_dim=16, v_head_dim=16, first_k_dense_replace=0,
            n_routed_experts=12, n_shared_experts=1, num_experts_per_tok=3,
            topk_method="group_limited_greedy", n_group=4, topk_group=2, routed_scaling_factor=1.5,
            norm_topk_prob=True, max_position_embeddings=256, rms_norm_eps=1e-6,
        ),
        "rope": {"rope_type": "default", "rope_theta": 10000.0},
    },
    {
        # V3 dense-only single layer, interleaved RoPE, YaRN like DeepSeek-V3 (mscale = mscale_all_dim);
        # also carries a tokenizer, chat template and generation_config.json for the loader tests.
        "name": "v3-dense-yarn-tok",
        "arch": "v3",
        "dtype": "f32",
        "spelling": "hub",
        "tokenizer": True,
        "config": dict(
            vocab_size=320, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
            num_hidden_layers=1, num_attention_heads=4, q_lora_rank=32, kv_lora_rank=32,
            qk_nope_head_dim=16, qk_rope_head_dim=16, v_head_dim=16, first_k_dense_replace=1,
            n_routed_experts=4, n_shared_experts=1, num_experts_per_tok=2, n_group=1, topk_group=1,
            routed_scaling_factor=1.0, norm_topk_prob=True, rope_interleave=True,
            max_position_embeddings=512, rms_norm_eps=1e-6,
        ),
        "rope": {
            "rope_type": "yarn", "rope_theta": 10000.0, "factor": 8.0, "mscale": 1.0,
            "mscale_all_dim": 1.0, "original_max_position_embeddings": 64, "beta_fast": 32,
            "beta_slow": 1,
        },
    },
    {
        # V3 MoE: sigmoid router + e_score_correction_bias + group-limited top-k, norm_topk_prob,
        # routed_scaling_factor, 4 layers (1 dense), YaRN with mscale != mscale_all_dim, sharded.
        "name": "v3-moe-group-yarn-sharded",
        "arch": "v3",
        "dtype": "f32",
        "spelling": "rope_parameters",
        "shard": "300KB",
        "config": dict(
            vocab_size=256, hidden_size=64, intermediate_size=96, moe_intermediate_size=16,
            num_hidden_layers=4, num_attention_heads=4, q_lora_rank=48, kv_lora_rank=32,
            qk_nope_head_dim=16, qk_rope_head_dim=16, v_head_dim=16, first_k_dense_replace=1,
            n_routed_experts=16, n_shared_experts=1, num_experts_per_tok=4, n_group=4, topk_group=2,
            routed_scaling_factor=2.5, norm_topk_prob=True, rope_interleave=True,
            max_position_embeddings=256, rms_norm_eps=1e-6,
        ),
        "rope": {
            "rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "mscale": 1.0,
            "mscale_all_dim": 0.8, "original_max_position_embeddings": 64, "beta_fast": 32,
            "beta_slow": 1,
        },
    },
    {
        # V3 without q_lora_rank, rotate-half RoPE (rope_interleave false), all layers MoE, ungrouped
        # router without renormalisation, tied embeddings, f16 storage.
        "name": "v3-nolora-half-tied-f16",
        "arch": "v3",
        "dtype": "f16",
        "spelling": "hub",
        "config": dict(
            vocab_size=256, hidden_size=64, intermediate_size=96, moe_intermediate_size=32,
            num_hidden_layers=2, num_attention_heads=8, q_lora_rank=None, kv_lora_rank=16,
            qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8, first_k_dense_replace=0,
            n_routed_experts=4, n_shared_experts=2, num_experts_per_tok=2, n_group=1, topk_group=1,
            routed_scaling_factor=1.0, norm_topk_prob=False, rope_interleave=False,
            tie_word_embeddings=True, max_position_embeddings=256, rms_norm_eps=1e-5,
        ),
        "rope": {"rope_type": "default", "rope_theta": 50000.0},
    },
    {
        # The real DeepSeek latent layout (kv_lora_rank 512 + qk_rope_head_dim 64 = 576 per token) in a
        # tiny model, for the GPU backends; bf16 storage.
        "name": "gpu-shaped-576-bf16",
        "arch": "v3",
        "dtype": "bf16",
        "spelling": "hub",
        "config": dict(
            vocab_size=512, hidden_size=256, intermediate_size=256, moe_intermediate_size=64,
            num_hidden_layers=2, num_attention_heads=4, q_lora_rank=None, kv_lora_rank=512,
            qk_nope_head_dim=32, qk_rope_head_dim=64, v_head_dim=32, first_k_dense_replace=1,
            n_routed_experts=4, n_shared_experts=1, num_experts_per_tok=2, n_group=1, topk_group=1,
            routed_scaling_factor=2.5, norm_topk_prob=True, rope_interleave=True,
            max_position_embeddings=2560, rms_norm_eps=1e-6,
        ),
        "rope": {
            "rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0, "mscale": 1.0,
            "mscale_all_dim": 1.0, "original_max_position_embeddings": 64, "beta_fast": 32,
            "beta_slow": 1,
        },
    },
]

TORCH_DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def make_config(spec):
    import transformers

    cls = transformers.DeepseekV2Config if spec["arch"] == "v2" else transformers.DeepseekV3Config
    cfg = dict(spec["config"])
    if spec["arch"] == "v2":
        # HF's V2 config has no rope_interleave; V2 always pairs adjacent dims.
        cfg.pop("rope_interleave", None)
    else:
        cfg.pop("topk_method", None)
    # MLA has one latent KV head, but transformers expands it to num_key_value_heads = num_attention_heads
    # (DeepseekV3Config's default is 128, which would break tiny models).
    cfg.update(bos_token_id=0, eos_token_id=1, pad_token_id=None,
               num_key_value_heads=cfg["num_attention_heads"])
    rope = dict(spec["rope"])
    try:
        config = cls(rope_parameters=rope, **cfg)
    except TypeError:
        # Older spelling, in case this transformers does not take rope_parameters.
        theta = rope.pop("rope_theta")
        scaling = None if rope.get("rope_type") == "default" else rope
        config = cls(rope_theta=theta, rope_scaling=scaling, **cfg)
    try:
        config._attn_implementation = "eager"
    except Exception:
        pass
    return config


def reinit(model, seed):
    """Weights with O(1) activations, so logits are well separated and greedy decoding is stable."""
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                if "norm" in name:
                    p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
                else:
                    p.copy_(0.02 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[-1]))
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))


@torch.no_grad()
def last_logits(model, ids):
    out = model(input_ids=torch.tensor([ids], dtype=torch.long), use_cache=False)
    return out.logits[0, -1].float()


@torch.no_grad()
def greedy(model, ids, steps):
    seq = list(ids)
    first = last_logits(model, seq)
    logits = first
    out = []
    for _ in range(steps):
        nxt = int(torch.argmax(logits).item())
        out.append(nxt)
        seq.append(nxt)
        logits = last_logits(model, seq)
    return first, out


def floats(t):
    return [float(f"{x:.9g}") for x in t.tolist()]


def to_hub_spelling(path):
    """Rewrites config.json from transformers 5's `rope_parameters` to the Hub's rope_theta +
    rope_scaling spelling; returns the other spelling's text for config.alt.json."""
    with open(path) as f:
        cfg = json.load(f)
    original = json.dumps(cfg, indent=2, sort_keys=True)
    rp = cfg.pop("rope_parameters", None)
    if rp is None:
        return None
    rp = dict(rp)
    cfg["rope_theta"] = rp.pop("rope_theta")
    rope_type = rp.pop("rope_type", "default")
    cfg["rope_scaling"] = None if rope_type == "default" else {"type": rope_type, **rp}
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    return original


def make_tokenizer(out_dir, vocab_size):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 8,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    text = [
        "The quick brown fox jumps over the lazy dog.",
        "Hello, world! flashserve serves DeepSeek models with multi-head latent attention.",
        "Paged KV caches hold compressed latents; the kernel reads each page once.",
        "Größe, naïve café, 東京, emoji 🙂 and numbers 12345.",
    ] * 20
    tok.train_from_iterator(text, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{specials[0]} $A", pair=f"{specials[0]} $A $B", special_tokens=[(specials[0], 0)]
    )
    template = (
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}<｜User｜>{{ m['content'] }}"
        "{% elif m['role'] == 'assistant' %}<｜Assistant｜>{{ m['content'] }}<｜end▁of▁sentence｜>"
        "{% else %}{{ m['content'] }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<｜Assistant｜>{% endif %}"
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=specials[0], eos_token=specials[1], chat_template=template
    )
    fast.save_pretrained(out_dir)
    samples = ["Hello, world!", "Größe 東京 🙂", "the lazy dog jumps", ""]
    enc = {s: fast.encode(s) for s in samples}
    enc_plain = {s: fast.encode(s, add_special_tokens=False) for s in samples}
    messages = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Tell me more"}]
    chat = fast.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # Decoding every single id shows which ones are partial UTF-8 (decode gives U+FFFD).
    return {
        "vocab_size": len(fast),
        "encode": enc,
        "encode_no_special": enc_plain,
        "chat_messages": messages,
        "chat_rendered": chat,
        "decode_each": [fast.decode([i]) for i in range(len(fast))],
        "files": sorted(os.listdir(out_dir)),
    }


def build(spec, out_root):
    import transformers

    out_dir = os.path.join(out_root, spec["name"])
    os.makedirs(out_dir, exist_ok=True)
    seed = sum(map(ord, spec["name"]))  # stable across runs, unlike hash()
    torch.manual_seed(seed)
    config = make_config(spec)
    cls = transformers.DeepseekV2ForCausalLM if spec["arch"] == "v2" else transformers.DeepseekV3ForCausalLM
    model = cls(config).eval()
    reinit(model, seed)
    dtype = TORCH_DTYPES[spec["dtype"]]
    # Round what the checkpoint stores (parameters, persistent buffers) to the storage type and keep
    # computing in float32. NOTE: not model.to(dtype): that would also round the non-persistent RoPE
    # inv_freq buffer, which transformers recomputes in float32 when it loads a checkpoint.
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(dtype).to(torch.float32))
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(b.to(dtype).to(torch.float32))
    rot = model.model.rotary_emb
    attn0 = model.model.layers[0].self_attn
    rope_inv_freq = floats(rot.inv_freq.float())
    rope_attention_scaling = float(rot.attention_scaling)
    attn_scaling = float(attn0.scaling)
    vocab = spec["config"]["vocab_size"]
    prompt = prompt_ids(seed, 21, vocab)
    prompt2 = prompt_ids(seed + 7, 7, vocab)
    logits, cont = greedy(model, prompt, GREEDY_STEPS)
    logits2, cont2 = greedy(model, prompt2, GREEDY_STEPS)

    if spec.get("tokenizer"):
        model.generation_config.do_sample = True
        model.generation_config.temperature = 0.6
        model.generation_config.top_p = 0.95
    save_kwargs = {}
    if spec.get("shard"):
        save_kwargs["max_shard_size"] = spec["shard"]
    model.to(dtype).save_pretrained(out_dir, **save_kwargs)

    cfg_path = os.path.join(out_dir, "config.json")
    with open(cfg_path) as f:
        saved_cfg = json.load(f)
    if spec["spelling"] == "hub":
        alt = to_hub_spelling(cfg_path)
    else:
        hub = dict(saved_cfg)
        rp = hub.pop("rope_parameters", None)
        if rp is not None:
            rp = dict(rp)
            hub["rope_theta"] = rp.pop("rope_theta")
            rt = rp.pop("rope_type", "default")
            hub["rope_scaling"] = None if rt == "default" else {"type": rt, **rp}
        alt = json.dumps(hub, indent=2, sort_keys=True)
    if alt is not None:
        with open(os.path.join(out_dir, "config.alt.json"), "w") as f:
            f.write(alt)

    # Proves the written config.json (in whichever spelling) loads back to the same numbers.
    try:
        reloaded = cls.from_pretrained(out_dir, dtype=torch.float32, attn_implementation="eager").eval()
    except TypeError:
        reloaded = cls.from_pretrained(out_dir, torch_dtype=torch.float32, attn_implementation="eager").eval()
    reload_diff = float((last_logits(reloaded, prompt) - logits).abs().max().item())

    from safetensors import safe_open

    keys = {}
    for fn in sorted(os.listdir(out_dir)):
        if fn.endswith(".safetensors"):
            with safe_open(os.path.join(out_dir, fn), "pt") as sf:
                for k in sf.keys():
                    keys[k] = [fn, list(sf.get_slice(k).get_shape()), str(sf.get_slice(k).get_dtype())]

    expected = {
        "name": spec["name"],
        "arch": spec["arch"],
        "dtype": spec["dtype"],
        "config_spelling": spec["spelling"],
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "prompt": prompt,
        "logits": floats(logits),
        "greedy": cont,
        "prompt2": prompt2,
        "logits2": floats(logits2),
        "greedy2": cont2,
        "rope_inv_freq": rope_inv_freq,
        "rope_attention_scaling": rope_attention_scaling,
        "attn_scaling": attn_scaling,
        "reload_max_abs_diff": reload_diff,
        "tensors": keys,
    }
    if spec.get("tokenizer"):
        try:
            expected["tokenizer"] = make_tokenizer(out_dir, vocab)
        except Exception:
            traceback.print_exc()
            expected["tokenizer_error"] = traceback.format_exc()
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False)
    size = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
    print(f"ok {spec['name']}: {size / 1e6:.2f} MB, greedy={cont}, reload diff={reload_diff:.3g}, "
          f"scaling={attn_scaling:.6g}, attn_factor={rope_attention_scaling}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()
    torch.set_num_threads(4)
    import transformers

    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    failed = []
    for spec in FIXTURES:
        if args.only and spec["name"] not in args.only:
            continue
        try:
            build(spec, args.out)
        except Exception:
            print(f"FAILED {spec['name']}:")
            traceback.print_exc()
            failed.append(spec["name"])
    print("failed:", failed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
