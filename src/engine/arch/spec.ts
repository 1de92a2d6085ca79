// config.json → ModelSpec: one normalised description of every architecture the graph
// builder supports. Each family's reader (families.ts for the Llama layout, readers.ts for
// GPT-2 and GPT-NeoX) reads its keys with transformers 5.17's defaults and precedence; a key
// it does not read must be one that cannot change the numbers (config.ts), or the config is
// refused by the key's name.
import { EngineError } from '../errors';
import { ConfigReader, bad, type Json, type KeyLedger } from './config';
import { DECODER_TRAITS, decoderSpec } from './families';
import { gpt2Spec, neoxSpec } from './readers';

/**
 * The checkpoint's tensor layout: GPT-2 (`transformer.h.N`), GPT-NeoX (`gpt_neox.layers.N`)
 * or the Llama layout (`model.layers.N`) that Mistral, Qwen, Gemma, Phi-3, OLMo 2 and
 * SmolLM3 share (their differences are the flags below).
 */
export type Family = 'gpt2' | 'llama' | 'gpt_neox';

/** How the inverse frequencies of a rotary embedding are chosen for a sequence. */
export type RopeFrequencies =
  | { kind: 'fixed'; invFreq: Float32Array }
  /** LongRoPE (Phi-3.5, Phi-4-mini): `short` while the whole sequence (past + new) ≤ originalMax, `long` beyond. */
  | { kind: 'longrope'; short: Float32Array; long: Float32Array; originalMax: number }
  /** Dynamic NTK: base θ·(factor·n/maxPositions − (factor−1))^(d/(d−2)) for n = max(sequence length, maxPositions). */
  | { kind: 'dynamic'; theta: number; factor: number; maxPositions: number };

export interface RopeSpec {
  /** transformers' rope_type ("default", "linear", "llama3", "yarn", "longrope", "dynamic"). */
  type: string;
  /** Dimensions of each head that are rotated (the first ones; Phi-3 and NeoX may rotate a fraction). */
  rotaryDim: number;
  /** cos and sin are multiplied by it (YaRN's and LongRoPE's attention factor; 1 otherwise). */
  attentionFactor: number;
  freq: RopeFrequencies;
}

/** One decoder layer's attention: its mask and its positions. */
export interface LayerSpec {
  /** Sliding-window attention: a query sees the last `window` positions (itself included); null: all. */
  window: number | null;
  /** Rotary embedding; null for a layer without positions (SmolLM3's NoPE layers). Layers of one type share it. */
  rope: RopeSpec | null;
}

/** Where a block's norms sit: pre (x + f(norm x)), sandwich (Gemma 2/3: x + norm f(norm x)), post (OLMo 2: x + norm f(x)). */
export type BlockNorms = 'pre' | 'sandwich' | 'post';

/** RMSNorm of queries and keys before RoPE: per head over head_dim (Qwen3, Gemma 3) or over the whole projection (OLMo 2). */
export type QkNorm = 'none' | 'head' | 'projection';

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
  /** Context window: max_position_embeddings (dynamic NTK: × its factor, the extension it is for). */
  maxPositions: number;
  norm: 'layernorm' | 'rmsnorm';
  normEps: number;
  /** Gemma's RMSNorm multiplies by (1 + w): the canonical norm weights already hold 1 + w. */
  normPlusOne: boolean;
  act: 'gelu_tanh' | 'gelu' | 'silu' | 'relu';
  /** gated (SwiGLU / GeGLU) MLP or plain up→act→down. */
  gatedMlp: boolean;
  blockNorms: BlockNorms;
  qkNorm: QkNorm;
  /** The checkpoint fuses q/k/v into qkv_proj and gate/up into gate_up_proj (Phi-3). */
  fusedProjections: boolean;
  parallelResidual: boolean;
  /** Token embeddings are multiplied by this (Gemma: √d_model as a float32), else 1. */
  embedScale: number;
  /** Attention scores are q·k × attnScale (1/√head_dim; Gemma 2/3: 1/√query_pre_attn_scalar). */
  attnScale: number;
  /** Attention logits soft-capped: cap·tanh(s/cap) before the mask (Gemma 2). */
  attnSoftcap: number | null;
  /** Final logits soft-capped the same way (Gemma 2/3), in the forward graph and the lens. */
  finalSoftcap: number | null;
  /** One entry per layer. */
  layers: LayerSpec[];
  /**
   * Generation rebuilds the KV cache from scratch when the cached sequence reaches this length
   * (Phi-3 with LongRoPE: transformers' Phi3ForCausalLM recomputes it when the sequence first
   * passes original_max_position_embeddings, so every cached key gets the long factors); null: never.
   */
  cacheRecomputeAt: number | null;
  tiedEmbeddings: boolean;
  /** q/k/v projections carry biases (Qwen2, NeoX, GPT-2, attention_bias). */
  qkvBias: boolean;
  /** the output projection carries a bias. */
  outBias: boolean;
  mlpBias: boolean;
  bosTokenId: number | null;
  eosTokenIds: number[];
}

const ARCH_HINT: Record<string, string> = {
  GPT2LMHeadModel: 'gpt2',
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'mistral',
  Qwen2ForCausalLM: 'qwen2',
  Qwen3ForCausalLM: 'qwen3',
  GemmaForCausalLM: 'gemma',
  Gemma2ForCausalLM: 'gemma2',
  Gemma3ForCausalLM: 'gemma3_text',
  Phi3ForCausalLM: 'phi3',
  Olmo2ForCausalLM: 'olmo2',
  SmolLM3ForCausalLM: 'smollm3',
  GPTNeoXForCausalLM: 'gpt_neox',
};

export const SUPPORTED_MODEL_TYPES = ['gpt2', 'gpt_neox', ...Object.keys(DECODER_TRAITS)];

/** Model types people try that have a nearby supported one, for the refusal message. */
const NEAR: Record<string, string> = {
  gemma3: 'gemma3 is the multimodal Gemma 3 (4B and up); its text-only models (270M, 1B) are gemma3_text',
  phi: 'phi (Phi-1/Phi-2) is a different architecture from phi3 (Phi-3, Phi-3.5, Phi-4-mini)',
  olmo: 'olmo (OLMo 1, non-parametric LayerNorm) differs from olmo2 (OLMo 2: RMSNorm after attention and MLP, q/k norms)',
};

/** Which model type a config describes, or a clear refusal. */
export function detectModelType(cfg: Json): string {
  let type = typeof cfg.model_type === 'string' ? cfg.model_type : '';
  if (!type && Array.isArray(cfg.architectures)) {
    for (const a of cfg.architectures) if (typeof a === 'string' && ARCH_HINT[a]) type = ARCH_HINT[a];
  }
  if (!type) throw bad('neither "model_type" nor a known "architectures" entry is present');
  if (!SUPPORTED_MODEL_TYPES.includes(type)) {
    const near = NEAR[type] ? ` (${NEAR[type]})` : '';
    throw new EngineError(
      'UNSUPPORTED_ARCHITECTURE',
      `model_type "${type.slice(0, 60)}" is not supported${near}. Supported: ${SUPPORTED_MODEL_TYPES.join(', ')}. ` +
        'See the README section "Adding an architecture".',
    );
  }
  return type;
}

/** The spec and how each key of the config was accounted for. */
export function readConfig(raw: unknown): { spec: ModelSpec } & KeyLedger {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad('not a JSON object');
  const cfg = raw as Json;
  const modelType = detectModelType(cfg);
  const r = new ConfigReader(cfg, modelType);
  r.get('model_type');
  r.inert('is_causal', (v) => v === true, 'a model that is not causal (bidirectional attention) is not a language model this tool reads');
  r.inert('is_encoder_decoder', (v) => v === false, 'encoder-decoder models are not supported');
  r.inert('add_cross_attention', (v) => v === false, 'cross-attention needs an encoder');
  r.inert('quantization_config', () => false, 'quantized checkpoints are not supported (load the unquantized weights)');
  const spec = modelType === 'gpt2' ? gpt2Spec(r) : modelType === 'gpt_neox' ? neoxSpec(r) : decoderSpec(r, modelType);
  validate(spec);
  return { spec, ...r.finish() };
}

export function specFromConfig(raw: unknown): ModelSpec {
  return readConfig(raw).spec;
}

function validate(s: ModelSpec): void {
  if (!Number.isInteger(s.headDim) || s.headDim <= 0) throw bad(`hidden size ${s.dModel} is not divisible by ${s.nHeads} heads`);
  if (s.nHeads % s.nKvHeads !== 0) throw bad(`num_attention_heads ${s.nHeads} is not a multiple of num_key_value_heads ${s.nKvHeads}`);
  if (s.layers.some((l) => l.rope !== null) && s.headDim % 2 !== 0) throw bad(`head_dim ${s.headDim} must be even for rotary embeddings`);
  const params = paramCount(s);
  if (params > 2e11) throw bad(`the model described has about ${(params / 1e9).toFixed(0)} B parameters, beyond what this tool can load`);
}

/** The fields paramCount reads (the memory estimate passes these). */
export type ParamShape = Pick<
  ModelSpec,
  | 'family'
  | 'nLayers'
  | 'dModel'
  | 'nHeads'
  | 'nKvHeads'
  | 'headDim'
  | 'dVocab'
  | 'dMlp'
  | 'gatedMlp'
  | 'tiedEmbeddings'
  | 'maxPositions'
  | 'norm'
  | 'blockNorms'
  | 'qkNorm'
  | 'qkvBias'
  | 'outBias'
  | 'mlpBias'
>;

/** Norm vectors of one block: two (pre-norm), four (Gemma 2/3 sandwich), two (OLMo 2 post-norm). */
function blockNormCount(s: ParamShape): number {
  return s.blockNorms === 'sandwich' ? 4 : 2;
}

/** Parameters a spec implies: exactly the checkpoint's tensor sizes (embeddings, blocks, norms, biases). */
export function paramCount(s: ParamShape): number {
  const q = s.nHeads * s.headDim;
  const kv = s.nKvHeads * s.headDim;
  const attn = s.dModel * (q + 2 * kv) + q * s.dModel + (s.qkvBias ? q + 2 * kv : 0) + (s.outBias ? s.dModel : 0);
  const mlp = s.dModel * s.dMlp * (s.gatedMlp ? 3 : 2) + (s.mlpBias ? s.dMlp * (s.gatedMlp ? 2 : 1) + s.dModel : 0);
  const normSize = s.norm === 'layernorm' ? 2 * s.dModel : s.dModel;
  const qk = s.qkNorm === 'head' ? 2 * s.headDim : s.qkNorm === 'projection' ? q + kv : 0;
  const block = attn + mlp + blockNormCount(s) * normSize + qk;
  const emb = s.dVocab * s.dModel * (s.tiedEmbeddings ? 1 : 2) + (s.family === 'gpt2' ? s.maxPositions * s.dModel : 0);
  return emb + s.nLayers * block + normSize;
}
