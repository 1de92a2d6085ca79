// One analysis run: tokenize → forward (every residual stream, optional attention
// patterns) → logit lens in chunks of positions → plain typed arrays.
import { assertFiniteWalk, weightsVerdict } from './analysis/finite';
import { EngineError } from './errors';
import { hook } from './graph/forward';
import type { LoadedModel } from './model';
import { runtimeClock, type NamedTensor } from './runtime/ort';
import { LENS_OUTPUTS } from './graph/lens';
import { WALK_OUTPUTS } from './graph/walkstats';
import type { ActivationCache, Analysis, HeadStatsResult, LensTable, Token, WalkMetrics } from '../shared/analysis';
import { emptyLensTable } from '../shared/analysis';
import { ATTN_STATS_MAX_OFFSET, statsHook } from './graph/attnstats';
import { gateFeed, LOGIT_ROWS, PATTERN_ROWS } from './graph/gates';
import { similarityMatrix } from './analysis/walk';
import { explainedAlong, pca, pcaFromCovarianceWith, project, type Pca } from './analysis/pca';
import type { LinAlg } from './linalg';
import { repeatedNgrams } from './analysis/repetition';
import type { BufferPool } from './pool';
import { interventionName } from './graph/interventions';
import { interventionFeeds, rememberFeeds, type Feeds } from './interventions/feeds';
import type { Interventions } from '../shared/interventions';
import { blockedLogitLens, contextTokens, emptyPerPosition, positionMajor, walkChunk, type PerPosition } from './lensblocked';

export { contextTokens } from './lensblocked';

export interface AnalyzeRequest {
  /** The text to analyse (tokenized with the model's tokenizer). */
  text?: string;
  /** Or token ids directly (tests, goldens). */
  ids?: number[];
  /** How many top tokens per lens cell. */
  topK: number;
  /** Cap on tokens (the model's context window is a cap too). */
  maxTokens: number;
  /**
   * Attention: false computes none; true keeps every pattern with the analysis (memory grows with
   * pos²); 'auto' keeps them while they fit in PATTERN_BUDGET_FLOATS. Either way the head
   * statistics come from the forward graph, and a pattern not kept is fetched when it is shown.
   */
  patterns: boolean | 'auto';
  /** Budget for 'auto' (floats); default PATTERN_BUDGET_FLOATS. */
  patternBudgetFloats?: number;
  /** Head ablation and/or residual patching for this run (interventions/feeds.ts). */
  interventions?: Interventions;
  /**
   * Draw the walk in the principal axes of this kept run instead of its own (a what-if twin in
   * its unintervened run's axes, so the two walks share the picture). Refused when that run is
   * no longer kept.
   */
  pcaAxesOf?: number;
  /**
   * resid_mid stays with the analysis (default true: tests, goldens, the CLI's cache). No view
   * reads it, so the extension's worker says false: the forward pass then does not fetch it at
   * all, which saves its buffer and onnxruntime-node's copy of it (L·T·d floats each: 38 MB at
   * 1024 tokens of GPT-2-small).
   */
  keepResidMid?: boolean;
}

/** What the engine knows beyond the request (kept analyses). */
export interface AnalyzeContext {
  /** The clean z means of these ids, when a kept analysis has them (mean ablation without an extra pass). */
  zMeanOf?: (ids: readonly number[]) => Float32Array | null;
  /** The PCA axes of a kept run (AnalyzeRequest.pcaAxesOf), or null when it is not kept. */
  pcaAxesOf?: (runId: number) => Pca | null;
}

/**
 * Memory budget for one lens chunk's [chunk, rows, d_vocab] intermediates (4 of them) on the CPU
 * ([chunk, rows, block] for the blocked lens, lensblocked.ts, whose chunks are so larger):
 * the process keeps what the largest chunk needed (in the C heap; in onnxruntime's arena when
 * that was on, runtime/ort.ts), and every analysis reuses it. Measured on
 * GPT-2-small, 2 threads, positions per chunk → arena and lens time per position: 18 → 162 MB,
 * 6.2-6.6 ms; 12 → 108 MB, +4%; 9 → 84 MB, +6%; 6 → 66 MB, +11% (each chunk streams the whole
 * unembedding once). 96 MB is 9 positions of GPT-2; bench/scaling.ts compares others on many cores.
 */
const LENS_CHUNK_BYTES = 96 * 1024 * 1024;
/**
 * On a GPU provider every run of the lens graph pays a fixed cost (uploads, dispatching ~70
 * kernels, a readback that waits for the GPU), so chunks are larger there: 768 MB of
 * intermediates. TD_LENS_CHUNK_MB overrides either (npm run bench:gpu and bench/scaling.ts try several).
 */
const GPU_LENS_CHUNK_BYTES = 768 * 1024 * 1024;

/**
 * The blocked lens's budget (lensblocked.ts: [chunk, rows, block] intermediates, 29 positions of
 * GPT-2-small against a block of 3866 tokens). Smaller buffers leave less freed heap behind that
 * glibc keeps mapped: bench child, GPT-2-small, 512 tokens, 2 threads, peak RSS in 6 runs
 * 710–723 MB (one 810) at 24 MB, against 720–955 MB at 96 MB (half the runs above 870) and
 * 722–910 at 48; lens times within their noise (3.4–3.5 s); at 12 MB the lens was 10–20% slower.
 */
const BLOCKED_LENS_CHUNK_BYTES = 24 * 1024 * 1024;

function lensChunkBytes(provider: string, blocked = false): number {
  const mb = Number(process.env.TD_LENS_CHUNK_MB);
  if (Number.isFinite(mb) && mb > 0) return mb * 1024 * 1024;
  if (blocked) return BLOCKED_LENS_CHUNK_BYTES;
  return provider === 'cpu' ? LENS_CHUNK_BYTES : GPU_LENS_CHUNK_BYTES;
}

export class Cancelled extends EngineError {
  constructor() {
    super('CANCELLED', 'The analysis was cancelled.');
  }
}

function checkCancel(signal?: AbortSignal): void {
  if (signal?.aborted) throw new Cancelled();
}

export function tokenize(model: LoadedModel, req: AnalyzeRequest): { text: string; tokens: Token[]; truncation: Analysis['truncation'] } {
  const tk = model.tokenizer;
  let text: string;
  let tokens: Token[] = [];
  if (req.ids) {
    for (const id of req.ids) {
      if (!Number.isInteger(id) || id < 0 || id >= model.spec.dVocab)
        throw new EngineError('BAD_REQUEST', `Token id ${id} is outside the vocabulary (0..${model.spec.dVocab - 1}).`);
    }
    text = req.ids.map((id) => tk.tokenText(id)).join('');
    let at = 0;
    tokens = req.ids.map((id) => {
      const t = tk.tokenText(id);
      const tok = { id, text: t, start: at, end: at + t.length, special: tk.isSpecial(id) };
      at += t.length;
      return tok;
    });
  } else {
    text = req.text ?? '';
    if (text.length === 0) throw new EngineError('EMPTY_INPUT', 'Nothing to analyse: the text is empty. Select some text first.');
  }
  const cap = Math.min(req.maxTokens, model.spec.maxPositions);
  // A long text is tokenized from its start only (a whole file of 400,000 characters took
  // 0.5-2.6 s to tokenize for the first 1024 tokens): its first `cap` tokens end within a quarter
  // of the prefix, so the cut is far from every token kept.
  let counted = true;
  if (!req.ids) {
    // (the longest piece is looked up only for a text that may be long enough)
    const limit = text.length > tokenizedPrefixChars(cap, 1) ? tokenizedPrefixChars(cap, tk.maxTokenChars()) : text.length;
    if (text.length > limit) tokens = tk.encode(text.slice(0, cutBefore(text, limit)));
    counted = tokens.length <= cap;
    // (a prefix that somehow holds no more than `cap` tokens: the whole text after all)
    if (counted) tokens = tk.encode(text);
  }
  if (tokens.length === 0) throw new EngineError('EMPTY_INPUT', 'Nothing to analyse: the text produced no tokens.');
  let truncation: Analysis['truncation'] = null;
  if (tokens.length > cap) {
    truncation = { kept: cap, total: counted ? tokens.length : null, chars: text.length };
    tokens = tokens.slice(0, cap);
  }
  return { text, tokens, truncation };
}

/**
 * How much of a text is tokenized when at most `cap` tokens are kept: four times the most the
 * first `cap` tokens can cover (`maxTokenChars` each), and 4096 characters more. Normalizers
 * (NFC, a prepended ▁) change lengths by less than that factor.
 */
export function tokenizedPrefixChars(cap: number, maxTokenChars: number): number {
  return cap * maxTokenChars * 4 + 4096;
}

/** `at`, moved back one where it would split a surrogate pair. */
function cutBefore(text: string, at: number): number {
  const c = text.charCodeAt(at - 1);
  return c >= 0xd800 && c <= 0xdbff ? at - 1 : at;
}

export async function analyze(
  model: LoadedModel,
  req: AnalyzeRequest,
  signal?: AbortSignal,
  pool?: BufferPool,
  context: AnalyzeContext = {},
): Promise<Analysis> {
  const t0 = performance.now();
  const r0 = runtimeClock();
  if (!Number.isInteger(req.topK) || req.topK < 1 || req.topK > 100)
    throw new EngineError('BAD_REQUEST', 'topK must be an integer between 1 and 100.');
  const axes = req.pcaAxesOf === undefined ? null : (context.pcaAxesOf?.(req.pcaAxesOf) ?? null);
  if (req.pcaAxesOf !== undefined && (!axes || axes.d !== model.spec.dModel))
    throw new EngineError(
      'BAD_REQUEST',
      `Run ${req.pcaAxesOf}, whose PCA axes this run was to be drawn in, is no longer kept; analyse it again.`,
    );
  const { text, tokens, truncation } = tokenize(model, req);
  const intervened = await interventionFeeds(
    model,
    tokens.map((t) => t.id),
    req.interventions,
    context.zMeanOf,
  );
  const t1 = performance.now();
  const r1 = runtimeClock();
  checkCancel(signal);
  const cache = await forwardCache(
    model,
    tokens.map((t) => t.id),
    req.patterns,
    req.patternBudgetFloats,
    pool,
    intervened.feeds,
    req.keepResidMid ?? true,
  );
  collectOutputCopies((cache.resid.length + cache.residMid.length) * 4);
  cache.interventions = intervened.record;
  rememberFeeds(cache, intervened.feeds);
  const t2 = performance.now();
  const r2 = runtimeClock();
  checkCancel(signal);
  const { lens, lastLogitsTop, perPosition } = await logitLens(
    model,
    cache,
    tokens.map((t) => t.id),
    req.topK,
    signal,
    pool,
  );
  assertFiniteWalk(
    cache.resid,
    lens.entropy,
    { rows: cache.n_layers + 1, T: cache.pos, d: cache.d_model },
    (p) => tokens[p]!.text,
    (layer) => weightsVerdict(model.dir, layer, model.info.weights),
  );
  const t3 = performance.now();
  const r3 = runtimeClock();
  const walk = await walkMetrics(
    cache,
    tokens.map((t) => t.id),
    cache.n_layers,
    perPosition,
    model.linalg,
    axes ? { runId: req.pcaAxesOf!, pca: axes } : undefined,
  );
  const vocab: Record<number, string> = {};
  for (const t of tokens) vocab[t.id] = t.text;
  for (const id of lens.topIds) vocab[id] ??= model.tokenizer.tokenText(id);
  for (const t of lastLogitsTop) vocab[t.id] ??= model.tokenizer.tokenText(t.id);
  const t4 = performance.now();
  const r4 = runtimeClock();
  return {
    model: model.info,
    text,
    tokens,
    truncation,
    cache,
    lens,
    walk,
    vocab,
    lastLogitsTop,
    timings: {
      tokenizeMs: t1 - t0,
      forwardMs: t2 - t1,
      lensMs: t3 - t2,
      metricsMs: t4 - t3,
      totalMs: t4 - t0,
      runtime: { tokenizeMs: r1 - r0, forwardMs: r2 - r1, lensMs: r3 - r2, metricsMs: r4 - r3 },
    },
  };
}

/**
 * onnxruntime-node hands back a copy of every fetched output even when it filled our arrays in
 * place (runtime/ort.ts): after a forward pass, the fetched residual streams' size again in
 * garbage that V8 frees at a collection of its choosing, often while the lens runs, whose
 * buffers then come on top. The engine worker runs with --expose-gc: when those copies are
 * large, collect them now.
 * Measured (npm run bench's child, GPT-2-small, 1024 tokens, 2 threads): peak RSS 1239 MB in
 * 3 runs of 3 with it, 1249-1287 MB without; forward times within their run-to-run noise.
 * From 16 MB of copies on (resid_mid is no longer fetched by the worker, so 512 tokens of
 * GPT-2-small now leave 20 MB, not 39 MB: still collected).
 */
function collectOutputCopies(bytes: number): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc && bytes >= 16 * 1024 * 1024) gc();
}

export function emptyPast(model: LoadedModel, batch = 1): Record<string, NamedTensor> {
  const s = model.spec;
  const feeds: Record<string, NamedTensor> = {};
  const dims = [batch, s.nKvHeads, 0, s.headDim];
  for (let L = 0; L < s.nLayers; L++) {
    feeds[hook.pastKey(L)] = { data: new Float32Array(0), dims };
    feeds[hook.pastValue(L)] = { data: new Float32Array(0), dims };
  }
  return feeds;
}

/**
 * Attention patterns kept with an analysis when `patterns: 'auto'` (floats; 64 MB). Above it the
 * attention views use the statistics the forward graph computes and fetch one layer's patterns
 * when a head is shown: every fetched output is copied once more by onnxruntime-node, so
 * kept patterns cost twice their size while the forward pass returns.
 */
export const PATTERN_BUDGET_FLOATS = 16 * 1024 * 1024;

export function keepPatterns(model: LoadedModel, T: number, req: AnalyzeRequest['patterns'], budget = PATTERN_BUDGET_FLOATS): boolean {
  if (req === 'auto') return model.spec.nLayers * model.spec.nHeads * T * T <= budget;
  return req;
}

/**
 * One layer's attention pattern for a sequence, recomputed (views of long inputs) → [n_heads, T, T];
 * `feeds`: the interventions of the run it belongs to.
 */
export async function layerPattern(model: LoadedModel, ids: number[], layer: number, feeds: Feeds = {}): Promise<Float32Array> {
  const out = await model.forward.run({ ...forwardFeeds(model, ids, true), ...feeds }, [hook.pattern(layer)]);
  return out[hook.pattern(layer)]!.data as Float32Array;
}

/**
 * The forward graph's inputs for one sequence (no KV cache), with its row gates (graph/gates.ts):
 * pattern outputs filled in when `patterns`, no final logits (an analysis takes them from the
 * lens). Graphs without gates (ONNX exports) ignore those feeds.
 */
export function forwardFeeds(model: LoadedModel, ids: readonly number[], patterns: boolean): Record<string, NamedTensor> {
  return {
    input_ids: { data: BigInt64Array.from(ids, (i) => BigInt(i)), dims: [1, ids.length] },
    ...emptyPast(model),
    [PATTERN_ROWS]: gateFeed(patterns ? ids.length : 0),
    [LOGIT_ROWS]: gateFeed(0),
  };
}

const STATS = ['kernel', 'kernelNorm', 'selfBias', 'induction'] as const;

/** The forward graph's per-layer head statistics → one HeadStatsResult [n_layers, n_heads, …]. */
function collectHeadStats(model: LoadedModel, T: number, out: Record<string, NamedTensor>): HeadStatsResult {
  const { nLayers: L, nHeads: H } = model.spec;
  const D1 = Math.min(ATTN_STATS_MAX_OFFSET + 1, T);
  const per = { kernel: H * D1, kernelNorm: H * D1, selfBias: H, induction: H };
  const r = { n_layers: L, n_heads: H, maxOffset: D1 - 1 } as HeadStatsResult;
  for (const k of STATS) {
    const all = new Float32Array(L * per[k]);
    for (let l = 0; l < L; l++) all.set(out[statsHook[k](l)]!.data as Float32Array, l * per[k]);
    r[k] = all;
  }
  return r;
}

async function forwardCache(
  model: LoadedModel,
  ids: number[],
  patternsReq: AnalyzeRequest['patterns'],
  budget?: number,
  pool?: BufferPool,
  feeds: Record<string, NamedTensor> = {},
  keepMid = true,
): Promise<ActivationCache> {
  const s = model.spec;
  const T = ids.length;
  const d = s.dModel;
  const outputs = model.forward.outputNames;
  const hasPatterns = keepPatterns(model, T, patternsReq, budget) && outputs.includes(hook.pattern(0));
  const hasStats = patternsReq !== false && outputs.includes(statsHook.kernel(0));
  const fetches = [hook.residPre(0)];
  for (let L = 0; L < s.nLayers; L++) {
    if (keepMid) fetches.push(hook.residMid(L));
    fetches.push(hook.residPost(L));
    if (hasPatterns) fetches.push(hook.pattern(L));
    if (hasStats) for (const k of STATS) fetches.push(statsHook[k](L));
  }
  const hasZMean = outputs.includes(interventionName.zMean(0));
  if (hasZMean) for (let L = 0; L < s.nLayers; L++) fetches.push(interventionName.zMean(L));
  // onnxruntime writes every hooked tensor straight into these arrays (onnxruntime-node then
  // returns a copy of each as well, dropped here).
  const alloc = (n: number) => (pool ? pool.take(n) : new Float32Array(n));
  const resid = alloc((s.nLayers + 1) * T * d);
  // not fetched when not kept: no buffer of ours and no copy by onnxruntime-node (onnxruntime
  // itself still holds the unfetched outputs until the run ends, graph/gates.ts)
  const residMid = keepMid ? alloc(s.nLayers * T * d) : new Float32Array(0);
  const per = s.nHeads * T * T;
  const pat = hasPatterns ? alloc(s.nLayers * per) : null;
  const rd = [1, T, d];
  const into: Record<string, NamedTensor> = { [hook.residPre(0)]: { data: resid.subarray(0, T * d), dims: rd } };
  for (let L = 0; L < s.nLayers; L++) {
    into[hook.residPost(L)] = { data: resid.subarray((L + 1) * T * d, (L + 2) * T * d), dims: rd };
    if (keepMid) into[hook.residMid(L)] = { data: residMid.subarray(L * T * d, (L + 1) * T * d), dims: rd };
    if (pat) into[hook.pattern(L)] = { data: pat.subarray(L * per, (L + 1) * per), dims: [1, s.nHeads, T, T] };
  }
  const out = await model.forward.run({ ...forwardFeeds(model, ids, hasPatterns), ...feeds }, fetches, into);
  let zMean: Float32Array | null = null;
  if (hasZMean) {
    const per = s.nHeads * s.headDim;
    zMean = new Float32Array(s.nLayers * per);
    for (let L = 0; L < s.nLayers; L++) zMean.set(out[interventionName.zMean(L)]!.data as Float32Array, L * per);
  }
  return {
    n_layers: s.nLayers,
    pos: T,
    d_model: d,
    n_heads: s.nHeads,
    resid,
    residMid,
    patterns: pat,
    headStats: hasStats ? collectHeadStats(model, T, out) : null,
    zMean,
  };
}

/** Runs the lens graph over every row of the walk in chunks of positions. */
async function logitLens(
  model: LoadedModel,
  cache: ActivationCache,
  ids: number[],
  k: number,
  signal?: AbortSignal,
  pool?: BufferPool,
): Promise<{ lens: LensTable; lastLogitsTop: { id: number; prob: number }[]; perPosition: PerPosition }> {
  const s = model.spec;
  const { resid } = cache;
  const T = ids.length;
  const d = s.dModel;
  const V = s.dVocab;
  const rows = s.nLayers + 1;
  const kk = Math.min(k, V);
  if (model.lensBlocks) {
    const { lens, perPosition } = await blockedLogitLens(
      model,
      model.lensBlocks,
      resid,
      ids,
      k,
      lensChunkBytes(model.lens.provider, true),
      () => checkCancel(signal),
      pool,
    );
    return { lens, lastLogitsTop: lastTop(lens), perPosition };
  }
  const chunk = Math.max(1, Math.min(T, Math.floor(lensChunkBytes(model.lens.provider) / (rows * V * 4 * 4))));
  const lens: LensTable = emptyLensTable(rows, T, kk);
  const perPosition = emptyPerPosition(rows, T);
  // Chunk buffers allocated once and reused: fresh memory costs page faults on every chunk.
  const xBuf = new Float32Array(rows * chunk * d);
  const context = contextTokens(ids);
  for (let c0 = 0; c0 < T; c0 += chunk) {
    checkCancel(signal);
    const C = Math.min(chunk, T - c0);
    const x = positionMajor(resid, rows, T, d, c0, C, xBuf); // [C, rows, d]
    const next = new BigInt64Array(C);
    const positions = new Float32Array(C);
    for (let c = 0; c < C; c++) {
      const p = c0 + c;
      next[c] = BigInt(p + 1 < T ? ids[p + 1]! : 0);
      positions[c] = p;
    }
    const n = context.seenBy(c0 + C - 1); // the distinct tokens up to the chunk's last position
    const out = await model.lens.run(
      {
        resid: { data: x, dims: [C, rows, d] },
        next_ids: { data: next, dims: [C] },
        context_ids: { data: context.ids.subarray(0, n), dims: [n] },
        first_seen: { data: context.firstSeen.subarray(0, n), dims: [n] },
        positions: { data: positions, dims: [C] },
        k: { data: BigInt64Array.of(BigInt(kk)), dims: [1] },
      },
      [...LENS_OUTPUTS, ...WALK_OUTPUTS],
    );
    walkChunk(perPosition, out, c0, C, rows, T);
    const f = (n: string) => out[n]!.data as Float32Array;
    const topIds = out.top_ids!.data as BigInt64Array;
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < C; c++) {
        const src = c * rows + r;
        const dst = r * T + c0 + c;
        const last = c0 + c === T - 1;
        for (let j = 0; j < kk; j++) {
          lens.topIds[dst * kk + j] = Number(topIds[src * kk + j]!);
          lens.topProbs[dst * kk + j] = f('top_probs')[src * kk + j]!;
        }
        lens.entropy[dst] = f('entropy')[src]!;
        lens.nextLogprob[dst] = last ? NaN : f('next_logprob')[src]!;
        lens.nextRank[dst] = last ? -1 : Math.round(f('next_rank')[src]!);
        lens.klToFinal[dst] = Math.max(0, f('kl_to_final')[src]!);
        lens.copyMass[dst] = f('copy_mass')[src]!;
        lens.cosNext[dst] = last ? NaN : f('cos_next')[src]!;
        lens.cosPred[dst] = f('cos_pred')[src]!;
      }
    }
  }
  return { lens, lastLogitsTop: lastTop(lens), perPosition };
}

/** The model's own next-token distribution at the last position: the lens's final row there. */
function lastTop(lens: LensTable): { id: number; prob: number }[] {
  const { rows, pos: T, k } = lens;
  const at = ((rows - 1) * T + T - 1) * k;
  return Array.from({ length: k }, (_, j) => ({ id: lens.topIds[at + j]!, prob: lens.topProbs[at + j]! }));
}

/** The derived measures every view needs (METRICS.md). */
/** The vectors of one row of the walk [pos, d_model]. */
export function rowVectors(cache: ActivationCache, row: number): Float32Array {
  return cache.resid.subarray(row * cache.pos * cache.d_model, (row + 1) * cache.pos * cache.d_model);
}

/** Token × token cosine similarity at one row (onnxruntime when available). */
export async function similarityAt(cache: ActivationCache, row: number, linalg?: LinAlg): Promise<Float32Array> {
  if (linalg) return Float32Array.from(await linalg.cosineMatrix(rowVectors(cache, row), cache.pos, cache.d_model));
  return similarityMatrix(cache.resid, { rows: cache.n_layers + 1, pos: cache.pos, d: cache.d_model }, row);
}

/**
 * The walk's measures (METRICS.md): the per-position ones from the lens, then the PCA of every
 * row × position (covariance, subspace iteration and projection in onnxruntime when the model
 * has its linear-algebra sessions), the similarity matrix at `row` and the repeated n-grams.
 */
export async function walkMetrics(
  cache: ActivationCache,
  ids: number[],
  row: number,
  perPosition: PerPosition,
  linalg?: LinAlg,
  axes?: { runId: number; pca: Pca },
): Promise<WalkMetrics> {
  const d = cache.d_model;
  const n = (cache.n_layers + 1) * cache.pos;
  const k = Math.min(3, d);
  // the run's own principal axes, or another run's (a twin drawn in its clean run's axes)
  let basis: Pca;
  if (axes) basis = axes.pca;
  else if (linalg) {
    const { mean, cov } = await linalg.covariance(cache.resid, n, d);
    // the products C·Q of the subspace iteration in onnxruntime (float32, like the covariance)
    basis = await pcaFromCovarianceWith(Float64Array.from(cov), mean, d, k, async (Q, W, m) => {
      W.set(await linalg.symmetricProduct(Float32Array.from(Q), m, cov, d));
    });
  } else basis = pca(cache.resid, n, d, k);
  const coords = linalg ? await linalg.project(cache.resid, n, d, basis.mean, basis.components, basis.k) : project(cache.resid, n, basis);
  cache.pcaAxes = basis;
  return {
    ...perPosition,
    // on another run's axes: how much of this run's own spread each one shows
    pca: axes
      ? { coords, explained: explainedAlong(cache.resid, n, d, coords, basis.k), axesOf: axes.runId }
      : { coords, explained: basis.explained },
    similarity: { row, matrix: await similarityAt(cache, row, linalg) },
    ngrams: repeatedNgrams(ids, 1, 8),
  };
}
