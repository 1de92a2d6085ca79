#!/usr/bin/env python3
"""Step 8: sanity-check the exported folder media/models/td-mini/.

* config.json has the Hugging Face LlamaConfig fields and is consistent with the tensors;
* model.safetensors parses (independent reader: header, dtypes, offsets cover the data exactly),
  has exactly the expected HF tensor names/shapes and no lm_head.weight (tied embeddings);
* the folder is <= 40 MB;
* every eval.json slice, re-read from shared/data and re-tokenized with @huggingface/tokenizers,
  has the recorded sha256 / token count / token-id prefix, and its loss recomputed from the exported
  file matches eval.json (relative difference < 1e-4).

usage: python3 tools/train/check_export.py [--model media/models/td-mini]
"""
import argparse
import hashlib
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import DATA, EXPORT_DIR, tune_malloc, threads  # noqa: E402
from export import load_exported  # noqa: E402
from evaluate import js_tok, token_losses  # noqa: E402
import safetensors_io  # noqa: E402

REQUIRED = ["architectures", "model_type", "vocab_size", "hidden_size", "intermediate_size",
            "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "max_position_embeddings", "rms_norm_eps", "rope_theta", "hidden_act",
            "tie_word_embeddings", "bos_token_id", "eos_token_id", "torch_dtype"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=EXPORT_DIR)
    args = ap.parse_args()
    tune_malloc()
    torch.set_num_threads(threads())
    d = args.model
    cfg = json.load(open(os.path.join(d, "config.json")))
    for k in REQUIRED:
        assert k in cfg, f"config.json lacks {k}"
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["model_type"] == "llama"
    assert cfg["hidden_act"] == "silu" and cfg["tie_word_embeddings"] is True
    assert cfg["max_position_embeddings"] >= 512

    tensors, meta = safetensors_io.load(os.path.join(d, "model.safetensors"))
    H, KV, D = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["hidden_size"]
    hd, F, V = D // H, cfg["intermediate_size"], cfg["vocab_size"]
    expect = {"model.embed_tokens.weight": [V, D], "model.norm.weight": [D]}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        expect.update({p + "self_attn.q_proj.weight": [H * hd, D], p + "self_attn.k_proj.weight": [KV * hd, D],
                       p + "self_attn.v_proj.weight": [KV * hd, D], p + "self_attn.o_proj.weight": [D, H * hd],
                       p + "mlp.gate_proj.weight": [F, D], p + "mlp.up_proj.weight": [F, D],
                       p + "mlp.down_proj.weight": [D, F], p + "input_layernorm.weight": [D],
                       p + "post_attention_layernorm.weight": [D]})
    assert set(tensors) == set(expect), set(tensors) ^ set(expect)
    for k, shape in expect.items():
        assert list(tensors[k].shape) == shape, (k, tensors[k].shape, shape)
        assert torch.isfinite(torch.from_numpy(tensors[k])).all(), k
    n_params = sum(t.size for t in tensors.values())
    size = sum(os.path.getsize(os.path.join(d, n)) for n in os.listdir(d))
    assert size <= 40e6, f"folder is {size / 1e6:.1f} MB"
    for n in ("tokenizer.json", "tokenizer_config.json", "generation_config.json", "README.md", "eval.json"):
        assert os.path.exists(os.path.join(d, n)), n

    ev = json.load(open(os.path.join(d, "eval.json")))
    model = load_exported(d)
    texts = []
    for s in ev["slices"]:
        raw = open(os.path.join(DATA, s["file"]), encoding="utf-8").read()
        texts.append(raw[s["char_offset"]:s["char_offset"] + s["char_length"]])
    enc = js_tok(d, encode=texts)["encode"]
    worst = 0.0
    for s, text, ids in zip(ev["slices"], texts, enc):
        assert hashlib.sha256(text.encode("utf-8")).hexdigest() == s["sha256"], s["file"]
        assert len(ids) == s["n_tokens"] and ids[:16] == s["first_token_ids"], s["file"]
        assert len(ids) <= 512
        loss = token_losses(model, torch.tensor([ids]))[0].mean().item()
        rel = abs(loss - s["loss"]) / s["loss"]
        worst = max(worst, rel)
        assert rel < 1e-4, (s["file"], loss, s["loss"])
    print(f"export check OK: {len(tensors)} tensors, {n_params:,} params, folder {size / 1e6:.1f} MB, "
          f"{len(ev['slices'])} eval slices re-tokenized and re-scored (max rel. diff {worst:.1e})")


if __name__ == "__main__":
    main()
