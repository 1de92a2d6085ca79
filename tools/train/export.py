#!/usr/bin/env python3
"""Step 5: export a training checkpoint to media/models/td-mini/ in Hugging Face Llama layout.

Writes config.json, model.safetensors (F32, tied embeddings -> no lm_head.weight),
tokenizer.json, tokenizer_config.json, generation_config.json. Then re-reads the safetensors file
with an independent reader and checks every tensor is bit-identical to the checkpoint and that the
reloaded model gives identical logits.

usage: python3 tools/train/export.py [--ckpt work/ckpt/last.pt] [--out media/models/td-mini]
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import WORK, EXPORT_DIR, tune_malloc, threads  # noqa: E402
from model import Config, LlamaLM  # noqa: E402
import safetensors_io  # noqa: E402


def hf_config(cfg: Config):
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": cfg.hidden_size // cfg.num_attention_heads,
        "max_position_embeddings": cfg.max_position_embeddings,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": None,
        "hidden_act": "silu",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "tie_word_embeddings": True,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
        "use_cache": True,
        "torch_dtype": "float32",
    }


def load_exported(folder):
    """Build a LlamaLM from an exported folder (config.json + model.safetensors)."""
    with open(os.path.join(folder, "config.json")) as f:
        c = json.load(f)
    cfg = Config(**{k: c[k] for k in Config().to_dict()})
    model = LlamaLM(cfg)
    tensors, _ = safetensors_io.load(os.path.join(folder, "model.safetensors"))
    sd = {k: torch.from_numpy(v) for k, v in tensors.items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected, unexpected
    assert not missing, missing
    model.eval()
    return model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default=os.path.join(WORK, "ckpt", "last.pt"))
    ap.add_argument("--out", default=EXPORT_DIR)
    ap.add_argument("--tokenizer", default=os.path.join(WORK, "tokenizer"))
    args = ap.parse_args()
    tune_malloc()
    torch.set_num_threads(threads())
    state = torch.load(args.ckpt, map_location="cpu")
    cfg = Config(**state["config"])
    model = LlamaLM(cfg)
    model.load_state_dict(state["model"])
    model.eval()
    os.makedirs(args.out, exist_ok=True)

    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    assert not any(k.startswith("lm_head") for k in sd)
    safetensors_io.save(os.path.join(args.out, "model.safetensors"), sd, metadata={"format": "pt"})
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(hf_config(cfg), f, indent=2)
        f.write("\n")
    with open(os.path.join(args.out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id,
                   "do_sample": True, "temperature": 0.8, "top_p": 0.9, "max_new_tokens": 60}, f, indent=2)
        f.write("\n")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(args.tokenizer, name), os.path.join(args.out, name))

    # sanity check: independent reload, bit-identical tensors, identical logits
    back, _ = safetensors_io.load(os.path.join(args.out, "model.safetensors"))
    assert sorted(back) == sorted(sd), "tensor name mismatch"
    for k in sd:
        assert back[k].shape == sd[k].shape and np.array_equal(back[k], sd[k]), k
    m2 = load_exported(args.out)
    x = torch.randint(1, cfg.vocab_size, (1, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x)[0], m2(x)[0])
    size = sum(os.path.getsize(os.path.join(args.out, n)) for n in os.listdir(args.out))
    print(f"exported step {state['step']} -> {args.out}: {len(sd)} tensors, "
          f"{sum(v.size for v in sd.values())} params, folder {size / 1e6:.1f} MB; reload check OK")


if __name__ == "__main__":
    main()
