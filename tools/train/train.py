#!/usr/bin/env python3
"""Step 4: train td-mini (Llama-style, ~6.5 M parameters) on 2 CPU cores within a wall-time budget.

Schedule ("warmup-stable-decay", every step = 4096 tokens):
  * warmup: LR rises linearly to LR_MAX over WARMUP steps;
  * phase 1 (stable): constant LR_MAX, batches of 16 sequences x 256 tokens;
  * phase 2 (final part): PHASE2_STEPS steps of 8 sequences x 512 tokens (the full context,
    max_position_embeddings = 512) while the LR decays (cosine) from LR_MAX to LR_MIN.
Phase 2 starts at the first step where (elapsed training time + estimated phase-2 time) reaches the
budget (--budget-min), the estimate being PHASE2_STEPS x the recent phase-1 step time x
PHASE2_COST_RATIO. This fits the run to the budget on a machine whose speed is unknown or shared.
The chosen phase-2 start step is logged and stored in the checkpoint; pass --phase2-start N to fix
it instead (then the whole run is a pure function of the seed: same batches, same updates).
AdamW (betas 0.9/0.95, weight decay 0.1 on matrices), gradient clipping at 1.0.

Logit-lens (early-exit) auxiliary loss: the training loss is the next-token cross-entropy of the
output plus LENS_AUX_WEIGHT x the mean, over the intermediate blocks 1..L-1, of the cross-entropy of
the logit lens at that block (final RMSNorm + the tied unembedding applied to the residual stream),
computed on a random 1/LENS_AUX_FRAC of the batch positions (the same positions for every block).
This is early-exit / deep supervision (as in LayerSkip, Elhoushi et al. 2024). Without it the
intermediate read-outs of a tied-embedding model are dominated by the current token's own embedding
and are over-confident (lens entropy after block 1 below the output's); with it every block's
read-out is a calibrated next-token guess and the lens sharpens with depth, which is what the
extension's logit-lens views are meant to show. --lens-aux 0 trains without it.

Batches: each sequence picks a source with the mix weights (prepare_corpus.SOURCES) and a uniformly
random window of that source's training token stream; the RNG is seeded with (SEED, step), so a
resumed run sees exactly the batches an uninterrupted run would have.

Checkpoints (model + optimizer + step + schedule state) are written atomically to
work/ckpt/last.pt every CKPT_EVERY_S seconds, at the phase switch and at the end; `--resume`
continues from it exactly. The log goes to tools/train/train_log.txt (appended on resume).

usage: python3 tools/train/train.py [--resume] [--budget-min 105] [--phase2-start N] [--lens-aux W]
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import WORK, HERE, tune_malloc, load_sources, load_tokens  # noqa: E402
from model import Config, LlamaLM  # noqa: E402

SEED = 1234
WARMUP = 100
PHASE2_STEPS = 160
PHASE2_COST_RATIO = 2.0   # measured: an 8x512 step costs ~2x a 16x256 step (attention is O(T^2))
MAX_PHASE1_STEPS = 4000
LR_MAX = 2e-3
LR_MIN = 2e-4
WD = 0.1
CLIP = 1.0
CKPT_EVERY_S = 420
EVAL_EVERY = 100
LENS_AUX_WEIGHT = 0.5
LENS_AUX_FRAC = 8
CKPT_DIR = os.path.join(WORK, "ckpt")
LOG = os.path.join(HERE, "train_log.txt")


def log(msg):
    line = time.strftime("%Y-%m-%d %H:%M:%S ") + msg
    print(line, flush=True)
    with open(LOG, "a") as f:
        f.write(line + "\n")


def batch_shape(step, phase2_start):
    return (8, 512) if phase2_start is not None and step >= phase2_start else (16, 256)


def lr_at(step, phase2_start):
    if step < WARMUP:
        return LR_MAX * (step + 1) / WARMUP
    if phase2_start is None or step < phase2_start:
        return LR_MAX
    t = min(1.0, (step - phase2_start + 1) / PHASE2_STEPS)
    return LR_MIN + 0.5 * (LR_MAX - LR_MIN) * (1 + math.cos(math.pi * t))


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


def lens_aux_loss(model, hidden, y, step):
    """Mean logit-lens cross-entropy over blocks 1..L-1 on a seeded random 1/LENS_AUX_FRAC of the
    positions (hidden[0] is the embedding output, hidden[-1] the last block = the real output)."""
    B, T = y.shape
    g = torch.Generator().manual_seed(SEED * 1_000_003 + step)
    idx = torch.randperm(B * T, generator=g)[: B * T // LENS_AUX_FRAC]
    yy = y.reshape(-1)[idx]
    mids = hidden[1:-1]
    total = 0.0
    for h in mids:
        logits = model.lens_logits(h.reshape(B * T, -1)[idx])
        total = total + F.cross_entropy(logits.float(), yy)
    return total / len(mids)


def param_groups(model):
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": WD}, {"params": no_decay, "weight_decay": 0.0}]


def save_ckpt(model, opt, step, elapsed, phase2_start, step_time, name="last.pt"):
    os.makedirs(CKPT_DIR, exist_ok=True)
    tmp = os.path.join(CKPT_DIR, name + ".tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                "elapsed": elapsed, "config": model.cfg.to_dict(),
                "phase2_start": phase2_start, "step_time": step_time}, tmp)
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
    ap.add_argument("--budget-min", type=float, default=105.0,
                    help="training wall-time budget in minutes (decides when phase 2 starts)")
    ap.add_argument("--phase2-start", type=int, default=None, help="fix the phase-2 start step")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 because the 2 cores are shared (2 OpenMP threads measured 2-4x slower under load)")
    ap.add_argument("--lens-aux", type=float, default=LENS_AUX_WEIGHT,
                    help="weight of the logit-lens auxiliary loss (0 = off)")
    ap.add_argument("--stop-at", type=int, default=None, help="save and stop after this step (testing)")
    args = ap.parse_args()
    tune_malloc()
    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)

    cfg = Config()
    model = LlamaLM(cfg)
    opt = torch.optim.AdamW(param_groups(model), lr=LR_MAX, betas=(0.9, 0.95), eps=1e-8)
    step, elapsed, phase2_start, step_time = 0, 0.0, args.phase2_start, None
    ck = os.path.join(CKPT_DIR, "last.pt")
    if args.resume and os.path.exists(ck):
        state = torch.load(ck)
        if state["phase2_start"] is not None and state["step"] >= state["phase2_start"] + PHASE2_STEPS:
            print(f"training already complete ({state['step']} steps in {ck}); nothing to do")
            return
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, elapsed = state["step"], state["elapsed"]
        step_time = state["step_time"]
        if state["phase2_start"] is not None:
            phase2_start = state["phase2_start"]
        log(f"resumed from {ck} at step {step} (elapsed {elapsed:.0f}s, phase2_start {phase2_start})")
    else:
        open(LOG, "w").close()  # a fresh run starts a fresh log
        log(f"new run: config {json.dumps(cfg.to_dict())}")
        log(f"params {model.num_params()} ; warmup {WARMUP} -> lr {LR_MAX} constant (16x256) until "
            f"phase 2 = {PHASE2_STEPS} steps of 8x512 with cosine decay to {LR_MIN}; phase 2 start "
            f"{phase2_start if phase2_start is not None else 'chosen to fit a %.0f min budget' % args.budget_min}; "
            f"wd {WD}, clip {CLIP}, threads {args.threads}, torch {torch.__version__}; logit-lens aux loss "
            f"weight {args.lens_aux} on 1/{LENS_AUX_FRAC} of the positions of blocks 1..{cfg.num_hidden_layers - 1}")
    budget = args.budget_min * 60
    data = Data()
    vb = data.val_batches()
    model.train()
    t_last_ckpt = time.time()
    t_start = time.time() - elapsed
    t_win, tok_win = time.time(), 0
    while phase2_start is None or step < phase2_start + PHASE2_STEPS:
        t_step = time.time()
        B, T = batch_shape(step, phase2_start)
        lr = lr_at(step, phase2_start)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = data.batch(step, B, T)
        aux = None
        if args.lens_aux > 0:
            _, loss, hidden = model(x, y, return_hidden=True)
            aux = lens_aux_loss(model, hidden, y, step)
            total = loss + args.lens_aux * aux
        else:
            _, loss = model(x, y)
            total = loss
        opt.zero_grad(set_to_none=True)
        total.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP).item()
        opt.step()
        step += 1
        tok_win += B * T
        dt = time.time() - t_step
        if phase2_start is None:
            step_time = dt if step_time is None else 0.95 * step_time + 0.05 * dt
        last = phase2_start is not None and step == phase2_start + PHASE2_STEPS
        if step % 10 == 0 or last:
            now = time.time()
            aux_s = f"  lens-aux {aux.item():.4f}" if aux is not None else ""
            log(f"step {step:5d}  T {T}  loss {loss.item():.4f}{aux_s}  lr {lr:.2e}  gnorm {gn:.2f}  "
                f"{tok_win / (now - t_win):.0f} tok/s  elapsed {now - t_start:.0f}s")
            t_win, tok_win = now, 0
        if step % EVAL_EVERY == 0 or last:
            v = val_loss(model, vb)
            log(f"step {step:5d}  val(held-out, T=256)  prose {v['prose']:.4f}  code {v['code']:.4f}")
        switched = False
        if phase2_start is None and step >= WARMUP:
            est = PHASE2_STEPS * step_time * PHASE2_COST_RATIO
            if time.time() - t_start + est >= budget or step >= MAX_PHASE1_STEPS:
                phase2_start = step
                switched = True
                log(f"phase 2 starts at step {step}: elapsed {time.time() - t_start:.0f}s, phase-1 step "
                    f"time {step_time:.2f}s, estimated phase 2 {est:.0f}s (budget {budget:.0f}s)")
        boundary = switched or last or step == args.stop_at
        if boundary or time.time() - t_last_ckpt > CKPT_EVERY_S:
            save_ckpt(model, opt, step, time.time() - t_start, phase2_start, step_time)
            if switched or last:
                save_ckpt(model, opt, step, time.time() - t_start, phase2_start, step_time,
                          name=f"step{step}.pt")
            t_last_ckpt = time.time()
        if step == args.stop_at:
            log(f"stopped at step {step} (--stop-at)")
            return
    log(f"done: {step} steps ({phase2_start} at 16x256, {step - phase2_start} at 8x512), "
        f"{(time.time() - t_start) / 60:.1f} min of training wall time")


if __name__ == "__main__":
    main()
