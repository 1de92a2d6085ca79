// Readers shared by the families, and the two families with their own tensor layouts:
// GPT-2 (learned positions, Conv1D weights) and GPT-NeoX (fused per-head qkv, partial rotary,
// parallel residual). Defaults are transformers 5.17's for a key the config omits.
import { ConfigReader, bad, show, tokenIds, unsupported } from './config';
import { flatRopeParams, ropeSpec } from './rope';
import type { ModelSpec, RopeSpec } from './spec';

export function specialTokens(r: ConfigReader): Pick<ModelSpec, 'bosTokenId' | 'eosTokenIds'> {
  return { bosTokenId: tokenIds(r.get('bos_token_id'))[0] ?? null, eosTokenIds: tokenIds(r.get('eos_token_id')) };
}

const ACTIVATIONS: Record<string, ModelSpec['act']> = {
  gelu: 'gelu',
  gelu_python: 'gelu',
  gelu_new: 'gelu_tanh',
  gelu_pytorch_tanh: 'gelu_tanh',
  gelu_fast: 'gelu_tanh',
  silu: 'silu',
  swish: 'silu',
  relu: 'relu',
};

/** An activation by its transformers name (ACT2FN), or a refusal naming it. */
export function activation(r: ConfigReader, key: string, fallback: string): ModelSpec['act'] {
  const name = r.str(key, fallback);
  const act = ACTIVATIONS[name];
  if (!act)
    throw unsupported(
      `"${key}" = ${JSON.stringify(name).slice(0, 40)} is not supported (supported: ${Object.keys(ACTIVATIONS).join(', ')}).`,
    );
  return act;
}

/** The same value under two names (GPT-2's n_embd / hidden_size): both must agree. */
function aliased(r: ConfigReader, key: string, alias: string, fallback?: number): number {
  const other = r.has(alias) ? r.int(alias) : undefined;
  const v = r.int(key, other ?? fallback);
  if (other !== undefined && other !== v) throw bad(`"${key}" ${v} and its alias "${alias}" ${other} disagree`);
  return v;
}

export function gpt2Spec(r: ConfigReader): ModelSpec {
  const dModel = aliased(r, 'n_embd', 'hidden_size', undefined);
  const nHeads = aliased(r, 'n_head', 'num_attention_heads', undefined);
  const nLayers = aliased(r, 'n_layer', 'num_hidden_layers', undefined);
  const maxPositions = aliased(r, 'n_positions', 'max_position_embeddings', 1024);
  const headDim = dModel / nHeads;
  r.ignore('n_ctx', 'not read by transformers 5.17 (n_positions sizes the position table)');
  r.inert(
    'scale_attn_by_inverse_layer_idx',
    (v) => v === false,
    'scaling attention by 1/(layer+1) (Mistral-style GPT-2 training) is not implemented',
  );
  r.ignore('reorder_and_upcast_attn', 'only changes the precision of half-precision runs; the engine computes attention in float32');
  return {
    family: 'gpt2',
    modelType: 'gpt2',
    nLayers,
    dModel,
    nHeads,
    nKvHeads: nHeads,
    headDim,
    dVocab: r.int('vocab_size', undefined, 4_000_000),
    dMlp: r.int('n_inner', 4 * dModel),
    maxPositions,
    norm: 'layernorm',
    normEps: r.num('layer_norm_epsilon', 1e-5, 0, 1),
    normPlusOne: false,
    act: activation(r, 'activation_function', 'gelu_new'),
    gatedMlp: false,
    blockNorms: 'pre',
    qkNorm: 'none',
    fusedProjections: false,
    parallelResidual: false,
    embedScale: 1,
    attnScale: r.bool('scale_attn_weights', true) ? 1 / Math.sqrt(headDim) : 1,
    attnSoftcap: null,
    finalSoftcap: null,
    layers: Array.from({ length: nLayers }, () => ({ window: null, rope: null })),
    cacheRecomputeAt: null,
    tiedEmbeddings: r.bool('tie_word_embeddings', true),
    qkvBias: true,
    outBias: true,
    mlpBias: true,
    ...specialTokens(r),
  };
}

export function neoxSpec(r: ConfigReader): ModelSpec {
  const dModel = r.int('hidden_size', undefined, 65536);
  const nHeads = r.int('num_attention_heads', undefined, 4096);
  const nLayers = r.int('num_hidden_layers', undefined, 1024);
  const headDim = dModel / nHeads;
  const maxPositions = r.int('max_position_embeddings', 2048);
  r.inert('head_dim', (v) => v === headDim, `GPT-NeoX heads are hidden_size / num_attention_heads = ${headDim} wide`);
  const { rp, where } = flatRopeParams(
    r,
    { defaultTheta: 10000, thetaKey: 'rotary_emb_base', partialKey: 'rotary_pct', partialDefault: 0.25, originalMaxDefault: null },
    maxPositions,
  );
  // transformers 5.17's GPT-NeoX takes the base from rotary_emb_base or rope_parameters and the
  // fraction from rotary_pct or rope_parameters; a top-level rope_theta / partial_rotary_factor
  // is not read, so one that disagrees is refused rather than silently overridden.
  r.inert(
    'rope_theta',
    (v) => v === rp.rope_theta,
    `transformers 5.17's GPT-NeoX uses rotary_emb_base / ${where}.rope_theta = ${show(rp.rope_theta)}`,
  );
  r.inert(
    'partial_rotary_factor',
    (v) => v === rp.partial_rotary_factor,
    `transformers 5.17's GPT-NeoX uses rotary_pct / ${where}.partial_rotary_factor = ${show(rp.partial_rotary_factor)}`,
  );
  const rope = ropeSpec(rp, { headDim, maxPositions, modelType: 'gpt_neox', partialRotary: true, where });
  const bias = r.bool('attention_bias', true);
  r.ignore('is_decoder', 'not read by the causal-LM classes');
  return {
    family: 'gpt_neox',
    modelType: 'gpt_neox',
    nLayers,
    dModel,
    nHeads,
    nKvHeads: nHeads,
    headDim,
    dVocab: r.int('vocab_size', undefined, 4_000_000),
    dMlp: r.int('intermediate_size', 24576),
    maxPositions: contextLength(rope, maxPositions),
    norm: 'layernorm',
    normEps: r.num('layer_norm_eps', 1e-5, 0, 1),
    normPlusOne: false,
    act: activation(r, 'hidden_act', 'gelu'),
    gatedMlp: false,
    blockNorms: 'pre',
    qkNorm: 'none',
    fusedProjections: false,
    parallelResidual: r.bool('use_parallel_residual', true),
    embedScale: 1,
    attnScale: 1 / Math.sqrt(headDim),
    attnSoftcap: null,
    finalSoftcap: null,
    layers: Array.from({ length: nLayers }, () => ({ window: null, rope })),
    cacheRecomputeAt: null,
    tiedEmbeddings: r.bool('tie_word_embeddings', false),
    qkvBias: bias,
    outBias: bias,
    mlpBias: true,
    ...specialTokens(r),
  };
}

/** The context window: dynamic NTK scaling is meant to run past max_position_embeddings, by its factor. */
export function contextLength(rope: RopeSpec | null, maxPositions: number): number {
  return rope?.freq.kind === 'dynamic' ? Math.floor(maxPositions * rope.freq.factor) : maxPositions;
}
