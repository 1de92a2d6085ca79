#!/usr/bin/env python3
"""Independent numpy reference for the Transformer Dynamics Explorer engine.

Needs only Python 3 + numpy. All arithmetic is done in float64 (weights stored as
F32/F16/BF16 are widened exactly to float64), so the reference is more accurate than
the float32 ONNX engine it checks; compare with a float32-sized tolerance.

Contents
  * read_safetensors()        minimal reader (F64, F32, F16, BF16)
  * load_hf(dir)              forward passes for three Hugging Face families, read from
                              an HF folder (config.json + model.safetensors):
      - gpt2      GPT2LMHeadModel (Conv1D [in,out] weights, fused c_attn, learned
                  positions, LayerNorm, gelu_new, tied lm_head)
      - llama     LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM (RMSNorm,
                  RoPE rotate_half, SwiGLU, GQA, optional q/k/v(/o) biases, tied or not)
      - gpt_neox  GPTNeoXForCausalLM / Pythia (LayerNorm with bias, fused qkv laid out
                  [n_heads, 3, head_dim], partial rotary, parallel or sequential
                  residual, exact erf GELU, untied embed_out)
  * Llama2c                   native llama2.c legacy .bin reader with run.c's
                              *interleaved* RoPE (independent of tools/convert)
  * Llama2cTokenizer          llama2.c's tok512.bin + run.c encode()/decode()
  * lens()                    logit-lens quantities (docs/METRICS.md)
  * run_intervened()          head ablation (replace a head's z) and residual-stream patching
                              (replace resid_pre cells), greedy_intervened(), patching_grid()

Conventions (TransformerLens names, as the engine): resid_pre[L] = input of block L
(resid_pre[0] = token embedding (+ position embedding for gpt2)); resid_mid[L] =
resid_pre[L] + attention output of block L (also for parallel-residual NeoX blocks,
i.e. without the MLP); resid_post[L] = block output = resid_pre[L+1];
pattern[L] = softmax attention probabilities [n_heads, q, k], causal.
"""
from __future__ import annotations

import json
import math
import os
import struct
import sys
from typing import Callable

import numpy as np

DT = np.float64


# ----------------------------------------------------------------------------- io
def read_safetensors(path: str) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    base = 8 + n
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        buf = data[base + a : base + b]
        dt = info["dtype"]
        if dt == "F64":
            arr = np.frombuffer(buf, "<f8")
        elif dt == "F32":
            arr = np.frombuffer(buf, "<f4")
        elif dt == "F16":
            arr = np.frombuffer(buf, "<f2")
        elif dt == "BF16":
            arr = (np.frombuffer(buf, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {dt}")
        out[name] = arr.astype(DT).reshape(info["shape"])
    return out


# ----------------------------------------------------------------------------- math
def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps) * w
    return y + b if b is not None else y


def rms_norm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


_erf = np.vectorize(math.erf, otypes=[DT])


def gelu_erf(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def silu(x):
    return x / (1.0 + np.exp(-x))


ACT: dict[str, Callable] = {
    "gelu": gelu_erf,
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "gelu_fast": gelu_tanh,
    "silu": silu,
    "swish": silu,
    "relu": lambda x: np.maximum(x, 0.0),
}


def softmax(x, axis=-1):
    m = x.max(axis=axis, keepdims=True)
    e = np.exp(x - m)
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def causal_attention(q, k, v):
    """q [H,T,hd], k/v [H,T,hd] (kv already expanded to H heads).
    Returns (out [T, H*hd], pattern [H,T,T])."""
    H, T, hd = q.shape
    scores = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
    mask = np.triu(np.ones((T, T), dtype=bool), 1)
    scores = np.where(mask[None], -np.inf, scores)
    p = softmax(scores, -1)
    z = p @ v  # [H, T, hd]: each head's output before W_O (TransformerLens hook_z)
    if _Z_HOOK is not None:
        z = _Z_HOOK(z)
    out = z.transpose(1, 0, 2).reshape(T, H * hd)
    return out, p


# Set by run_intervened() while one block runs: a function of that block's z [H,T,hd]
# (head ablation), applied by causal_attention(). None outside interventions.
_Z_HOOK: Callable | None = None


def rope_rotate_half(x, pos, theta, rot_dims):
    """HF convention: x [H,T,hd]; rotate the first rot_dims dims as two halves."""
    if rot_dims == 0:
        return x
    inv = 1.0 / theta ** (np.arange(0, rot_dims, 2, dtype=DT) / rot_dims)
    ang = pos[:, None].astype(DT) * inv[None, :]  # [T, rot/2]
    cos = np.concatenate([np.cos(ang), np.cos(ang)], -1)[None]
    sin = np.concatenate([np.sin(ang), np.sin(ang)], -1)[None]
    xr, xp = x[..., :rot_dims], x[..., rot_dims:]
    half = rot_dims // 2
    rot = np.concatenate([-xr[..., half:], xr[..., :half]], -1)
    return np.concatenate([xr * cos + rot * sin, xp], -1)


def rope_interleaved(x, pos, theta):
    """llama2.c run.c convention: pairs (2j, 2j+1), freq 1/theta^(2j/hd). x [H,T,hd]."""
    hd = x.shape[-1]
    inv = 1.0 / theta ** (np.arange(0, hd, 2, dtype=DT) / hd)
    ang = pos[:, None].astype(DT) * inv[None, :]
    c, s = np.cos(ang)[None], np.sin(ang)[None]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


# ----------------------------------------------------------------------------- models
class Model:
    """Common result: run(ids) -> dict(resid_pre, resid_mid, resid_post [L,T,d],
    pattern [L,H,T,T], logits [T,V]); final_norm(x); unembed(x)."""

    arch = "?"
    n_layers = d_model = n_heads = d_vocab = 0

    def final_norm(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def unembed(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def block(self, L, x, pos):  # -> (resid_mid, resid_post, pattern)
        raise NotImplementedError

    def embed(self, ids):
        raise NotImplementedError

    def run(self, ids):
        ids = np.asarray(ids, dtype=np.int64)
        pos = np.arange(len(ids))
        x = self.embed(ids)
        pre, mid, post, pat = [], [], [], []
        for L in range(self.n_layers):
            pre.append(x)
            m, x, p = self.block(L, x, pos)
            mid.append(m)
            post.append(x)
            pat.append(p)
        logits = self.unembed(self.final_norm(x))
        return {
            "resid_pre": np.stack(pre),
            "resid_mid": np.stack(mid),
            "resid_post": np.stack(post),
            "pattern": np.stack(pat),
            "logits": logits,
        }


def _strip_prefix(w: dict, prefix: str) -> dict:
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in w.items()}


class GPT2(Model):
    arch = "gpt2"

    def __init__(self, cfg, w):
        self.cfg = cfg
        self.w = _strip_prefix(w, "transformer.")
        self.n_layers = cfg["n_layer"]
        self.d_model = cfg["n_embd"]
        self.n_heads = cfg["n_head"]
        self.eps = cfg.get("layer_norm_epsilon", 1e-5)
        self.act = ACT[cfg.get("activation_function", "gelu_new")]
        self.W_E = self.w["wte.weight"]
        self.d_vocab = self.W_E.shape[0]
        assert not cfg.get("scale_attn_by_inverse_layer_idx", False)
        assert not cfg.get("reorder_and_upcast_attn", False)

    def embed(self, ids):
        return self.W_E[ids] + self.w["wpe.weight"][np.arange(len(ids))]

    def block(self, L, x, pos):
        w, p = self.w, f"h.{L}."
        d, H = self.d_model, self.n_heads
        T, hd = x.shape[0], d // H
        h = layer_norm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], self.eps)
        qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]  # Conv1D [in,out]
        q, k, v = (qkv[:, i * d : (i + 1) * d].reshape(T, H, hd).transpose(1, 0, 2) for i in range(3))
        a, pat = causal_attention(q, k, v)
        a = a @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        mid = x + a
        h = layer_norm(mid, w[p + "ln_2.weight"], w[p + "ln_2.bias"], self.eps)
        h = self.act(h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"])
        h = h @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
        return mid, mid + h, pat

    def final_norm(self, x):
        return layer_norm(x, self.w["ln_f.weight"], self.w["ln_f.bias"], self.eps)

    def unembed(self, x):
        return x @ self.W_E.T


class LlamaFamily(Model):
    """llama / mistral / qwen2 (HF layout: rotate_half RoPE)."""

    arch = "llama"

    def __init__(self, cfg, w):
        self.cfg = cfg
        self.w = w
        self.n_layers = cfg["num_hidden_layers"]
        self.d_model = cfg["hidden_size"]
        self.n_heads = cfg["num_attention_heads"]
        self.n_kv = cfg.get("num_key_value_heads") or self.n_heads
        self.hd = cfg.get("head_dim") or self.d_model // self.n_heads
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        self.theta = float(cfg.get("rope_theta", 10000.0))
        rs = cfg.get("rope_scaling")
        if rs and rs.get("rope_type", rs.get("type")) not in (None, "default"):
            raise ValueError(f"rope_scaling {rs} not supported by the reference")
        self.act = ACT[cfg.get("hidden_act", "silu")]
        self.W_E = w["model.embed_tokens.weight"]
        self.d_vocab = self.W_E.shape[0]
        self.W_U = w["lm_head.weight"].T if "lm_head.weight" in w else self.W_E.T

    def embed(self, ids):
        return self.W_E[ids]

    def _lin(self, x, name):
        y = x @ self.w[name + ".weight"].T
        b = self.w.get(name + ".bias")
        return y + b if b is not None else y

    def block(self, L, x, pos):
        p = f"model.layers.{L}."
        T, H, KV, hd = x.shape[0], self.n_heads, self.n_kv, self.hd
        h = rms_norm(x, self.w[p + "input_layernorm.weight"], self.eps)
        q = self._lin(h, p + "self_attn.q_proj").reshape(T, H, hd).transpose(1, 0, 2)
        k = self._lin(h, p + "self_attn.k_proj").reshape(T, KV, hd).transpose(1, 0, 2)
        v = self._lin(h, p + "self_attn.v_proj").reshape(T, KV, hd).transpose(1, 0, 2)
        q = rope_rotate_half(q, pos, self.theta, hd)
        k = rope_rotate_half(k, pos, self.theta, hd)
        rep = H // KV
        k, v = np.repeat(k, rep, axis=0), np.repeat(v, rep, axis=0)  # head h -> kv h//rep
        a, pat = causal_attention(q, k, v)
        mid = x + self._lin(a, p + "self_attn.o_proj")
        h = rms_norm(mid, self.w[p + "post_attention_layernorm.weight"], self.eps)
        g = self.act(self._lin(h, p + "mlp.gate_proj")) * self._lin(h, p + "mlp.up_proj")
        return mid, mid + self._lin(g, p + "mlp.down_proj"), pat

    def final_norm(self, x):
        return rms_norm(x, self.w["model.norm.weight"], self.eps)

    def unembed(self, x):
        return x @ self.W_U


class GPTNeoX(Model):
    arch = "gpt_neox"

    def __init__(self, cfg, w):
        self.cfg = cfg
        self.w = _strip_prefix(w, "gpt_neox.")
        self.n_layers = cfg["num_hidden_layers"]
        self.d_model = cfg["hidden_size"]
        self.n_heads = cfg["num_attention_heads"]
        self.hd = self.d_model // self.n_heads
        pct = cfg.get("partial_rotary_factor", cfg.get("rotary_pct", 0.25))
        self.rot = int(self.hd * pct)
        self.theta = float(cfg.get("rope_theta", cfg.get("rotary_emb_base", 10000)))
        self.eps = cfg.get("layer_norm_eps", 1e-5)
        self.parallel = cfg.get("use_parallel_residual", True)
        self.act = ACT[cfg.get("hidden_act", "gelu")]
        self.W_E = self.w["embed_in.weight"]
        self.d_vocab = self.W_E.shape[0]
        self.W_U = (self.w["embed_out.weight"] if "embed_out.weight" in self.w else self.W_E).T

    def embed(self, ids):
        return self.W_E[ids]

    def _lin(self, x, name):
        y = x @ self.w[name + ".weight"].T
        b = self.w.get(name + ".bias")
        return y + b if b is not None else y

    def _ln(self, x, name):
        return layer_norm(x, self.w[name + ".weight"], self.w[name + ".bias"], self.eps)

    def block(self, L, x, pos):
        p = f"layers.{L}."
        T, H, hd = x.shape[0], self.n_heads, self.hd
        h = self._ln(x, p + "input_layernorm")
        qkv = self._lin(h, p + "attention.query_key_value").reshape(T, H, 3 * hd)
        q, k, v = (qkv[:, :, i * hd : (i + 1) * hd].transpose(1, 0, 2) for i in range(3))
        q = rope_rotate_half(q, pos, self.theta, self.rot)
        k = rope_rotate_half(k, pos, self.theta, self.rot)
        a, pat = causal_attention(q, k, v)
        attn_out = self._lin(a, p + "attention.dense")
        mid = x + attn_out

        def mlp(z):
            z = self._ln(z, p + "post_attention_layernorm")
            return self._lin(self.act(self._lin(z, p + "mlp.dense_h_to_4h")), p + "mlp.dense_4h_to_h")

        post = mid + mlp(x) if self.parallel else mid + mlp(mid)
        return mid, post, pat

    def final_norm(self, x):
        return self._ln(x, "final_layer_norm")

    def unembed(self, x):
        return x @ self.W_U


def load_hf(model_dir: str) -> Model:
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    w = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    mt = cfg.get("model_type")
    if mt == "gpt2":
        return GPT2(cfg, w)
    if mt in ("llama", "mistral", "qwen2"):
        return LlamaFamily(cfg, w)
    if mt == "gpt_neox":
        return GPTNeoX(cfg, w)
    raise ValueError(f"model_type {mt!r} not supported by the reference")


# ----------------------------------------------------------------------------- llama2.c
class Llama2c(Model):
    """Reads a llama2.c legacy (v0) checkpoint directly; RoPE exactly as run.c
    (adjacent pairs), so this path shares nothing with tools/convert."""

    arch = "llama2c"

    def __init__(self, path: str):
        with open(path, "rb") as f:
            data = f.read()
        dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack_from("<7i", data, 0)
        shared = vocab > 0
        vocab = abs(vocab)
        self.n_layers, self.d_model, self.n_heads, self.n_kv = n_layers, dim, n_heads, n_kv
        self.d_vocab, self.seq_len, self.hidden = vocab, seq_len, hidden
        self.hd = dim // n_heads
        kv_dim = n_kv * self.hd
        f = np.frombuffer(data, "<f4", offset=28).astype(DT)
        o = 0

        def take(*shape):
            nonlocal o
            n = int(np.prod(shape))
            a = f[o : o + n].reshape(shape)
            o += n
            return a

        self.tok = take(vocab, dim)
        self.rms_att = take(n_layers, dim)
        self.wq = take(n_layers, dim, dim)
        self.wk = take(n_layers, kv_dim, dim)
        self.wv = take(n_layers, kv_dim, dim)
        self.wo = take(n_layers, dim, dim)
        self.rms_ffn = take(n_layers, dim)
        self.w1 = take(n_layers, hidden, dim)
        self.w2 = take(n_layers, dim, hidden)
        self.w3 = take(n_layers, hidden, dim)
        self.rms_final = take(dim)
        take(seq_len, self.hd // 2)  # freq_cis_real (unused, as in run.c)
        take(seq_len, self.hd // 2)  # freq_cis_imag
        self.wcls = self.tok if shared else take(vocab, dim)
        assert o == f.size, (o, f.size)
        self.eps, self.theta = 1e-5, 10000.0

    def embed(self, ids):
        return self.tok[ids]

    def block(self, L, x, pos):
        T, H, KV, hd = x.shape[0], self.n_heads, self.n_kv, self.hd
        h = rms_norm(x, self.rms_att[L], self.eps)
        q = (h @ self.wq[L].T).reshape(T, H, hd).transpose(1, 0, 2)
        k = (h @ self.wk[L].T).reshape(T, KV, hd).transpose(1, 0, 2)
        v = (h @ self.wv[L].T).reshape(T, KV, hd).transpose(1, 0, 2)
        q, k = rope_interleaved(q, pos, self.theta), rope_interleaved(k, pos, self.theta)
        rep = H // KV  # run.c: query head h uses kv head h / kv_mul
        k, v = np.repeat(k, rep, axis=0), np.repeat(v, rep, axis=0)
        a, pat = causal_attention(q, k, v)
        mid = x + a @ self.wo[L].T
        h = rms_norm(mid, self.rms_ffn[L], self.eps)
        g = silu(h @ self.w1[L].T) * (h @ self.w3[L].T)
        return mid, mid + g @ self.w2[L].T, pat

    def final_norm(self, x):
        return rms_norm(x, self.rms_final, self.eps)

    def unembed(self, x):
        return x @ self.wcls.T


def greedy(model: Model, prompt: list[int], n: int, stop: int | None = None) -> list[int]:
    """Greedy continuation (argmax, lowest id on exact ties as np.argmax)."""
    ids = list(prompt)
    out: list[int] = []
    for _ in range(n):
        nxt = int(np.argmax(model.run(ids)["logits"][-1]))
        if stop is not None and nxt == stop:
            break
        out.append(nxt)
        ids.append(nxt)
    return out


class Llama2cTokenizer:
    """tok512.bin + the encode()/decode() algorithms of llama2.c run.c."""

    def __init__(self, path: str):
        with open(path, "rb") as f:
            data = f.read()
        (self.max_token_length,) = struct.unpack_from("<i", data, 0)
        o = 4
        self.pieces: list[bytes] = []
        self.scores: list[float] = []
        while o < len(data):
            s, n = struct.unpack_from("<fi", data, o)
            o += 8
            self.pieces.append(data[o : o + n])
            self.scores.append(s)
            o += n
        self.lookup = {}
        for i, p in enumerate(self.pieces):
            self.lookup.setdefault(p, i)  # run.c bsearch; pieces are unique here

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        toks: list[int] = []
        if bos:
            toks.append(1)
        if text != "":
            toks.append(self.lookup[b" "])  # dummy prefix, as sentencepiece/run.c
        for ch in text:  # one UTF-8 codepoint at a time
            b = ch.encode("utf-8")
            if b in self.lookup:
                toks.append(self.lookup[b])
            else:
                toks.extend(x + 3 for x in b)  # byte fallback: <0x00> is id 3
        while True:
            best, best_id, best_i = -1e10, -1, -1
            for i in range(len(toks) - 1):
                j = self.lookup.get(self.pieces[toks[i]] + self.pieces[toks[i + 1]], -1)
                if j != -1 and self.scores[j] > best:
                    best, best_id, best_i = self.scores[j], j, i
            if best_i == -1:
                break
            toks[best_i : best_i + 2] = [best_id]
        if eos:
            toks.append(2)
        return toks

    def decode(self, ids: list[int], prev: int = 1) -> str:
        out = b""
        for t in ids:
            piece = self.pieces[t]
            if prev == 1 and piece.startswith(b" "):
                piece = piece[1:]
            if len(piece) == 6 and piece.startswith(b"<0x") and piece.endswith(b">"):
                piece = bytes([int(piece[3:5], 16)])
            out += piece
            prev = t
        return out.decode("utf-8", errors="replace")


# ----------------------------------------------------------------------------- lens
def lens(model: Model, run: dict, ids, k: int = 5) -> list[dict]:
    """Logit lens on resid_post[L] for every L (docs/METRICS.md)."""
    ids = list(ids)
    T = len(ids)
    lp_final = log_softmax(run["logits"])
    p_final = np.exp(lp_final)
    out = []
    for L in range(model.n_layers):
        logits = model.unembed(model.final_norm(run["resid_post"][L]))
        lp = log_softmax(logits)
        p = np.exp(lp)
        top = np.argsort(-logits, axis=-1, kind="stable")[:, :k]
        entry = {
            "layer": L,
            "top_ids": top.tolist(),
            "top_probs": np.take_along_axis(p, top, -1),
            "entropy": -(p * lp).sum(-1),
            "next_logprob": [float(lp[t, ids[t + 1]]) if t + 1 < T else None for t in range(T)],
            "next_rank": [int((logits[t] > logits[t, ids[t + 1]]).sum()) if t + 1 < T else None for t in range(T)],
            "kl_to_final": (p_final * (lp_final - lp)).sum(-1),
            "_logits": logits,
        }
        out.append(entry)
    return out


# ----------------------------------------------------------------------------- interventions
def run_intervened(model: Model, ids, head_z=None, resid_patch=None) -> dict:
    """model.run() with interventions, written from their definitions (README "Metrics"):

    head_z      {layer: {head: vector [d_head]}}: that head's z (its attention output before
                W_O) is the given vector at every position — zeros for zero ablation, the head's
                mean z over a clean run's positions for mean ablation.
    resid_patch {layer: {pos: vector [d_model]}}: resid_pre[layer][pos] is replaced before the
                block runs (layer 0: the embeddings).

    Returns run()'s dict plus "z" [L, H, T, d_head]: every head's z before any replacement.
    """
    global _Z_HOOK
    ids = np.asarray(ids, dtype=np.int64)
    pos = np.arange(len(ids))
    x = model.embed(ids)
    head_z = head_z or {}
    resid_patch = resid_patch or {}
    pre, mid, post, pat, zs = [], [], [], [], []
    for L in range(model.n_layers):
        x = x.copy()
        for p, vec in resid_patch.get(L, {}).items():
            x[p] = vec
        pre.append(x)
        seen = []

        def hook(z, L=L, seen=seen):
            seen.append(z.copy())
            z = z.copy()
            for h, vec in head_z.get(L, {}).items():
                z[h, :, :] = vec
            return z

        _Z_HOOK = hook
        try:
            m, x, p_ = model.block(L, x, pos)
        finally:
            _Z_HOOK = None
        assert len(seen) == 1, f"block {L} of {model.arch} did not go through causal_attention() once"
        zs.append(seen[0])
        mid.append(m)
        post.append(x)
        pat.append(p_)
    logits = model.unembed(model.final_norm(x))
    return {
        "resid_pre": np.stack(pre),
        "resid_mid": np.stack(mid),
        "resid_post": np.stack(post),
        "pattern": np.stack(pat),
        "logits": logits,
        "z": np.stack(zs),
    }


def head_z_for(model: Model, clean_z, heads, mode: str) -> dict:
    """The head_z argument of run_intervened() for an ablation of `heads` [(layer, head)];
    clean_z = run_intervened(model, ids)["z"] of the clean run (mean ablation)."""
    out: dict = {}
    for L, h in heads:
        vec = np.zeros(clean_z.shape[-1]) if mode == "zero" else clean_z[L, h].mean(axis=0)
        out.setdefault(L, {})[h] = vec
    return out


def greedy_intervened(model: Model, prompt: list[int], n: int, head_z: dict) -> list[int]:
    """Greedy continuation with the same head_z at every step (full recomputation)."""
    ids = list(prompt)
    out: list[int] = []
    for _ in range(n):
        nxt = int(np.argmax(run_intervened(model, ids, head_z=head_z)["logits"][-1]))
        out.append(nxt)
        ids.append(nxt)
    return out


def logit_diff(logits_last, target: int, contrast):
    """logit(target) − logit(contrast), or log p(target) when contrast is None."""
    if contrast is not None:
        return float(logits_last[target] - logits_last[contrast])
    return float(log_softmax(logits_last)[target])


def patching_grid(model: Model, base_ids, source_ids, target: int, contrast, head_z=None):
    """LD at the last position of the base run with resid_pre[L][p] replaced by the source's
    resid_pre[L][p - (T_base - T_source)] (aligned from the end), for every L, p: [L, T_base];
    NaN where the source has no aligned token. Brute force: one full run per cell."""
    src = run_intervened(model, source_ids, head_z=head_z)["resid_pre"]
    T, S = len(base_ids), len(source_ids)
    grid = np.full((model.n_layers, T), np.nan)
    for L in range(model.n_layers):
        for p in range(T):
            q = p - (T - S)
            if q < 0:
                continue
            r = run_intervened(model, base_ids, head_z=head_z, resid_patch={L: {p: src[L, q]}})
            grid[L, p] = logit_diff(r["logits"][-1], target, contrast)
    return grid


# ----------------------------------------------------------------------------- cli
def _main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(
            "usage: numpy_ref.py top <hf_dir | model.bin> <id,id,...>   (final top-5 per position)\n"
            "       numpy_ref.py greedy <model.bin> <tok.bin> [n]      (llama2.c greedy from BOS)",
            file=sys.stderr,
        )
        return 2
    cmd = argv[0]
    if cmd == "top":
        m = Llama2c(argv[1]) if argv[1].endswith(".bin") else load_hf(argv[1])
        ids = [int(s) for s in argv[2].split(",")]
        logits = m.run(ids)["logits"]
        for t, row in enumerate(logits):
            top = np.argsort(-row)[:5]
            print(t, ids[t], [(int(i), round(float(row[i]), 5)) for i in top])
        return 0
    if cmd == "greedy":
        m, tok = Llama2c(argv[1]), Llama2cTokenizer(argv[2])
        n = int(argv[3]) if len(argv) > 3 else 80
        ids = greedy(m, [1], n, stop=1)
        print(ids)
        print(tok.decode(ids))
        return 0
    print(f"unknown command {cmd}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
