// Memory guard: how much RAM loading a model and analysing T tokens takes, and a refusal
// with the numbers (EngineError TOO_LARGE) before the process would run out of memory.
// Pure functions: the caller passes os.freemem() and the configured cap.
//
// What the engine holds (see model.ts, graph/forward.ts, graph/lens.ts, analyze.ts):
//  - weights, as float32 whatever the dtype on disk: the forward session holds every
//    parameter (W_E, W_pos, blocks, W_U when untied); the lens session holds its own copy
//    of W_E (and W_U when untied): sessions do not share initializers. (Through the graph
//    cache on the CPU the forward session's W_E is memory-mapped and read only for
//    generation's logits: an analysis's embeddings come from the file, embedrows.ts; and the
//    lens reads W_U from that file in vocabulary blocks, lensblocked.ts, so it holds no copy.
//    The estimate still counts one, on the safe side: it does not know which provider runs.)
//  - while loading, transiently: the float32 arrays read from the checkpoint and the
//    serialised ONNX model bytes, next to onnxruntime's copy.
//  - per analysis of T tokens: resid_pre/mid/post of every layer ((2L+1)·T·d floats) as
//    onnxruntime outputs and again as JS copies; attention patterns L·H·T² floats (twice,
//    likewise) when enabled; one layer's attention scores; the KV cache the graph emits;
//    and the logit lens, which runs in chunks of positions sized to ≈192 MiB.
//
// The memory freed after loading is mostly kept by the allocators rather than given back to
// the OS, and an analysis reuses only part of it, so `peak` = loading peak + half the
// activations (or the plain working set when larger). Calibration, random weights, Node 20,
// onnxruntime 1.30, max RSS measured → estimated:
//   SmolLM2-135M shapes, 512 tokens + patterns: after loading 2.07 → 2.08 GB, after the analysis 2.48 → 2.56 GB
//   Pythia-70M-like llama (untied), 1024 tokens + patterns: 1.53 → 1.57 GB, 1.56 → 1.97 GB
//   the same, 2048 tokens + patterns (patterns dominate): after the analysis 2.89 → 3.06 GB
// Through the graph cache (the extension's default, `graphCache`), a load converts the weights
// tensor by tensor into a file the sessions then memory-map: no second copy at any time, so the
// load adds nothing beyond the weights (bench, 1.17 B bfloat16 Llama-shaped checkpoint: peak
// 1.3 GB while converting). Peak RSS measured → estimated, load through the cache + one analysis:
//   1.17 B Llama shape (bench), 16 tokens + patterns: 5.90 GB (converting load) / 5.02 (cached) → 6.0 GB
//   SmolLM2-135M shape, bfloat16 on disk: 16 tokens 0.96 → 1.09 GB; 512 tokens 1.18 → 1.28 GB;
//   1024 tokens 1.36 → 1.52 GB; 512 + patterns 1.77 → 1.85 GB; 1024 + patterns 3.64 → 3.79 GB
import { EngineError } from './errors';
import { paramCount, type ParamShape } from './arch/spec';

/** The fields of a ModelSpec the estimate uses (a full ModelSpec fits): those paramCount needs. */
export type MemorySpec = ParamShape;

export interface MemoryOptions {
  /** Attention patterns are computed (setting transformerDynamics.attentionPatterns). */
  patterns: boolean;
  /** Budget of one logit-lens chunk (analyze.ts: 192 MiB). */
  lensChunkBytes?: number;
  /** The weights go through the graph cache (setting transformerDynamics.graphCache, default on). */
  graphCache?: boolean;
}

export interface MemoryEstimate {
  params: number;
  /** Bytes of the weight files on disk (download size), as given. */
  diskBytes: number;
  /** Tokens analysed (the request, capped at the context window). */
  tokens: number;
  patterns: boolean;
  weights: { forward: number; lens: number; total: number };
  activations: {
    residual: number;
    patterns: number;
    attentionScores: number;
    mlp: number;
    kvCache: number;
    lens: number;
    total: number;
  };
  /** Node, onnxruntime, tokenizer tables. */
  overhead: number;
  /** Weights + activations + overhead: the working set of an analysis. */
  total: number;
  /** Extra bytes taken while the model loads (float32 arrays and ONNX bytes next to onnxruntime's copy; none through the graph cache). */
  loadTransient: number;
  /** weights + load transient + overhead: the process size right after loading. */
  loadPeak: number;
  /** The most the process is expected to hold: max(total, loadPeak + REUSE·activations) (see the note at the top). */
  peak: number;
  /** The inputs, so checkMemory can work out how many tokens would fit. */
  spec: MemorySpec;
  options: Required<MemoryOptions>;
}

export const LENS_CHUNK_BYTES = 192 * 1024 * 1024;
export const BASE_OVERHEAD_BYTES = 200 * 1024 * 1024;
/** Tokenizer tables and per-token arrays, per vocabulary entry. */
export const OVERHEAD_PER_VOCAB_BYTES = 512;
/** Share of the activations that does not fit in memory freed after loading (calibrated, see above). */
export const ACTIVATIONS_BEYOND_LOAD = 0.5;
/** Part of the free memory an analysis may use. */
export const FREE_FRACTION = 0.85;

const F = 4; // bytes per float32

export function estimateMemory(spec: MemorySpec, weightBytesOnDisk: number, contextTokens: number, opts: MemoryOptions): MemoryEstimate {
  const s = spec;
  const options: Required<MemoryOptions> = {
    patterns: opts.patterns,
    lensChunkBytes: opts.lensChunkBytes ?? LENS_CHUNK_BYTES,
    graphCache: opts.graphCache ?? false,
  };
  const T = Math.max(1, Math.min(Math.floor(contextTokens), s.maxPositions));
  const L = s.nLayers;
  const V = s.dVocab;
  const d = s.dModel;
  const params = paramCount(s);

  const forward = params * F;
  const lensW = V * d * F * (s.tiedEmbeddings ? 1 : 2);
  const weights = { forward, lens: lensW, total: forward + lensW };

  const residual = (2 * L + 1) * T * d * F * 2;
  const patterns = options.patterns ? L * s.nHeads * T * T * F * 2 : 0;
  const attentionScores = 2 * s.nHeads * T * T * F;
  const mlp = T * s.dMlp * F * (s.gatedMlp ? 3 : 2) + 4 * T * d * F;
  const kvCache = 2 * L * s.nKvHeads * T * s.headDim * F;
  const rows = L + 1;
  const perPosition = rows * V * F * 4;
  const chunk = Math.max(1, Math.min(T, Math.floor(options.lensChunkBytes / perPosition)));
  const lens = chunk * perPosition + chunk * V * F + rows * chunk * d * F;
  const actTotal = residual + patterns + attentionScores + mlp + kvCache + lens;

  const overhead = BASE_OVERHEAD_BYTES + V * OVERHEAD_PER_VOCAB_BYTES;
  const total = weights.total + actTotal + overhead;
  const loadTransient = options.graphCache ? 0 : 2 * forward + lensW;
  const loadPeak = weights.total + loadTransient + overhead;
  const peak = Math.max(total, loadPeak + ACTIVATIONS_BEYOND_LOAD * actTotal);
  return {
    params,
    diskBytes: weightBytesOnDisk,
    tokens: T,
    patterns: options.patterns,
    weights,
    activations: { residual, patterns, attentionScores, mlp, kvCache, lens, total: actTotal },
    overhead,
    total,
    loadTransient,
    loadPeak,
    peak,
    spec: { ...pickSpec(s) },
    options,
  };
}

function pickSpec(s: MemorySpec): MemorySpec {
  return {
    family: s.family,
    nLayers: s.nLayers,
    dModel: s.dModel,
    nHeads: s.nHeads,
    nKvHeads: s.nKvHeads,
    headDim: s.headDim,
    dVocab: s.dVocab,
    dMlp: s.dMlp,
    gatedMlp: s.gatedMlp,
    tiedEmbeddings: s.tiedEmbeddings,
    maxPositions: s.maxPositions,
    norm: s.norm,
    blockNorms: s.blockNorms,
    qkNorm: s.qkNorm,
    qkvBias: s.qkvBias,
    outBias: s.outBias,
    mlpBias: s.mlpBias,
  };
}

export interface MemoryLimits {
  /** os.freemem() (or a better "available" figure). */
  freeBytes: number;
  /** The configured cap on the engine's memory, if any. */
  capBytes?: number | null;
  /** The model is already loaded: its weights are already out of the free memory. */
  loaded?: boolean;
  /** For the message, e.g. "gpt2". */
  modelName?: string;
  /** How the cap is named in the message. */
  capSetting?: string;
}

export interface MemoryCheck {
  /** Bytes this step still needs from the free memory. */
  need: number;
  /** 85% of the free memory. */
  budget: number;
  /** What counts against the cap (all the engine holds). */
  footprint: number;
}

export function gb(n: number): string {
  return `${(n / 1e9).toFixed(n >= 10e9 ? 1 : 2)} GB`;
}

/** What must still come out of the free memory, and what the whole engine will hold. */
function needOf(e: MemoryEstimate, loaded: boolean): { need: number; footprint: number } {
  return { need: loaded ? e.activations.total : e.peak, footprint: e.peak };
}

/** Most tokens (< the estimate's) whose analysis fits, or 0. */
function tokensThatFit(e: MemoryEstimate, loaded: boolean, fits: (need: number, footprint: number) => boolean): number {
  let lo = 0;
  let hi = e.tokens - 1;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    const m = needOf(estimateMemory(e.spec, e.diskBytes, mid, e.options), loaded);
    if (fits(m.need, m.footprint)) lo = mid;
    else hi = mid - 1;
  }
  if (lo >= 1) return lo;
  const one = needOf(estimateMemory(e.spec, e.diskBytes, 1, e.options), loaded);
  return fits(one.need, one.footprint) ? 1 : 0;
}

/**
 * Throws EngineError('TOO_LARGE') when the estimate exceeds 85% of the free memory or the
 * cap, with the numbers and what to change; returns the figures otherwise.
 */
export function checkMemory(estimate: MemoryEstimate, limits: MemoryLimits): MemoryCheck {
  const loaded = limits.loaded ?? false;
  const { need, footprint } = needOf(estimate, loaded);
  const budget = Math.max(0, limits.freeBytes) * FREE_FRACTION;
  const cap = limits.capBytes && limits.capBytes > 0 ? limits.capBytes : null;
  const overFree = need > budget;
  const overCap = cap !== null && footprint > cap;
  if (!overFree && !overCap) return { need, budget, footprint };

  const e = estimate;
  const name = limits.modelName ? `${limits.modelName}` : 'This model';
  const what = loaded
    ? `Analysing ${e.tokens} tokens${e.patterns ? ' with attention patterns' : ''}`
    : `Loading ${name === 'This model' ? 'this model' : name} and analysing ${e.tokens} tokens${e.patterns ? ' with attention patterns' : ''}`;
  const parts = [
    ...(loaded && !overCap
      ? []
      : [
          `weights ${gb(e.weights.total)} as float32${loaded || e.loadTransient === 0 ? '' : `, ${gb(e.loadTransient)} more while loading`}`,
        ]),
    `activations ${gb(e.activations.total)}${e.patterns ? ` (attention patterns ${gb(e.activations.patterns)})` : ''}`,
  ];
  const amount = overFree ? need : footprint;
  const limitText = overFree
    ? `only ${gb(limits.freeBytes)} of memory is free (at most ${Math.round(FREE_FRACTION * 100)}% of it, ${gb(budget)}, is used)`
    : `the memory cap is ${gb(cap!)}`;
  const fits = (n: number, f: number) => n <= budget && (cap === null || f <= cap);
  const fit = tokensThatFit(e, loaded, fits);
  const tips: string[] = [];
  if (fit >= 1 && fit < e.tokens) tips.push(`analyse fewer tokens (about ${fit} would fit; setting transformerDynamics.maxTokens)`);
  else if (e.tokens > 1) tips.push('analyse fewer tokens (setting transformerDynamics.maxTokens)');
  if (e.patterns)
    tips.push(`turn off attention patterns (transformerDynamics.attentionPatterns), which saves ${gb(e.activations.patterns)}`);
  tips.push('choose a smaller model');
  if (overCap) tips.push(`raise ${limits.capSetting ?? 'the memory cap setting'}`);
  if (overFree) tips.push('close other applications to free memory');
  throw new EngineError(
    'TOO_LARGE',
    `${what} needs about ${gb(amount)} (${parts.join('; ')}), but ${limitText}. To fit: ${tips.join('; ')}.`,
  );
}
