#!/usr/bin/env python3
"""Write test/fixtures/goldens/<name>.json from the independent numpy reference.

  python3 tools/reference/make_goldens.py [--hf-stories DIR]

* tiny-*      : read from test/fixtures/models/<name> (HF layout) by numpy_ref.load_hf.
* stories260K : read natively from test/fixtures/stories260K/stories260K.bin by
                numpy_ref.Llama2c (run.c's interleaved RoPE; no converter involved), ids =
                BOS + the first 30 greedy ids; plus greedy_ids (80), tokenizer cases.
* --hf-stories DIR : also run the HF-layout folder written by tools/convert/llama2c.ts
                through numpy_ref's `llama` path and check it against the native goldens
                (prints max abs diffs; fails above 1e-5).

The format is documented in test/fixtures/goldens/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy_ref as R  # noqa: E402
from make_tiny_checkpoints import MODELS, tiny_vocab_and_merges, bytes_to_unicode  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
STORIES = os.path.join(REPO, "test", "fixtures", "stories260K")
HF = os.path.join(REPO, "test", "fixtures", "hf-transformers")
TINY_TEXT = "the cat sat on the mat, and the cat sat on the hat."
FLOAT_FMT = "%.7g"
K = 5


# ----------------------------------------------------------------------------- helpers
def fl(a) -> object:
    """numpy array / scalar -> nested lists of floats rounded to 7 significant digits."""
    a = np.asarray(a, dtype=np.float64)
    flat = [float(s) for s in np.char.mod(FLOAT_FMT, a.ravel())]
    if a.ndim == 0:
        return flat[0]
    arr = np.array(flat, dtype=object).reshape(a.shape)
    return arr.tolist()


def fl_opt(xs) -> list:
    return [None if x is None else float(FLOAT_FMT % x) for x in xs]


def gpt2_bpe_encode(text: str) -> list[int]:
    """Independent GPT-2 byte-level BPE (ASCII text only: \\p{L} == [A-Za-z], \\p{N} == [0-9])."""
    assert text.isascii()
    vocab, merges = tiny_vocab_and_merges()
    ranks = {tuple(m): i for i, m in enumerate(merges)}
    b2u = bytes_to_unicode()
    pat = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")
    ids: list[int] = []
    for word in pat.findall(text):
        parts = [b2u[b] for b in word.encode("utf-8")]
        while len(parts) > 1:
            pairs = [(ranks.get((parts[i], parts[i + 1]), 1 << 30), i) for i in range(len(parts) - 1)]
            r, i = min(pairs)
            if r == 1 << 30:
                break
            a, b = parts[i], parts[i + 1]
            out, j = [], 0
            while j < len(parts):  # merge every occurrence of (a, b), left to right
                if j < len(parts) - 1 and parts[j] == a and parts[j + 1] == b:
                    out.append(a + b)
                    j += 2
                else:
                    out.append(parts[j])
                    j += 1
            parts = out
        ids.extend(vocab[p] for p in parts)
    return ids


def stats(model: R.Model, run: dict, lens: list[dict]) -> dict:
    """Sanity numbers showing the fixture is well-conditioned for float32 comparisons."""
    T = run["logits"].shape[0]
    pat = run["pattern"]
    max_attn = float(np.mean([pat[L, h, q, : q + 1].max() for L in range(pat.shape[0]) for h in range(pat.shape[1]) for q in range(3, T)]))
    gaps1, gaps5 = [], []
    for e in lens:
        s = -np.sort(-e["_logits"], axis=-1)
        gaps1.append((s[:, 0] - s[:, 1]).min())
        gaps5.append((s[:, : K - 1] - s[:, 1:K]).min())
    top1 = np.array([[row[0] for row in e["top_ids"]] for e in lens])  # [L, T]
    changes = float(np.mean(top1[0] != top1[-1])) if len(lens) > 1 else 0.0
    return {
        "mean_max_attention_q_ge_3": round(max_attn, 4),
        "min_top1_top2_logit_gap": float("%.4g" % min(gaps1)),
        "min_adjacent_top5_logit_gap": float("%.4g" % min(gaps5)),
        "frac_positions_lens_top1_first_ne_last": round(changes, 4),
    }


def golden(name: str, arch: str, source: str, model: R.Model, ids: list[int], text: str | None) -> tuple[dict, dict, list]:
    run = model.run(ids)
    ln = R.lens(model, run, ids, K)
    # built-in checks of the reference itself
    assert np.allclose(ln[-1]["_logits"], run["logits"], atol=1e-9, rtol=0), "last lens != logits"
    assert np.allclose(run["resid_post"][:-1], run["resid_pre"][1:], atol=0, rtol=0)
    T = len(ids)
    g = {
        "model": name,
        "arch": arch,
        "source": source,
        "reference": "tools/reference/numpy_ref.py, float64 math, values printed with %.7g",
        "text": text,
        "ids": ids,
        "n_layers": model.n_layers,
        "d_model": model.d_model,
        "n_heads": model.n_heads,
        "d_vocab": model.d_vocab,
        "n_tokens": T,
        "shapes": {
            "resid_pre": list(run["resid_pre"].shape),
            "resid_mid": list(run["resid_mid"].shape),
            "resid_post": list(run["resid_post"].shape),
            "pattern": list(run["pattern"].shape),
            "logits": list(run["logits"].shape),
        },
        "stats": stats(model, run, ln),
        "resid_pre": fl(run["resid_pre"]),
        "resid_mid": fl(run["resid_mid"]),
        "resid_post": fl(run["resid_post"]),
        "pattern": fl(run["pattern"]),
        "logits": fl(run["logits"]),
        "lens": {
            "k": K,
            "input": "resid_post[L] -> ln_final -> W_U (+b_U)",
            "layers": [
                {
                    "layer": e["layer"],
                    "top_ids": e["top_ids"],
                    "top_probs": fl(e["top_probs"]),
                    "entropy": fl(e["entropy"]),
                    "next_logprob": fl_opt(e["next_logprob"]),
                    "next_rank": e["next_rank"],
                    "kl_to_final": fl(e["kl_to_final"]),
                }
                for e in ln
            ],
        },
    }
    return g, run, ln


def hf_golden(name: str) -> dict:
    """The numpy reference on a transformers 5.17 fixture: resid_mid and the logit lens (the
    fixture itself holds transformers' residual streams, logits and patterns)."""
    d = os.path.join(HF, name)
    m = R.load_hf(d)
    ids = [int(i) for i in R.read_safetensors(os.path.join(d, "reference.safetensors"))["input_ids"]]
    g, run, _ = golden(name, json.load(open(os.path.join(d, "config.json")))["model_type"], f"test/fixtures/hf-transformers/{name}", m, ids, None)
    for k in ("resid_pre", "resid_post", "pattern", "logits"):
        del g[k]
        del g["shapes"][k]
    g["note"] = "resid_pre/post, logits and patterns: compare with the fixture's reference.safetensors (transformers 5.17)"
    return g


# KV-cache generation across a change of RoPE frequencies, once the whole sequence (past + new)
# passes the original context: dynamic NTK grows its base and cached keys keep the rotation they
# were given; Phi-3's LongRoPE switches from its short to its long factors and transformers'
# Phi-3 then recomputes the cache (so the continuation equals a full recomputation).
KV_CASES = [
    ("phi3-longrope-short", 60, 10, "Phi-3 longrope, original context 64: short factors, then the cache recomputed with the long ones at step 5"),
    ("phi4-mini", 28, 10, "Phi-4-mini longrope with partial rotary 0.75, original context 32: recomputed at step 5"),
    ("llama-dynamic", 28, 10, "dynamic NTK, max_position_embeddings 32: the base grows from step 5, cached keys keep theirs"),
    ("gemma3-mixed", 20, 10, "sliding window 8 on two of three layers, through the cache"),
]


def kv_golden() -> dict:
    cases = []
    for name, n_prompt, steps, what in KV_CASES:
        d = os.path.join(HF, name)
        ids = [int(i) for i in R.read_safetensors(os.path.join(d, "reference.safetensors"))["input_ids"]]
        prompt = (ids * 2)[:n_prompt]
        m = R.load_hf(d)
        gen, logits = R.greedy_kv(m, prompt, steps)
        # each step recomputed from scratch (no cache): Phi-3 equals it, dynamic NTK does not
        full = np.stack([m.run(prompt + gen[:t])["logits"][-1] for t in range(steps)])
        cases.append({"model": name, "what": what, "prompt": prompt, "gen_ids": gen, "gen_logits": fl(logits),
                      "max_abs_diff_to_recompute": float("%.3g" % np.abs(full - logits).max())})
    return {"reference": "tools/reference/numpy_ref.py greedy_kv (float64)", "cases": cases}


def write(path: str, obj: dict) -> int:
    s = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    with open(path, "w", encoding="utf-8") as f:
        f.write(s + "\n")
    return len(s) + 1


def published_sample() -> str:
    with open(os.path.join(STORIES, "SOURCE.md"), encoding="utf-8") as f:
        src = f.read()
    m = re.search(r"Greedy sample.*?```\n(.*?)```", src, re.S)
    assert m, "published sample not found in SOURCE.md"
    return m.group(1)


# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(REPO, "test", "fixtures", "goldens"))
    ap.add_argument("--models", default=os.path.join(REPO, "test", "fixtures", "models"))
    ap.add_argument("--hf-stories", default=None, help="HF folder written by tools/convert/llama2c.ts")
    ap.add_argument("--hf-only", action="store_true", help="only the goldens of test/fixtures/hf-transformers (goldens/hf/)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    total = 0

    hf_out = os.path.join(args.out, "hf")
    os.makedirs(hf_out, exist_ok=True)
    for name in sorted(n for n in os.listdir(HF) if os.path.isdir(os.path.join(HF, n))):
        g = hf_golden(name)
        n = write(os.path.join(hf_out, f"{name}.json"), g)
        total += n
        print(f"hf/{name}: {n} bytes, stats {g['stats']}")
    kv = kv_golden()
    total += write(os.path.join(hf_out, "kv-cache.json"), kv)
    print("hf/kv-cache.json:", [(c["model"], c["max_abs_diff_to_recompute"]) for c in kv["cases"]])
    if args.hf_only:
        print(f"total golden bytes: {total}")
        return

    try:
        tiny_ids = gpt2_bpe_encode(TINY_TEXT)
    except FileNotFoundError:  # GPT-2's BPE files (../shared/data/gpt2-bpe) are not here: the committed ids
        tiny_ids = json.load(open(os.path.join(args.out, "tiny-gpt2.json")))["ids"]
        print("GPT-2 BPE files not found: using the ids of the committed tiny-gpt2.json")
    for name in MODELS:
        d = os.path.join(args.models, name)
        m = R.load_hf(d)
        arch = json.load(open(os.path.join(d, "config.json")))["model_type"]
        g, _, _ = golden(name, arch, f"test/fixtures/models/{name}", m, tiny_ids, TINY_TEXT)
        n = write(os.path.join(args.out, f"{name}.json"), g)
        total += n
        print(f"{name}: {n} bytes, stats {g['stats']}")

    # ---- stories260K, native llama2.c reader
    bin_path = os.path.join(STORIES, "stories260K.bin")
    m = R.Llama2c(bin_path)
    tok = R.Llama2cTokenizer(os.path.join(STORIES, "tok512.bin"))
    greedy_ids = R.greedy(m, [1], 80)
    greedy_text = tok.decode(greedy_ids)
    pub = published_sample()
    assert pub.startswith(greedy_text), "native greedy decode does not reproduce the published sample"
    ids = [1] + greedy_ids[:30]
    g, run, _ = golden("stories260K", "llama2c", "test/fixtures/stories260K/stories260K.bin (native llama2.c reader)", m, ids, None)
    once = tok.encode("Once upon a time")
    cases = [
        "Once upon a time",
        "Lily's mom said, \"Lily, let's go to the park.\"",
        "One day, a big dog ran fast.\nThe end.",
        "Héllo wörld — 日本語 🙂",
        "  two leading spaces and 123 digits",
    ]
    g.update(
        {
            "bos_id": 1,
            "eos_id": 2,
            "greedy_ids": greedy_ids,
            "greedy_text": greedy_text,
            "greedy_note": "argmax from [BOS]; run.c stops at BOS (id 1), not at EOS",
            "encode_once_upon_a_time": once,
            "encode_cases": [{"text": t, "ids": tok.encode(t)} for t in cases],
            "encode_note": "llama2.c encode(): dummy-prefix space, no BOS/EOS; HF tokenizer.json adds <s> via its post_processor unless add_special_tokens=false",
        }
    )
    n = write(os.path.join(args.out, "stories260K.json"), g)
    total += n
    print(f"stories260K: {n} bytes, stats {g['stats']}, greedy ok ({len(greedy_ids)} ids), once {once}")
    print(f"total golden bytes: {total}")

    if args.hf_stories:
        hf = R.load_hf(args.hf_stories)
        run2 = hf.run(ids)
        worst = 0.0
        for k in ("resid_pre", "resid_mid", "resid_post", "pattern", "logits"):
            diff = float(np.abs(run[k] - run2[k]).max())
            worst = max(worst, diff)
            print(f"  HF-converted vs native {k}: max abs diff {diff:.3g}")
        assert worst < 1e-5, "HF-converted stories260K disagrees with the native reader"
        print("  HF-converted greedy (80):", "ok" if R.greedy(hf, [1], 80) == greedy_ids else "MISMATCH")


if __name__ == "__main__":
    main()
