#!/usr/bin/env python3
"""Step 4: train td-mini (Llama-style, ~6.5 M parameters) on 2 CPU cores.

Schedule: STEPS optimizer steps of 4096 tokens each. Phase 1 (steps < PHASE2_START) uses
16 sequences x 256 tokens, phase 2 (the final part) uses 8 sequences x 512 tokens, i.e. the full
context of max_position_embeddings = 512. AdamW (betas 0.9/0.95, weight decay 0.1 on matrices),
linear warmup then cosine decay to 10% of the peak LR, gradient clipping at 1.0.

Batches: each sequence picks a source with the mix weights (prepare_corpus.SOURCES) and a uniformly
random window of that source's training token stream; the RNG is seeded with (SEED, step), so a
resumed run sees exactly the batches an uninterrupted run would have.

Checkpoints (model + optimizer + step) are written atomically to work/ckpt/last.pt every
CKPT_EVERY_S seconds, at the phase boundary and at the end; `--resume` continues from it.
The log is appended to tools/train/train_log.txt.

usage: python3 tools/train/train.py [--resume] [--steps N] [--phase2-start N]
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import WORK, HERE, tune_malloc, load_sources, load_tokens  # noqa: E402
from model import Config, LlamaLM  # noqa: E402

SEED = 1234
STEPS = 1800
PHASE2_START = 1300
WARMUP = 100
LR_MAX = 2e-3
LR_MIN = 2e-4
WD = 0.1
CLIP = 1.0
CKPT_EVERY_S = 420
EVAL_EVERY = 100
CKPT_DIR = os.path.join(WORK, "ckpt")
LOG = os.path.join(HERE, "train_log.txt")


def log(msg):
    line = time.strftime("%Y-%m-%d %H:%M:%S ") + msg
    print(line, flush=True)
    with open(LOG, "a") as f:
        f.write(line + "\n")


def batch_shape(step, phase2_start):
    return (16, 256) if step < phase2_start else (8, 512)


def lr_at(step, steps):
    if step < WARMUP:
        return LR_MAX * (step + 1) / WARMUP
    t = (step - WARMUP) / max(1, steps - WARMUP)
    return LR_MIN + 0.5 * (LR_MAX - LR_MIN) * (1 + math.cos(math.pi * min(1.0, t)))


class Data:
    def __init__(self):
        src = load_sources()
        self.names = list(src)
        self.weights = np.array([src[n]["weight"] for n in self.names], dtype=np.float64)
        self.weights /= self.weights.sum()
        self.train = {n: load_tokens("train", n) for n in self.names}
        self.heldout = {n: load_tokens("heldout", n) for n in self.names}
        self.kind = {n: src[n]["kind"] for n in self.names}

    def batch(self, step, B, T):
        rng = np.random.default_rng([SEED, step])
        out = np.empty((B, T + 1), dtype=np.int64)
        for b in range(B):
            name = self.names[rng.choice(len(self.names), p=self.weights)]
            arr = self.train[name]
            i = rng.integers(0, len(arr) - T - 1)
            out[b] = arr[i:i + T + 1]
        x = torch.from_numpy(out)
        return x[:, :-1], x[:, 1:]

    def val_batches(self, T=256, per_source=2):
        """Fixed small validation set: the first per_source windows of each held-out stream."""
        res = {"prose": [], "code": []}
        for n in self.names:
            arr = self.heldout[n]
            for k in range(per_source):
                w = arr[k * T:(k + 1) * T + 1].astype(np.int64)
                res[self.kind[n]].append(w)
        return {k: torch.from_numpy(np.stack(v)) for k, v in res.items()}


def param_groups(model):
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": WD}, {"params": no_decay, "weight_decay": 0.0}]


def save_ckpt(model, opt, step, elapsed, args, name="last.pt"):
    os.makedirs(CKPT_DIR, exist_ok=True)
    tmp = os.path.join(CKPT_DIR, name + ".tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                "elapsed": elapsed, "config": model.cfg.to_dict(),
                "steps": args.steps, "phase2_start": args.phase2_start}, tmp)
    os.replace(tmp, os.path.join(CKPT_DIR, name))


@torch.no_grad()
def val_loss(model, vb):
    model.eval()
    out = {}
    for k, x in vb.items():
        _, loss = model(x[:, :-1], x[:, 1:])
        out[k] = loss.item()
    model.train()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--phase2-start", type=int, default=PHASE2_START)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--stop-at", type=int, default=None, help="save and stop after this step (testing)")
    args = ap.parse_args()
    tune_malloc()
    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)

    cfg = Config()
    model = LlamaLM(cfg)
    opt = torch.optim.AdamW(param_groups(model), lr=LR_MAX, betas=(0.9, 0.95), eps=1e-8)
    step, elapsed = 0, 0.0
    ck = os.path.join(CKPT_DIR, "last.pt")
    if args.resume and os.path.exists(ck):
        state = torch.load(ck)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, elapsed = state["step"], state["elapsed"]
        args.steps, args.phase2_start = state["steps"], state["phase2_start"]
        log(f"resumed from {ck} at step {step} (elapsed {elapsed:.0f}s)")
    else:
        log(f"new run: config {json.dumps(cfg.to_dict())}")
        log(f"params {model.num_params()} ; steps {args.steps}, phase2 (8x512) from step "
            f"{args.phase2_start}, lr {LR_MAX}->{LR_MIN} warmup {WARMUP}, wd {WD}, clip {CLIP}, "
            f"threads {args.threads}, torch {torch.__version__}")
    data = Data()
    vb = data.val_batches()
    model.train()
    t_last_ckpt = time.time()
    t_start = time.time() - elapsed
    t_win, tok_win = time.time(), 0
    while step < args.steps:
        B, T = batch_shape(step, args.phase2_start)
        lr = lr_at(step, args.steps)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = data.batch(step, B, T)
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP).item()
        opt.step()
        step += 1
        tok_win += B * T
        if step % 10 == 0 or step == args.steps:
            now = time.time()
            log(f"step {step:5d}  T {T}  loss {loss.item():.4f}  lr {lr:.2e}  gnorm {gn:.2f}  "
                f"{tok_win / (now - t_win):.0f} tok/s  elapsed {now - t_start:.0f}s")
            t_win, tok_win = now, 0
        if step % EVAL_EVERY == 0 or step == args.steps:
            v = val_loss(model, vb)
            log(f"step {step:5d}  val(held-out, T=256)  prose {v['prose']:.4f}  code {v['code']:.4f}")
        boundary = step in (args.phase2_start, args.steps, args.stop_at)
        if boundary or time.time() - t_last_ckpt > CKPT_EVERY_S:
            save_ckpt(model, opt, step, time.time() - t_start, args)
            if boundary:
                save_ckpt(model, opt, step, time.time() - t_start, args, name=f"step{step}.pt")
            t_last_ckpt = time.time()
        if step == args.stop_at:
            log(f"stopped at step {step} (--stop-at)")
            return
    log(f"done: {step} steps, {(time.time() - t_start) / 60:.1f} min of training wall time")


if __name__ == "__main__":
    main()
