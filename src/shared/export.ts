// The analysis as JSON (CLI --json, "Export Analysis…") and CSV. One schema, versioned,
// documented in the README.
import type { Analysis, ClustersResult, HeadStatsResult, ProximityResult } from './analysis';
import { patchColumns, type InterventionRecord, type PatchingResult } from './interventions';
import { headStats } from '../engine/analysis/attention';
import { averageLinkage, cosineDistance } from '../engine/analysis/clusters';
import { similarityMatrix } from '../engine/analysis/walk';

export const JSON_SCHEMA_VERSION = 6;

/**
 * Results of on-demand queries to include (the CLI asks the engine for them). Left out:
 * attention and clusters are computed here from the analysis when it still has its
 * activations; proximity needs the model, so it is null unless given.
 */
export interface JsonExtras {
  headStats?: HeadStatsResult | null;
  proximityLast?: ProximityResult | null;
  clustersLast?: ClustersResult | null;
  /** An activation-patching heatmap computed with this run as the clean prompt (CLI --patch-from). */
  patching?: { result: PatchingResult; cleanText: string; corruptedText: string; vocab: (id: number) => string } | null;
}

const round = (x: number, digits = 6) => (Number.isFinite(x) ? Number(x.toPrecision(digits)) : null);

export interface TopJson {
  id: number;
  text: string;
  prob: number | null;
}

export function analysisToJson(a: Analysis, extras: JsonExtras = {}): Record<string, unknown> {
  const { lens, walk } = a;
  const T = lens.pos;
  const k = lens.k;
  const text = (id: number) => a.vocab[id] ?? '';
  const top = (r: number, p: number): TopJson[] =>
    Array.from({ length: k }, (_, j) => {
      const id = lens.topIds[(r * T + p) * k + j]!;
      return { id, text: text(id), prob: round(lens.topProbs[(r * T + p) * k + j]!) };
    });
  const cell = (r: number, p: number) => {
    const i = r * T + p;
    const last = p === T - 1;
    return {
      top: top(r, p),
      entropy: round(lens.entropy[i]!),
      next_rank: last ? null : lens.nextRank[i]!,
      next_prob: last ? null : round(Math.exp(lens.nextLogprob[i]!)),
      next_logprob: last ? null : round(lens.nextLogprob[i]!),
      kl_to_final: round(lens.klToFinal[i]!),
      copy_mass: round(lens.copyMass[i]!),
      cos_next: last ? null : round(lens.cosNext[i]!),
      cos_pred: round(lens.cosPred[i]!),
    };
  };
  const grid = (arr: Float32Array, rows: number) =>
    Array.from({ length: rows }, (_, r) => Array.from(arr.subarray(r * T, (r + 1) * T), (v) => round(v)));
  const rows = lens.rows;
  return {
    version: JSON_SCHEMA_VERSION,
    model: a.model,
    text: a.text,
    truncation: a.truncation,
    tokens: a.tokens.map((t) => ({ id: t.id, text: t.text, start: t.start, end: t.end, special: t.special })),
    lens: Array.from({ length: rows - 1 }, (_, L) => Array.from({ length: T }, (_, p) => cell(L + 1, p))),
    lens_embed: Array.from({ length: T }, (_, p) => cell(0, p)),
    logits_top: Array.from({ length: T }, (_, p) => top(rows - 1, p).map(({ id, text: t, prob }) => ({ id, text: t, prob }))),
    surprisal_bits: Array.from({ length: T }, (_, p) => (p === T - 1 ? null : round(-lens.nextLogprob[(rows - 1) * T + p]! / Math.LN2))),
    norms: grid(walk.norms, rows),
    cos_to_final: grid(walk.cosToFinal, rows),
    step_size: grid(walk.stepSize, rows - 1),
    step_cos: grid(walk.stepCos, rows - 1),
    pca: {
      // an intervened run is drawn in its unintervened run's axes (the panel's what-if pair)
      axes: walk.pca.axesOf === undefined ? 'own' : 'unintervened',
      explained_variance: walk.pca.explained.map((v) => round(v)),
      coords: Array.from({ length: rows }, (_, r) =>
        Array.from({ length: T }, (_, p) => Array.from(walk.pca.coords.subarray((r * T + p) * 3, (r * T + p) * 3 + 3), (v) => round(v))),
      ),
    },
    repeated_ngrams: walk.ngrams,
    last_logits_top: a.lastLogitsTop.map((t) => ({ id: t.id, text: text(t.id), prob: round(t.prob) })),
    norms_final: walk.normsFinal?.length === rows * T ? grid(walk.normsFinal, rows) : null,
    attention: attentionJson(extras.headStats === undefined ? attentionFromCache(a) : extras.headStats),
    proximity_last: proximityJson(extras.proximityLast ?? null, (id) => extras.proximityLast?.labels[id] ?? text(id)),
    clusters_last: clustersJson(extras.clustersLast === undefined ? clustersFromAnalysis(a) : extras.clustersLast),
    interventions: interventionsJson(a.cache?.interventions ?? null),
    patching: patchingJson(extras.patching ?? null),
    timings_ms: a.timings,
  };
}

function interventionsJson(r: InterventionRecord | null) {
  if (!r) return null;
  return {
    ablation: r.ablation ? { mode: r.ablation.mode, heads: r.ablation.heads.map((h) => ({ layer: h.layer, head: h.head })) } : null,
    patch: r.patch
      ? {
          source_text: r.patch.sourceText,
          source_tokens: r.patch.sourceTokens,
          alignment: r.patch.alignment,
          site: r.patch.site,
          cells: r.patch.cells.map((c) => ({ layer: c.layer, pos: c.pos })),
          heads: r.patch.heads.map((h) => ({ layer: h.layer, head: h.head })),
        }
      : null,
  };
}

function patchingJson(p: JsonExtras['patching']) {
  if (!p) return null;
  const r = p.result;
  const cols = patchColumns(r); // positions, or heads (site z)
  const rows = (a: Float32Array) =>
    Array.from({ length: r.n_layers }, (_, L) => Array.from(a.subarray(L * cols, (L + 1) * cols), (v) => round(v)));
  return {
    direction: r.direction,
    site: r.site,
    patched_run: r.direction === 'denoise' ? 'corrupted' : 'clean',
    clean_text: p.cleanText,
    corrupted_text: p.corruptedText,
    alignment: 'end',
    offset: r.offset,
    metric: r.metric,
    target: { id: r.target, text: p.vocab(r.target) },
    contrast: r.contrast === null ? null : { id: r.contrast, text: p.vocab(r.contrast) },
    ld_clean: round(r.ldClean),
    ld_corrupted: round(r.ldCorrupted),
    n_layers: r.n_layers,
    pos: r.pos,
    n_heads: r.n_heads,
    ld: rows(r.ld),
    normalized: rows(r.normalized),
    runs: r.runs,
    skipped: r.skipped,
    ms: round(r.ms, 4),
  };
}

function attentionFromCache(a: Analysis): HeadStatsResult | null {
  const c = a.cache;
  if (!c?.patterns || c.patterns.length !== c.n_layers * c.n_heads * c.pos * c.pos) return null;
  const s = headStats(
    c.patterns,
    c.n_layers,
    c.n_heads,
    c.pos,
    a.tokens.map((t) => t.id),
  );
  return { n_layers: c.n_layers, n_heads: c.n_heads, ...s };
}

/** Clusters of the last row: from the similarity matrix the walk carries, or from the activations. */
function clustersFromAnalysis(a: Analysis): ClustersResult | null {
  const T = a.lens.pos;
  const row = a.lens.rows - 1;
  let sim: Float32Array | null = null;
  if (a.walk.similarity.row === row && a.walk.similarity.matrix.length === T * T) sim = a.walk.similarity.matrix;
  else if (a.cache?.resid?.length === a.lens.rows * T * a.cache.d_model)
    sim = similarityMatrix(a.cache.resid, { rows: a.lens.rows, pos: T, d: a.cache.d_model }, row);
  if (!sim || T === 0) return null;
  const d = averageLinkage(cosineDistance(sim, T), T);
  return { row, similarity: sim, order: d.order, merges: d.merges };
}

function attentionJson(s: HeadStatsResult | null) {
  if (!s) return null;
  const D = s.maxOffset + 1;
  const heads = [];
  for (let layer = 0; layer < s.n_layers; layer++)
    for (let head = 0; head < s.n_heads; head++) {
      const h = layer * s.n_heads + head;
      heads.push({
        layer,
        head,
        self_bias: round(s.selfBias[h]!),
        induction: round(s.induction[h]!),
        kernel: Array.from(s.kernel.subarray(h * D, (h + 1) * D), (v) => round(v)),
        kernel_norm: Array.from(s.kernelNorm.subarray(h * D, (h + 1) * D), (v) => round(v)),
      });
    }
  return { max_offset: s.maxOffset, heads };
}

function proximityJson(r: ProximityResult | null, text: (id: number) => string) {
  if (!r) return null;
  const tok = (id: number) => ({ id, text: text(id), logit: round(r.logits[id]!), cos: round(r.cos[id]!) });
  return {
    pos: r.pos,
    spearman: round(r.spearman),
    k: r.k,
    topk_overlap: round(r.topkOverlap),
    x_norm: round(r.xNorm),
    top_by_logit: r.topByLogit.map(tok),
    top_by_cos: r.topByCos.map(tok),
  };
}

function clustersJson(c: ClustersResult | null) {
  if (!c) return null;
  return { row: c.row, order: c.order, merges: c.merges.map((m) => ({ a: m.a, b: m.b, height: round(m.height), size: m.size })) };
}

function csvField(v: string | number | null): string {
  if (v === null) return '';
  const s = String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** One row per (layer, position): the lens table in long format. */
export function analysisToCsv(a: Analysis): string {
  const { lens, walk } = a;
  const T = lens.pos;
  const lines = ['layer,pos,token_id,token,top1_id,top1,top1_prob,entropy,next_rank,next_prob,kl_to_final,copy_mass,norm,cos_to_final'];
  for (let r = 0; r < lens.rows; r++) {
    for (let p = 0; p < T; p++) {
      const i = r * T + p;
      const top1 = lens.topIds[i * lens.k]!;
      const tok = a.tokens[p]!;
      const last = p === T - 1;
      lines.push(
        [
          r === 0 ? 'embed' : r - 1,
          p,
          tok.id,
          tok.text,
          top1,
          a.vocab[top1] ?? '',
          lens.topProbs[i * lens.k]!.toPrecision(6),
          lens.entropy[i]!.toPrecision(6),
          last ? null : lens.nextRank[i]!,
          last ? null : Math.exp(lens.nextLogprob[i]!).toPrecision(6),
          lens.klToFinal[i]!.toPrecision(6),
          lens.copyMass[i]!.toPrecision(6),
          walk.norms[i]!.toPrecision(6),
          walk.cosToFinal[i]!.toPrecision(6),
        ]
          .map(csvField)
          .join(','),
      );
    }
  }
  return lines.join('\n') + '\n';
}
