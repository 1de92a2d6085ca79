#!/usr/bin/env python3
"""Independent numpy reference for the Transformer Dynamics Explorer engine.

Needs only Python 3 + numpy. All arithmetic is done in float64 (weights stored as
F32/F16/BF16 are widened exactly to float64), so the reference is more accurate than
the float32 ONNX engine it checks; compare with a float32-sized tolerance.

Contents
  * read_safetensors()        minimal reader (F64, F32, F16, BF16, I64)
  * load_hf(dir)              forward passes read from a Hugging Face folder (config.json +
                              model.safetensors), written from transformers' definitions:
      - gpt2      GPT2LMHeadModel (Conv1D [in,out] weights, fused c_attn, learned
                  positions, LayerNorm, gelu_new, tied lm_head)
      - Decoder   the Llama tensor layout: llama, mistral, qwen2, qwen3, smollm3, olmo2,
                  phi3, gemma, gemma2, gemma3_text (FAMILIES: pre / sandwich / post norms,
                  q/k norms per head or per projection, Gemma's (1 + w) norms and
                  sqrt(d_model) embeddings, soft-capping, query_pre_attn_scalar, fused
                  qkv/gate_up, biases, GQA, per-layer sliding windows and NoPE layers)
      - gpt_neox  GPTNeoXForCausalLM / Pythia (LayerNorm with bias, fused qkv laid out
                  [n_heads, 3, head_dim], partial rotary, parallel or sequential
                  residual, exact erf GELU, untied embed_out)
  * rope_parameters(), Rope   RoPE from config.json in both formats (rope_parameters; the
                              older rope_theta / rope_scaling / rotary_* keys) with
                              transformers 5.17's precedence; default, linear, llama3, yarn,
                              longrope (short/long by the sequence length), dynamic NTK
  * greedy_kv()               greedy continuation through a KV cache (keys keep the rotation
                              they were given, as in transformers)
  * Llama2c                   native llama2.c legacy .bin reader with run.c's
                              *interleaved* RoPE (independent of tools/convert)
  * Llama2cTokenizer          llama2.c's tok512.bin + run.c encode()/decode()
  * lens()                    logit-lens quantities (docs/METRICS.md), through the model's
                              final norm, unembedding and final soft-capping
  * run_intervened()          head ablation (replace a head's z) and residual-stream patching
                              (replace resid_pre cells), greedy_intervened(), patching_grid()

Conventions (TransformerLens names, as the engine): resid_pre[L] = input of block L
(resid_pre[0] = token embedding (+ position embedding for gpt2; x sqrt(d_model) for
Gemma)); resid_mid[L] = resid_pre[L] + attention output of block L as it is added to the
stream (after the post-attention norm of Gemma 2/3 and OLMo 2; also for parallel-residual
NeoX blocks, i.e. without the MLP); resid_post[L] = block output = resid_pre[L+1];
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
        elif dt == "I64":
            out[name] = np.frombuffer(buf, "<i8").reshape(info["shape"])
            continue
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


def attention(q, k, v, q_pos, k_pos, scale, window=None, softcap=None):
    """q [H,s,hd] at positions q_pos; k/v [H,t,hd] (kv already expanded to H heads) at k_pos.
    A query sees keys at positions <= its own, and with a sliding window only the last
    `window` of them (itself included). Scores are soft-capped (cap * tanh(s / cap)) before
    the mask. Returns (out [s, H*hd], pattern [H,s,t])."""
    H, s, hd = q.shape
    scores = q @ k.transpose(0, 2, 1) * scale
    if softcap is not None:
        scores = softcap * np.tanh(scores / softcap)
    blocked = k_pos[None, :] > q_pos[:, None]
    if window is not None:
        blocked |= k_pos[None, :] <= q_pos[:, None] - window
    scores = np.where(blocked[None], -np.inf, scores)
    p = softmax(scores, -1)
    z = p @ v  # [H, s, hd]: each head's output before W_O (TransformerLens hook_z)
    if _Z_HOOK is not None:
        z = _Z_HOOK(z)
    out = z.transpose(1, 0, 2).reshape(s, H * hd)
    return out, p


# Set by run_intervened() while one block runs: a function of that block's z [H,s,hd]
# (head ablation), applied by attention(). None outside interventions.
_Z_HOOK: Callable | None = None

# Set by run_intervened() while one block runs: a function (site, out) of a sublayer's output as
# it is added to the residual stream ("attn_out": after the attention's output projection and
# any post-attention norm; "mlp_out": after the MLP and any post-MLP norm), TransformerLens's
# hook_attn_out / hook_mlp_out. Every block calls sub_out() on both. None outside interventions.
_SUB_HOOK: Callable | None = None


def sub_out(site: str, out):
    """A sublayer's output as it is added to the residual stream, through _SUB_HOOK if set."""
    return out if _SUB_HOOK is None else _SUB_HOOK(site, out)


def causal_attention(q, k, v):
    """Square causal attention (no cache): (out [T, H*hd], pattern [H,T,T])."""
    pos = np.arange(q.shape[1])
    return attention(q, k, v, pos, pos, 1.0 / math.sqrt(q.shape[-1]))


def rotate_half_apply(x, inv, pos, factor=1.0):
    """HF convention: rotate the first 2*len(inv) dims of x [H,T,hd] as two halves."""
    rot = 2 * len(inv)
    if rot == 0:
        return x
    ang = pos[:, None].astype(np.float64) * inv[None, :]  # [T, rot/2]
    cos = (np.concatenate([np.cos(ang), np.cos(ang)], -1)[None] * factor).astype(x.dtype)
    sin = (np.concatenate([np.sin(ang), np.sin(ang)], -1)[None] * factor).astype(x.dtype)
    xr, xp = x[..., :rot], x[..., rot:]
    half = rot // 2
    rotated = np.concatenate([-xr[..., half:], xr[..., :half]], -1)
    return np.concatenate([xr * cos + rotated * sin, xp], -1)


def rope_rotate_half(x, pos, theta, rot_dims):
    """Plain RoPE (base theta) of the first rot_dims dims."""
    if rot_dims == 0:
        return x
    return rotate_half_apply(x, 1.0 / theta ** (np.arange(0, rot_dims, 2, dtype=np.float64) / rot_dims), pos)


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


# ----------------------------------------------------------------------------- rope from config
SCALED = ("llama3", "yarn", "longrope")


def rope_parameters(cfg: dict, mt: str) -> dict:
    """{layer type or "all": rope dict} as transformers 5.17 standardises config.json, for
    both formats: rope_parameters, or the older rope_theta / rope_scaling (which, when set,
    replaces rope_parameters) / partial_rotary_factor, GPT-NeoX's rotary_emb_base /
    rotary_pct, Gemma 3's rope_local_base_freq, Phi-3's top-level original context."""
    max_pos = cfg.get("max_position_embeddings")
    if mt == "gemma3_text":
        keyed = {k: dict(v) for k, v in (cfg.get("rope_parameters") or {}).items() if v is not None}
        full = keyed.get("full_attention", {"rope_type": "default"})
        if cfg.get("rope_scaling") is not None:
            full.update(cfg["rope_scaling"])
        full.setdefault("rope_theta", cfg.get("rope_theta", 1_000_000.0))
        sliding = keyed.get("sliding_attention", {"rope_type": "default"})
        sliding.setdefault("rope_theta", cfg.get("rope_local_base_freq", 10_000.0))
        out = {"full_attention": full, "sliding_attention": sliding}
        for rp in out.values():
            rp.setdefault("rope_type", rp.pop("type", "default"))
            if rp["rope_type"] in SCALED:
                rp.setdefault("original_max_position_embeddings", max_pos)
        return out
    rp = dict(cfg.get("rope_scaling") or cfg.get("rope_parameters") or {})
    if mt == "gpt_neox":
        rp.setdefault("rope_theta", cfg.get("rotary_emb_base", 10_000.0))
        rp.setdefault("partial_rotary_factor", cfg.get("rotary_pct", 0.25))
    else:
        rp.setdefault("rope_theta", cfg.get("rope_theta", 2_000_000.0 if mt == "smollm3" else 10_000.0))
        partial = cfg.get("partial_rotary_factor", 1.0 if mt == "phi3" else None)
        if partial is not None:
            rp.setdefault("partial_rotary_factor", partial)
    rp.setdefault("rope_type", rp.pop("type", "default"))
    if mt == "phi3" and rp["rope_type"] in ("su", "yarn"):
        rp["rope_type"] = "longrope"
    if rp["rope_type"] in SCALED:
        top = cfg.get("original_max_position_embeddings", 4096 if mt == "phi3" else None)
        if top is not None:
            rp["original_max_position_embeddings"] = top
        rp.setdefault("original_max_position_embeddings", max_pos)
    return {"all": rp}


class Rope:
    """One rotary embedding: inverse frequencies for a sequence of a given total length
    (dynamic NTK and LongRoPE depend on it), the cos/sin factor, the rotated dims."""

    def __init__(self, rp: dict, head_dim: int, max_pos: int):
        self.type = rp["rope_type"]
        self.dim = int(head_dim * rp.get("partial_rotary_factor", 1.0))
        self.base = float(rp["rope_theta"])
        self.rp, self.max_pos, self.factor = rp, max_pos, 1.0
        exps = np.arange(0, self.dim, 2, dtype=np.float64) / self.dim
        self.exps = exps
        inv = self.base**-exps
        t = self.type
        if t == "linear":
            inv = inv / rp["factor"]
        elif t == "llama3":
            inv = self._llama3(inv)
        elif t == "yarn":
            inv = self._yarn(inv)
        elif t == "longrope":
            omax = rp["original_max_position_embeddings"]
            f = rp.get("factor") or max_pos / omax
            self.factor = rp.get("attention_factor") or (1.0 if f <= 1 else math.sqrt(1 + math.log(f) / math.log(omax)))
            self.short = inv / np.asarray(rp["short_factor"], dtype=np.float64)
            self.long = inv / np.asarray(rp["long_factor"], dtype=np.float64)
        elif t not in ("default", "dynamic"):
            raise ValueError(f"rope_type {t!r} not supported by the reference")
        self.inv = inv

    def _llama3(self, inv):
        rp = self.rp
        f, lo, hi, old = rp["factor"], rp["low_freq_factor"], rp["high_freq_factor"], rp["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        smooth = (old / wavelen - lo) / (hi - lo)
        mid = (1 - smooth) * inv / f + smooth * inv
        return np.where(wavelen < old / hi, inv, np.where(wavelen > old / lo, inv / f, mid))

    def _yarn(self, inv):
        rp, dim = self.rp, self.dim
        old = rp["original_max_position_embeddings"]
        f = rp.get("factor") or self.max_pos / old
        ms, msa = rp.get("mscale"), rp.get("mscale_all_dim")
        m = lambda s, k=1.0: 1.0 if s <= 1 else 0.1 * k * math.log(s) + 1.0  # noqa: E731
        att = rp.get("attention_factor")
        self.factor = att if att is not None else (m(f, ms) / m(f, msa) if ms and msa else m(f))
        fast, slow = rp.get("beta_fast") or 32, rp.get("beta_slow") or 1
        cdim = lambda rot: dim * math.log(old / (rot * 2 * math.pi)) / (2 * math.log(self.base))  # noqa: E731
        lo, hi = cdim(fast), cdim(slow)
        if rp.get("truncate", True):
            lo, hi = math.floor(lo), math.ceil(hi)
        lo, hi = max(lo, 0), min(hi, dim - 1)
        if lo == hi:
            hi += 0.001
        ramp = np.clip((np.arange(dim // 2) - lo) / (hi - lo), 0, 1)
        return (inv / f) * ramp + inv * (1 - ramp)

    def inv_freq(self, total: int):
        if self.type == "dynamic":
            n = max(total, self.max_pos)
            f = self.rp["factor"]
            base = self.base * ((f * n / self.max_pos) - (f - 1)) ** (self.dim / (self.dim - 2))
            return base**-self.exps
        if self.type == "longrope":
            return self.long if total > self.rp["original_max_position_embeddings"] else self.short
        return self.inv

    def __call__(self, x, pos, total):
        return rotate_half_apply(x, self.inv_freq(total), pos, self.factor)


# ----------------------------------------------------------------------------- models
class Model:
    """Common result: run(ids) -> dict(resid_pre, resid_mid, resid_post [L,T,d],
    pattern [L,H,T,T], logits [T,V]); final_norm(x); unembed(x). With a KV cache (a dict
    from new_cache()), run() continues the cached sequence: step() is one token."""

    arch = "?"
    n_layers = d_model = n_heads = d_vocab = 0

    def final_norm(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def unembed(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def block(self, L, x, pos, cache=None):  # -> (resid_mid, resid_post, pattern)
        raise NotImplementedError

    def embed(self, ids, pos):
        raise NotImplementedError

    def new_cache(self) -> dict:
        return {"length": 0, "k": {}, "v": {}}

    @staticmethod
    def cached(cache, L, k, v):
        """Appends this step's keys/values [heads, s, hd] to layer L's cache; returns all of them."""
        if cache is None:
            return k, v
        if L in cache["k"]:
            k = np.concatenate([cache["k"][L], k], 1)
            v = np.concatenate([cache["v"][L], v], 1)
        cache["k"][L], cache["v"][L] = k, v
        return k, v

    def run(self, ids, cache=None):
        ids = np.asarray(ids, dtype=np.int64)
        start = cache["length"] if cache else 0
        pos = np.arange(start, start + len(ids))
        x = self.embed(ids, pos)
        pre, mid, post, pat = [], [], [], []
        for L in range(self.n_layers):
            pre.append(x)
            m, x, p = self.block(L, x, pos, cache)
            mid.append(m)
            post.append(x)
            pat.append(p)
        if cache is not None:
            cache["length"] = start + len(ids)
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


def _heads(x, n, hd):
    """[T, n*hd] -> [n, T, hd]"""
    return x.reshape(x.shape[0], n, hd).transpose(1, 0, 2)


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
        assert cfg.get("scale_attn_weights", True)

    def embed(self, ids, pos):
        return self.W_E[ids] + self.w["wpe.weight"][pos]

    def block(self, L, x, pos, cache=None):
        w, p = self.w, f"h.{L}."
        d, H = self.d_model, self.n_heads
        hd = d // H
        h = layer_norm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], self.eps)
        qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]  # Conv1D [in,out]
        q, k, v = (_heads(qkv[:, i * d : (i + 1) * d], H, hd) for i in range(3))
        k, v = self.cached(cache, L, k, v)
        a, pat = attention(q, k, v, pos, np.arange(k.shape[1]), 1.0 / math.sqrt(hd))
        a = a @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        mid = x + sub_out("attn_out", a)
        h = layer_norm(mid, w[p + "ln_2.weight"], w[p + "ln_2.bias"], self.eps)
        h = self.act(h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"])
        h = h @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
        return mid, mid + sub_out("mlp_out", h), pat

    def final_norm(self, x):
        return layer_norm(x, self.w["ln_f.weight"], self.w["ln_f.bias"], self.eps)

    def unembed(self, x):
        return x @ self.W_E.T


# What differs between the decoders with the Llama tensor layout, from each family's modeling
# file in transformers 5.17: the norms around the sublayers ("pre": x + f(norm x); "sandwich":
# x + norm f(norm x); "post": x + norm f(x)), q/k norms ("head": RMSNorm over head_dim;
# "proj": over the whole projection), Gemma's (1 + w) norms and sqrt(d_model) embeddings,
# which config keys give biases, and the defaults of keys a config may omit.
FAMILIES = {
    "llama": dict(kv=None, hd=None, eps=1e-6, tied=False, act=("hidden_act", "silu"), bias="attention_bias", mlp_bias=True),
    "mistral": dict(kv=8, hd=None, eps=1e-6, tied=False, act=("hidden_act", "silu"), bias=None, window="mistral"),
    "qwen2": dict(kv=32, hd=None, eps=1e-6, tied=False, act=("hidden_act", "silu"), bias="qkv", window="qwen"),
    "qwen3": dict(kv=32, hd=128, eps=1e-6, tied=False, act=("hidden_act", "silu"), bias="attention_bias", qk="head", window="qwen"),
    "smollm3": dict(kv=4, hd=None, eps=1e-6, tied=True, act=("hidden_act", "silu"), bias="attention_bias", mlp_bias=True, window="smollm3"),
    "olmo2": dict(kv=None, hd=None, eps=1e-5, tied=False, act=("hidden_act", "silu"), bias="attention_bias", norms="post", qk="proj"),
    "phi3": dict(kv=None, hd=None, eps=1e-5, tied=False, act=("hidden_act", "silu"), bias=None, fused=True, window="mistral"),
    "gemma": dict(kv=16, hd=256, eps=1e-6, tied=True, act=("hidden_act", "gelu_pytorch_tanh"), bias="attention_bias", gemma=True),
    "gemma2": dict(kv=4, hd=256, eps=1e-6, tied=True, act=("hidden_activation", "gelu_pytorch_tanh"), bias="attention_bias",
                   gemma=True, norms="sandwich", window="gemma2", softcap=(50.0, 30.0)),
    "gemma3_text": dict(kv=4, hd=256, eps=1e-6, tied=True, act=("hidden_activation", "gelu_pytorch_tanh"), bias="attention_bias",
                        gemma=True, norms="sandwich", qk="head", window="gemma3", softcap=(None, None)),
}


def layer_types(cfg: dict, mt: str, n: int, no_rope: list) -> tuple[list, int | None]:
    """(attention type of each layer, the sliding window) per the family's config rules."""
    fam = FAMILIES[mt].get("window")
    given = cfg.get("layer_types")
    if fam == "mistral":  # one window for every layer (Mistral default 4096, Phi-3 none)
        w = cfg.get("sliding_window", 4096 if mt == "mistral" else None)
        return ["sliding_attention" if w is not None else "full_attention"] * n, w
    if fam == "qwen":
        w = cfg.get("sliding_window", 4096) if cfg.get("use_sliding_window", False) else None
        first = cfg.get("max_window_layers", 28)
        computed = ["sliding_attention" if w is not None and i >= first else "full_attention" for i in range(n)]
    elif fam == "smollm3":
        w = cfg.get("sliding_window")
        use = cfg.get("use_sliding_window", False)
        computed = ["sliding_attention" if use and w is not None and not no_rope[i] else "full_attention" for i in range(n)]
    elif fam == "gemma2":
        w = cfg.get("sliding_window", 4096)
        computed = ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(n)]
    elif fam == "gemma3":
        w = cfg.get("sliding_window", 4096)
        pattern = cfg.get("sliding_window_pattern", 6)
        computed = ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(n)]
    else:
        return ["full_attention"] * n, None
    return (given if given is not None else computed), w


class Decoder(Model):
    """Llama-layout decoders (model.layers.N.*): llama, mistral, qwen2, qwen3, smollm3,
    olmo2, phi3, gemma, gemma2, gemma3_text."""

    arch = "decoder"

    def __init__(self, cfg, w):
        mt = cfg["model_type"]
        f = FAMILIES[mt]
        self.cfg, self.w, self.mt, self.f = cfg, w, mt, f
        self.n_layers = n = cfg["num_hidden_layers"]
        self.d_model = cfg["hidden_size"]
        self.n_heads = cfg["num_attention_heads"]
        self.n_kv = cfg.get("num_key_value_heads") or f["kv"] or self.n_heads
        self.hd = cfg.get("head_dim") or f["hd"] or self.d_model // self.n_heads
        self.eps = cfg.get("rms_norm_eps", f["eps"])
        self.act = ACT[cfg.get(f["act"][0], f["act"][1])]
        self.gemma = f.get("gemma", False)
        self.norms = f.get("norms", "pre")
        max_pos = cfg.get("max_position_embeddings")
        if mt == "smollm3":
            every = cfg.get("no_rope_layer_interval", 4)
            keep = cfg.get("no_rope_layers") or [int((i + 1) % every != 0) for i in range(n)]
            self.no_rope = [not keep[i] for i in range(n)]
        else:
            self.no_rope = [False] * n
        self.types, self.window = layer_types(cfg, mt, n, self.no_rope)
        ropes = {t: Rope(rp, self.hd, max_pos) for t, rp in rope_parameters(cfg, mt).items()}
        self.ropes = [None if self.no_rope[i] else ropes.get(self.types[i], ropes.get("all")) for i in range(n)]
        # Phi3ForCausalLM.prepare_inputs_for_generation: once the sequence first passes LongRoPE's
        # original context, generation drops the cache and recomputes it (all keys long-rotated)
        long = next((r for r in self.ropes if r is not None and r.type == "longrope"), None)
        self.recompute_at = long.rp["original_max_position_embeddings"] if mt == "phi3" and long else None
        caps = f.get("softcap")
        if caps:  # Gemma 2 defaults 50 / 30; Gemma 3's attention takes no softcap in transformers 5.17
            self.attn_cap = cfg.get("attn_logit_softcapping", caps[0]) if mt == "gemma2" else None
            self.final_cap = cfg.get("final_logit_softcapping", caps[1])
            self.scale = cfg.get("query_pre_attn_scalar", 256) ** -0.5
        else:
            self.attn_cap = self.final_cap = None
            self.scale = self.hd**-0.5
        self.W_E = w["model.embed_tokens.weight"]
        self.d_vocab = self.W_E.shape[0]
        tied = cfg.get("tie_word_embeddings", f["tied"])
        self.W_U = self.W_E.T if tied else w["lm_head.weight"].T

    def rms(self, x, name):
        wt = self.w[name + ".weight"]
        return rms_norm(x, 1.0 + wt if self.gemma else wt, self.eps)

    def embed(self, ids, pos):
        e = self.W_E[ids]
        return e * math.sqrt(self.d_model) if self.gemma else e

    def _lin(self, x, name):
        y = x @ self.w[name + ".weight"].T
        b = self.w.get(name + ".bias")
        return y + b if b is not None else y

    def _qkv(self, h, a):
        H, KV, hd = self.n_heads, self.n_kv, self.hd
        if self.f.get("fused"):
            qkv = self._lin(h, a + "qkv_proj")
            return qkv[:, : H * hd], qkv[:, H * hd : (H + KV) * hd], qkv[:, (H + KV) * hd :]
        return self._lin(h, a + "q_proj"), self._lin(h, a + "k_proj"), self._lin(h, a + "v_proj")

    def attention(self, L, h, pos, cache):
        a = f"model.layers.{L}.self_attn."
        H, KV, hd = self.n_heads, self.n_kv, self.hd
        q, k, v = self._qkv(h, a)
        if self.f.get("qk") == "proj":
            q, k = self.rms(q, a + "q_norm"), self.rms(k, a + "k_norm")
        q, k, v = _heads(q, H, hd), _heads(k, KV, hd), _heads(v, KV, hd)
        if self.f.get("qk") == "head":
            q, k = self.rms(q, a + "q_norm"), self.rms(k, a + "k_norm")
        rope = self.ropes[L]
        total = int(pos[-1]) + 1
        if rope is not None:
            q, k = rope(q, pos, total), rope(k, pos, total)
        k, v = self.cached(cache, L, k, v)
        rep = H // KV
        k, v = np.repeat(k, rep, axis=0), np.repeat(v, rep, axis=0)  # head h -> kv h // rep
        window = self.window if self.types[L] == "sliding_attention" else None
        out, pat = attention(q, k, v, pos, np.arange(k.shape[1]), self.scale, window, self.attn_cap)
        return self._lin(out, a + "o_proj"), pat

    def mlp(self, L, h):
        m = f"model.layers.{L}.mlp."
        if self.f.get("fused"):
            gu = self._lin(h, m + "gate_up_proj")
            gate, up = np.split(gu, 2, axis=-1)
        else:
            gate, up = self._lin(h, m + "gate_proj"), self._lin(h, m + "up_proj")
        return self._lin(self.act(gate) * up, m + "down_proj")

    def block(self, L, x, pos, cache=None):
        p = f"model.layers.{L}."
        h = x if self.norms == "post" else self.rms(x, p + "input_layernorm")
        attn, pat = self.attention(L, h, pos, cache)
        if self.norms != "pre":
            attn = self.rms(attn, p + "post_attention_layernorm")
        mid = x + sub_out("attn_out", attn)
        if self.norms == "pre":
            h = self.rms(mid, p + "post_attention_layernorm")
        elif self.norms == "sandwich":
            h = self.rms(mid, p + "pre_feedforward_layernorm")
        else:
            h = mid
        out = self.mlp(L, h)
        if self.norms != "pre":
            out = self.rms(out, p + "post_feedforward_layernorm")
        return mid, mid + sub_out("mlp_out", out), pat

    def final_norm(self, x):
        return self.rms(x, "model.norm")

    def unembed(self, x):
        logits = x @ self.W_U
        if self.final_cap is not None:
            logits = self.final_cap * np.tanh(logits / self.final_cap)
        return logits


class GPTNeoX(Model):
    arch = "gpt_neox"

    def __init__(self, cfg, w):
        self.cfg = cfg
        self.w = _strip_prefix(w, "gpt_neox.")
        self.n_layers = cfg["num_hidden_layers"]
        self.d_model = cfg["hidden_size"]
        self.n_heads = cfg["num_attention_heads"]
        self.hd = self.d_model // self.n_heads
        self.rope = Rope(rope_parameters(cfg, "gpt_neox")["all"], self.hd, cfg.get("max_position_embeddings", 2048))
        self.eps = cfg.get("layer_norm_eps", 1e-5)
        self.parallel = cfg.get("use_parallel_residual", True)
        self.act = ACT[cfg.get("hidden_act", "gelu")]
        self.W_E = self.w["embed_in.weight"]
        self.d_vocab = self.W_E.shape[0]
        self.W_U = (self.w["embed_out.weight"] if "embed_out.weight" in self.w else self.W_E).T

    def embed(self, ids, pos):
        return self.W_E[ids]

    def _lin(self, x, name):
        y = x @ self.w[name + ".weight"].T
        b = self.w.get(name + ".bias")
        return y + b if b is not None else y

    def _ln(self, x, name):
        return layer_norm(x, self.w[name + ".weight"], self.w[name + ".bias"], self.eps)

    def block(self, L, x, pos, cache=None):
        p = f"layers.{L}."
        T, H, hd = x.shape[0], self.n_heads, self.hd
        h = self._ln(x, p + "input_layernorm")
        qkv = self._lin(h, p + "attention.query_key_value").reshape(T, H, 3 * hd)
        q, k, v = (qkv[:, :, i * hd : (i + 1) * hd].transpose(1, 0, 2) for i in range(3))
        total = int(pos[-1]) + 1
        q, k = self.rope(q, pos, total), self.rope(k, pos, total)
        k, v = self.cached(cache, L, k, v)
        a, pat = attention(q, k, v, pos, np.arange(k.shape[1]), 1.0 / math.sqrt(hd))
        attn_out = self._lin(a, p + "attention.dense")
        mid = x + sub_out("attn_out", attn_out)

        def mlp(z):
            z = self._ln(z, p + "post_attention_layernorm")
            return self._lin(self.act(self._lin(z, p + "mlp.dense_h_to_4h")), p + "mlp.dense_4h_to_h")

        post = mid + sub_out("mlp_out", mlp(x) if self.parallel else mlp(mid))
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
    if mt in FAMILIES:
        return Decoder(cfg, w)
    if mt == "gpt_neox":
        return GPTNeoX(cfg, w)
    raise ValueError(f"model_type {mt!r} not supported by the reference")


def greedy_kv(model: Model, prompt: list[int], n: int) -> tuple[list[int], np.ndarray]:
    """Greedy continuation through the KV cache: the prompt in one call, then one token per
    call, as transformers' generate() does (Phi-3: the cache is recomputed when the cached
    sequence reaches LongRoPE's original context); returns the ids and the logits each step
    chose from."""
    cache = model.new_cache()
    logits = model.run(prompt, cache)["logits"][-1]
    ids, steps = [], []
    for _ in range(n):
        steps.append(logits)
        nxt = int(np.argmax(logits))
        ids.append(nxt)
        if cache["length"] == getattr(model, "recompute_at", None):
            cache = model.new_cache()
            logits = model.run(list(prompt) + ids, cache)["logits"][-1]
        else:
            logits = model.run([nxt], cache)["logits"][-1]
    return ids, np.stack(steps)


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

    def embed(self, ids, pos):
        return self.tok[ids]

    def block(self, L, x, pos, cache=None):
        T, H, KV, hd = x.shape[0], self.n_heads, self.n_kv, self.hd
        h = rms_norm(x, self.rms_att[L], self.eps)
        q = (h @ self.wq[L].T).reshape(T, H, hd).transpose(1, 0, 2)
        k = (h @ self.wk[L].T).reshape(T, KV, hd).transpose(1, 0, 2)
        v = (h @ self.wv[L].T).reshape(T, KV, hd).transpose(1, 0, 2)
        q, k = rope_interleaved(q, pos, self.theta), rope_interleaved(k, pos, self.theta)
        rep = H // KV  # run.c: query head h uses kv head h / kv_mul
        k, v = np.repeat(k, rep, axis=0), np.repeat(v, rep, axis=0)
        a, pat = causal_attention(q, k, v)
        mid = x + sub_out("attn_out", a @ self.wo[L].T)
        h = rms_norm(mid, self.rms_ffn[L], self.eps)
        g = silu(h @ self.w1[L].T) * (h @ self.w3[L].T)
        return mid, mid + sub_out("mlp_out", g @ self.w2[L].T), pat

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
def run_intervened(model: Model, ids, head_z=None, resid_patch=None, sub_patch=None) -> dict:
    """model.run() with interventions, written from their definitions (README "Metrics"):

    head_z      {layer: {head: vector [d_head] or [T, d_head]}}: that head's z (its attention
                output before W_O) is the given vector at every position (zeros for zero
                ablation, the head's mean z over a clean run's positions for mean ablation), or
                the given row at each position (patching a head with another run's z).
    resid_patch {layer: {pos: vector [d_model]}}: resid_pre[layer][pos] is replaced before the
                block runs (layer 0: the embeddings).
    sub_patch   {site: {layer: {pos: vector [d_model]}}}, site "attn_out" or "mlp_out": that
                sublayer's output at pos, as it is added to the residual stream, is replaced.

    Returns run()'s dict plus "z" [L, H, T, d_head]: every head's z before any replacement, and
    "attn_out", "mlp_out" [L, T, d_model]: the sublayers' outputs before any replacement.
    """
    global _Z_HOOK, _SUB_HOOK
    ids = np.asarray(ids, dtype=np.int64)
    pos = np.arange(len(ids))
    x = model.embed(ids, pos)
    head_z = head_z or {}
    resid_patch = resid_patch or {}
    sub_patch = sub_patch or {}
    pre, mid, post, pat, zs = [], [], [], [], []
    subs: dict = {"attn_out": [], "mlp_out": []}
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

        def sub_hook(site, out, L=L):
            subs[site].append(out.copy())
            out = out.copy()
            for p, vec in sub_patch.get(site, {}).get(L, {}).items():
                out[p] = vec
            return out

        _Z_HOOK, _SUB_HOOK = hook, sub_hook
        try:
            m, x, p_ = model.block(L, x, pos, None)
        finally:
            _Z_HOOK = _SUB_HOOK = None
        assert len(seen) == 1, f"block {L} of {model.arch} did not go through attention() once"
        for site in subs:
            assert len(subs[site]) == L + 1, f"block {L} of {model.arch} did not report its {site} once"
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
        "attn_out": np.stack(subs["attn_out"]),
        "mlp_out": np.stack(subs["mlp_out"]),
    }


def head_z_for(model: Model, clean_z, heads, mode: str) -> dict:
    """The head_z argument of run_intervened() for an ablation of `heads` [(layer, head)];
    clean_z = run_intervened(model, ids)["z"] of the clean run (mean ablation)."""
    out: dict = {}
    for L, h in heads:
        vec = np.zeros(clean_z.shape[-1]) if mode == "zero" else clean_z[L, h].mean(axis=0)
        out.setdefault(L, {})[h] = vec
    return out


def greedy_intervened(model: Model, prompt: list[int], n: int, head_z: dict, stop=()) -> list[int]:
    """Greedy continuation with the same head_z at every step (full recomputation); a token
    in `stop` (EOS) ends it, included."""
    ids = list(prompt)
    out: list[int] = []
    for _ in range(n):
        nxt = int(np.argmax(run_intervened(model, ids, head_z=head_z)["logits"][-1]))
        out.append(nxt)
        ids.append(nxt)
        if nxt in stop:
            break
    return out


def logit_diff(logits_last, target: int, contrast):
    """logit(target) − logit(contrast), or log p(target) when contrast is None."""
    if contrast is not None:
        return float(logits_last[target] - logits_last[contrast])
    return float(log_softmax(logits_last)[target])


def head_patching_grid(model: Model, base_ids, source_ids, target: int, contrast):
    """LD at the last position of the base run with head h of layer L's z replaced by the
    source's at every position aligned from the end (the base run's own z at positions with no
    counterpart), for every L, h: [L, H]. Brute force: one full run per head."""
    src = run_intervened(model, source_ids)["z"]  # [L, H, S, d_head]
    own = run_intervened(model, base_ids)["z"]  # [L, H, T, d_head]: layer L's z is unchanged by a patch at L
    T, S = len(base_ids), len(source_ids)
    grid = np.full((model.n_layers, model.n_heads), np.nan)
    for L in range(model.n_layers):
        for h in range(model.n_heads):
            vec = own[L, h].copy()
            for p in range(max(0, T - S), T):
                vec[p] = src[L, h, p - (T - S)]
            r = run_intervened(model, base_ids, head_z={L: {h: vec}})
            grid[L, h] = logit_diff(r["logits"][-1], target, contrast)
    return grid


def patching_grid(model: Model, base_ids, source_ids, target: int, contrast, head_z=None, site="resid_pre"):
    """LD at the last position of the base run with `site`[L][p] replaced by the source's
    `site`[L][p - (T_base - T_source)] (aligned from the end), for every L, p: [L, T_base];
    NaN where the source has no aligned token. site: "resid_pre" (the block's input),
    "attn_out" or "mlp_out" (a sublayer's output as it is added to the residual stream).
    Brute force: one full run per cell."""
    src = run_intervened(model, source_ids, head_z=head_z)[site]
    T, S = len(base_ids), len(source_ids)
    grid = np.full((model.n_layers, T), np.nan)
    for L in range(model.n_layers):
        for p in range(T):
            q = p - (T - S)
            if q < 0:
                continue
            cell = {L: {p: src[L, q]}}
            if site == "resid_pre":
                r = run_intervened(model, base_ids, head_z=head_z, resid_patch=cell)
            else:
                r = run_intervened(model, base_ids, head_z=head_z, sub_patch={site: cell})
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
