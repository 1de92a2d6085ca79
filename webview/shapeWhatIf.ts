// What-if in the panel, without the DOM: the clean run and its intervened twin (which one the
// views show, and whether they compare it with the other), the differences the views draw, the
// heads to ablate, and the activation-patching heatmap's data.
import type { AnalysisPayload } from '../src/shared/protocol';
import type { HeadStatsResult, LensTable } from '../src/shared/analysis';
import { tokenDisplay } from './shapeText';
import {
  headLabelOf,
  patchColumns,
  type AblationMode,
  type HeadAblation,
  type HeadRef,
  type InterventionRecord,
  type PatchingResult,
  type PatchSite,
} from '../src/shared/interventions';
import type { RepeatRun } from './shapeRepetition';

export type WhatIfShow = 'clean' | 'intervened';
/** off: one run; beside: both runs in the views that can draw two; difference: intervened − clean. */
export type WhatIfCompare = 'off' | 'beside' | 'difference';

export interface WhatIfState {
  clean: AnalysisPayload;
  intervened: AnalysisPayload;
  show: WhatIfShow;
  compare: WhatIfCompare;
}

/** The pair from the host, shown as the intervened run beside the clean one. */
export function whatIfFromPair(pair: { clean: AnalysisPayload; intervened: AnalysisPayload } | null): WhatIfState | null {
  if (!pair || pair.clean.tokens.length !== pair.intervened.tokens.length) return null;
  return { clean: pair.clean, intervened: pair.intervened, show: 'intervened', compare: 'beside' };
}

export const shownPayload = (w: WhatIfState): AnalysisPayload => (w.show === 'clean' ? w.clean : w.intervened);

/** A run id of the what-if pair (selection messages may name either run). */
export const isPairRun = (w: WhatIfState | null, runId: number) => !!w && (w.clean.runId === runId || w.intervened.runId === runId);

/** What a view compares, when it does: the run it shows and the other one of the pair. */
export interface Comparison {
  mode: 'beside' | 'difference';
  shown: AnalysisPayload;
  other: AnalysisPayload;
  clean: AnalysisPayload;
  intervened: AnalysisPayload;
}

export function comparison(w: WhatIfState | null, shown: AnalysisPayload | null): Comparison | null {
  if (!w || w.compare === 'off' || !shown || (shown !== w.clean && shown !== w.intervened)) return null;
  return { mode: w.compare, shown, other: shown === w.clean ? w.intervened : w.clean, clean: w.clean, intervened: w.intervened };
}

/** The two runs' walks are drawn in the same PCA axes (a twin in its unintervened run's). */
export function sameAxes(a: AnalysisPayload, b: AnalysisPayload): boolean {
  return a.walk.pca.axesOf === b.runId || b.walk.pca.axesOf === a.runId;
}

/** What a run of the pair is called: "clean" / "ablated", "unpatched" / "patched". */
export function roleIn(w: { clean: AnalysisPayload; intervened: AnalysisPayload }, p: AnalysisPayload): string {
  const n = pairNames(w);
  return p === w.clean ? n.base : n.twin;
}

/** "mlp_out L0 at pos 5 “ Mary” · from “When Mary and John…”": what a patched run had. */
export function patchText(p: NonNullable<InterventionRecord['patch']>, base: AnalysisPayload): string {
  const src = p.sourceText.length > 40 ? `${p.sourceText.slice(0, 39)}…` : p.sourceText;
  const from = ` · from “${src.replace(/\s+/g, ' ').trim()}”`;
  if (p.site === 'z') return `z of ${p.heads.map(headLabelOf).join(', ')} patched${from}`;
  if (p.cells.length !== 1) return `${p.site}: ${p.cells.length} cells patched${from}`;
  const c = p.cells[0]!;
  const tok = base.tokens[c.pos];
  return `${p.site} L${c.layer} at pos ${c.pos}${tok ? ` “${tokenDisplay(tok).text}”` : ''} patched${from}`;
}

/** "L5H1, L6H9 · zero ablation" */
export function ablationText(a: HeadAblation): string {
  return `${a.heads.map(headLabelOf).join(', ')} · ${a.mode} ablation`;
}

/** What a run is, for labels: "clean", "ablated" or "patched". */
export function runRole(p: AnalysisPayload): string {
  if (p.interventions?.patch) return 'patched';
  if (p.interventions?.ablation) return 'ablated';
  return 'clean';
}

/**
 * What the two runs of a pair are called in labels: clean and ablated, or (a run patched from
 * the Diff tab, whose base may be the corrupted prompt) unpatched and patched.
 */
export function pairNames(p: { intervened: AnalysisPayload }): { base: string; twin: string } {
  return p.intervened.interventions?.patch ? { base: 'unpatched', twin: 'patched' } : { base: 'clean', twin: 'ablated' };
}

/** "ablated − clean", "patched − unpatched". */
export const pairDelta = (p: { intervened: AnalysisPayload }) => `${pairNames(p).twin} − ${pairNames(p).base}`;

// ---- differences -------------------------------------------------------------------------

/** log p(actual next token) at a lens cell (nats), NaN at the last position. */
export const nextLogprob = (lens: LensTable, r: number, c: number): number => lens.nextLogprob[r * lens.pos + c]!;

/** Δ log p(next) intervened − clean at a lens cell (nats; NaN at the last position). */
export function lensDelta(intervened: LensTable, clean: LensTable, r: number, c: number): number {
  return nextLogprob(intervened, r, c) - nextLogprob(clean, r, c);
}

/** The cell's top-1 token differs between the two runs. */
export function top1Changed(a: LensTable, b: LensTable, r: number, c: number): boolean {
  return a.topIds[(r * a.pos + c) * a.k] !== b.topIds[(r * b.pos + c) * b.k];
}

/** Largest |Δ| over the lens (the scale of the difference colours); at least 0.5 nats. */
export function lensDeltaScale(intervened: LensTable, clean: LensTable): number {
  let m = 0;
  for (let i = 0; i < intervened.nextLogprob.length; i++) {
    const d = Math.abs(intervened.nextLogprob[i]! - clean.nextLogprob[i]!);
    if (Number.isFinite(d) && d > m) m = d;
  }
  return Math.max(0.5, m);
}

/** The model's top-1 prediction after the last token (the final lens row, last position). */
export function finalTop1(p: AnalysisPayload): { id: number; prob: number } {
  const lens = p.lens;
  const i = ((lens.rows - 1) * lens.pos + lens.pos - 1) * lens.k;
  return { id: lens.topIds[i]!, prob: lens.topProbs[i]! };
}

/** Surprisal (bits) of seeing token i+1 after position i, from the final lens row; NaN at the last position. */
export function surprisalAt(p: AnalysisPayload, i: number): number {
  const lens = p.lens;
  return -lens.nextLogprob[(lens.rows - 1) * lens.pos + i]! / Math.LN2;
}

/** Copy mass per position at a lens row for one run. */
export function copyMassRow(lens: LensTable, row: number): number[] {
  const r = Math.max(0, Math.min(lens.rows - 1, row));
  return Array.from(lens.copyMass.subarray(r * lens.pos, (r + 1) * lens.pos));
}

/** Intervened − clean copy mass per position at a lens row. */
export function copyMassDelta(intervened: LensTable, clean: LensTable, row: number): number[] {
  const a = copyMassRow(intervened, row);
  const b = copyMassRow(clean, row);
  return a.map((v, i) => v - b[i]!);
}

/**
 * How much a repeat is copied: the mean copy mass (at a lens row) over the positions that predict
 * its later occurrence's tokens after the first — dst .. dst+len−2, where the earlier occurrence
 * tells the model what comes next. NaN for a one-token repeat.
 */
export function repeatCopyMass(lens: LensTable, run: RepeatRun, row: number): number {
  const cm = copyMassRow(lens, row);
  let s = 0;
  let n = 0;
  for (let p = run.dst; p < run.dst + run.len - 1 && p < cm.length; p++) {
    s += cm[p]!;
    n++;
  }
  return n ? s / n : NaN;
}

// ---- heads to ablate ---------------------------------------------------------------------

/** The k heads with the highest induction score (heads whose score is undefined are left out). */
export function topInductionHeads(stats: HeadStatsResult, k: number): HeadRef[] {
  const all: { h: HeadRef; v: number }[] = [];
  for (let L = 0; L < stats.n_layers; L++)
    for (let h = 0; h < stats.n_heads; h++) {
      const v = stats.induction[L * stats.n_heads + h]!;
      if (Number.isFinite(v)) all.push({ h: { layer: L, head: h }, v });
    }
  all.sort((a, b) => b.v - a.v || a.h.layer - b.h.layer || a.h.head - b.h.head);
  return all.slice(0, k).map((x) => x.h);
}

/** Adds or removes a head from the selection (kept sorted by layer, then head). */
export function toggleHead(heads: readonly HeadRef[], h: HeadRef): HeadRef[] {
  const has = heads.some((x) => x.layer === h.layer && x.head === h.head);
  const out = has ? heads.filter((x) => x.layer !== h.layer || x.head !== h.head) : [...heads, h];
  return out.sort((a, b) => a.layer - b.layer || a.head - b.head);
}

export const hasHead = (heads: readonly HeadRef[], layer: number, head: number) => heads.some((x) => x.layer === layer && x.head === head);

export const EMPTY_ABLATION: HeadAblation = { heads: [], mode: 'zero' };

export function withMode(a: HeadAblation, mode: AblationMode): HeadAblation {
  return { heads: a.heads, mode };
}

// ---- activation patching heatmap ----------------------------------------------------------

/** What each patching site is called in the Diff tab: its button, the y axis, the hover, the summary. */
/** `cell(L, col)`: a heatmap cell's hover heading (col: a position, or for z a head). */
export const PATCH_SITE_TEXT: Record<PatchSite, { button: string; title: string; cell: (L: number, col: number) => string; what: string }> =
  {
    resid_pre: {
      button: 'residual',
      title: 'Patch the residual stream entering each layer (resid_pre)',
      cell: (L, p) => `L${L} resid_pre · pos ${p}`,
      what: 'the residual stream entering each layer (resid_pre)',
    },
    attn_out: {
      button: 'attention',
      title: 'Patch each layer’s attention output, as it is added to the residual stream (attn_out)',
      cell: (L, p) => `L${L} attn_out · pos ${p}`,
      what: 'each layer’s attention output (attn_out)',
    },
    mlp_out: {
      button: 'MLP',
      title: 'Patch each layer’s MLP output, as it is added to the residual stream (mlp_out)',
      cell: (L, p) => `L${L} mlp_out · pos ${p}`,
      what: 'each layer’s MLP output (mlp_out)',
    },
    z: {
      button: 'heads',
      title: 'Patch each attention head’s output z at every position at once (hook_z): a layer × head heatmap',
      cell: (L, h) => `L${L}H${h} z, every aligned position`,
      what: 'each attention head’s output z',
    },
  };

/** z[L][p] of the heatmap (null where nothing was patchable), rows = layers. */
export function patchingZ(r: PatchingResult, which: 'normalized' | 'ld'): (number | null)[][] {
  const a = which === 'normalized' ? r.normalized : r.ld;
  const n = patchColumns(r);
  return Array.from({ length: r.n_layers }, (_, L) => Array.from(a.subarray(L * n, (L + 1) * n), (v) => (Number.isFinite(v) ? v : null)));
}

/** Tokens to offer as the target: each run's top predictions at its last position, best first, once each. */
export function targetChoices(clean: AnalysisPayload, corrupted: AnalysisPayload, k = 5): { id: number; text: string; source: string }[] {
  const out: { id: number; text: string; source: string }[] = [];
  const add = (p: AnalysisPayload, source: string) => {
    const lens = p.lens;
    const last = ((lens.rows - 1) * lens.pos + lens.pos - 1) * lens.k;
    for (let j = 0; j < Math.min(k, lens.k); j++) {
      const id = lens.topIds[last + j]!;
      if (!out.some((o) => o.id === id)) out.push({ id, text: p.vocab[id] ?? String(id), source });
    }
  };
  add(clean, 'clean');
  add(corrupted, 'corrupted');
  return out;
}

/** "A's position p ↔ B's position p − 3": how the two prompts' positions line up (from the end). */
export function alignmentText(r: PatchingResult, baseName: string, sourceName: string): string {
  if (r.offset === 0) return `${baseName} and ${sourceName} have the same length: position p patches position p.`;
  const sign = r.offset > 0 ? '−' : '+';
  return `Aligned from the end: ${baseName}'s position p takes ${sourceName}'s position p ${sign} ${Math.abs(r.offset)}${r.offset > 0 ? `; its first ${r.offset} positions have no counterpart` : ''}.`;
}

// ---- colours of a difference --------------------------------------------------------------

/** Index into a diverging ramp of 2·half+1 colours for v in [−scale, scale] (half = the neutral middle). */
export function divergingIndex(v: number, scale: number, half: number): number | null {
  if (!Number.isFinite(v) || !(scale > 0)) return null;
  const t = Math.max(-1, Math.min(1, v / scale));
  return half + Math.round(t * half);
}
