#!/usr/bin/env python3
"""Write the tiny random HF checkpoints under test/fixtures/models/<name>/ (seeded,
deterministic; numpy only):

  tiny-gpt2      GPT2LMHeadModel   d 32, 2 layers, 4 heads, n_positions 64, F32, tied, "transformer." prefix
  tiny-llama     LlamaForCausalLM  d 32, 3 layers, 4 heads / 2 kv heads (GQA), untied lm_head, F16
  tiny-qwen2     Qwen2ForCausalLM  d 32, 2 layers, 4 / 2 heads, q/k/v biases, tied, rope_theta 1e6, BF16
  tiny-neox      GPTNeoXForCausalLM d 32, 2 layers, 2 heads (head_dim 16), rotary_pct 0.25
                 (4 rotary dims), parallel residual, untied embed_out, F32
  tiny-neox-seq  as tiny-neox with use_parallel_residual false (other seed)

All share one tokenizer: GPT-2's byte-level BPE truncated to its 256 byte tokens + its first
43 merges (ids 256..298, identical to GPT-2's own ids) + <|endoftext|> = 299; vocab 300.
Source files: ../shared/data/gpt2-bpe (encoder.json, vocab.bpe), relative to the repo root.

Weights use deliberately large scales (std 0.15-0.5, norm gains ~1 +- 0.1) so attention is
far from uniform, the logit lens changes between layers and logit gaps are large.

usage: python3 tools/reference/make_tiny_checkpoints.py [--out test/fixtures/models]
"""
from __future__ import annotations

import argparse
import json
import os
import struct

import numpy as np

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GPT2_BPE = os.path.join(REPO, "..", "shared", "data", "gpt2-bpe")
N_MERGES = 43
VOCAB = 256 + N_MERGES + 1  # 300
EOT = "<|endoftext|>"
EOT_ID = VOCAB - 1


# ----------------------------------------------------------------------------- safetensors
def f32_to_bf16_bits(a: np.ndarray) -> np.ndarray:
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)  # round to nearest even


def write_safetensors(path: str, tensors: dict[str, np.ndarray], dtype: str) -> None:
    header: dict = {"__metadata__": {"format": "pt"}}
    blobs = []
    off = 0
    for name, arr in tensors.items():
        if dtype == "F32":
            b = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        elif dtype == "F16":
            b = np.ascontiguousarray(arr, dtype="<f2").tobytes()
        elif dtype == "BF16":
            b = f32_to_bf16_bits(arr).astype("<u2").tobytes()
        else:
            raise ValueError(dtype)
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ----------------------------------------------------------------------------- tokenizer
def bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def tiny_vocab_and_merges() -> tuple[dict[str, int], list[list[str]]]:
    with open(os.path.join(GPT2_BPE, "encoder.json"), encoding="utf-8") as f:
        enc = json.load(f)
    with open(os.path.join(GPT2_BPE, "vocab.bpe"), encoding="utf-8") as f:
        lines = [ln.rstrip("\n") for ln in f if not ln.startswith("#version")]
    merges = [ln.split(" ") for ln in lines[:N_MERGES]]
    vocab = {tok: i for tok, i in enc.items() if i < 256 + N_MERGES}
    b2u = bytes_to_unicode()
    assert sorted(vocab[b2u[b]] for b in range(256)) == list(range(256))
    for i, (a, b) in enumerate(merges):  # the first merges of GPT-2 are closed and numbered 256+i
        assert a in vocab and b in vocab and vocab[a + b] == 256 + i, (i, a, b)
    vocab[EOT] = EOT_ID
    return vocab, merges


def tokenizer_files() -> tuple[dict, dict]:
    vocab, merges = tiny_vocab_and_merges()
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": EOT_ID, "content": EOT, "single_word": False, "lstrip": False, "rstrip": False, "normalized": True, "special": True}
        ],
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": merges,
        },
    }
    cfg = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "bos_token": EOT,
        "eos_token": EOT,
        "unk_token": EOT,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 64,
        "tokenizer_class": "GPT2Tokenizer",
    }
    return tok, cfg


# ----------------------------------------------------------------------------- weights
class Gen:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def n(self, *shape, std: float) -> np.ndarray:
        return (self.rng.standard_normal(shape) * std).astype(np.float32)

    def gain(self, d: int) -> np.ndarray:
        return (1.0 + self.rng.standard_normal(d) * 0.1).astype(np.float32)


def make_gpt2(g: Gen) -> tuple[dict, dict]:
    d, L, H, P, inner = 32, 2, 4, 64, 128
    cfg = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": VOCAB,
        "n_positions": P,
        "n_ctx": P,
        "n_embd": d,
        "n_layer": L,
        "n_head": H,
        "n_inner": None,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
        "bos_token_id": EOT_ID,
        "eos_token_id": EOT_ID,
        "use_cache": True,
        "torch_dtype": "float32",
    }
    w = {"transformer.wte.weight": g.n(VOCAB, d, std=0.4), "transformer.wpe.weight": g.n(P, d, std=0.15)}
    for i in range(L):
        p = f"transformer.h.{i}."
        w[p + "ln_1.weight"], w[p + "ln_1.bias"] = g.gain(d), g.n(d, std=0.05)
        w[p + "attn.c_attn.weight"], w[p + "attn.c_attn.bias"] = g.n(d, 3 * d, std=0.25), g.n(3 * d, std=0.05)
        w[p + "attn.c_proj.weight"], w[p + "attn.c_proj.bias"] = g.n(d, d, std=0.2), g.n(d, std=0.05)
        w[p + "ln_2.weight"], w[p + "ln_2.bias"] = g.gain(d), g.n(d, std=0.05)
        w[p + "mlp.c_fc.weight"], w[p + "mlp.c_fc.bias"] = g.n(d, inner, std=0.2), g.n(inner, std=0.05)
        w[p + "mlp.c_proj.weight"], w[p + "mlp.c_proj.bias"] = g.n(inner, d, std=0.15), g.n(d, std=0.05)
    w["transformer.ln_f.weight"], w["transformer.ln_f.bias"] = g.gain(d), g.n(d, std=0.05)
    return cfg, w


def make_llama_family(g: Gen, *, qwen2: bool) -> tuple[dict, dict]:
    d, H, KV, hd, inner = 32, 4, 2, 8, 64
    L = 2 if qwen2 else 3
    cfg = {
        "architectures": ["Qwen2ForCausalLM" if qwen2 else "LlamaForCausalLM"],
        "model_type": "qwen2" if qwen2 else "llama",
        "vocab_size": VOCAB,
        "hidden_size": d,
        "intermediate_size": inner,
        "num_hidden_layers": L,
        "num_attention_heads": H,
        "num_key_value_heads": KV,
        "max_position_embeddings": 64,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0 if qwen2 else 10000.0,
        "rope_scaling": None,
        "hidden_act": "silu",
        "attention_dropout": 0.0,
        "tie_word_embeddings": qwen2,
        "bos_token_id": EOT_ID,
        "eos_token_id": EOT_ID,
        "initializer_range": 0.02,
        "use_cache": True,
        "torch_dtype": "bfloat16" if qwen2 else "float16",
    }
    if qwen2:
        cfg.update({"use_sliding_window": False, "sliding_window": 64, "max_window_layers": L})
    else:
        cfg.update({"head_dim": hd, "attention_bias": False, "mlp_bias": False, "pretraining_tp": 1})
    w = {"model.embed_tokens.weight": g.n(VOCAB, d, std=0.5)}
    for i in range(L):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = g.gain(d)
        w[p + "self_attn.q_proj.weight"] = g.n(H * hd, d, std=0.25)
        w[p + "self_attn.k_proj.weight"] = g.n(KV * hd, d, std=0.25)
        w[p + "self_attn.v_proj.weight"] = g.n(KV * hd, d, std=0.2)
        if qwen2:
            w[p + "self_attn.q_proj.bias"] = g.n(H * hd, std=0.3)
            w[p + "self_attn.k_proj.bias"] = g.n(KV * hd, std=0.3)
            w[p + "self_attn.v_proj.bias"] = g.n(KV * hd, std=0.1)
        w[p + "self_attn.o_proj.weight"] = g.n(d, H * hd, std=0.2)
        w[p + "post_attention_layernorm.weight"] = g.gain(d)
        w[p + "mlp.gate_proj.weight"] = g.n(inner, d, std=0.2)
        w[p + "mlp.up_proj.weight"] = g.n(inner, d, std=0.2)
        w[p + "mlp.down_proj.weight"] = g.n(d, inner, std=0.15)
    w["model.norm.weight"] = g.gain(d)
    if not qwen2:
        w["lm_head.weight"] = g.n(VOCAB, d, std=0.3)
    return cfg, w


def make_neox(g: Gen, *, parallel: bool) -> tuple[dict, dict]:
    d, H, L, inner = 32, 2, 2, 64
    cfg = {
        "architectures": ["GPTNeoXForCausalLM"],
        "model_type": "gpt_neox",
        "vocab_size": VOCAB,
        "hidden_size": d,
        "intermediate_size": inner,
        "num_hidden_layers": L,
        "num_attention_heads": H,
        "max_position_embeddings": 64,
        "rotary_pct": 0.25,
        "rotary_emb_base": 10000,
        "layer_norm_eps": 1e-5,
        "use_parallel_residual": parallel,
        "hidden_act": "gelu",
        "attention_bias": True,
        "attention_dropout": 0.0,
        "hidden_dropout": 0.0,
        "tie_word_embeddings": False,
        "bos_token_id": EOT_ID,
        "eos_token_id": EOT_ID,
        "initializer_range": 0.02,
        "use_cache": True,
        "torch_dtype": "float32",
    }
    w = {"gpt_neox.embed_in.weight": g.n(VOCAB, d, std=0.5)}
    for i in range(L):
        p = f"gpt_neox.layers.{i}."
        w[p + "input_layernorm.weight"], w[p + "input_layernorm.bias"] = g.gain(d), g.n(d, std=0.05)
        w[p + "post_attention_layernorm.weight"], w[p + "post_attention_layernorm.bias"] = g.gain(d), g.n(d, std=0.05)
        w[p + "attention.query_key_value.weight"] = g.n(3 * d, d, std=0.25)
        w[p + "attention.query_key_value.bias"] = g.n(3 * d, std=0.05)
        w[p + "attention.dense.weight"], w[p + "attention.dense.bias"] = g.n(d, d, std=0.2), g.n(d, std=0.05)
        w[p + "mlp.dense_h_to_4h.weight"], w[p + "mlp.dense_h_to_4h.bias"] = g.n(inner, d, std=0.2), g.n(inner, std=0.05)
        w[p + "mlp.dense_4h_to_h.weight"], w[p + "mlp.dense_4h_to_h.bias"] = g.n(d, inner, std=0.15), g.n(d, std=0.05)
    w["gpt_neox.final_layer_norm.weight"], w["gpt_neox.final_layer_norm.bias"] = g.gain(d), g.n(d, std=0.05)
    w["embed_out.weight"] = g.n(VOCAB, d, std=0.3)
    return cfg, w


MODELS = {
    # name: (builder, seed, safetensors dtype)
    "tiny-gpt2": (make_gpt2, 1001, "F32"),
    "tiny-llama": (lambda g: make_llama_family(g, qwen2=False), 1002, "F16"),
    "tiny-qwen2": (lambda g: make_llama_family(g, qwen2=True), 1003, "BF16"),
    "tiny-neox": (lambda g: make_neox(g, parallel=True), 1004, "F32"),
    "tiny-neox-seq": (lambda g: make_neox(g, parallel=False), 1005, "F32"),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(REPO, "test", "fixtures", "models"))
    args = ap.parse_args()
    tok, tok_cfg = tokenizer_files()
    for name, (build, seed, dtype) in MODELS.items():
        cfg, w = build(Gen(seed))
        d = os.path.join(args.out, name)
        os.makedirs(d, exist_ok=True)
        for fn, obj in (("config.json", cfg), ("tokenizer.json", tok), ("tokenizer_config.json", tok_cfg)):
            with open(os.path.join(d, fn), "w", encoding="utf-8") as f:
                json.dump(obj, f, indent=1 if fn == "config.json" else None, ensure_ascii=False)
                f.write("\n")
        write_safetensors(os.path.join(d, "model.safetensors"), w, dtype)
        size = os.path.getsize(os.path.join(d, "model.safetensors"))
        print(f"{name}: {len(w)} tensors, {dtype}, model.safetensors {size} bytes")


if __name__ == "__main__":
    main()
