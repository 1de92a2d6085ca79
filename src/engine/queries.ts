// On-demand views computed from an analysis the engine keeps (its activation cache stays in
// the engine process): attention statistics and patterns, angular proximity over the whole
// vocabulary, encoding-walk clusters and prompt diffs.
import { EngineError } from './errors';
import type { LoadedModel } from './model';
import type { ModelSpec } from './arch/spec';
import { headStats } from './analysis/attention';
import { emptyPast, layerPattern, similarityAt } from './analyze';
import { averageLinkage, cosineDistance } from './analysis/clusters';
import { pca, project } from './analysis/pca';
import { cosine } from './analysis/walk';
import type { Analysis, ClustersResult, DiffResult, HeadStatsResult, ProximityResult } from '../shared/analysis';
import { feedsOf, prefixFeeds } from './interventions/feeds';

/** ln_final applied to one vector (RMSNorm or LayerNorm, as the model defines it). */
export function applyLnFinal(spec: ModelSpec, ln: { w: Float32Array; b: Float32Array | null }, x: Float32Array, off: number): Float32Array {
  const d = spec.dModel;
  const out = new Float32Array(d);
  if (spec.norm === 'rmsnorm') {
    let ms = 0;
    for (let i = 0; i < d; i++) ms += x[off + i]! ** 2;
    const r = 1 / Math.sqrt(ms / d + spec.normEps);
    for (let i = 0; i < d; i++) out[i] = x[off + i]! * r * ln.w[i]!;
  } else {
    let mean = 0;
    for (let i = 0; i < d; i++) mean += x[off + i]!;
    mean /= d;
    let v = 0;
    for (let i = 0; i < d; i++) v += (x[off + i]! - mean) ** 2;
    const r = 1 / Math.sqrt(v / d + spec.normEps);
    for (let i = 0; i < d; i++) out[i] = (x[off + i]! - mean) * r * ln.w[i]! + (ln.b?.[i] ?? 0);
  }
  return out;
}

function requireCache(a: Analysis): void {
  if (a.cache.resid.length === 0) throw new EngineError('BAD_REQUEST', 'This analysis was run without keeping its activations.');
}

/** The statistics the forward graph computed, cut to offsets 0..maxOffset (null when it has fewer). */
function graphStats(a: Analysis, maxOffset: number): HeadStatsResult | null {
  const s = a.cache.headStats;
  if (!s) return null;
  const D = Math.max(0, Math.min(maxOffset, a.cache.pos - 1));
  if (D > s.maxOffset) return null;
  const heads = s.n_layers * s.n_heads;
  const cut = (k: Float32Array) => {
    if (D === s.maxOffset) return k;
    const out = new Float32Array(heads * (D + 1));
    for (let h = 0; h < heads; h++) out.set(k.subarray(h * (s.maxOffset + 1), h * (s.maxOffset + 1) + D + 1), h * (D + 1));
    return out;
  };
  return { ...s, maxOffset: D, kernel: cut(s.kernel), kernelNorm: cut(s.kernelNorm) };
}

/**
 * Head statistics: those the forward graph computed where the patterns were produced, else
 * from the kept patterns, else from each layer's patterns recomputed one layer at a time.
 */
export async function attentionStats(model: LoadedModel, a: Analysis, maxOffset = 64): Promise<HeadStatsResult> {
  const c = a.cache;
  const ids = a.tokens.map((t) => t.id);
  const fromGraph = graphStats(a, maxOffset);
  if (fromGraph) return fromGraph;
  if (c.patterns)
    return { n_layers: c.n_layers, n_heads: c.n_heads, ...headStats(c.patterns, c.n_layers, c.n_heads, c.pos, ids, maxOffset) };
  requirePatternsAvailable(model);
  const parts: ReturnType<typeof headStats>[] = [];
  for (let L = 0; L < c.n_layers; L++) parts.push(headStats(await shownLayer(model, a, L), 1, c.n_heads, c.pos, ids, maxOffset));
  const cat = (k: 'kernel' | 'kernelNorm' | 'selfBias' | 'induction') => {
    const out = new Float32Array(parts.reduce((n, p) => n + p[k].length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p[k], at);
      at += p[k].length;
    }
    return out;
  };
  return {
    n_layers: c.n_layers,
    n_heads: c.n_heads,
    maxOffset: parts[0]?.maxOffset ?? 0,
    kernel: cat('kernel'),
    kernelNorm: cat('kernelNorm'),
    selfBias: cat('selfBias'),
    induction: cat('induction'),
  };
}

/**
 * The last layer whose patterns were recomputed for an analysis: clicking through the heads
 * of one layer costs one forward pass, and one layer ([n_heads, pos, pos]) is all that is held.
 */
const lastLayer = new WeakMap<Analysis, { layer: number; patterns: Float32Array }>();

async function shownLayer(model: LoadedModel, a: Analysis, layer: number): Promise<Float32Array> {
  const hit = lastLayer.get(a);
  if (hit?.layer === layer) return hit.patterns;
  const patterns = await layerPattern(
    model,
    a.tokens.map((t) => t.id),
    layer,
    feedsOf(a.cache), // the interventions of the run it belongs to
  );
  lastLayer.set(a, { layer, patterns });
  return patterns;
}

function requirePatternsAvailable(model: LoadedModel): void {
  if (!model.forward.outputNames.includes('blocks.0.attn.hook_pattern')) {
    throw new EngineError(
      'BAD_REQUEST',
      "This model's graph exposes no attention patterns (fused attention in an ONNX export), so the attention views are off.",
    );
  }
}

/** pattern[L][h] → [pos, pos] (recomputed on demand when the analysis did not keep patterns). */
export async function headPattern(model: LoadedModel, a: Analysis, layer: number, head: number): Promise<Float32Array> {
  const c = a.cache;
  if (!Number.isInteger(layer) || layer < 0 || layer >= c.n_layers || !Number.isInteger(head) || head < 0 || head >= c.n_heads) {
    throw new EngineError('BAD_REQUEST', `No head ${layer}.${head} in this model.`);
  }
  const T = c.pos;
  if (c.patterns) {
    const off = (layer * c.n_heads + head) * T * T;
    return c.patterns.slice(off, off + T * T);
  }
  requirePatternsAvailable(model);
  const all = await shownLayer(model, a, layer);
  return all.slice(head * T * T, (head + 1) * T * T);
}

function ranks(v: Float32Array): Float64Array {
  const idx = Array.from(v.keys()).sort((i, j) => v[j]! - v[i]!);
  const r = new Float64Array(v.length);
  // average ranks for ties
  let i = 0;
  while (i < idx.length) {
    let j = i;
    while (j + 1 < idx.length && v[idx[j + 1]!] === v[idx[i]!]) j++;
    for (let k = i; k <= j; k++) r[idx[k]!] = (i + j) / 2;
    i = j + 1;
  }
  return r;
}

/** Spearman rank correlation (Pearson on average ranks). */
export function spearman(a: Float32Array, b: Float32Array): number {
  const ra = ranks(a);
  const rb = ranks(b);
  const n = a.length;
  let ma = 0;
  let mb = 0;
  for (let i = 0; i < n; i++) {
    ma += ra[i]!;
    mb += rb[i]!;
  }
  ma /= n;
  mb /= n;
  let num = 0;
  let da = 0;
  let db = 0;
  for (let i = 0; i < n; i++) {
    num += (ra[i]! - ma) * (rb[i]! - mb);
    da += (ra[i]! - ma) ** 2;
    db += (rb[i]! - mb) ** 2;
  }
  return da > 0 && db > 0 ? num / Math.sqrt(da * db) : 0;
}

export function topIndices(v: Float32Array, k: number): number[] {
  return Array.from(v.keys())
    .sort((i, j) => v[j]! - v[i]! || i - j)
    .slice(0, k);
}

/**
 * Angular proximity at one position (final layer): for every token t the logit
 * ln_final(x)·W_U[:, t] and the cosine between ln_final(x) and W_U[:, t]; with a zero bias
 * logit_t = ‖x‖·‖W_U[:, t]‖·cos_t, so the two rankings differ only through the token norms.
 */
export async function proximity(model: LoadedModel, a: Analysis, pos: number, k = 10): Promise<ProximityResult> {
  requireCache(a);
  const c = a.cache;
  if (!Number.isInteger(pos) || pos < 0 || pos >= c.pos)
    throw new EngineError('BAD_REQUEST', `Position ${pos} is outside 0..${c.pos - 1}.`);
  const d = c.d_model;
  const x = c.resid.slice((c.n_layers * c.pos + pos) * d, (c.n_layers * c.pos + pos + 1) * d);
  const V = model.spec.dVocab;
  // The model's logits at `pos` (causal: a forward pass over the prefix ends there).
  // (with the run's interventions, cut to the prefix: patch cells lie along the positions)
  const prefix = a.tokens.slice(0, pos + 1).map((t) => BigInt(t.id));
  const feeds = prefixFeeds(feedsOf(c), pos + 1);
  const out = await model.forward.run(
    { input_ids: { data: BigInt64Array.from(prefix), dims: [1, prefix.length] }, ...emptyPast(model), ...feeds },
    ['logits'],
  );
  const logits = Float32Array.from(out.logits!.data as Float32Array);
  const normed = applyLnFinal(model.spec, model.lnFinal, x, 0);
  let xNorm = 0;
  for (const v of normed) xNorm += v * v;
  xNorm = Math.sqrt(xNorm);
  const cos = new Float32Array(V);
  for (let t = 0; t < V; t++) cos[t] = model.unembedNorms[t]! > 0 && xNorm > 0 ? logits[t]! / (xNorm * model.unembedNorms[t]!) : 0;
  const byLogit = topIndices(logits, k);
  const byCos = topIndices(cos, k);
  const overlap = byLogit.filter((t) => byCos.includes(t)).length;
  const labels: Record<number, string> = {};
  for (const t of [...topIndices(logits, 40), ...topIndices(cos, 40)]) labels[t] = model.tokenizer.tokenText(t);
  return {
    pos,
    logits,
    cos,
    unembedNorms: model.unembedNorms,
    xNorm,
    spearman: spearman(logits, cos),
    k,
    topByLogit: byLogit,
    topByCos: byCos,
    topkOverlap: overlap / k,
    labels,
  };
}

export async function clusters(model: LoadedModel, a: Analysis, row: number): Promise<ClustersResult> {
  requireCache(a);
  const c = a.cache;
  if (!Number.isInteger(row) || row < 0 || row > c.n_layers) throw new EngineError('BAD_REQUEST', `row ${row} is outside 0..${c.n_layers}`);
  const sim = await similarityAt(c, row, model.linalg);
  const dendrogram = averageLinkage(cosineDistance(sim, c.pos), c.pos);
  return { row, similarity: sim, order: dendrogram.order, merges: dendrogram.merges };
}

/** Where do two prompts diverge? Last-token residual streams of two runs, row by row. */
export function promptDiff(a: Analysis, b: Analysis): DiffResult {
  requireCache(a);
  requireCache(b);
  if (a.cache.d_model !== b.cache.d_model || a.cache.n_layers !== b.cache.n_layers) {
    throw new EngineError('BAD_REQUEST', 'The two runs used different models.');
  }
  const rows = a.cache.n_layers + 1;
  const d = a.cache.d_model;
  const last = (x: Analysis, r: number) => (r * x.cache.pos + x.cache.pos - 1) * d;
  const cos = new Float32Array(rows);
  const points = new Float32Array(2 * rows * d);
  for (let r = 0; r < rows; r++) {
    cos[r] = cosine(a.cache.resid, last(a, r), b.cache.resid, last(b, r), d);
    points.set(a.cache.resid.subarray(last(a, r), last(a, r) + d), r * d);
    points.set(b.cache.resid.subarray(last(b, r), last(b, r) + d), (rows + r) * d);
  }
  const basis = pca(points, 2 * rows, d, Math.min(3, d));
  const coords = project(points, 2 * rows, basis);
  const k = basis.k;
  return {
    rows,
    cosine: cos,
    coordsA: coords.slice(0, rows * k),
    coordsB: coords.slice(rows * k),
    k,
    explained: basis.explained,
    divergeRow: firstDivergence(cos),
  };
}

/** First row whose cosine falls below 0.9 (and stays below for the rest), or null. */
function firstDivergence(cos: Float32Array): number | null {
  for (let r = 0; r < cos.length; r++) {
    let stays = true;
    for (let s = r; s < cos.length; s++) if (cos[s]! >= 0.9) stays = false;
    if (stays) return r;
  }
  return null;
}
