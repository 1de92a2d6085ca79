#!/usr/bin/env python3
"""Write test/fixtures/goldens/interventions/<name>.json: head ablation and residual-stream
patching from the independent numpy reference (numpy_ref.run_intervened, float64).

  python3 tools/reference/make_intervention_goldens.py [--models DIR] [--out DIR]

For every tiny model of test/fixtures/models and a model of each family and variant of
test/fixtures/hf-transformers (Gemma 1/2/3, Qwen3, OLMo 2, Phi-3 with LongRoPE, SmolLM3 with
NoPE layers, Mistral's sliding window, dynamic NTK):
  * clean run of the ids of goldens/<name>.json (goldens/hf/<name>.json) with every head's mean z
  * zero and mean ablation of two heads: residual streams, logits, and 6 greedy tokens
    generated with the ablation (mean: means over the prompt's positions)
  * patching: a corrupted prompt (one token changed) and a shorter one (aligned from the end);
    the last-position logit difference of every single-cell patch of resid_pre[L][p], in both
    directions (denoise: clean values into the corrupted run; noise: the reverse), brute force;
    the same for the attention and the MLP output of every layer (attn_out, mlp_out), and for
    each head's z at every position at once ([L][H])
  * patching every position of layer 1 of the clean run with the corrupted run's values
The format is documented in test/fixtures/goldens/README.md ("interventions/").
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy_ref as R  # noqa: E402
from make_goldens import fl, write  # noqa: E402
from make_tiny_checkpoints import MODELS  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GEN_STEPS = 6


def fl_grid(a) -> list:
    """A grid with NaN (no aligned source token) written as null."""
    return [[None if np.isnan(v) else float("%.7g" % v) for v in row] for row in np.asarray(a)]


def ablated_heads(m: R.Model) -> list[tuple[int, int]]:
    """Two heads in different layers (the last head of layer 0, head 0 of the last layer)."""
    return [(0, m.n_heads - 1), (m.n_layers - 1, 0)]


def corrupt(ids: list[int], d_vocab: int) -> list[int]:
    """The same prompt with the token 5 positions before the end replaced (within every
    fixture's sliding window of the last position, so the last prediction can change)."""
    out = list(ids)
    out[-5] = (out[-5] + 7) % d_vocab
    return out


def eos_ids(d: str) -> set[int]:
    """config.json's eos_token_id(s): the engine's greedy decoding stops there, EOS included."""
    with open(os.path.join(d, "config.json"), encoding="utf-8") as f:
        e = json.load(f).get("eos_token_id")
    return set(e if isinstance(e, list) else [] if e is None else [e])


def ablation_case(m: R.Model, ids: list[int], clean_z, mode: str, stop: set[int]) -> dict:
    heads = ablated_heads(m)
    hz = R.head_z_for(m, clean_z, heads, mode)
    r = R.run_intervened(m, ids, head_z=hz)
    return {
        "mode": mode,
        "heads": [{"layer": L, "head": h} for L, h in heads],
        "resid_pre": fl(r["resid_pre"]),
        "resid_post_last": fl(r["resid_post"][-1]),
        "logits_last": fl(r["logits"][-1]),
        "greedy_ids": R.greedy_intervened(m, ids, GEN_STEPS, hz, stop),
    }


def patching_case(m: R.Model, clean: list[int], corrupted: list[int]) -> dict:
    lc = R.run_intervened(m, clean)["logits"][-1]
    lx = R.run_intervened(m, corrupted)["logits"][-1]
    target = int(np.argmax(lc))
    top_x = int(np.argmax(lx))
    contrast = top_x if top_x != target else None
    return {
        "clean_ids": clean,
        "corrupted_ids": corrupted,
        "target": target,
        "contrast": contrast,
        "ld_clean": R.logit_diff(lc, target, contrast),
        "ld_corrupted": R.logit_diff(lx, target, contrast),
        "denoise_ld": fl_grid(R.patching_grid(m, corrupted, clean, target, contrast)),
        "noise_ld": fl_grid(R.patching_grid(m, clean, corrupted, target, contrast)),
        # the same grids patching a sublayer's output (TransformerLens hook_attn_out / hook_mlp_out)
        "sites": {
            site: {
                "denoise_ld": fl_grid(R.patching_grid(m, corrupted, clean, target, contrast, site=site)),
                "noise_ld": fl_grid(R.patching_grid(m, clean, corrupted, target, contrast, site=site)),
            }
            for site in ("attn_out", "mlp_out")
        },
        # each head's z at every position (TransformerLens hook_z): [L][H]
        "heads": {
            "denoise_ld": fl_grid(R.head_patching_grid(m, corrupted, clean, target, contrast)),
            "noise_ld": fl_grid(R.head_patching_grid(m, clean, corrupted, target, contrast)),
        },
    }


# test/fixtures/hf-transformers models: one per family and variant (ids of goldens/hf/<name>.json)
HF_MODELS = [
    "gemma",
    "gemma2",
    "gemma3-mixed",
    "qwen3",
    "olmo2",
    "phi3-longrope",
    "smollm3-nope",
    "mistral-window",
    "llama-dynamic",
]
HF_TOKENS = 24  # the first tokens of those ids: the brute-force grids stay small


def golden(name: str, d: str, golden_file: str, n_tokens: int | None = None) -> dict:
    m = R.load_hf(d)
    with open(golden_file, encoding="utf-8") as f:
        ids = json.load(f)["ids"][:n_tokens]  # the text of the plain goldens
    clean = R.run_intervened(m, ids)
    plain = m.run(ids)
    assert np.allclose(clean["logits"], plain["logits"], atol=0, rtol=0), "run_intervened without interventions != run"
    corrupted = corrupt(ids, m.d_vocab)
    layer = min(1, m.n_layers - 1)
    src = R.run_intervened(m, corrupted)["resid_pre"]
    whole = R.run_intervened(m, ids, resid_patch={layer: {p: src[layer, p] for p in range(len(ids))}})
    return {
        "model": name,
        "model_dir": os.path.relpath(d, REPO),
        "reference": "tools/reference/numpy_ref.py run_intervened(), float64 math, values printed with %.7g",
        "ids": ids,
        "n_layers": m.n_layers,
        "n_heads": m.n_heads,
        "d_model": m.d_model,
        "z_mean": fl(clean["z"].mean(axis=2)),  # [L, H, d_head]
        "ablation": [ablation_case(m, ids, clean["z"], mode, eos_ids(d)) for mode in ("zero", "mean")],
        "patching": [patching_case(m, ids, corrupted), patching_case(m, ids, ids[2:])],
        "patch_layer": {
            "layer": layer,
            "source_ids": corrupted,
            "resid_pre": fl(whole["resid_pre"]),
            "logits_last": fl(whole["logits"][-1]),
        },
        "patch_sites": patch_site_cases(m, ids, clean, corrupted),
    }


def patch_site_cases(m, ids, clean: dict, corrupted) -> list:
    """Whole runs with sublayer outputs or heads patched from another run, several cells at once
    (the first and last layers), the source the same length or two tokens shorter (aligned from
    the end: the first two positions have no counterpart and keep their own values)."""
    T = len(ids)
    last = m.n_layers - 1
    cases = []

    def case(site, source, cells=None, heads=None):
        src = R.run_intervened(m, source)
        off = T - len(source)
        if site == "z":
            head_z = {}
            for L, h in heads:
                rows = clean["z"][L, h].copy()  # positions without a counterpart keep their own z
                for p in range(off, T):
                    rows[p] = src["z"][L, h, p - off]
                head_z.setdefault(L, {})[h] = rows
            run = R.run_intervened(m, ids, head_z=head_z)
        else:
            sub = {}
            for L, p in cells:
                sub.setdefault(L, {})[p] = src[site][L, p - off]
            run = R.run_intervened(m, ids, sub_patch={site: sub})
        cases.append(
            {
                "site": site,
                "source_ids": [int(i) for i in source],
                "cells": [{"layer": L, "pos": p} for L, p in cells or []],
                "heads": [{"layer": L, "head": h} for L, h in heads or []],
                "resid_post_last": fl(run["resid_post"][last]),
                "logits_last": fl(run["logits"][-1]),
            }
        )

    case("attn_out", corrupted, cells=[(0, T - 1), (0, T - 3), (last, T - 2)])
    case("mlp_out", ids[2:], cells=[(0, p) for p in range(2, T)] + [(last, T - 1)])
    case("z", ids[2:], heads=[(0, m.n_heads - 1), (last, 0)])
    return cases


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=os.path.join(REPO, "test", "fixtures", "models"))
    ap.add_argument("--out", default=os.path.join(REPO, "test", "fixtures", "goldens", "interventions"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    goldens = os.path.join(REPO, "test", "fixtures", "goldens")
    for name in MODELS:
        g = golden(name, os.path.join(args.models, name), os.path.join(goldens, f"{name}.json"))
        n = write(os.path.join(args.out, f"{name}.json"), g)
        print(f"{name}: {n} bytes")
    for name in HF_MODELS:
        d = os.path.join(REPO, "test", "fixtures", "hf-transformers", name)
        g = golden(name, d, os.path.join(goldens, "hf", f"{name}.json"), HF_TOKENS)
        n = write(os.path.join(args.out, f"{name}.json"), g)
        print(f"{name}: {n} bytes")


if __name__ == "__main__":
    main()
