// Data shapes shared by the engine, the extension host, the CLI and the webview.
// Plain objects and typed arrays only, so they cross process and webview boundaries.
// Shapes use TransformerLens vocabulary: [n_layers, pos, d_model] etc.
import type { InterventionRecord } from './interventions';

export interface ModelInfo {
  /** Display name (folder name or Hub id). */
  name: string;
  /** config.json model_type, e.g. "llama", "gpt2", "gpt_neox". */
  architecture: string;
  family: 'gpt2' | 'llama' | 'gpt_neox';
  n_layers: number;
  d_model: number;
  d_vocab: number;
  n_heads: number;
  n_kv_heads: number;
  d_head: number;
  max_positions: number;
  params: number;
  tied_embeddings: boolean;
  /** onnxruntime execution provider the model runs on ("cpu", "cuda", …). */
  provider: string;
  /** Why the requested provider was not used, if it was not. */
  provider_note: string | null;
  /** The GPU adapter a WebGPU run uses ("NVIDIA H200"); null on other providers. */
  adapter?: string | null;
  /** Precision of the weight matrices in the graphs (float16: half-precision checkpoint on a GPU). */
  weights?: 'float32' | 'float16';
  /** The graphs take interventions (head ablation, residual patching); false for ONNX exports. */
  interventions?: boolean;
}

export interface Token {
  id: number;
  text: string;
  /** UTF-16 offsets into the analysed text (start === end for tokens not in the text, e.g. BOS). */
  start: number;
  end: number;
  special: boolean;
}

/**
 * The logit lens for rows r = 0..n_layers: row 0 reads resid_pre[0] (the embeddings),
 * row L+1 reads resid_post[L]; the last row is the model's own prediction.
 */
export interface LensTable {
  rows: number;
  pos: number;
  k: number;
  topIds: Int32Array; // [rows, pos, k]
  topProbs: Float32Array; // [rows, pos, k]
  entropy: Float32Array; // [rows, pos] nats
  nextLogprob: Float32Array; // [rows, pos] log p(actual next token); NaN at the last position
  nextRank: Int32Array; // [rows, pos] 0 = top-1; -1 at the last position
  klToFinal: Float32Array; // [rows, pos] KL(p_final || p_row) nats
  copyMass: Float32Array; // [rows, pos] probability on tokens seen at positions ≤ pos
  cosNext: Float32Array; // [rows, pos] cos(ln_final(x), W_E[next]); NaN at the last position
  cosPred: Float32Array; // [rows, pos] cos(ln_final(x), W_E[final top-1])
}

/** A lens table of zeros for `rows` × `pos` cells with `k` top tokens each (filled by its producer). */
export function emptyLensTable(rows: number, pos: number, k: number): LensTable {
  const cells = rows * pos;
  return {
    rows,
    pos,
    k,
    topIds: new Int32Array(cells * k),
    topProbs: new Float32Array(cells * k),
    entropy: new Float32Array(cells),
    nextLogprob: new Float32Array(cells),
    nextRank: new Int32Array(cells),
    klToFinal: new Float32Array(cells),
    copyMass: new Float32Array(cells),
    cosNext: new Float32Array(cells),
    cosPred: new Float32Array(cells),
  };
}

/** Residual streams and attention patterns, keyed like TransformerLens hooks. */
export interface ActivationCache {
  n_layers: number;
  pos: number;
  d_model: number;
  n_heads: number;
  /** The walk: rows 0..n_layers = resid_pre[0], resid_post[0..n_layers-1]. [n_layers+1, pos, d_model] */
  resid: Float32Array;
  /** resid_mid[L] [n_layers, pos, d_model]; empty when the analysis did not keep it (AnalyzeRequest.keepResidMid) */
  residMid: Float32Array;
  /** blocks.{L}.attn.hook_pattern [n_layers, n_heads, pos, pos], when requested */
  patterns: Float32Array | null;
  /**
   * Head statistics computed inside the forward graph, where the patterns are produced
   * (kernels for offsets 0..64), so the patterns need not be kept for the attention views.
   * Absent when the graph has none (ONNX exports, no patterns).
   */
  headStats?: HeadStatsResult | null;
  /** blocks.{L}.attn.hook_z_mean: each head's z averaged over the positions [n_layers, n_heads, d_head] (mean ablation) */
  zMean?: Float32Array | null;
  /** The interventions this run had (head ablation, residual patching); null or absent: a clean run. */
  interventions?: InterventionRecord | null;
  /** The principal axes of the walk's PCA (engine side: a twin run is drawn in them). */
  pcaAxes?: { mean: Float32Array; components: Float32Array; k: number; d: number; explained: number[] } | null;
}

export interface RepeatedNgram {
  n: number;
  ids: number[];
  /** Start positions of every occurrence. */
  positions: number[];
}

/** Derived measures of the walk (METRICS.md), computed by the engine after a run. */
export interface WalkMetrics {
  norms: Float32Array; // [rows, pos] ||x||
  normsFinal: Float32Array; // [rows, pos] ||ln_final(x)|| ("the ball" after the final norm)
  stepSize: Float32Array; // [n_layers, pos] ||resid_post[L] − resid_pre[L]||
  stepCos: Float32Array; // [n_layers, pos] cos(resid_pre[L], resid_post[L])
  cosToFinal: Float32Array; // [rows, pos]
  /**
   * PCA of all rows × positions, 3 components: coords [rows, pos, 3]; explained: the fraction of
   * this run's variance along each axis. `axesOf`: the run whose principal axes these are, when
   * not this run's own (a what-if twin is drawn in its unintervened run's axes, so the two walks
   * can be compared).
   */
  pca: { coords: Float32Array; explained: number[]; axesOf?: number };
  /** Token × token cosine similarity at one row (default: the last). [pos, pos] */
  similarity: { row: number; matrix: Float32Array };
  ngrams: RepeatedNgram[];
}

export interface Timings {
  tokenizeMs: number;
  forwardMs: number;
  lensMs: number;
  metricsMs: number;
  totalMs: number;
  /**
   * Of each phase, the part spent inside onnxruntime's runs (runtime/ort.ts: runtimeClock); the
   * rest of the phase is JavaScript on one thread. Absent in analyses saved before it existed.
   */
  runtime?: { tokenizeMs: number; forwardMs: number; lensMs: number; metricsMs: number };
}

/** "the first 1024 of 5,231 tokens", or "the first 1024 tokens of a 400,000-character text" when the total was not counted. */
export function truncationText(t: NonNullable<Analysis['truncation']>): string {
  return t.total === null
    ? `the first ${t.kept} tokens of a ${t.chars.toLocaleString('en-US')}-character text`
    : `the first ${t.kept} of ${t.total.toLocaleString('en-US')} tokens`;
}

/** Of the whole analysis, the milliseconds inside onnxruntime's runs; null for analyses saved without them. */
export function runtimeMs(t: Timings): number | null {
  const r = t.runtime;
  return r ? r.tokenizeMs + r.forwardMs + r.lensMs + r.metricsMs : null;
}

export interface Analysis {
  model: ModelInfo;
  text: string;
  tokens: Token[];
  /**
   * Set when the input was cut to fit the context window or the token cap: `kept` of `total`
   * tokens, of a text of `chars` characters (UTF-16 units). `total` is null when the text was
   * too long to count: only its start was tokenized.
   */
  truncation: { kept: number; total: number | null; chars: number } | null;
  cache: ActivationCache;
  lens: LensTable;
  walk: WalkMetrics;
  /** Text of every token id that appears anywhere in this analysis (id → decoded text). */
  vocab: Record<number, string>;
  /** The model's next-token distribution at the last position, top-k (the lens's final row there: the model's own output). */
  lastLogitsTop: { id: number; prob: number }[];
  timings: Timings;
}

/** Hook name → row of `resid` (TransformerLens naming). */
export function residRow(hookName: string, nLayers: number): number | null {
  if (hookName === 'blocks.0.hook_resid_pre') return 0;
  const m = /^blocks\.(\d+)\.hook_resid_(pre|post)$/.exec(hookName);
  if (!m) return null;
  const L = Number(m[1]);
  if (L >= nLayers) return null;
  return m[2] === 'pre' ? L : L + 1;
}

/** Attention head statistics (METRICS.md "Attention"), all laid out [n_layers, n_heads, …]. */
export interface HeadStatsResult {
  n_layers: number;
  n_heads: number;
  maxOffset: number;
  kernel: Float32Array; // [n_layers, n_heads, maxOffset+1]
  kernelNorm: Float32Array; // same, normalised by the uniform baseline 1/(q+1)
  selfBias: Float32Array; // [n_layers, n_heads]
  induction: Float32Array; // [n_layers, n_heads], NaN when the text has no repeated token
}

/** Angular proximity over the whole vocabulary at one position (final layer). */
export interface ProximityResult {
  pos: number;
  logits: Float32Array; // [d_vocab]
  cos: Float32Array; // [d_vocab] cos(ln_final(x), W_U[:, t])
  unembedNorms: Float32Array; // [d_vocab] ‖W_U[:, t]‖
  xNorm: number; // ‖ln_final(x)‖
  spearman: number;
  k: number;
  topByLogit: number[];
  topByCos: number[];
  topkOverlap: number; // |top-k(logit) ∩ top-k(cos)| / k
  /** Text of the tokens worth labelling (the top tokens by logit and by cosine). */
  labels: Record<number, string>;
}

export interface ClustersResult {
  row: number;
  similarity: Float32Array; // [pos, pos]
  order: number[];
  merges: { a: number; b: number; height: number; size: number }[];
}

export interface DiffResult {
  rows: number;
  /** cos(resid_A[r, last], resid_B[r, last]) per row */
  cosine: Float32Array;
  /** last-token trajectories of both runs in one PCA basis: [rows, k] each */
  coordsA: Float32Array;
  coordsB: Float32Array;
  k: number;
  explained: number[];
  /** First row from which the two stay apart (cos < 0.9), or null. */
  divergeRow: number | null;
}
