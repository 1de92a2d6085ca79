// The decoder families with the Llama tensor layout (`model.layers.N.*`): what each one's
// transformers 5.17 implementation does, as data (DecoderTraits), and one reader for all of
// them. Defaults are the families' configuration_*.py defaults for a key the config omits.
import { bad, show, unsupported, type ConfigReader } from './config';
import { flatRopeParams, gemma3RopeParams, ropeSpec, type FlatRopeRules, type RopeContext } from './rope';
import { activation, contextLength, specialTokens } from './readers';
import type { BlockNorms, LayerSpec, ModelSpec, QkNorm, RopeSpec } from './spec';

type LayerType = 'full_attention' | 'sliding_attention';

/** Per-layer attention types and the window of the sliding ones. */
interface Layering {
  types: LayerType[];
  window: number | null;
  /** Layers without RoPE (SmolLM3). */
  noRope?: boolean[];
}

interface DecoderTraits {
  /** transformers' defaults. */
  kvHeads: number | 'heads';
  /** head_dim when absent ('d/h': hidden_size / heads); 'fixed': always hidden_size / heads (Phi-3). */
  headDim: number | 'd/h' | 'fixed';
  maxPositions: number;
  eps: number;
  tied: boolean;
  /** The activation's key and default; the other name, if present, is not read. */
  act: { key: 'hidden_act' | 'hidden_activation'; fallback: string };
  /** attention_bias for q/k/v/o; 'qkv': always on q/k/v, never on o (Qwen2); 'none': never. */
  bias: 'attention_bias' | 'qkv' | 'none';
  /** reads mlp_bias (Llama, SmolLM3); otherwise the MLP has none. */
  mlpBias: boolean;
  blockNorms: BlockNorms;
  qkNorm: QkNorm;
  /** Gemma: RMSNorm (1 + w) and embeddings × √d_model. */
  gemma: boolean;
  fused: boolean;
  /** How the rope keys are read (Gemma 3: per layer type). */
  rope: FlatRopeRules | 'gemma3';
  /** rope types the family accepts (Phi-3 validates its own). */
  ropeTypes?: string[];
  layering: (r: ConfigReader, nLayers: number) => Layering;
  /** Gemma 2/3: query_pre_attn_scalar and soft-capping. */
  gemmaAttention?: { attnSoftcap: number | null | 'ignored'; finalSoftcap: number | null };
  /** Generation recomputes the KV cache when the sequence first passes a LongRoPE's original context (Phi-3). */
  longropeRecompute?: true;
  /** Keys of a family's published configs that transformers does not read, with the value at which they change nothing. */
  inertKeys?: Readonly<Record<string, { value: unknown; why: string }>>;
}

const BASE_ROPE: FlatRopeRules = {
  defaultTheta: 10000,
  thetaKey: 'rope_theta',
  partialKey: 'partial_rotary_factor',
  partialDefault: null,
  originalMaxDefault: null,
};

const ALL_FULL = (n: number): LayerType[] => Array.from({ length: n }, () => 'full_attention');

/** layer_types as given (checked), or the family's own rule. */
function layerTypes(r: ConfigReader, n: number, computed: () => LayerType[]): LayerType[] {
  const v = r.get('layer_types');
  if (v === undefined) return computed();
  if (!Array.isArray(v) || v.length !== n) throw bad(`"layer_types" must list one type per layer (${n}), got ${show(v)}`);
  for (const t of v)
    if (t !== 'full_attention' && t !== 'sliding_attention')
      throw unsupported(`"layer_types" entry ${show(t)} is not supported (full_attention, sliding_attention).`);
  return v as LayerType[];
}

function windowSize(r: ConfigReader, fallback: number | null): number | null {
  const w = r.optNum('sliding_window', fallback, 1, 1 << 30);
  if (w !== null && !Number.isInteger(w)) throw bad(`"sliding_window" must be an integer, got ${w}`);
  return w;
}

/** Families without sliding windows: the keys may only say so. */
function noSliding(r: ConfigReader, n: number): Layering {
  const why = `transformers 5.17's ${r.modelType} attends to every earlier position`;
  r.inert('sliding_window', () => false, why);
  r.inert('use_sliding_window', (v) => v === false, why);
  r.ignore('max_window_layers', `${r.modelType} has no sliding-window layers`);
  r.inert('layer_types', (v) => Array.isArray(v) && v.every((t) => t === 'full_attention'), why);
  return { types: ALL_FULL(n), window: null };
}

/** Mistral and Phi-3: one window (or none) for every layer. */
function everyLayer(fallback: number | null) {
  return (r: ConfigReader, n: number): Layering => {
    const window = windowSize(r, fallback);
    const types: LayerType[] = Array.from({ length: n }, () => (window === null ? 'full_attention' : 'sliding_attention'));
    const why = `transformers 5.17's ${r.modelType} applies sliding_window (${window}) to every layer`;
    r.inert('layer_types', (v) => Array.isArray(v) && v.every((t, i) => t === types[i]), why);
    r.inert('use_sliding_window', (v) => v === (window !== null), why);
    r.ignore('max_window_layers', why);
    return { types, window };
  };
}

/** Qwen2 / Qwen3: use_sliding_window turns the window on for layers ≥ max_window_layers. */
function qwenLayering(r: ConfigReader, n: number): Layering {
  const use = r.bool('use_sliding_window', false);
  const configured = windowSize(r, 4096);
  const window = use ? configured : null;
  const from = r.get('max_window_layers') ?? 28;
  if (typeof from !== 'number' || !Number.isInteger(from) || from < 0)
    throw bad(`"max_window_layers" must be an integer ≥ 0, got ${show(from)}`);
  const types = layerTypes(r, n, () =>
    Array.from({ length: n }, (_, i) => (window !== null && i >= from ? 'sliding_attention' : 'full_attention')),
  );
  return { types, window };
}

/** SmolLM3: no_rope_layers[i] = 0 removes RoPE from layer i; windows only on NoPE layers by default. */
function smollm3Layering(r: ConfigReader, n: number): Layering {
  const interval = r.int('no_rope_layer_interval', 4);
  const given = r.get('no_rope_layers');
  let rope: boolean[];
  if (given === undefined) rope = Array.from({ length: n }, (_, i) => (i + 1) % interval !== 0);
  else if (Array.isArray(given) && given.length >= n && given.every((x) => x === 0 || x === 1))
    rope = given.slice(0, n).map((x) => x === 1);
  else throw bad(`"no_rope_layers" must be ${n} entries of 0 or 1, got ${show(given)}`);
  const use = r.bool('use_sliding_window', false);
  const window = windowSize(r, null);
  r.ignore('max_window_layers', 'not read by transformers 5.17 SmolLM3');
  const types = layerTypes(r, n, () => rope.map((has) => (use && window !== null && !has ? 'sliding_attention' : 'full_attention')));
  return { types, window, noRope: rope.map((has) => !has) };
}

/** Gemma 2: sliding and full layers alternate (sliding first). */
function gemma2Layering(r: ConfigReader, n: number): Layering {
  const window = windowSize(r, 4096);
  const types = layerTypes(r, n, () => Array.from({ length: n }, (_, i) => ((i + 1) % 2 ? 'sliding_attention' : 'full_attention')));
  return { types, window };
}

/** Gemma 3: every sliding_window_pattern-th layer is full (default 6). */
function gemma3Layering(r: ConfigReader, n: number): Layering {
  const window = windowSize(r, 4096);
  r.inert('use_bidirectional_attention', (v) => v === false, 'bidirectional attention (EmbeddingGemma) is not a causal language model');
  const pattern = r.int('sliding_window_pattern', 6);
  const types = layerTypes(r, n, () => Array.from({ length: n }, (_, i) => ((i + 1) % pattern ? 'sliding_attention' : 'full_attention')));
  // transformers saves the pattern as "_sliding_window_pattern" next to layer_types; it only
  // builds layer types from "sliding_window_pattern" when layer_types is absent.
  if (r.has('layer_types')) r.ignore('_sliding_window_pattern', 'layer_types is given');
  else
    r.inert('_sliding_window_pattern', (v) => v === pattern, `without layer_types transformers uses sliding_window_pattern (${pattern})`);
  return { types, window };
}

const LLAMA_LIKE = {
  kvHeads: 'heads',
  headDim: 'd/h',
  maxPositions: 2048,
  eps: 1e-6,
  tied: false,
  act: { key: 'hidden_act', fallback: 'silu' },
  bias: 'attention_bias',
  mlpBias: false,
  blockNorms: 'pre',
  qkNorm: 'none',
  gemma: false,
  fused: false,
  rope: BASE_ROPE,
  layering: noSliding,
} as const satisfies DecoderTraits;

const GEMMA_LIKE = {
  ...LLAMA_LIKE,
  kvHeads: 16,
  headDim: 256,
  maxPositions: 8192,
  tied: true,
  act: { key: 'hidden_act', fallback: 'gelu_pytorch_tanh' },
  gemma: true,
  inertKeys: {
    use_bidirectional_attention: { value: false, why: 'bidirectional attention (EmbeddingGemma) is not a causal language model' },
  },
} as const satisfies DecoderTraits;

/** Every supported model_type with the Llama layout. */
export const DECODER_TRAITS: Readonly<Record<string, DecoderTraits>> = {
  llama: {
    ...LLAMA_LIKE,
    mlpBias: true,
    // keys nanotron writes into the Llama configs it exports (SmolLM2), not read by transformers
    inertKeys: {
      is_llama_config: { value: true, why: "nanotron's marker that the checkpoint has Llama's layout" },
      rope_interleaved: { value: false, why: 'interleaved RoPE pairs; transformers rotates halves (rotate_half)' },
    },
  },
  mistral: { ...LLAMA_LIKE, kvHeads: 8, maxPositions: 4096 * 32, bias: 'none', layering: everyLayer(4096) },
  qwen2: { ...LLAMA_LIKE, kvHeads: 32, maxPositions: 32768, bias: 'qkv', layering: qwenLayering },
  qwen3: { ...LLAMA_LIKE, kvHeads: 32, headDim: 128, maxPositions: 32768, qkNorm: 'head', layering: qwenLayering },
  smollm3: {
    ...LLAMA_LIKE,
    kvHeads: 4,
    maxPositions: 32768,
    tied: true,
    mlpBias: true,
    rope: { ...BASE_ROPE, defaultTheta: 2_000_000 },
    layering: smollm3Layering,
  },
  olmo2: { ...LLAMA_LIKE, eps: 1e-5, blockNorms: 'post', qkNorm: 'projection' },
  phi3: {
    ...LLAMA_LIKE,
    headDim: 'fixed',
    maxPositions: 4096,
    eps: 1e-5,
    bias: 'none',
    fused: true,
    rope: { ...BASE_ROPE, partialDefault: 1, originalMaxDefault: 4096, renameTypes: { su: 'longrope', yarn: 'longrope' } },
    ropeTypes: ['default', 'longrope'],
    layering: everyLayer(null),
    longropeRecompute: true,
    // Phi-4-mini's config.json carries keys of its own modeling code (auto_map), not read by transformers' Phi-3
    inertKeys: {
      lm_head_bias: { value: false, why: 'an LM-head bias is not part of transformers 5.17 Phi-3' },
      full_attn_mod: { value: 1, why: "Phi-4-mini's own code: 1 = every layer attends fully, as transformers' Phi-3 does" },
      interpolate_factor: { value: 1, why: "Phi-4-mini's own code: 1 = no position interpolation" },
    },
  },
  gemma: GEMMA_LIKE,
  gemma2: {
    ...GEMMA_LIKE,
    kvHeads: 4,
    act: { key: 'hidden_activation', fallback: 'gelu_pytorch_tanh' },
    blockNorms: 'sandwich',
    layering: gemma2Layering,
    gemmaAttention: { attnSoftcap: 50, finalSoftcap: 30 },
  },
  gemma3_text: {
    ...GEMMA_LIKE,
    kvHeads: 4,
    maxPositions: 131072,
    act: { key: 'hidden_activation', fallback: 'gelu_pytorch_tanh' },
    blockNorms: 'sandwich',
    qkNorm: 'head',
    rope: 'gemma3',
    layering: gemma3Layering,
    gemmaAttention: { attnSoftcap: 'ignored', finalSoftcap: null },
  },
};

function headDimOf(r: ConfigReader, t: DecoderTraits, dModel: number, nHeads: number): number {
  const perHead = dModel / nHeads;
  if (t.headDim === 'fixed') {
    r.inert(
      'head_dim',
      (v) => v === perHead,
      `transformers 5.17's ${r.modelType} heads are hidden_size / num_attention_heads = ${perHead} wide`,
    );
    return perHead;
  }
  const fallback = t.headDim === 'd/h' ? perHead : t.headDim;
  if (!Number.isInteger(fallback)) return r.int('head_dim'); // d/h not whole: the config must say
  return r.int('head_dim', fallback, 4096);
}

/** The rotary embedding of each layer. */
function layerRopes(r: ConfigReader, t: DecoderTraits, lay: Layering, ctx: Omit<RopeContext, 'where'>): (RopeSpec | null)[] {
  if (t.rope === 'gemma3') {
    const byType = gemma3RopeParams(r, lay.types, ctx.maxPositions);
    const specs = new Map(Object.entries(byType).map(([type, rp]) => [type, ropeSpec(rp, { ...ctx, where: `rope_parameters.${type}` })]));
    return lay.types.map((type) => specs.get(type) ?? null);
  }
  const { rp, where } = flatRopeParams(r, t.rope, ctx.maxPositions);
  if (t.ropeTypes && !t.ropeTypes.includes(String(rp.rope_type)))
    throw unsupported(`"${where}.rope_type" ${show(rp.rope_type)} is not one ${r.modelType} accepts (${t.ropeTypes.join(', ')}).`);
  const rope = ropeSpec(rp, { ...ctx, where });
  return lay.types.map((_, i) => (lay.noRope?.[i] ? null : rope));
}

function biases(r: ConfigReader, t: DecoderTraits): Pick<ModelSpec, 'qkvBias' | 'outBias' | 'mlpBias'> {
  let qkv = false;
  let out = false;
  if (t.bias === 'attention_bias') qkv = out = r.bool('attention_bias', false);
  else if (t.bias === 'qkv') {
    qkv = true;
    r.ignore('attention_bias', "transformers 5.17's Qwen2 always has q/k/v biases and no o_proj bias");
  } else r.inert('attention_bias', (v) => v === false, `transformers 5.17's ${r.modelType} has no attention biases`);
  const mlp = t.mlpBias ? r.bool('mlp_bias', false) : false;
  if (!t.mlpBias) r.inert('mlp_bias', (v) => v === false, `transformers 5.17's ${r.modelType} has no MLP biases`);
  return { qkvBias: qkv, outBias: out, mlpBias: mlp };
}

/** Gemma 2/3's attention scale and soft-caps; everyone else scales by 1/√head_dim. */
function attention(r: ConfigReader, t: DecoderTraits, headDim: number): Pick<ModelSpec, 'attnScale' | 'attnSoftcap' | 'finalSoftcap'> {
  const g = t.gemmaAttention;
  if (!g) return { attnScale: 1 / Math.sqrt(headDim), attnSoftcap: null, finalSoftcap: null };
  const scalar = r.num('query_pre_attn_scalar', 256, Number.MIN_VALUE, 1e9);
  let attnSoftcap: number | null = null;
  if (g.attnSoftcap === 'ignored')
    r.ignore('attn_logit_softcapping', "transformers 5.17's Gemma 3 attention does not apply it (no softcap is passed to its attention)");
  else attnSoftcap = r.optNum('attn_logit_softcapping', g.attnSoftcap, Number.MIN_VALUE, 1e9);
  return {
    attnScale: 1 / Math.sqrt(scalar),
    attnSoftcap,
    finalSoftcap: r.optNum('final_logit_softcapping', g.finalSoftcap, Number.MIN_VALUE, 1e9),
  };
}

/** The other activation key a family does not read (Gemma 1 reads hidden_act, Gemma 2/3 hidden_activation). */
function otherActivationKey(r: ConfigReader, t: DecoderTraits): void {
  const other = t.act.key === 'hidden_act' ? 'hidden_activation' : 'hidden_act';
  if (t.gemma) r.ignore(other, `transformers 5.17's ${r.modelType} reads "${t.act.key}"`);
}

export function decoderSpec(r: ConfigReader, modelType: string): ModelSpec {
  const t = DECODER_TRAITS[modelType]!;
  const dModel = r.int('hidden_size', undefined, 65536);
  const nHeads = r.int('num_attention_heads', undefined, 4096);
  const nLayers = r.int('num_hidden_layers', undefined, 1024);
  const headDim = headDimOf(r, t, dModel, nHeads);
  const maxPositions = r.int('max_position_embeddings', t.maxPositions);
  const lay = t.layering(r, nLayers);
  const ropes = layerRopes(r, t, lay, { headDim, maxPositions, modelType, partialRotary: modelType === 'phi3' });
  const layers: LayerSpec[] = lay.types.map((type, i) => ({
    window: type === 'sliding_attention' ? slidingWindow(lay) : null,
    rope: ropes[i]!,
  }));
  otherActivationKey(r, t);
  for (const [key, k] of Object.entries(t.inertKeys ?? {})) r.inert(key, (v) => v === k.value, k.why);
  return {
    family: 'llama',
    modelType,
    nLayers,
    dModel,
    nHeads,
    nKvHeads: r.int('num_key_value_heads', t.kvHeads === 'heads' ? nHeads : t.kvHeads, 4096),
    headDim,
    dVocab: r.int('vocab_size', undefined, 4_000_000),
    dMlp: r.int('intermediate_size'),
    maxPositions: contextLength(ropes.find((x) => x !== null) ?? null, maxPositions),
    norm: 'rmsnorm',
    normEps: r.num('rms_norm_eps', t.eps, 0, 1),
    normPlusOne: t.gemma,
    act: activation(r, t.act.key, t.act.fallback),
    gatedMlp: true,
    blockNorms: t.blockNorms,
    qkNorm: t.qkNorm,
    fusedProjections: t.fused,
    parallelResidual: false,
    // transformers casts √d_model to the activations' dtype: float32 here
    embedScale: t.gemma ? Math.fround(Math.sqrt(dModel)) : 1,
    ...attention(r, t, headDim),
    layers,
    cacheRecomputeAt: t.longropeRecompute ? longropeSwitch(ropes) : null,
    tiedEmbeddings: r.bool('tie_word_embeddings', t.tied),
    ...biases(r, t),
    ...specialTokens(r),
  };
}

/** The original context of a LongRoPE (where it switches to its long factors), or null. */
function longropeSwitch(ropes: (RopeSpec | null)[]): number | null {
  const f = ropes.find((x) => x?.freq.kind === 'longrope')?.freq;
  return f?.kind === 'longrope' ? f.originalMax : null;
}

function slidingWindow(lay: Layering): number {
  if (lay.window === null)
    throw bad('"layer_types" has sliding_attention layers but no sliding window is set (transformers refuses this too)');
  return lay.window;
}
