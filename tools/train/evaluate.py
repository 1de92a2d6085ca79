#!/usr/bin/env python3
"""Step 6: evaluate the EXPORTED model (media/models/td-mini/model.safetensors) in fp32.

Measures, all on held-out text (the last 5% of every corpus file, see prepare_corpus.py):
  * perplexity per source and per kind (prose / code) on non-overlapping 512-token windows of
    each source's held-out token stream (first WINDOWS_PER_SOURCE windows, or all if fewer);
    the loss of a window is over positions 0..510 predicting tokens 1..511;
  * a unigram baseline for the same target tokens (unigram distribution of the training tokens
    of the same kind, add-one smoothed);
  * the logit lens: for each layer L (0 = embeddings, L = output of block L) apply the final
    RMSNorm and the tied unembedding to the residual stream, softmax, entropy in nats, averaged
    over positions (first LENS_WINDOWS_PER_SOURCE windows per source);
  * fixed eval slices (raw character ranges of the held-out part of shared/data files), whose
    tokens (JS tokenizer, no BOS) and mean next-token loss go to media/models/td-mini/eval.json;
  * greedy and top-p samples for fixed prompts.
Writes work/eval_full.json (everything, read by make_card.py) and media/models/td-mini/eval.json.

usage: python3 tools/train/evaluate.py [--model media/models/td-mini] [--quick]
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import DATA, WORK, HERE, EXPORT_DIR, tune_malloc, threads, load_sources, load_tokens  # noqa: E402
from export import load_exported  # noqa: E402

WINDOW = 512
WINDOWS_PER_SOURCE = 32
LENS_WINDOWS_PER_SOURCE = 4
PROMPTS = ["The old sailor looked at the sea and", "It is a truth universally acknowledged",
           "def fibonacci(n):", "import os\n"]
NEW_TOKENS = 60
SAMPLE_SEED = 42
TOP_P = 0.9
TEMPERATURE = 0.8
# (file relative to shared/data, kind, position inside the held-out part as a fraction)
SLICES = [
    ("austen/emma.txt", "prose", 0.30),
    ("moby-dick/moby-dick.txt", "prose", 0.50),
    ("tinystories-val-subset/tinystories_val.txt", "prose", 0.40),
    ("sotu/sotu.txt", "prose", 0.60),
    ("python-stdlib/python3.11-stdlib.py.txt", "code", 0.20),
    ("python-stdlib/python3.11-stdlib.py.txt", "code", 0.70),
    ("jargon/jargon.txt", "prose", 0.50),
    ("python-stdlib/python3.11-stdlib.py.txt", "code", 0.45),
]
# All slices come from files without characters outside the Basic Multilingual Plane, so code-point
# offsets (Python) and UTF-16 offsets (JavaScript String.prototype.slice) coincide; asserted below.
# (python-docs has a few non-BMP characters before its held-out part, so it is not used here.)
SLICE_CHARS = 1800
MAX_SLICE_TOKENS = 512


def js_tok(tokenizer_dir, encode=(), decode=()):
    req = {"tokenizer_dir": tokenizer_dir, "encode": list(encode), "decode": [list(map(int, d)) for d in decode]}
    r = subprocess.run(["node", os.path.join(HERE, "tok.mjs")], input=json.dumps(req).encode(),
                       capture_output=True, check=True)
    return json.loads(r.stdout)


def token_losses(model, ids):
    """ids: LongTensor [B, T] -> per-position CE [B, T-1] (position t predicts token t+1)."""
    with torch.no_grad():
        logits, _ = model(ids)
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1),
                               reduction="none").view(ids.size(0), -1)


def windows(arr, n):
    k = min(n, len(arr) // WINDOW)
    return torch.from_numpy(arr[:k * WINDOW].astype(np.int64).reshape(k, WINDOW))


def perplexity(model, sources, n_windows):
    per_source = {}
    for name, info in sources.items():
        w = windows(load_tokens("heldout", name), n_windows)
        losses = torch.cat([token_losses(model, w[i:i + 8]) for i in range(0, len(w), 8)])
        per_source[name] = {"kind": info["kind"], "windows": len(w), "targets": losses.numel(),
                            "sum_nll": losses.double().sum().item(), "targets_ids": w[:, 1:].reshape(-1)}
        print(f"  ppl {name}: {np.exp(per_source[name]['sum_nll'] / losses.numel()):.2f}", flush=True)
    return per_source


def unigram(sources, per_source, vocab):
    counts = {"prose": np.ones(vocab, np.float64), "code": np.ones(vocab, np.float64)}
    for name, info in sources.items():
        counts[info["kind"]] += np.bincount(load_tokens("train", name), minlength=vocab)
    logp = {k: np.log(c / c.sum()) for k, c in counts.items()}
    for name, r in per_source.items():
        r["unigram_sum_nll"] = float(-logp[r["kind"]][r["targets_ids"].numpy()].sum())


def lens(model, sources, n_windows):
    L = model.cfg.num_hidden_layers
    acc = {k: {"ent": np.zeros(L + 1), "nll": np.zeros(L + 1), "top1_final": np.zeros(L + 1), "n": 0}
           for k in ("prose", "code", "all")}
    for name, info in sources.items():
        w = windows(load_tokens("heldout", name), n_windows)
        for i in range(0, len(w), 4):
            x = w[i:i + 4]
            with torch.no_grad():
                _, _, hidden = model(x, return_hidden=True)
                final_top1 = None
                rows = []
                for layer in range(L, -1, -1):
                    lg = model.lens_logits(hidden[layer])[:, :-1]
                    lp = torch.log_softmax(lg, -1)
                    ent = -(lp.exp() * lp).sum(-1)
                    nll = -lp.gather(-1, x[:, 1:, None])[..., 0]
                    top1 = lg.argmax(-1)
                    if final_top1 is None:
                        final_top1 = top1
                    rows.append((layer, ent.sum().item(), nll.sum().item(),
                                 (top1 == final_top1).sum().item()))
            for k in (info["kind"], "all"):
                for layer, e, nl, t1 in rows:
                    acc[k]["ent"][layer] += e
                    acc[k]["nll"][layer] += nl
                    acc[k]["top1_final"][layer] += t1
                acc[k]["n"] += x[:, 1:].numel()
    out = {}
    for k, a in acc.items():
        out[k] = {"positions": a["n"],
                  "mean_entropy_nats": [round(v / a["n"], 4) for v in a["ent"]],
                  "mean_nll_nats": [round(v / a["n"], 4) for v in a["nll"]],
                  "top1_agreement_with_final": [round(v / a["n"], 4) for v in a["top1_final"]]}
    return out


def slice_end(raw, start, limit):
    """End of a slice starting at `start` of at most `limit` chars: after the last newline in range
    if that keeps >= 60% of the limit, else just before the last space (a word boundary)."""
    stop = min(len(raw), start + limit)
    nl = raw.rfind("\n", start, stop)
    if nl >= 0 and nl + 1 - start >= 0.6 * limit:
        return nl + 1
    sp = raw.rfind(" ", start, stop)
    return sp if sp > start else stop


def make_slices(model, splits, tokenizer_dir):
    cands = []
    for rel, kind, frac in SLICES:
        raw = open(os.path.join(DATA, rel), encoding="utf-8").read()
        hs = splits["files"][rel]["heldout_start_char"]
        start = raw.find("\n", hs + int((len(raw) - hs) * frac)) + 1
        while raw[start] == "\n":
            start += 1
        cands.append([rel, kind, raw, start, SLICE_CHARS])
    # shrink the character budget until every slice is <= MAX_SLICE_TOKENS tokens
    while True:
        enc = js_tok(tokenizer_dir, encode=[raw[s:slice_end(raw, s, lim)] for _, _, raw, s, lim in cands])["encode"]
        too_long = [i for i, ids in enumerate(enc) if len(ids) > MAX_SLICE_TOKENS]
        if not too_long:
            break
        for i in too_long:
            cands[i][4] = int(cands[i][4] * 0.9)
    cands = [(rel, kind, raw, s, slice_end(raw, s, lim)) for rel, kind, raw, s, lim in cands]
    out = []
    for (rel, kind, raw, s, e), ids in zip(cands, enc):
        text = raw[s:e]
        hs = splits["files"][rel]["heldout_start_char"]
        assert s >= hs and e <= len(raw)
        u16 = len(raw[:s].encode("utf-16-le")) // 2
        assert u16 == s and len(text.encode("utf-16-le")) // 2 == len(text), "slice offsets must be BMP-only"
        x = torch.tensor([ids])
        nll = token_losses(model, x)[0]
        xb = torch.tensor([[0] + ids])
        nll_b = token_losses(model, xb)[0]
        with torch.no_grad():
            argmax = model(x)[0][0].argmax(-1)[:16].tolist()
        out.append({
            "file": rel, "kind": kind,
            "char_offset": s, "char_length": e - s,
            "utf16_offset": u16, "utf16_length": len(text.encode("utf-16-le")) // 2,
            "byte_offset": len(raw[:s].encode("utf-8")), "byte_length": len(text.encode("utf-8")),
            "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "n_tokens": len(ids), "first_token_ids": ids[:16], "last_token_ids": ids[-8:],
            "loss": round(nll.mean().item(), 6),
            "loss_sum": round(nll.double().sum().item(), 4), "loss_positions": nll.numel(),
            "argmax_next_first16": argmax,
            "loss_with_bos": round(nll_b.mean().item(), 6),
            "text_head": text[:80],
        })
        print(f"  slice {rel}@{s}+{e - s}: {len(ids)} tokens, loss {nll.mean().item():.4f}", flush=True)
    return out


def sample(model, prompt_ids, greedy, seed):
    g = torch.Generator().manual_seed(seed)
    ids = list(prompt_ids)
    new = []
    stopped = False
    for _ in range(NEW_TOKENS):
        with torch.no_grad():
            logits = model(torch.tensor([ids[-model.cfg.max_position_embeddings:]]))[0][0, -1]
        if greedy:
            nxt = int(logits.argmax())
        else:
            probs = torch.softmax(logits / TEMPERATURE, -1)
            sp, si = probs.sort(descending=True)
            cum = sp.cumsum(-1)
            sp[(cum - sp) > TOP_P] = 0.0       # keep the smallest prefix with mass >= top_p
            nxt = int(si[torch.multinomial(sp / sp.sum(), 1, generator=g)])
        if nxt == 0:
            stopped = True
            break
        ids.append(nxt)
        new.append(nxt)
    return new, stopped


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=EXPORT_DIR)
    ap.add_argument("--quick", action="store_true", help="few windows (pipeline test only)")
    ap.add_argument("--out-full", default=os.path.join(WORK, "eval_full.json"))
    args = ap.parse_args()
    tune_malloc()
    torch.set_num_threads(threads())
    t0 = time.time()
    model = load_exported(args.model)
    sources = load_sources()
    splits = json.load(open(os.path.join(WORK, "corpus", "splits.json")))
    nw, nlw = (4, 1) if args.quick else (WINDOWS_PER_SOURCE, LENS_WINDOWS_PER_SOURCE)

    print("perplexity ...", flush=True)
    per_source = perplexity(model, sources, nw)
    unigram(sources, per_source, model.cfg.vocab_size)
    ppl = {"per_source": {}, "per_kind": {}}
    for kind in ("prose", "code"):
        rs = [r for r in per_source.values() if r["kind"] == kind]
        n = sum(r["targets"] for r in rs)
        ppl["per_kind"][kind] = {"targets": n,
                                 "loss": sum(r["sum_nll"] for r in rs) / n,
                                 "ppl": float(np.exp(sum(r["sum_nll"] for r in rs) / n)),
                                 "unigram_ppl": float(np.exp(sum(r["unigram_sum_nll"] for r in rs) / n))}
    for name, r in per_source.items():
        ppl["per_source"][name] = {"kind": r["kind"], "windows": r["windows"], "targets": r["targets"],
                                   "ppl": float(np.exp(r["sum_nll"] / r["targets"])),
                                   "unigram_ppl": float(np.exp(r["unigram_sum_nll"] / r["targets"]))}
    print(json.dumps(ppl["per_kind"]), flush=True)

    print("logit lens ...", flush=True)
    lens_res = lens(model, sources, nlw)
    print(lens_res["all"]["mean_entropy_nats"], flush=True)

    print("slices ...", flush=True)
    slices = make_slices(model, splits, args.model)

    print("samples ...", flush=True)
    enc = js_tok(args.model, encode=PROMPTS)["encode"]
    samples = []
    for p, pids in zip(PROMPTS, enc):
        for mode in ("greedy", "top_p"):
            new, stopped = sample(model, pids, mode == "greedy", SAMPLE_SEED)
            samples.append({"prompt": p, "prompt_ids": pids, "mode": mode, "new_ids": new,
                            "stopped_at_eot": stopped})
    dec = js_tok(args.model, decode=[s["new_ids"] for s in samples])["decode"]
    for s, d in zip(samples, dec):
        s["completion"] = d

    cfg = json.load(open(os.path.join(args.model, "config.json")))
    eval_json = {
        "model": "td-mini",
        "description": "Reference numbers computed by tools/train/evaluate.py with the PyTorch reference "
                       "implementation in fp32 from model.safetensors. Slices are raw character ranges of "
                       "files under shared/data (held-out part: the last 5% of each file).",
        "tokenization": "@huggingface/tokenizers with this folder's tokenizer.json/tokenizer_config.json, "
                        "encode(text, {add_special_tokens: false}) of exactly the slice text; no BOS prepended.",
        "offsets": "char_offset/char_length count Unicode code points and equal utf16_offset/utf16_length "
                   "(UTF-16 code units = JavaScript string indices; the files used have no non-BMP characters), so "
                   "text = fileText.slice(char_offset, char_offset + char_length) in JS. byte_* count UTF-8 bytes. "
                   "sha256 is of the UTF-8 slice text.",
        "loss_definition": "loss = mean over positions t = 0..T-2 of -log softmax(logits[t])[token[t+1]] "
                           "(natural log, nats), T = n_tokens, one forward pass over the T slice tokens "
                           "(no BOS, positions 0..T-1). loss_with_bos: same but with <|endoftext|> (id 0) prepended, "
                           "mean over the T predictions of all slice tokens. argmax_next_first16: argmax "
                           "of logits at positions 0..15 (no BOS).",
        "dtype": "float32",
        "slices": slices,
        "logit_lens": {
            "definition": "entropy (nats) of softmax(norm(h_L) @ embed_tokens^T), norm = the final RMSNorm, h_L = "
                          "the residual stream after block L; mean_entropy_nats[i] is for block i+1 (the last entry "
                          "= the model's own output distribution); embedding_entropy_nats is the same applied to the "
                          "embedding output (before block 1). Mean over positions 0..510 of 512-token windows of "
                          f"held-out text (first {nlw} windows of each source's held-out token stream; a stream "
                          "starts with <|endoftext|>, so the first window of each source starts with it).",
            "mean_entropy_nats": {k: v["mean_entropy_nats"][1:] for k, v in lens_res.items()},
            "embedding_entropy_nats": {k: v["mean_entropy_nats"][0] for k, v in lens_res.items()},
            "positions": {k: v["positions"] for k, v in lens_res.items()},
        },
        "heldout_perplexity": {k: {"ppl": round(v["ppl"], 3), "unigram_ppl": round(v["unigram_ppl"], 3),
                                   "targets": v["targets"]} for k, v in ppl["per_kind"].items()},
        "config": {k: cfg[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers",
                                       "num_attention_heads", "num_key_value_heads")},
    }
    with open(os.path.join(args.model, "eval.json"), "w") as f:
        json.dump(eval_json, f, indent=1, ensure_ascii=False)
        f.write("\n")
    full = {"ppl": ppl, "lens": lens_res, "slices": slices, "samples": samples,
            "settings": {"window": WINDOW, "windows_per_source": nw, "lens_windows_per_source": nlw,
                         "new_tokens": NEW_TOKENS, "seed": SAMPLE_SEED, "top_p": TOP_P,
                         "temperature": TEMPERATURE, "quick": args.quick},
            "eval_seconds": time.time() - t0}
    with open(args.out_full, "w") as f:
        json.dump(full, f, indent=1, ensure_ascii=False)
    print(f"evaluation done in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
