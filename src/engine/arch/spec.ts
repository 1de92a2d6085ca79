// config.json → ModelSpec: one normalised description of the architecture families the
// graph builder supports. Everything here is validated: config.json is untrusted.
import { EngineError } from '../errors';

export type Family = 'gpt2' | 'llama' | 'gpt_neox';

export interface RopeSpec {
  /** Dimensions of each head that are rotated (NeoX: a fraction of head_dim). */
  rotaryDim: number;
  /** Inverse frequencies, one per rotated pair ([rotaryDim / 2]), scaling already applied. */
  invFreq: Float32Array;
}

export interface ModelSpec {
  family: Family;
  /** config.json's model_type, as given. */
  modelType: string;
  nLayers: number;
  dModel: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  dVocab: number;
  dMlp: number;
  maxPositions: number;
  norm: 'layernorm' | 'rmsnorm';
  normEps: number;
  act: 'gelu_tanh' | 'gelu' | 'silu' | 'relu';
  /** gated (SwiGLU-style) MLP or plain up→act→down. */
  gatedMlp: boolean;
  rope: RopeSpec | null;
  parallelResidual: boolean;
  tiedEmbeddings: boolean;
  /** q/k/v projections carry biases (Qwen2, NeoX, GPT-2). */
  qkvBias: boolean;
  /** output projection and MLP carry biases. */
  outBias: boolean;
  mlpBias: boolean;
  slidingWindow: number | null;
  bosTokenId: number | null;
  eosTokenIds: number[];
}

const FAMILY_OF: Record<string, Family> = {
  gpt2: 'gpt2',
  llama: 'llama',
  mistral: 'llama',
  qwen2: 'llama',
  gpt_neox: 'gpt_neox',
};

export const SUPPORTED_MODEL_TYPES = Object.keys(FAMILY_OF);

const ARCH_HINT: Record<string, string> = {
  GPT2LMHeadModel: 'gpt2',
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'mistral',
  Qwen2ForCausalLM: 'qwen2',
  GPTNeoXForCausalLM: 'gpt_neox',
};

type Json = Record<string, unknown>;

function bad(why: string): EngineError {
  return new EngineError('BAD_CONFIG', `config.json: ${why}`);
}

/** Positive integer field with an upper bound (a config is untrusted input). */
function int(cfg: Json, keys: string[], fallback?: number, max = 1 << 24): number {
  for (const k of keys) {
    const v = cfg[k];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0 || v > max) {
      throw bad(`"${k}" must be a positive integer ≤ ${max}, got ${JSON.stringify(v)?.slice(0, 40)}`);
    }
    return v;
  }
  if (fallback !== undefined) return fallback;
  throw bad(`missing "${keys[0]}"`);
}

function num(cfg: Json, key: string, fallback: number, min: number, max: number): number {
  const v = cfg[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
    throw bad(`"${key}" must be a number in [${min}, ${max}], got ${JSON.stringify(v)?.slice(0, 40)}`);
  }
  return v;
}

function bool(cfg: Json, key: string, fallback: boolean): boolean {
  const v = cfg[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'boolean') throw bad(`"${key}" must be true or false`);
  return v;
}

function tokenIds(v: unknown): number[] {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0);
  return [];
}

/** Which family a config belongs to, or a clear refusal. */
export function detectModelType(cfg: Json): string {
  let type = typeof cfg.model_type === 'string' ? cfg.model_type : '';
  if (!type && Array.isArray(cfg.architectures)) {
    for (const a of cfg.architectures) if (typeof a === 'string' && ARCH_HINT[a]) type = ARCH_HINT[a];
  }
  if (!type) throw bad('neither "model_type" nor a known "architectures" entry is present');
  if (!FAMILY_OF[type]) {
    throw new EngineError(
      'UNSUPPORTED_ARCHITECTURE',
      `model_type "${type.slice(0, 60)}" is not supported. Supported: ${SUPPORTED_MODEL_TYPES.join(', ')}. ` +
        'See the README section "Adding an architecture".',
    );
  }
  return type;
}

function ropeInvFreq(rotaryDim: number, theta: number, scaling: unknown, maxPos: number): Float32Array {
  const half = rotaryDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / theta ** ((2 * i) / rotaryDim);
  if (scaling !== undefined && scaling !== null) {
    if (typeof scaling !== 'object') throw bad('"rope_scaling" must be an object');
    const s = scaling as Json;
    const kind = (s.rope_type ?? s.type) as unknown;
    const factor = num(s, 'factor', 1, 1e-6, 1e6);
    if (kind === 'linear') {
      for (let i = 0; i < half; i++) inv[i] = inv[i]! / factor;
    } else if (kind === 'llama3') {
      // Llama 3.x: long wavelengths slowed by `factor`, short ones kept, smooth in between.
      const lowFactor = num(s, 'low_freq_factor', 1, 1e-6, 1e6);
      const highFactor = num(s, 'high_freq_factor', 4, 1e-6, 1e6);
      const oldCtx = num(s, 'original_max_position_embeddings', maxPos, 1, 1e9);
      const lowWavelen = oldCtx / lowFactor;
      const highWavelen = oldCtx / highFactor;
      for (let i = 0; i < half; i++) {
        const f = inv[i]!;
        const wavelen = (2 * Math.PI) / f;
        if (wavelen < highWavelen) continue;
        if (wavelen > lowWavelen) {
          inv[i] = f / factor;
          continue;
        }
        const smooth = (oldCtx / wavelen - lowFactor) / (highFactor - lowFactor);
        inv[i] = (1 - smooth) * (f / factor) + smooth * f;
      }
    } else if (kind !== 'default' && kind !== undefined) {
      throw new EngineError(
        'UNSUPPORTED_ARCHITECTURE',
        `rope_scaling type ${JSON.stringify(kind)} is not supported (supported: linear, llama3).`,
      );
    }
  }
  return Float32Array.from(inv);
}

export function specFromConfig(raw: unknown): ModelSpec {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad('not a JSON object');
  const cfg = raw as Json;
  const modelType = detectModelType(cfg);
  const family = FAMILY_OF[modelType]!;
  const spec = family === 'gpt2' ? gpt2Spec(cfg) : family === 'llama' ? llamaSpec(cfg, modelType) : neoxSpec(cfg);
  validate(spec);
  return spec;
}

function common(cfg: Json) {
  return {
    bosTokenId: tokenIds(cfg.bos_token_id)[0] ?? null,
    eosTokenIds: tokenIds(cfg.eos_token_id),
  };
}

function gpt2Spec(cfg: Json): ModelSpec {
  const dModel = int(cfg, ['n_embd', 'hidden_size'], undefined, 65536);
  const nHeads = int(cfg, ['n_head', 'num_attention_heads'], undefined, 4096);
  const act = cfg.activation_function ?? 'gelu_new';
  const actMap: Record<string, ModelSpec['act']> = { gelu_new: 'gelu_tanh', gelu_pytorch_tanh: 'gelu_tanh', gelu: 'gelu', relu: 'relu' };
  if (typeof act !== 'string' || !actMap[act])
    throw new EngineError('UNSUPPORTED_ARCHITECTURE', `GPT-2 activation ${JSON.stringify(act)} is not supported.`);
  return {
    family: 'gpt2',
    modelType: 'gpt2',
    nLayers: int(cfg, ['n_layer', 'num_hidden_layers'], undefined, 1024),
    dModel,
    nHeads,
    nKvHeads: nHeads,
    headDim: dModel / nHeads,
    dVocab: int(cfg, ['vocab_size'], undefined, 4_000_000),
    dMlp: int(cfg, ['n_inner'], 4 * dModel),
    maxPositions: int(cfg, ['n_positions', 'n_ctx', 'max_position_embeddings']),
    norm: 'layernorm',
    normEps: num(cfg, 'layer_norm_epsilon', 1e-5, 0, 1),
    act: actMap[act]!,
    gatedMlp: false,
    rope: null,
    parallelResidual: false,
    tiedEmbeddings: true,
    qkvBias: true,
    outBias: true,
    mlpBias: true,
    slidingWindow: null,
    ...common(cfg),
  };
}

function llamaSpec(cfg: Json, modelType: string): ModelSpec {
  const dModel = int(cfg, ['hidden_size'], undefined, 65536);
  const nHeads = int(cfg, ['num_attention_heads'], undefined, 4096);
  const headDim = int(cfg, ['head_dim'], dModel / nHeads, 4096);
  const maxPositions = int(cfg, ['max_position_embeddings'], 2048, 1 << 24);
  const act = cfg.hidden_act ?? 'silu';
  if (act !== 'silu')
    throw new EngineError('UNSUPPORTED_ARCHITECTURE', `hidden_act ${JSON.stringify(act)} is not supported for ${modelType} (only silu).`);
  const qwen = modelType === 'qwen2';
  const attnBias = bool(cfg, 'attention_bias', false);
  const useSliding = modelType === 'mistral' || bool(cfg, 'use_sliding_window', false);
  const window = cfg.sliding_window;
  return {
    family: 'llama',
    modelType,
    nLayers: int(cfg, ['num_hidden_layers'], undefined, 1024),
    dModel,
    nHeads,
    nKvHeads: int(cfg, ['num_key_value_heads'], nHeads),
    headDim,
    dVocab: int(cfg, ['vocab_size'], undefined, 4_000_000),
    dMlp: int(cfg, ['intermediate_size']),
    maxPositions,
    norm: 'rmsnorm',
    normEps: num(cfg, 'rms_norm_eps', 1e-6, 0, 1),
    act: 'silu',
    gatedMlp: true,
    rope: { rotaryDim: headDim, invFreq: ropeInvFreq(headDim, num(cfg, 'rope_theta', 10000, 1, 1e12), cfg.rope_scaling, maxPositions) },
    parallelResidual: false,
    tiedEmbeddings: bool(cfg, 'tie_word_embeddings', qwen ? false : false),
    qkvBias: qwen || attnBias,
    outBias: attnBias,
    mlpBias: bool(cfg, 'mlp_bias', false),
    slidingWindow: useSliding && typeof window === 'number' && Number.isInteger(window) && window > 0 ? window : null,
    ...common(cfg),
  };
}

function neoxSpec(cfg: Json): ModelSpec {
  const dModel = int(cfg, ['hidden_size'], undefined, 65536);
  const nHeads = int(cfg, ['num_attention_heads'], undefined, 4096);
  const headDim = dModel / nHeads;
  const maxPositions = int(cfg, ['max_position_embeddings'], 2048, 1 << 24);
  // Newer transformers releases name these partial_rotary_factor / rope_theta.
  const pct = cfg.rotary_pct !== undefined ? num(cfg, 'rotary_pct', 1, 0, 1) : num(cfg, 'partial_rotary_factor', 1, 0, 1);
  const base = cfg.rotary_emb_base !== undefined ? num(cfg, 'rotary_emb_base', 10000, 1, 1e12) : num(cfg, 'rope_theta', 10000, 1, 1e12);
  const rotaryDim = Math.floor(headDim * pct);
  const act = cfg.hidden_act ?? 'gelu';
  const actMap: Record<string, ModelSpec['act']> = { gelu: 'gelu', gelu_new: 'gelu_tanh', gelu_fast: 'gelu_tanh', relu: 'relu' };
  if (typeof act !== 'string' || !actMap[act])
    throw new EngineError('UNSUPPORTED_ARCHITECTURE', `GPT-NeoX activation ${JSON.stringify(act)} is not supported.`);
  if (rotaryDim % 2 !== 0) throw bad(`rotary_pct × head_dim = ${rotaryDim} must be even`);
  const bias = bool(cfg, 'attention_bias', true);
  return {
    family: 'gpt_neox',
    modelType: 'gpt_neox',
    nLayers: int(cfg, ['num_hidden_layers'], undefined, 1024),
    dModel,
    nHeads,
    nKvHeads: nHeads,
    headDim,
    dVocab: int(cfg, ['vocab_size'], undefined, 4_000_000),
    dMlp: int(cfg, ['intermediate_size'], 4 * dModel),
    maxPositions,
    norm: 'layernorm',
    normEps: num(cfg, 'layer_norm_eps', 1e-5, 0, 1),
    act: actMap[act]!,
    gatedMlp: false,
    rope: rotaryDim > 0 ? { rotaryDim, invFreq: ropeInvFreq(rotaryDim, base, cfg.rope_scaling, maxPositions) } : null,
    parallelResidual: bool(cfg, 'use_parallel_residual', true),
    tiedEmbeddings: bool(cfg, 'tie_word_embeddings', false),
    qkvBias: bias,
    outBias: bias,
    mlpBias: true,
    slidingWindow: null,
    ...common(cfg),
  };
}

function validate(s: ModelSpec): void {
  if (!Number.isInteger(s.headDim) || s.headDim <= 0) throw bad(`hidden size ${s.dModel} is not divisible by ${s.nHeads} heads`);
  if (s.nHeads % s.nKvHeads !== 0) throw bad(`num_attention_heads ${s.nHeads} is not a multiple of num_key_value_heads ${s.nKvHeads}`);
  if (s.headDim % 2 !== 0 && s.rope) throw bad(`head_dim ${s.headDim} must be even for rotary embeddings`);
  const params = s.dVocab * s.dModel + s.nLayers * (4 * s.dModel * s.nHeads * s.headDim + 3 * s.dModel * s.dMlp);
  if (params > 2e11) throw bad(`the model described has about ${(params / 1e9).toFixed(0)} B parameters, beyond what this tool can load`);
}

/** Parameter count implied by a spec (used for memory estimates). */
export function paramCount(s: ModelSpec): number {
  const attn = s.dModel * s.nHeads * s.headDim * 2 + s.dModel * s.nKvHeads * s.headDim * 2;
  const mlp = s.dModel * s.dMlp * (s.gatedMlp ? 3 : 2);
  const emb = s.dVocab * s.dModel * (s.tiedEmbeddings ? 1 : 2) + (s.family === 'gpt2' ? s.maxPositions * s.dModel : 0);
  return emb + s.nLayers * (attn + mlp);
}
