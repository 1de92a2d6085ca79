#!/usr/bin/env python3
"""ONNX exports that no code of ours built, for the graph-surgery tests (issue 6).

Defines tiny PyTorch re-implementations of three Hugging Face causal LMs, written the
way the HF modeling files are written (Llama: RMSNorm with rsqrt, rotate_half RoPE from
position_ids, GQA repeat_kv, SwiGLU; GPT-2: Conv1D as addmm, learned positions, tied
lm_head, gelu_new; GPT-NeoX: fused per-head qkv, partial rotary, parallel residual
`mlp_out + attn_out + x`, exact GELU), loads the weights of one of our safetensors
fixtures (with the numpy reader of numpy_ref.py, so the numbers are comparable), checks
the module against numpy_ref's float64 forward pass, and exports it with
`torch.onnx.export` the way Optimum lays out a decoder "with past":

  inputs   input_ids [batch, seq] int64, attention_mask [batch, past+seq] int64,
           position_ids [batch, seq] int64, past_key_values.{L}.key|value [batch, kv, past, hd]
  outputs  logits [batch, seq, vocab], present.{L}.key|value [batch, kv, past+seq, hd]

Output: test/fixtures/onnx/<fixture>-torch/{config.json, tokenizer.json,
tokenizer_config.json, onnx/model.onnx}. Committed, so CI needs no Python.

Needs Debian's python3-torch (1.13, CPU) and numpy; no `onnx` package, no network.
Run from the repository root:   /usr/bin/python3 tools/reference/export_torch_onnx.py
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy_ref  # noqa: E402

torch.set_num_threads(1)
torch.manual_seed(0)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OPSET = 17


def t(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.asarray(a, dtype=np.float32))


def causal_bias(attention_mask: torch.Tensor, position_ids: torch.Tensor, dtype) -> torch.Tensor:
    """[b, 1, q, k] additive bias: 0 where key k is visible from query q, finfo.min elsewhere
    (keys are numbered by the running count of attended tokens, as HF does)."""
    k_pos = (attention_mask.cumsum(-1) - 1)[:, None, None, :]
    q_pos = position_ids[:, None, :, None]
    allowed = (k_pos <= q_pos) & (attention_mask[:, None, None, :] > 0)
    return (~allowed).to(dtype) * torch.finfo(dtype).min


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope_cos_sin(inv_freq: torch.Tensor, position_ids: torch.Tensor):
    freqs = (inv_freq[None, :, None] @ position_ids[:, None, :].float()).transpose(1, 2)  # [b, s, rot/2]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos()[:, None], emb.sin()[:, None]  # [b, 1, s, rot]


# ----------------------------------------------------------------------------- Llama
class LlamaRMSNorm(nn.Module):
    def __init__(self, w, eps):
        super().__init__()
        self.weight = nn.Parameter(t(w))
        self.eps = eps

    def forward(self, x):
        input_dtype = x.dtype
        x = x.to(torch.float32)
        variance = x.pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.eps)
        return self.weight * x.to(input_dtype)


def linear(w, b=None):
    out_f, in_f = w.shape
    lin = nn.Linear(in_f, out_f, bias=b is not None)
    with torch.no_grad():
        lin.weight.copy_(t(w))
        if b is not None:
            lin.bias.copy_(t(b))
    return lin


class LlamaLayer(nn.Module):
    def __init__(self, cfg, w, L):
        super().__init__()
        p = f"model.layers.{L}."
        self.H = cfg["num_attention_heads"]
        self.KV = cfg.get("num_key_value_heads") or self.H
        self.hd = cfg.get("head_dim") or cfg["hidden_size"] // self.H
        eps = cfg.get("rms_norm_eps", 1e-6)
        self.input_layernorm = LlamaRMSNorm(w[p + "input_layernorm.weight"], eps)
        self.post_attention_layernorm = LlamaRMSNorm(w[p + "post_attention_layernorm.weight"], eps)
        g = lambda n: (w[p + n + ".weight"], w.get(p + n + ".bias"))  # noqa: E731
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (linear(*g("self_attn." + n)) for n in ("q_proj", "k_proj", "v_proj", "o_proj"))
        self.gate_proj, self.up_proj, self.down_proj = (linear(*g("mlp." + n)) for n in ("gate_proj", "up_proj", "down_proj"))

    def forward(self, x, cos, sin, bias, past_k, past_v):
        b, s = x.shape[0], x.shape[1]
        residual = x
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(b, s, self.H, self.hd).transpose(1, 2)
        k = self.k_proj(h).view(b, s, self.KV, self.hd).transpose(1, 2)
        v = self.v_proj(h).view(b, s, self.KV, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = torch.cat([past_k, k], dim=2)
        v = torch.cat([past_v, v], dim=2)
        present = (k, v)
        rep = self.H // self.KV
        if rep > 1:  # repeat_kv
            k = k[:, :, None].expand(b, self.KV, rep, k.shape[2], self.hd).reshape(b, self.H, k.shape[2], self.hd)
            v = v[:, :, None].expand(b, self.KV, rep, v.shape[2], self.hd).reshape(b, self.H, v.shape[2], self.hd)
        scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.hd) + bias
        probs = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        a = torch.matmul(probs, v).transpose(1, 2).reshape(b, s, self.H * self.hd)
        x = residual + self.o_proj(a)
        residual = x
        h = self.post_attention_layernorm(x)
        x = residual + self.down_proj(nn.functional.silu(self.gate_proj(h)) * self.up_proj(h))
        return x, present


class TinyLlama(nn.Module):
    def __init__(self, cfg, w):
        super().__init__()
        self.n_layers = cfg["num_hidden_layers"]
        self.embed_tokens = nn.Embedding.from_pretrained(t(w["model.embed_tokens.weight"]), freeze=True)
        self.layers = nn.ModuleList([LlamaLayer(cfg, w, L) for L in range(self.n_layers)])
        self.norm = LlamaRMSNorm(w["model.norm.weight"], cfg.get("rms_norm_eps", 1e-6))
        head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
        self.lm_head = linear(head)
        hd = self.layers[0].hd
        theta = float(cfg.get("rope_theta", 10000.0))
        self.register_buffer("inv_freq", 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))

    def forward(self, input_ids, attention_mask, position_ids, *past):
        x = self.embed_tokens(input_ids)
        cos, sin = rope_cos_sin(self.inv_freq, position_ids)
        bias = causal_bias(attention_mask, position_ids, x.dtype)
        presents = []
        for L, layer in enumerate(self.layers):
            x, pr = layer(x, cos, sin, bias, past[2 * L], past[2 * L + 1])
            presents.extend(pr)
        return (self.lm_head(self.norm(x)), *presents)


# ----------------------------------------------------------------------------- GPT-2
class Conv1D(nn.Module):
    """HF's GPT-2 Conv1D: weight [in, out], y = addmm(b, x.view(-1, in), W)."""

    def __init__(self, w, b):
        super().__init__()
        self.weight = nn.Parameter(t(w))
        self.bias = nn.Parameter(t(b))
        self.nf = w.shape[1]

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


def layer_norm(w, b, eps):
    ln = nn.LayerNorm(w.shape[0], eps=eps)
    with torch.no_grad():
        ln.weight.copy_(t(w))
        ln.bias.copy_(t(b))
    return ln


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class GPT2Block(nn.Module):
    def __init__(self, cfg, w, L):
        super().__init__()
        p = f"h.{L}."
        eps = cfg.get("layer_norm_epsilon", 1e-5)
        self.H = cfg["n_head"]
        self.d = cfg["n_embd"]
        self.hd = self.d // self.H
        self.ln_1 = layer_norm(w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
        self.ln_2 = layer_norm(w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
        c = lambda n: Conv1D(w[p + n + ".weight"], w[p + n + ".bias"])  # noqa: E731
        self.c_attn, self.c_proj, self.c_fc, self.mlp_proj = c("attn.c_attn"), c("attn.c_proj"), c("mlp.c_fc"), c("mlp.c_proj")

    def forward(self, x, bias, past_k, past_v):
        b, s = x.shape[0], x.shape[1]
        residual = x
        q, k, v = self.c_attn(self.ln_1(x)).split(self.d, dim=2)
        q, k, v = (z.view(b, s, self.H, self.hd).permute(0, 2, 1, 3) for z in (q, k, v))
        k = torch.cat((past_k, k), dim=-2)
        v = torch.cat((past_v, v), dim=-2)
        scores = torch.matmul(q, k.transpose(-1, -2)) / torch.full([], v.size(-1) ** 0.5, dtype=q.dtype)
        probs = nn.functional.softmax(scores + bias, dim=-1)
        a = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous().view(b, s, self.d)
        x = residual + self.c_proj(a)
        residual = x
        x = residual + self.mlp_proj(gelu_new(self.c_fc(self.ln_2(x))))
        return x, (k, v)


class TinyGPT2(nn.Module):
    def __init__(self, cfg, w):
        super().__init__()
        w = {(k[len("transformer.") :] if k.startswith("transformer.") else k): v for k, v in w.items()}
        self.wte = nn.Embedding.from_pretrained(t(w["wte.weight"]), freeze=True)
        self.wpe = nn.Embedding.from_pretrained(t(w["wpe.weight"]), freeze=True)
        self.h = nn.ModuleList([GPT2Block(cfg, w, L) for L in range(cfg["n_layer"])])
        self.ln_f = layer_norm(w["ln_f.weight"], w["ln_f.bias"], cfg.get("layer_norm_epsilon", 1e-5))
        self.lm_head = nn.Linear(cfg["n_embd"], w["wte.weight"].shape[0], bias=False)
        self.lm_head.weight = self.wte.weight  # tied, as GPT2LMHeadModel

    def forward(self, input_ids, attention_mask, position_ids, *past):
        x = self.wte(input_ids) + self.wpe(position_ids)
        bias = causal_bias(attention_mask, position_ids, x.dtype)
        presents = []
        for L, block in enumerate(self.h):
            x, pr = block(x, bias, past[2 * L], past[2 * L + 1])
            presents.extend(pr)
        return (self.lm_head(self.ln_f(x)), *presents)


# ----------------------------------------------------------------------------- GPT-NeoX
class NeoXLayer(nn.Module):
    def __init__(self, cfg, w, L):
        super().__init__()
        p = f"gpt_neox.layers.{L}."
        eps = cfg.get("layer_norm_eps", 1e-5)
        self.H = cfg["num_attention_heads"]
        self.d = cfg["hidden_size"]
        self.hd = self.d // self.H
        self.rot = int(self.hd * cfg.get("rotary_pct", 0.25))
        self.input_layernorm = layer_norm(w[p + "input_layernorm.weight"], w[p + "input_layernorm.bias"], eps)
        self.post_attention_layernorm = layer_norm(w[p + "post_attention_layernorm.weight"], w[p + "post_attention_layernorm.bias"], eps)
        g = lambda n: linear(w[p + n + ".weight"], w.get(p + n + ".bias"))  # noqa: E731
        self.query_key_value, self.dense = g("attention.query_key_value"), g("attention.dense")
        self.dense_h_to_4h, self.dense_4h_to_h = g("mlp.dense_h_to_4h"), g("mlp.dense_4h_to_h")
        self.parallel = cfg.get("use_parallel_residual", True)

    def attention(self, h, cos, sin, bias, past_k, past_v):
        b, s = h.shape[0], h.shape[1]
        qkv = self.query_key_value(h).view(b, s, self.H, 3 * self.hd).permute(0, 2, 1, 3)
        q, k, v = qkv[..., : self.hd], qkv[..., self.hd : 2 * self.hd], qkv[..., 2 * self.hd :]
        r = self.rot
        q = torch.cat((q[..., :r] * cos + rotate_half(q[..., :r]) * sin, q[..., r:]), dim=-1)
        k = torch.cat((k[..., :r] * cos + rotate_half(k[..., :r]) * sin, k[..., r:]), dim=-1)
        k = torch.cat((past_k, k), dim=-2)
        v = torch.cat((past_v, v), dim=-2)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.hd)) + bias
        probs = nn.functional.softmax(scores, dim=-1)
        a = torch.matmul(probs, v).permute(0, 2, 1, 3).reshape(b, s, self.d)
        return self.dense(a), (k, v)

    def forward(self, x, cos, sin, bias, past_k, past_v):
        attn_out, present = self.attention(self.input_layernorm(x), cos, sin, bias, past_k, past_v)
        mlp = lambda z: self.dense_4h_to_h(nn.functional.gelu(self.dense_h_to_4h(self.post_attention_layernorm(z))))  # noqa: E731
        if self.parallel:
            x = mlp(x) + attn_out + x
        else:
            x = attn_out + x
            x = mlp(x) + x
        return x, present


class TinyNeoX(nn.Module):
    def __init__(self, cfg, w):
        super().__init__()
        self.embed_in = nn.Embedding.from_pretrained(t(w["gpt_neox.embed_in.weight"]), freeze=True)
        self.layers = nn.ModuleList([NeoXLayer(cfg, w, L) for L in range(cfg["num_hidden_layers"])])
        self.final_layer_norm = layer_norm(w["gpt_neox.final_layer_norm.weight"], w["gpt_neox.final_layer_norm.bias"], cfg.get("layer_norm_eps", 1e-5))
        self.embed_out = linear(w["embed_out.weight"])
        rot = self.layers[0].rot
        base = float(cfg.get("rotary_emb_base", 10000))
        self.register_buffer("inv_freq", 1.0 / base ** (torch.arange(0, rot, 2, dtype=torch.float32) / rot))

    def forward(self, input_ids, attention_mask, position_ids, *past):
        x = self.embed_in(input_ids)
        cos, sin = rope_cos_sin(self.inv_freq, position_ids)
        bias = causal_bias(attention_mask, position_ids, x.dtype)
        presents = []
        for L, layer in enumerate(self.layers):
            x, pr = layer(x, cos, sin, bias, past[2 * L], past[2 * L + 1])
            presents.extend(pr)
        return (self.embed_out(self.final_layer_norm(x)), *presents)


# ----------------------------------------------------------------------------- export
MODELS = {"tiny-llama": TinyLlama, "tiny-gpt2": TinyGPT2, "tiny-neox": TinyNeoX}


def kv_shape(cfg):
    if cfg["model_type"] == "gpt2":
        return cfg["n_head"], cfg["n_embd"] // cfg["n_head"], cfg["n_layer"]
    H = cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads") or H
    hd = cfg.get("head_dim") or cfg["hidden_size"] // H
    return kv, hd, cfg["num_hidden_layers"]


def run(model, ids: torch.Tensor, past: list, past_len: int):
    b, s = ids.shape
    mask = torch.ones(b, past_len + s, dtype=torch.int64)
    pos = torch.arange(past_len, past_len + s, dtype=torch.int64)[None].expand(b, s)
    with torch.no_grad():
        return model(ids, mask, pos, *past)


def export(name: str) -> None:
    src = os.path.join(ROOT, "test", "fixtures", "models", name)
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    w = numpy_ref.read_safetensors(os.path.join(src, "model.safetensors"))
    model = MODELS[name](cfg, w).eval()
    kv, hd, n_layers = kv_shape(cfg)

    # 1. the module equals numpy_ref's float64 forward pass, and its KV cache is consistent
    ids = [299, 5, 17, 42, 7, 99, 250, 3, 11, 64]
    ref = numpy_ref.load_hf(src).run(ids)["logits"]
    empty = [torch.zeros(1, kv, 0, hd) for _ in range(2 * n_layers)]
    full = run(model, torch.tensor([ids]), empty, 0)
    d_ref = float(np.abs(full[0][0].numpy() - ref).max())
    head = run(model, torch.tensor([ids[:6]]), empty, 0)
    tail = run(model, torch.tensor([ids[6:]]), list(head[1:]), 6)
    d_kv = float((tail[0][0] - full[0][0, 6:]).abs().max())
    print(f"{name}: torch vs numpy_ref max |dlogits| = {d_ref:.2e}; KV-cache step vs full = {d_kv:.2e}")
    assert d_ref < 1e-4 and d_kv < 1e-4

    # 2. export with dynamic axes, Optimum names, a non-empty past (batch 2, past 3, seq 4)
    out_dir = os.path.join(ROOT, "test", "fixtures", "onnx", f"{name}-torch")
    os.makedirs(os.path.join(out_dir, "onnx"), exist_ok=True)
    b, s, p = 2, 4, 3
    dummy_ids = torch.randint(0, 299, (b, s))
    dummy_mask = torch.ones(b, p + s, dtype=torch.int64)
    dummy_pos = torch.arange(p, p + s)[None].expand(b, s).contiguous()
    dummy_past = [torch.randn(b, kv, p, hd) for _ in range(2 * n_layers)]
    past_names, present_names = [], []
    for L in range(n_layers):
        past_names += [f"past_key_values.{L}.key", f"past_key_values.{L}.value"]
        present_names += [f"present.{L}.key", f"present.{L}.value"]
    axes = {
        "input_ids": {0: "batch_size", 1: "sequence_length"},
        "attention_mask": {0: "batch_size", 1: "past_sequence_length + sequence_length"},
        "position_ids": {0: "batch_size", 1: "sequence_length"},
        "logits": {0: "batch_size", 1: "sequence_length"},
    }
    for n in past_names:
        axes[n] = {0: "batch_size", 2: "past_sequence_length"}
    for n in present_names:
        axes[n] = {0: "batch_size", 2: "past_sequence_length + sequence_length"}
    target = os.path.join(out_dir, "onnx", "model.onnx")
    torch.onnx.export(
        model,
        (dummy_ids, dummy_mask, dummy_pos, *dummy_past),
        target,
        input_names=["input_ids", "attention_mask", "position_ids", *past_names],
        output_names=["logits", *present_names],
        dynamic_axes=axes,
        opset_version=OPSET,
        do_constant_folding=True,
    )
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(src, f), os.path.join(out_dir, f))
    print(f"  wrote {os.path.relpath(target, ROOT)} ({os.path.getsize(target)} bytes)")


if __name__ == "__main__":
    for n in sys.argv[1:] or list(MODELS):
        export(n)
