#!/usr/bin/python3
"""The baseline a TransformerLens user would run: PyTorch eager, a run_with_cache-style
forward that keeps every residual stream and attention pattern, then the full logit lens
(ln_final + W_U on every row of the walk at every position, log-softmax, top-k, entropy,
log-prob and rank of the actual next token).

Usage: pytorch_analysis.py <model_dir> <ids.json> --threads N --repeats R [--device cuda] [--dtype bfloat16]
Prints one JSON object: the BLAS in use, timings per run and the peak RSS.
Needs Debian's python3-torch (1.13) and python3-numpy; install libopenblas0-pthread, or torch
falls back to the reference BLAS and runs ~50x slower (reported in the output).
--device cuda: the same analysis on an NVIDIA GPU (the baseline of npm run bench:gpu; TF32 off
so float32 means float32), timed with torch.cuda.synchronize() around each part.
"""
import argparse
import json
import math
import resource
import struct
import sys
import time

import numpy as np
import torch

DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}


def read_safetensors(path, device="cpu", dtype=torch.float32):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        arr = np.frombuffer(data[b:e], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
        if info["dtype"] == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[name] = torch.from_numpy(arr.astype(np.float32)).to(device=device, dtype=dtype)
    return out


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def blas_info():
    cfg = torch.__config__.show()
    for key in ("OpenBLAS", "openblas", "MKL", "BLAS_INFO"):
        if key in cfg:
            line = [l for l in cfg.splitlines() if key in l]
            return line[0].strip() if line else key
    return "unknown"


def which_blas_loaded():
    try:
        with open("/proc/self/maps") as f:
            libs = {l.split()[-1] for l in f if ".so" in l}
        hits = sorted(l for l in libs if "blas" in l.lower() or "lapack" in l.lower())
        return hits
    except OSError:
        return []


def gpt2_forward(w, cfg, ids):
    d, H, L = cfg["n_embd"], cfg["n_head"], cfg["n_layer"]
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    p = "transformer." if "transformer.wte.weight" in w else ""
    T = ids.shape[0]
    x = w[p + "wte.weight"][ids] + w[p + "wpe.weight"][:T]
    cache = {"blocks.0.hook_resid_pre": x}
    mask = torch.full((T, T), float("-inf"), device=x.device, dtype=x.dtype).triu(1)
    hd = d // H
    for l in range(L):
        q = f"{p}h.{l}."
        h = torch.nn.functional.layer_norm(x, (d,), w[q + "ln_1.weight"], w[q + "ln_1.bias"], eps)
        qkv = h @ w[q + "attn.c_attn.weight"] + w[q + "attn.c_attn.bias"]
        Q, K, V = qkv.split(d, dim=-1)
        Q = Q.view(T, H, hd).transpose(0, 1)
        K = K.view(T, H, hd).transpose(0, 1)
        V = V.view(T, H, hd).transpose(0, 1)
        att = torch.softmax(Q @ K.transpose(-1, -2) / math.sqrt(hd) + mask, dim=-1)
        cache[f"blocks.{l}.attn.hook_pattern"] = att
        z = (att @ V).transpose(0, 1).reshape(T, d)
        x = x + z @ w[q + "attn.c_proj.weight"] + w[q + "attn.c_proj.bias"]
        cache[f"blocks.{l}.hook_resid_mid"] = x
        h = torch.nn.functional.layer_norm(x, (d,), w[q + "ln_2.weight"], w[q + "ln_2.bias"], eps)
        m = torch.nn.functional.gelu(h @ w[q + "mlp.c_fc.weight"] + w[q + "mlp.c_fc.bias"], approximate="tanh")
        x = x + m @ w[q + "mlp.c_proj.weight"] + w[q + "mlp.c_proj.bias"]
        cache[f"blocks.{l}.hook_resid_post"] = x
    ln = lambda t: torch.nn.functional.layer_norm(t, (d,), w[p + "ln_f.weight"], w[p + "ln_f.bias"], eps)
    return cache, ln, w[p + "wte.weight"].T


def rope(x, theta):
    T, hd = x.shape[-2], x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float32, device=x.device) / hd))
    f = torch.outer(torch.arange(T, dtype=torch.float32, device=x.device), inv)
    emb = torch.cat([f, f], dim=-1).to(x.dtype)
    x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
    return x * emb.cos() + torch.cat([-x2, x1], dim=-1) * emb.sin()


def llama_forward(w, cfg, ids):
    d, H, L = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    KV = cfg.get("num_key_value_heads", H)
    hd = d // H
    eps = cfg.get("rms_norm_eps", 1e-6)
    theta = cfg.get("rope_theta", 10000.0)
    T = ids.shape[0]
    rms = lambda t, g: t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + eps) * g
    x = w["model.embed_tokens.weight"][ids]
    cache = {"blocks.0.hook_resid_pre": x}
    mask = torch.full((T, T), float("-inf"), device=x.device, dtype=x.dtype).triu(1)
    for l in range(L):
        q = f"model.layers.{l}."
        h = rms(x, w[q + "input_layernorm.weight"])
        Q = (h @ w[q + "self_attn.q_proj.weight"].T).view(T, H, hd).transpose(0, 1)
        K = (h @ w[q + "self_attn.k_proj.weight"].T).view(T, KV, hd).transpose(0, 1)
        V = (h @ w[q + "self_attn.v_proj.weight"].T).view(T, KV, hd).transpose(0, 1)
        Q, K = rope(Q, theta), rope(K, theta)
        K = K.repeat_interleave(H // KV, dim=0)
        V = V.repeat_interleave(H // KV, dim=0)
        att = torch.softmax(Q @ K.transpose(-1, -2) / math.sqrt(hd) + mask, dim=-1)
        cache[f"blocks.{l}.attn.hook_pattern"] = att
        z = (att @ V).transpose(0, 1).reshape(T, d)
        x = x + z @ w[q + "self_attn.o_proj.weight"].T
        cache[f"blocks.{l}.hook_resid_mid"] = x
        h = rms(x, w[q + "post_attention_layernorm.weight"])
        m = torch.nn.functional.silu(h @ w[q + "mlp.gate_proj.weight"].T) * (h @ w[q + "mlp.up_proj.weight"].T)
        x = x + m @ w[q + "mlp.down_proj.weight"].T
        cache[f"blocks.{l}.hook_resid_post"] = x
    W_U = (w["lm_head.weight"] if "lm_head.weight" in w else w["model.embed_tokens.weight"]).T
    return cache, (lambda t: rms(t, w["model.norm.weight"])), W_U


def analysis(w, cfg, ids, k=5):
    fwd = gpt2_forward if cfg["model_type"] == "gpt2" else llama_forward
    sync(ids.device)
    t0 = time.perf_counter()
    cache, ln_final, W_U = fwd(w, cfg, ids)
    sync(ids.device)
    t1 = time.perf_counter()
    L = cfg.get("n_layer", cfg.get("num_hidden_layers"))
    # the walk: resid_pre[0], resid_post[0..L-1] (TransformerLens' accumulated_resid). One row
    # at a time: stacking all L+1 rows first (cache.accumulated_resid(apply_ln=True) @ W_U)
    # is what many notebooks do, but it is slower and needs ~5x the memory here, so the
    # baseline is the stronger, per-row version.
    rows = [cache["blocks.0.hook_resid_pre"]] + [cache[f"blocks.{l}.hook_resid_post"] for l in range(L)]
    nxt = ids[1:].view(-1, 1)
    out = []
    for resid in rows:
        logp = torch.log_softmax(ln_final(resid) @ W_U, dim=-1)  # [T, V]
        top = logp.topk(k, dim=-1)
        entropy = -(logp.exp() * logp).sum(-1)
        next_lp = logp[:-1].gather(-1, nxt)
        next_rank = (logp[:-1] > next_lp).sum(-1)
        out.append((top.values.exp(), top.indices, entropy, next_lp.squeeze(-1), next_rank))
        del logp
    sync(ids.device)
    t2 = time.perf_counter()
    return (t1 - t0) * 1000, (t2 - t1) * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("ids_json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # float32 products in float32, as ours
        torch.backends.cudnn.allow_tf32 = False
    cfg = json.load(open(f"{a.model_dir}/config.json"))
    t0 = time.perf_counter()
    w = read_safetensors(f"{a.model_dir}/model.safetensors", device, getattr(torch, a.dtype))
    load_ms = (time.perf_counter() - t0) * 1000
    ids = torch.tensor(json.load(open(a.ids_json)), dtype=torch.long, device=device)
    runs = []
    with torch.no_grad():
        analysis(w, cfg, ids)  # warm-up
        for _ in range(a.repeats):
            f, l = analysis(w, cfg, ids)
            runs.append({"forward_ms": f, "lens_ms": l, "total_ms": f + l})
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    json.dump(
        {
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
            "dtype": a.dtype,
            "threads": torch.get_num_threads(),
            "blas": blas_info(),
            "blas_libraries_loaded": which_blas_loaded(),
            "tokens": int(ids.shape[0]),
            "load_ms": load_ms,
            "runs": runs,
            "peak_rss_mb": rss_kb / 1024,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
