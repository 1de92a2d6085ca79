// Checkpoints for benchmarks: a GPT-2-small-shaped model with random weights (the real
// shapes, 124 M parameters), a 1.2 B Llama-shaped one in bfloat16 (load measurements at the
// size the graph cache is for), both with GPT-2's real tokenizer from ../shared/data/gpt2-bpe.
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  encodeSafetensors,
  writeSafetensorsFile,
  type SafetensorsEntry,
  type SafetensorsTensor,
} from '../tools/convert/safetensors-writer';

/** tokenizer.json (Hugging Face format) for GPT-2 from encoder.json + vocab.bpe. */
export function gpt2TokenizerJson(bpeDir: string): Record<string, unknown> {
  const vocab = JSON.parse(fs.readFileSync(path.join(bpeDir, 'encoder.json'), 'utf8')) as Record<string, number>;
  const merges = fs
    .readFileSync(path.join(bpeDir, 'vocab.bpe'), 'utf8')
    .split('\n')
    .slice(1)
    .filter((l) => l.trim().length > 0);
  return {
    version: '1.0',
    added_tokens: [
      { id: 50256, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: true, special: true },
    ],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
}

/** tokenizer.json and tokenizer_config.json of GPT-2's tokenizer into a checkpoint folder. */
function writeGpt2Tokenizer(dir: string, bpeDir: string, maxLength: number): void {
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(gpt2TokenizerJson(bpeDir)));
  fs.writeFileSync(
    path.join(dir, 'tokenizer_config.json'),
    JSON.stringify({
      bos_token: '<|endoftext|>',
      eos_token: '<|endoftext|>',
      model_max_length: maxLength,
      clean_up_tokenization_spaces: false,
    }),
  );
}

/** Deterministic normal samples (xorshift + Box–Muller), fast enough for 124 M values. */
function normalFill(out: Float32Array, std: number, seed: number): void {
  let s = seed >>> 0 || 1;
  const u = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s + 0.5) / 4294967296;
  };
  for (let i = 0; i < out.length; i += 2) {
    const r = Math.sqrt(-2 * Math.log(u()));
    const t = 2 * Math.PI * u();
    out[i] = r * Math.cos(t) * std;
    if (i + 1 < out.length) out[i + 1] = r * Math.sin(t) * std;
  }
}

export interface Gpt2Shape {
  nLayer: number;
  nEmbd: number;
  nHead: number;
  nPositions: number;
  vocab: number;
}

export const GPT2_SMALL: Gpt2Shape = { nLayer: 12, nEmbd: 768, nHead: 12, nPositions: 1024, vocab: 50257 };

/** Writes a random-weight GPT-2 checkpoint in HF layout (skips work when it exists). */
export function makeRandomGpt2(dir: string, bpeDir: string, shape: Gpt2Shape = GPT2_SMALL): string {
  const done = path.join(dir, '.complete');
  if (fs.existsSync(done)) return dir;
  fs.mkdirSync(dir, { recursive: true });
  const { nLayer: L, nEmbd: d, nHead: h, nPositions: P, vocab: V } = shape;
  const tensors: SafetensorsTensor[] = [];
  let seed = 1;
  const rand = (name: string, shp: number[], std = 0.02) => {
    const data = new Float32Array(shp.reduce((a, b) => a * b, 1));
    normalFill(data, std, seed++);
    tensors.push({ name, dtype: 'F32', shape: shp, data });
  };
  const fill = (name: string, shp: number[], v: number) =>
    tensors.push({ name, dtype: 'F32', shape: shp, data: new Float32Array(shp.reduce((a, b) => a * b, 1)).fill(v) });
  rand('wte.weight', [V, d]);
  rand('wpe.weight', [P, d], 0.01);
  for (let i = 0; i < L; i++) {
    const p = `h.${i}.`;
    fill(`${p}ln_1.weight`, [d], 1);
    fill(`${p}ln_1.bias`, [d], 0);
    rand(`${p}attn.c_attn.weight`, [d, 3 * d]);
    fill(`${p}attn.c_attn.bias`, [3 * d], 0);
    rand(`${p}attn.c_proj.weight`, [d, d], 0.02 / Math.sqrt(2 * L));
    fill(`${p}attn.c_proj.bias`, [d], 0);
    fill(`${p}ln_2.weight`, [d], 1);
    fill(`${p}ln_2.bias`, [d], 0);
    rand(`${p}mlp.c_fc.weight`, [d, 4 * d]);
    fill(`${p}mlp.c_fc.bias`, [4 * d], 0);
    rand(`${p}mlp.c_proj.weight`, [4 * d, d], 0.02 / Math.sqrt(2 * L));
    fill(`${p}mlp.c_proj.bias`, [d], 0);
  }
  fill('ln_f.weight', [d], 1);
  fill('ln_f.bias', [d], 0);
  fs.writeFileSync(path.join(dir, 'model.safetensors'), encodeSafetensors(tensors, { format: 'pt' }));
  fs.writeFileSync(
    path.join(dir, 'config.json'),
    JSON.stringify({
      architectures: ['GPT2LMHeadModel'],
      model_type: 'gpt2',
      n_embd: d,
      n_layer: L,
      n_head: h,
      n_positions: P,
      n_ctx: P,
      vocab_size: V,
      layer_norm_epsilon: 1e-5,
      activation_function: 'gelu_new',
      bos_token_id: 50256,
      eos_token_id: 50256,
    }),
  );
  writeGpt2Tokenizer(dir, bpeDir, P);
  fs.writeFileSync(done, '');
  return dir;
}

export interface LlamaShape {
  layers: number;
  hidden: number;
  intermediate: number;
  heads: number;
  kvHeads: number;
  vocab: number;
}

/** TinyLlama-1.1B's layers (22 × 2048, MLP 5632, 32 heads, 4 KV heads) with GPT-2's 50k vocabulary: 1.18 B parameters. */
export const LLAMA_1B: LlamaShape = { layers: 22, hidden: 2048, intermediate: 5632, heads: 32, kvHeads: 4, vocab: 50304 };

/**
 * Writes a random-weight Llama checkpoint in HF layout with bfloat16 weights (as 1-8 B models
 * are published), tensor by tensor; skips work when it exists.
 */
export function makeRandomLlama(dir: string, bpeDir: string, shape: LlamaShape = LLAMA_1B): string {
  const done = path.join(dir, '.complete');
  if (fs.existsSync(done)) return dir;
  fs.mkdirSync(dir, { recursive: true });
  const { layers: L, hidden: d, intermediate: m, heads: h, kvHeads: kvh, vocab: V } = shape;
  const kv = (d / h) * kvh;
  const entries: SafetensorsEntry[] = [{ name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [V, d] }];
  for (let i = 0; i < L; i++) {
    const p = `model.layers.${i}.`;
    entries.push(
      { name: `${p}input_layernorm.weight`, dtype: 'BF16', shape: [d] },
      { name: `${p}self_attn.q_proj.weight`, dtype: 'BF16', shape: [d, d] },
      { name: `${p}self_attn.k_proj.weight`, dtype: 'BF16', shape: [kv, d] },
      { name: `${p}self_attn.v_proj.weight`, dtype: 'BF16', shape: [kv, d] },
      { name: `${p}self_attn.o_proj.weight`, dtype: 'BF16', shape: [d, d] },
      { name: `${p}post_attention_layernorm.weight`, dtype: 'BF16', shape: [d] },
      { name: `${p}mlp.gate_proj.weight`, dtype: 'BF16', shape: [m, d] },
      { name: `${p}mlp.up_proj.weight`, dtype: 'BF16', shape: [m, d] },
      { name: `${p}mlp.down_proj.weight`, dtype: 'BF16', shape: [d, m] },
    );
  }
  entries.push({ name: 'model.norm.weight', dtype: 'BF16', shape: [d] }, { name: 'lm_head.weight', dtype: 'BF16', shape: [V, d] });
  let seed = 1;
  const tmp = path.join(dir, 'model.safetensors.tmp');
  writeSafetensorsFile(tmp, entries, (e) => {
    const n = e.shape.reduce((a, b) => a * b, 1);
    const f32 = new Float32Array(n);
    if (e.shape.length === 1) f32.fill(1);
    else normalFill(f32, e.name.endsWith('o_proj.weight') || e.name.endsWith('down_proj.weight') ? 0.02 / Math.sqrt(2 * L) : 0.02, seed++);
    // bfloat16: the high half of the float32 bits
    const bits = new Uint32Array(f32.buffer);
    const out = new Uint16Array(n);
    for (let i = 0; i < n; i++) out[i] = bits[i]! >>> 16;
    return out;
  });
  fs.renameSync(tmp, path.join(dir, 'model.safetensors'));
  fs.writeFileSync(
    path.join(dir, 'config.json'),
    JSON.stringify({
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      hidden_size: d,
      intermediate_size: m,
      num_hidden_layers: L,
      num_attention_heads: h,
      num_key_value_heads: kvh,
      vocab_size: V,
      max_position_embeddings: 2048,
      rms_norm_eps: 1e-5,
      rope_theta: 10000,
      hidden_act: 'silu',
      tie_word_embeddings: false,
      torch_dtype: 'bfloat16',
      bos_token_id: 50256,
      eos_token_id: 50256,
    }),
  );
  writeGpt2Tokenizer(dir, bpeDir, 2048);
  fs.writeFileSync(done, '');
  return dir;
}
