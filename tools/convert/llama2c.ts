/**
 * llama2.c legacy (v0) checkpoint + tokenizer.bin  ->  Hugging Face Llama folder.
 *
 *   node out/tools/convert/llama2c.js <model.bin> <tok.bin> <outDir>
 *
 * Writes config.json, model.safetensors (F32), tokenizer.json, tokenizer_config.json,
 * generation_config.json. The result is mathematically identical to the llama2.c model:
 * llama2.c rotates adjacent pairs (2i, 2i+1) in RoPE, HF Llama rotates (i, i + d/2)
 * ("rotate_half"), so the rows of wq/wk are permuted per head exactly like HF's
 * `convert_llama_weights_to_hf.py` `permute()`.
 *
 * Pure functions are exported for tests; only convertLlama2c() and the CLI touch files.
 */
import * as fs from 'fs';
import * as path from 'path';
import { encodeSafetensors, SafetensorsTensor } from './safetensors-writer';

export interface Llama2cConfig {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  seqLen: number;
  /** true when the header's vocab_size is positive: classifier = token embedding. */
  sharedClassifier: boolean;
}

export interface NamedTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

export interface Llama2cModel {
  config: Llama2cConfig;
  /** llama2.c names: token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, freq_cis_real, freq_cis_imag, wcls? */
  tensors: Map<string, NamedTensor>;
}

const HEADER_BYTES = 7 * 4;

function u8(buf: Uint8Array | ArrayBuffer): Uint8Array {
  return buf instanceof Uint8Array ? buf : new Uint8Array(buf);
}

/** Parse a llama2.c legacy .bin (7 x int32 header, then fp32 arrays). */
export function parseLlama2c(input: Uint8Array | ArrayBuffer): Llama2cModel {
  const buf = u8(input);
  if (buf.byteLength < HEADER_BYTES) throw new Error('llama2.c checkpoint: file too small');
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const h = (i: number): number => dv.getInt32(i * 4, true);
  const vocabRaw = h(5);
  const config: Llama2cConfig = {
    dim: h(0),
    hiddenDim: h(1),
    nLayers: h(2),
    nHeads: h(3),
    nKvHeads: h(4),
    vocabSize: Math.abs(vocabRaw),
    seqLen: h(6),
    sharedClassifier: vocabRaw > 0,
  };
  const { dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, seqLen } = config;
  if (dim <= 0 || nHeads <= 0 || dim % nHeads !== 0 || nKvHeads <= 0 || nHeads % nKvHeads !== 0) {
    throw new Error(`llama2.c checkpoint: implausible header ${JSON.stringify(config)}`);
  }
  const headSize = dim / nHeads;
  const kvDim = nKvHeads * headSize;
  const nFloats = (buf.byteLength - HEADER_BYTES) / 4;
  if (!Number.isInteger(nFloats)) throw new Error('llama2.c checkpoint: body is not a whole number of float32');
  // Copy into an aligned, host-order Float32Array.
  const all = new Float32Array(nFloats);
  for (let i = 0; i < nFloats; i++) all[i] = dv.getFloat32(HEADER_BYTES + 4 * i, true);

  const tensors = new Map<string, NamedTensor>();
  let off = 0;
  const take = (name: string, shape: number[]): void => {
    const n = shape.reduce((a, b) => a * b, 1);
    if (off + n > nFloats) throw new Error(`llama2.c checkpoint: truncated while reading ${name}`);
    tensors.set(name, { name, shape, data: all.slice(off, off + n) });
    off += n;
  };
  take('token_embedding', [vocabSize, dim]);
  take('rms_att', [nLayers, dim]);
  take('wq', [nLayers, dim, dim]);
  take('wk', [nLayers, kvDim, dim]);
  take('wv', [nLayers, kvDim, dim]);
  take('wo', [nLayers, dim, dim]);
  take('rms_ffn', [nLayers, dim]);
  take('w1', [nLayers, hiddenDim, dim]);
  take('w2', [nLayers, dim, hiddenDim]);
  take('w3', [nLayers, hiddenDim, dim]);
  take('rms_final', [dim]);
  take('freq_cis_real', [seqLen, headSize / 2]);
  take('freq_cis_imag', [seqLen, headSize / 2]);
  if (!config.sharedClassifier) take('wcls', [vocabSize, dim]);
  if (off !== nFloats) throw new Error(`llama2.c checkpoint: ${nFloats - off} trailing floats (not a legacy v0 file?)`);
  return { config, tensors };
}

function get(m: Llama2cModel, name: string): NamedTensor {
  const t = m.tensors.get(name);
  if (!t) throw new Error(`missing ${name}`);
  return t;
}

/** Rows [layer*rows, (layer+1)*rows) of a stacked [nLayers, rows, cols] tensor. */
function layerSlice(t: NamedTensor, layer: number): Float32Array {
  const per = t.data.length / (t.shape[0] ?? 1);
  return t.data.slice(layer * per, (layer + 1) * per);
}

/**
 * HF `permute(w, n_heads, dim1, dim2)`:
 * `w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)`.
 * New row h*hd + s*(hd/2) + p  <-  old row h*hd + 2p + s  (s in {0,1}, p < hd/2).
 */
export function permuteRotaryRows(w: Float32Array, nHeads: number, rows: number, cols: number): Float32Array {
  if (w.length !== rows * cols || rows % nHeads !== 0 || (rows / nHeads) % 2 !== 0) {
    throw new Error('permuteRotaryRows: bad shape');
  }
  const hd = rows / nHeads;
  const half = hd / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < nHeads; h++) {
    for (let s = 0; s < 2; s++) {
      for (let p = 0; p < half; p++) {
        const src = (h * hd + 2 * p + s) * cols;
        const dst = (h * hd + s * half + p) * cols;
        out.set(w.subarray(src, src + cols), dst);
      }
    }
  }
  return out;
}

/** HF LlamaForCausalLM tensors (F32), in HF's usual order. */
export function toHfTensors(m: Llama2cModel): NamedTensor[] {
  const { dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize } = m.config;
  const kvDim = (nKvHeads * dim) / nHeads;
  const out: NamedTensor[] = [];
  out.push({ name: 'model.embed_tokens.weight', shape: [vocabSize, dim], data: get(m, 'token_embedding').data });
  for (let l = 0; l < nLayers; l++) {
    const p = `model.layers.${l}.`;
    out.push({ name: p + 'input_layernorm.weight', shape: [dim], data: layerSlice(get(m, 'rms_att'), l) });
    out.push({
      name: p + 'self_attn.q_proj.weight',
      shape: [dim, dim],
      data: permuteRotaryRows(layerSlice(get(m, 'wq'), l), nHeads, dim, dim),
    });
    out.push({
      name: p + 'self_attn.k_proj.weight',
      shape: [kvDim, dim],
      data: permuteRotaryRows(layerSlice(get(m, 'wk'), l), nKvHeads, kvDim, dim),
    });
    out.push({ name: p + 'self_attn.v_proj.weight', shape: [kvDim, dim], data: layerSlice(get(m, 'wv'), l) });
    out.push({ name: p + 'self_attn.o_proj.weight', shape: [dim, dim], data: layerSlice(get(m, 'wo'), l) });
    out.push({ name: p + 'post_attention_layernorm.weight', shape: [dim], data: layerSlice(get(m, 'rms_ffn'), l) });
    out.push({ name: p + 'mlp.gate_proj.weight', shape: [hiddenDim, dim], data: layerSlice(get(m, 'w1'), l) });
    out.push({ name: p + 'mlp.up_proj.weight', shape: [hiddenDim, dim], data: layerSlice(get(m, 'w3'), l) });
    out.push({ name: p + 'mlp.down_proj.weight', shape: [dim, hiddenDim], data: layerSlice(get(m, 'w2'), l) });
  }
  out.push({ name: 'model.norm.weight', shape: [dim], data: get(m, 'rms_final').data });
  if (!m.config.sharedClassifier) out.push({ name: 'lm_head.weight', shape: [vocabSize, dim], data: get(m, 'wcls').data });
  return out;
}

export function buildHfConfig(c: Llama2cConfig): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: c.dim,
    intermediate_size: c.hiddenDim,
    num_hidden_layers: c.nLayers,
    num_attention_heads: c.nHeads,
    num_key_value_heads: c.nKvHeads,
    head_dim: c.dim / c.nHeads,
    vocab_size: c.vocabSize,
    max_position_embeddings: c.seqLen,
    rms_norm_eps: 1e-5,
    rope_theta: 10000.0,
    rope_scaling: null,
    hidden_act: 'silu',
    attention_bias: false,
    attention_dropout: 0.0,
    mlp_bias: false,
    initializer_range: 0.02,
    pretraining_tp: 1,
    tie_word_embeddings: c.sharedClassifier,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: 'float32',
    use_cache: true,
  };
}

export function buildGenerationConfig(): Record<string, unknown> {
  return { _from_model_config: true, bos_token_id: 1, eos_token_id: 2 };
}

// ----------------------------------------------------------------------------- tokenizer

export interface Llama2cTokenizer {
  maxTokenLength: number;
  /** Raw piece bytes decoded as UTF-8 (llama2.c writes ' ' where SentencePiece has U+2581). */
  pieces: string[];
  scores: number[];
}

/** Parse llama2.c tokenizer.bin: int32 max_token_length, then per token f32 score, i32 len, bytes. */
export function parseTok512(input: Uint8Array | ArrayBuffer, vocabSize?: number): Llama2cTokenizer {
  const buf = u8(input);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const dec = new TextDecoder('utf-8', { fatal: true });
  const maxTokenLength = dv.getInt32(0, true);
  const pieces: string[] = [];
  const scores: number[] = [];
  let o = 4;
  while (o < buf.byteLength && (vocabSize === undefined || pieces.length < vocabSize)) {
    if (o + 8 > buf.byteLength) throw new Error('tokenizer.bin: truncated');
    scores.push(dv.getFloat32(o, true));
    const n = dv.getInt32(o + 4, true);
    o += 8;
    if (n < 0 || o + n > buf.byteLength) throw new Error('tokenizer.bin: bad piece length');
    pieces.push(dec.decode(buf.subarray(o, o + n)));
    o += n;
  }
  if (vocabSize !== undefined && pieces.length !== vocabSize) {
    throw new Error(`tokenizer.bin: ${pieces.length} pieces, model vocab ${vocabSize}`);
  }
  return { maxTokenLength, pieces, scores };
}

const SPIECE_UNDERLINE = '\u2581';
const SPECIAL: ReadonlyArray<readonly [number, string]> = [
  [0, '<unk>'],
  [1, '<s>'],
  [2, '</s>'],
];

/** SentencePiece piece strings: specials renamed, ' ' written back as U+2581. */
export function hfPieces(tok: Llama2cTokenizer): string[] {
  const out = tok.pieces.map((p) => p.split(' ').join(SPIECE_UNDERLINE));
  for (const [id, content] of SPECIAL) out[id] = content;
  return out;
}

/**
 * Merges as HF's SentencePieceExtractor derives them: for each piece (in id order), every
 * split into two pieces that are both in the vocab (sorted by (id(left), id(right))); then a
 * stable sort by the merged piece's score, best first. `firstId` > 0 skips the first pieces as merge
 * results (for tok512.bin, 0 and 259 give the same 165 merges: no special or <0xNN> piece splits).
 */
export function deriveMerges(pieces: string[], scores: number[], firstId = 0): Array<[string, string]> {
  const vocab = new Map<string, number>();
  pieces.forEach((p, i) => {
    if (!vocab.has(p)) vocab.set(p, i);
  });
  const all: Array<{ l: string; r: string; score: number; li: number; ri: number }> = [];
  for (let id = 0; id < pieces.length; id++) {
    const piece = pieces[id] ?? '';
    if (id < firstId) continue;
    const chars = Array.from(piece);
    const local: Array<{ l: string; r: string; score: number; li: number; ri: number }> = [];
    for (let k = 1; k < chars.length; k++) {
      const l = chars.slice(0, k).join('');
      const r = chars.slice(k).join('');
      const li = vocab.get(l);
      const ri = vocab.get(r);
      if (li !== undefined && ri !== undefined) local.push({ l, r, score: scores[id] ?? 0, li, ri });
    }
    local.sort((a, b) => a.li - b.li || a.ri - b.ri);
    all.push(...local);
  }
  all.sort((a, b) => b.score - a.score); // Array.prototype.sort is stable
  return all.map((m) => [m.l, m.r]);
}

export function buildTokenizerJson(tok: Llama2cTokenizer): Record<string, unknown> {
  const pieces = hfPieces(tok);
  const vocab: Record<string, number> = {};
  pieces.forEach((p, i) => {
    if (p in vocab) throw new Error(`duplicate piece ${JSON.stringify(p)} (ids ${vocab[p]} and ${i})`);
    vocab[p] = i;
  });
  for (let b = 0; b < 256; b++) {
    const name = `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
    if (vocab[name] !== 3 + b) throw new Error(`byte piece ${name} is not id ${3 + b}`);
  }
  const bos = { SpecialToken: { id: '<s>', type_id: 0 } };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIAL.map(([id, content]) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: SPIECE_UNDERLINE },
        { type: 'Replace', pattern: { String: ' ' }, content: SPIECE_UNDERLINE },
      ],
    },
    pre_tokenizer: null,
    // What LlamaTokenizerFast(add_bos_token=True, add_eos_token=False) installs.
    post_processor: {
      type: 'TemplateProcessing',
      single: [bos, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        bos,
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '<s>', type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: SPIECE_UNDERLINE }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges: deriveMerges(pieces, tok.scores),
    },
  };
}

export function buildTokenizerConfig(modelMaxLength: number): Record<string, unknown> {
  const added: Record<string, unknown> = {};
  for (const [id, content] of SPECIAL) {
    added[String(id)] = { content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true };
  }
  return {
    add_bos_token: true,
    add_eos_token: false,
    added_tokens_decoder: added,
    bos_token: '<s>',
    eos_token: '</s>',
    unk_token: '<unk>',
    pad_token: null,
    // tokenizers.js defaults this to true, which would turn " ," into "," on decode.
    clean_up_tokenization_spaces: false,
    model_max_length: modelMaxLength,
    sp_model_kwargs: {},
    tokenizer_class: 'LlamaTokenizer',
  };
}

// ----------------------------------------------------------------------------- files

export interface ConvertResult {
  config: Llama2cConfig;
  files: string[];
}

export function convertLlama2c(binPath: string, tokPath: string, outDir: string): ConvertResult {
  const model = parseLlama2c(fs.readFileSync(binPath));
  const tok = parseTok512(fs.readFileSync(tokPath), model.config.vocabSize);
  fs.mkdirSync(outDir, { recursive: true });
  const tensors: SafetensorsTensor[] = toHfTensors(model).map((t) => ({ name: t.name, dtype: 'F32', shape: t.shape, data: t.data }));
  const files: Array<[string, string | Uint8Array]> = [
    ['config.json', JSON.stringify(buildHfConfig(model.config), null, 2) + '\n'],
    ['generation_config.json', JSON.stringify(buildGenerationConfig(), null, 2) + '\n'],
    [
      'model.safetensors',
      encodeSafetensors(tensors, {
        format: 'pt',
        source: `llama2.c ${path.basename(binPath)} (converted, RoPE rows permuted to HF rotate_half)`,
      }),
    ],
    ['tokenizer.json', JSON.stringify(buildTokenizerJson(tok), null, 2) + '\n'],
    ['tokenizer_config.json', JSON.stringify(buildTokenizerConfig(model.config.seqLen), null, 2) + '\n'],
  ];
  for (const [name, content] of files) fs.writeFileSync(path.join(outDir, name), content);
  return { config: model.config, files: files.map(([n]) => path.join(outDir, n)) };
}

if (require.main === module) {
  const [bin, tokPath, outDir] = process.argv.slice(2);
  if (!bin || !tokPath || !outDir) {
    console.error('usage: node out/tools/convert/llama2c.js <model.bin> <tokenizer.bin> <outDir>');
    process.exit(2);
  }
  const r = convertLlama2c(bin, tokPath, outDir);
  console.log(`converted ${bin}: ${JSON.stringify(r.config)}`);
  for (const f of r.files) console.log(`  wrote ${f}`);
}
