#!/usr/bin/env python3
"""Reference fixtures from Hugging Face transformers itself, for what ../shared/fixtures/hf-transformers
does not cover (that set was made by ../shared/tools/hf-fixtures/make_fixtures.py; this script keeps its
format and adds models, a KV-cache greedy continuation per model, and tokenizer encodings).

Run where transformers + torch + tokenizers are installed (the accelerator machine lent by the `device`
tool has transformers 5.17 and torch 2.11):

  python3 tools/reference/make_hf_fixtures.py OUTDIR [TOKENIZER_DIR [SHARED_DIR]]

Per model, OUTDIR/<name>/ holds what save_pretrained wrote (config.json in this transformers' format,
model.safetensors), a byte-level tokenizer.json (token id = byte value), and

  reference.safetensors
    input_ids    [T]           int64   the bytes of TEXT
    resid        [L+1, T, d]   float32 row 0 = embedding output (hidden_states[0]); row l+1 = output of layer l
    logits       [T, V]        float32 the model's output logits
    attention    [L, H, T, T]  float32 attention probabilities
    gen_ids      [G]           int64   greedy continuation, one token per step through the KV cache
    gen_logits   [G, V]        float32 the logits each step chose from (step 0 = the prompt's last position)
  reference.json               versions, text, notes

All numbers: transformers' float64 eager forward of the stored weights, saved as float32.

With TOKENIZER_DIR: tokenizer.json files in the layouts of today's families (Llama 3 byte-level with a
BOS template, Qwen byte-level without BOS, Gemma byte fallback with a U+2581 normalizer, Llama 2 /
Mistral Metaspace), trained on a small corpus by the `tokenizers` library itself and saved there; each
<name>.json gets OUTDIR/tokenizers/<name>.expected.json: that library's encoding (ids, offsets, with and
without special tokens) and decoding of a list of strings. With SHARED_DIR (a copy of
../shared/fixtures/hf-transformers): KV-cache greedy continuations of those models in OUTDIR/shared-gen.

usage: make_hf_fixtures.py OUTDIR [TOKENIZER_DIR [SHARED_DIR]]
"""
import json, math, os, sys, traceback
import torch
import transformers
from transformers import AutoModelForCausalLM
from safetensors.torch import save_file

OUT = sys.argv[1]
TEXT = 'def f(x):\n    return x * 2  # ünï\nf(f(1)) + f(2)'.encode()
IDS = list(TEXT)
V = 256
GEN = 12
base = dict(vocab_size=V, bos_token_id=0, eos_token_id=0, pad_token_id=0, max_position_embeddings=128)
S = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, **base)
S3 = dict(S, num_hidden_layers=3)


def factors(n, lo, hi):
    return [round(lo + (hi - lo) * i / max(1, n - 1), 4) for i in range(n)]


MODELS = [
    # name, config class, kwargs, stored dtype, note
    ('gpt2', 'GPT2Config', dict(n_embd=32, n_layer=2, n_head=4, n_positions=128, vocab_size=V, bos_token_id=0, eos_token_id=0),
     'float32', 'GPT-2: learned positions, LayerNorm, gelu_new, tied'),
    ('llama-linear', 'LlamaConfig', dict(S, tie_word_embeddings=False, rope_theta=10000.0,
        rope_scaling=dict(rope_type='linear', factor=4.0)), 'float32', 'linear RoPE scaling, untied'),
    ('llama-yarn', 'LlamaConfig', dict(S, tie_word_embeddings=True, rope_theta=10000.0,
        rope_scaling=dict(rope_type='yarn', factor=4.0, original_max_position_embeddings=32)), 'float32',
     'YaRN RoPE scaling (attention_factor from the factor), tied'),
    ('llama-dynamic', 'LlamaConfig', dict(S, tie_word_embeddings=True, rope_theta=10000.0,
        rope_scaling=dict(rope_type='dynamic', factor=2.0), max_position_embeddings=32), 'float32',
     'dynamic NTK RoPE: the base grows once the sequence exceeds max_position_embeddings (32 < 50 tokens)'),
    ('llama-headdim16', 'LlamaConfig', dict(S, head_dim=16, tie_word_embeddings=True, attention_bias=True, mlp_bias=True),
     'float16', 'head_dim 16 with d_model 32 (q/k/v widths differ from d_model), attention and MLP biases, float16 storage'),
    ('mistral-window', 'MistralConfig', dict(S, sliding_window=8, tie_word_embeddings=False), 'float32',
     'Mistral sliding window 8 on every layer'),
    ('qwen2-window', 'Qwen2Config', dict(S3, use_sliding_window=True, sliding_window=8, max_window_layers=1, tie_word_embeddings=True),
     'bfloat16', 'Qwen2 sliding window on layers >= max_window_layers (layer_types), bf16'),
    ('qwen3-window', 'Qwen3Config', dict(S3, head_dim=16, use_sliding_window=True, sliding_window=8, max_window_layers=2,
        tie_word_embeddings=False, attention_bias=True), 'float32', 'Qwen3 q/k norms, head_dim 16, attention bias, sliding window on layer 2'),
    ('gemma', 'GemmaConfig', dict(S, head_dim=8, tie_word_embeddings=True, hidden_activation='gelu_pytorch_tanh'), 'float32',
     'Gemma 1: embeddings x sqrt(d_model), RMSNorm (1 + weight), GeGLU (tanh)'),
    ('gemma2-window64', 'Gemma2Config', dict(S, head_dim=16, sliding_window=64, query_pre_attn_scalar=16, tie_word_embeddings=True),
     'bfloat16', 'Gemma 2 with a sliding window longer than the text, head_dim 16, query_pre_attn_scalar 16, bf16'),
    ('gemma3-mixed', 'Gemma3TextConfig', dict(S3, head_dim=16, sliding_window=8, tie_word_embeddings=True,
        layer_types=['sliding_attention', 'sliding_attention', 'full_attention'],
        rope_parameters={'full_attention': {'rope_type': 'linear', 'factor': 8.0, 'rope_theta': 1000000.0},
                         'sliding_attention': {'rope_type': 'default', 'rope_theta': 10000.0}},
        attn_logit_softcapping=20.0, final_logit_softcapping=15.0), 'float32',
     'Gemma 3: two sliding layers then a full one, linear-scaled global RoPE, local base 1e4, soft-capping on'),
    ('phi3-longrope', 'Phi3Config', dict(S, tie_word_embeddings=False, original_max_position_embeddings=32,
        rope_scaling=dict(rope_type='longrope', short_factor=factors(4, 1.0, 1.5), long_factor=factors(4, 1.0, 6.0))),
     'float32', 'Phi-3.5 longrope: 50 tokens > original_max_position_embeddings 32, so the long factors apply'),
    ('phi3-longrope-short', 'Phi3Config', dict(S, tie_word_embeddings=False, original_max_position_embeddings=64,
        rope_scaling=dict(rope_type='longrope', short_factor=factors(4, 1.0, 1.5), long_factor=factors(4, 1.0, 6.0))),
     'float32', 'longrope below original_max_position_embeddings (64 > 50 + 12 tokens): the short factors apply'),
    ('phi4-mini', 'Phi3Config', dict(S, tie_word_embeddings=True, partial_rotary_factor=0.75, original_max_position_embeddings=32,
        rope_scaling=dict(rope_type='longrope', short_factor=factors(3, 1.0, 1.2), long_factor=factors(3, 1.0, 4.0))),
     'float32', 'Phi-4-mini layout: partial rotary 0.75, longrope, tied embeddings'),
    ('olmo2-3l', 'Olmo2Config', dict(S3, tie_word_embeddings=True, rms_norm_eps=1e-6), 'bfloat16', 'OLMo 2, 3 layers, bf16, tied'),
    ('smollm3-nope', 'SmolLM3Config', dict(S3, tie_word_embeddings=True, no_rope_layers=[1, 1, 0]), 'float32',
     'SmolLM3 with its last layer without RoPE (no_rope_layers [1, 1, 0])'),
    ('neox-seq', 'GPTNeoXConfig', dict(hidden_size=32, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        rotary_pct=0.25, use_parallel_residual=False, tie_word_embeddings=False, hidden_act='gelu_new', **base), 'float32',
     'GPT-NeoX sequential residual, partial rotary 0.25, gelu_new'),
]


def tokenizer_json():
    bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + list(range(ord('®'), ord('ÿ') + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    b2u = dict(zip(bs, map(chr, cs)))
    return {'version': '1.0', 'truncation': None, 'padding': None, 'added_tokens': [], 'normalizer': None,
            'pre_tokenizer': {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': True, 'use_regex': True},
            'post_processor': None,
            'decoder': {'type': 'ByteLevel', 'add_prefix_space': True, 'trim_offsets': True, 'use_regex': True},
            'model': {'type': 'BPE', 'dropout': None, 'unk_token': None, 'continuing_subword_prefix': '', 'end_of_word_suffix': '',
                      'fuse_unk': False, 'byte_fallback': False, 'vocab': {b2u[b]: b for b in range(256)}, 'merges': []}}


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    gemma = 'gemma' in type(model).__name__.lower()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05 if name.endswith('bias')
                        else (0.0 if gemma else 1.0) + torch.randn(p.shape, generator=g) * 0.1)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / math.sqrt(p.shape[-1])))


def load64(d):
    for kw in (dict(attn_implementation='eager', dtype=torch.float64), dict(attn_implementation='eager', torch_dtype=torch.float64)):
        try:
            return AutoModelForCausalLM.from_pretrained(d, **kw).double().eval()
        except TypeError:
            continue
    raise RuntimeError('could not load')


def greedy(m, ids, steps):
    """Greedy continuation through the KV cache, one token per forward call (as generation does)."""
    with torch.no_grad():
        out = m(torch.tensor([ids]), use_cache=True)
        past, logits = out.past_key_values, out.logits[0, -1]
        gen, step_logits = [], []
        for _ in range(steps):
            step_logits.append(logits.float())
            nxt = int(torch.argmax(logits))
            gen.append(nxt)
            out = m(torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
            past, logits = out.past_key_values, out.logits[0, -1]
    return gen, torch.stack(step_logits)


def make_model(i, name, cls_name, kw, dtype, note):
    cfg = getattr(transformers, cls_name)(**kw)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation='eager')
    randomize(model, 9000 + i)
    model.tie_weights()
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    model.to(getattr(torch, dtype)).save_pretrained(d, safe_serialization=True)
    json.dump(tokenizer_json(), open(os.path.join(d, 'tokenizer.json'), 'w'))
    json.dump({'model_max_length': 128}, open(os.path.join(d, 'tokenizer_config.json'), 'w'))
    m = load64(d)
    n = m.config.num_hidden_layers
    layers = next(x for x in m.modules() if isinstance(x, torch.nn.ModuleList) and len(x) == n)
    resid = []
    hooks = [l.register_forward_hook(lambda mod, a, o: resid.append((o[0] if isinstance(o, tuple) else o).detach())) for l in layers]
    with torch.no_grad():
        out = m(torch.tensor([IDS]), output_hidden_states=True, output_attentions=True, use_cache=False)
    for h in hooks: h.remove()
    R = torch.cat([out.hidden_states[0]] + resid).float()
    gen, gen_logits = greedy(m, IDS, GEN)
    save_file({'input_ids': torch.tensor(IDS, dtype=torch.int64), 'resid': R.contiguous(),
               'logits': out.logits[0].float().contiguous(),
               'attention': torch.stack([a[0] for a in out.attentions]).float().contiguous(),
               'gen_ids': torch.tensor(gen, dtype=torch.int64), 'gen_logits': gen_logits.contiguous()},
              os.path.join(d, 'reference.safetensors'))
    json.dump({'transformers': transformers.__version__, 'torch': torch.__version__, 'text': TEXT.decode(),
               'stored_dtype': dtype, 'reference': 'float64 eager forward of the stored weights, saved as float32; '
               'gen_ids: greedy continuation through the KV cache', 'note': note,
               'made_by': 'tools/reference/make_hf_fixtures.py'}, open(os.path.join(d, 'reference.json'), 'w'), indent=1)
    print('OK', name, json.load(open(os.path.join(d, 'config.json'))).get('rope_parameters'), 'gen', gen, flush=True)


def continuation_of_shared(shared_dir):
    """KV-cache greedy continuations for the shared fixtures (their reference.safetensors lacks them)."""
    for name in sorted(os.listdir(shared_dir)):
        d = os.path.join(shared_dir, name)
        if not os.path.isfile(os.path.join(d, 'config.json')):
            continue
        try:
            m = load64(d)
            gen, gen_logits = greedy(m, IDS, GEN)
            os.makedirs(os.path.join(OUT, 'shared-gen'), exist_ok=True)
            save_file({'gen_ids': torch.tensor(gen, dtype=torch.int64), 'gen_logits': gen_logits.contiguous()},
                      os.path.join(OUT, 'shared-gen', f'{name}.safetensors'))
            print('OK gen', name, gen, flush=True)
        except Exception as e:
            print('FAIL gen', name, type(e).__name__, str(e)[:300], flush=True)


CORPUS = (open(__file__, encoding='utf-8').read() + '\n' +
          'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. '
          'One day, she saw a big, red ball. She wanted to play with it. The quick brown fox jumps over the lazy dog. '
          'déjà vu — naïve café, emoji 🙂 and 日本語のテキスト. ') * 4


def build_tokenizers(tdir):
    """tokenizer.json files in the layouts today's model families ship, trained on CORPUS by the `tokenizers`
    library itself (so the files are exactly what that library writes)."""
    from tokenizers import Tokenizer, Regex, AddedToken, models, pre_tokenizers, decoders, normalizers, processors, trainers
    os.makedirs(tdir, exist_ok=True)
    llama3_split = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                    r"\s*[\r\n]+|\s+(?!\S)|\s+")

    def bytelevel(name, specials, bos, split_regex, normalizer=None):
        t = Tokenizer(models.BPE(ignore_merges=True) if name == 'llama3-style' else models.BPE())
        if normalizer:
            t.normalizer = normalizer
        t.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split_regex), behavior='isolated', invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
        t.decoder = decoders.ByteLevel()
        tr = trainers.BpeTrainer(vocab_size=420, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                 show_progress=False)
        t.train_from_iterator([CORPUS], tr)
        if bos:
            t.post_processor = processors.Sequence([
                processors.ByteLevel(trim_offsets=False),
                processors.TemplateProcessing(single=f'{bos}:0 $A:0', pair=f'{bos}:0 $A:0 {bos}:1 $B:1',
                                              special_tokens=[(bos, t.token_to_id(bos))])])
        else:
            t.post_processor = processors.ByteLevel(trim_offsets=False)
        t.save(os.path.join(tdir, f'{name}.json'))

    bytelevel('llama3-style', ['<|begin_of_text|>', '<|end_of_text|>', '<|eot_id|>'], '<|begin_of_text|>', llama3_split)
    bytelevel('qwen-style', ['<|endoftext|>', '<|im_start|>', '<|im_end|>'], None, llama3_split, normalizers.NFC())

    def sentencepiece(name, metaspace):
        specials = ['<pad>', '<eos>', '<bos>', '<unk>'] if not metaspace else ['<unk>', '<s>', '</s>']
        bos = '<bos>' if not metaspace else '<s>'
        t = Tokenizer(models.BPE(byte_fallback=True, unk_token='<unk>', fuse_unk=True))
        if metaspace:   # Llama 2 / Mistral as converted today: Metaspace pre-tokenizer and decoder
            t.pre_tokenizer = pre_tokenizers.Metaspace(replacement='\u2581', prepend_scheme='first', split=False)
            t.decoder = decoders.Metaspace(replacement='\u2581', prepend_scheme='first', split=False)
        else:           # Gemma: spaces replaced by U+2581 in the normalizer, no pre-tokenizer, byte fallback
            t.normalizer = normalizers.Replace(' ', '\u2581')
            t.decoder = decoders.Sequence([decoders.Replace('\u2581', ' '), decoders.ByteFallback(), decoders.Fuse()])
        alphabet = sorted(set(CORPUS.replace(' ', '\u2581')) - set('日本語のテキスト🙂'))
        tr = trainers.BpeTrainer(vocab_size=600, special_tokens=specials + [f'<0x{b:02X}>' for b in range(256)],
                                 initial_alphabet=alphabet, limit_alphabet=len(alphabet), show_progress=False)
        t.train_from_iterator([CORPUS.replace(' ', '\u2581') if not metaspace else CORPUS], tr)
        t.post_processor = processors.TemplateProcessing(single=f'{bos}:0 $A:0', pair=f'{bos}:0 $A:0 $B:1',
                                                         special_tokens=[(bos, t.token_to_id(bos))])
        t.save(os.path.join(tdir, f'{name}.json'))

    sentencepiece('gemma-style', False)
    sentencepiece('llama2-metaspace', True)
    print('OK tokenizers built', sorted(os.listdir(tdir)), flush=True)


def tokenizer_cases(tdir):
    from tokenizers import Tokenizer
    import tokenizers
    strings = ['Hello world', ' Hello  world ', 'Once upon a time, there was a cat.', 'déjà vu — naïve café',
               'emoji 🙂 and 日本語', 'def f(x):\n    return x * 2', '', ' ', '\n\n', 'a  b\tc', 'hello<|endoftext|>bye',
               'The quick brown fox jumps over the lazy dog. 1234567890']
    for f in sorted(os.listdir(tdir)):
        if not f.endswith('.json') or f.endswith('.expected.json'):
            continue
        try:
            tok = Tokenizer.from_file(os.path.join(tdir, f))
            cases = []
            for s in strings:
                e1 = tok.encode(s, add_special_tokens=True)
                e0 = tok.encode(s, add_special_tokens=False)
                cases.append({'text': s, 'ids': e1.ids, 'offsets': e1.offsets, 'tokens': e1.tokens,
                              'ids_no_special': e0.ids, 'decode': tok.decode(e0.ids, skip_special_tokens=False),
                              'decode_skip_special': tok.decode(e1.ids, skip_special_tokens=True)})
            os.makedirs(os.path.join(OUT, 'tokenizers'), exist_ok=True)
            json.dump({'tokenizers': tokenizers.__version__, 'file': f, 'cases': cases},
                      open(os.path.join(OUT, 'tokenizers', f.replace('.json', '.expected.json')), 'w'), indent=1, ensure_ascii=False)
            print('OK tokenizer', f, flush=True)
        except Exception as e:
            print('FAIL tokenizer', f, type(e).__name__, str(e)[:300], flush=True)


if __name__ == '__main__':
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    for i, spec in enumerate(MODELS):
        try:
            make_model(i, *spec)
        except Exception as e:
            print('FAIL', spec[0], type(e).__name__, str(e)[:400], flush=True)
            traceback.print_exc(limit=3)
    if len(sys.argv) > 2:
        try:
            build_tokenizers(sys.argv[2])
        except Exception as e:
            print('FAIL build_tokenizers', type(e).__name__, str(e)[:400], flush=True)
            traceback.print_exc(limit=4)
        tokenizer_cases(sys.argv[2])
    if len(sys.argv) > 3 and os.path.isdir(sys.argv[3]):
        continuation_of_shared(sys.argv[3])
