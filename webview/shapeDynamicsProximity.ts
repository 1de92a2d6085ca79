// The angular-proximity view's data: every vocabulary token as a point (cosine, logit), the
// tokens worth highlighting, label placement, nearest-point lookup for hover, a decimated SVG
// for export and the per-layer cosines of the lens at one position.
import type { LensTable, ProximityResult } from '../src/shared/analysis';
import { escapeXml, clip, visibleText } from './shapeText';

/** Point classes, drawn in this order (later on top). */
export const KIND_REST = 0;
export const KIND_COS = 1;
export const KIND_LOGIT = 2;
export const KIND_BOTH = 3;

export function isProximity(v: unknown, dVocab?: number): v is ProximityResult {
  if (!v || typeof v !== 'object') return false;
  const r = v as ProximityResult;
  const V = r.logits instanceof Float32Array ? r.logits.length : -1;
  if (V < 1 || (dVocab !== undefined && V !== dVocab)) return false;
  return (
    r.cos instanceof Float32Array &&
    r.cos.length === V &&
    Number.isInteger(r.pos) &&
    Array.isArray(r.topByLogit) &&
    Array.isArray(r.topByCos) &&
    r.topByLogit.every((t) => Number.isInteger(t) && t >= 0 && t < V) &&
    r.topByCos.every((t) => Number.isInteger(t) && t >= 0 && t < V) &&
    typeof r.labels === 'object' &&
    r.labels !== null
  );
}

/** KIND_* per token: in the top-k by logit, by cosine, by both, or neither. */
export function pointKinds(r: ProximityResult): Uint8Array {
  const kinds = new Uint8Array(r.logits.length);
  for (const t of r.topByCos) kinds[t] = KIND_COS;
  for (const t of r.topByLogit) kinds[t] = kinds[t] === KIND_COS ? KIND_BOTH : KIND_LOGIT;
  return kinds;
}

export interface Extent {
  x0: number;
  x1: number;
  y0: number;
  y1: number;
}

/** Data extent of finite (x, y) pairs with a margin on each side. */
export function extentOf(xs: ArrayLike<number>, ys: ArrayLike<number>, pad = 0.05): Extent {
  let x0 = Infinity;
  let x1 = -Infinity;
  let y0 = Infinity;
  let y1 = -Infinity;
  for (let i = 0; i < xs.length; i++) {
    const x = xs[i]!;
    const y = ys[i]!;
    if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
    if (x < x0) x0 = x;
    if (x > x1) x1 = x;
    if (y < y0) y0 = y;
    if (y > y1) y1 = y;
  }
  if (!(x0 <= x1)) [x0, x1] = [-1, 1];
  if (!(y0 <= y1)) [y0, y1] = [-1, 1];
  if (x1 - x0 < 1e-9) [x0, x1] = [x0 - 0.5, x1 + 0.5];
  if (y1 - y0 < 1e-9) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const px = (x1 - x0) * pad;
  const py = (y1 - y0) * pad;
  return { x0: x0 - px, x1: x1 + px, y0: y0 - py, y1: y1 + py };
}

/** "Nice" tick values (1, 2, 5 × 10^k steps) inside [lo, hi], about `target` of them. */
export function niceTicks(lo: number, hi: number, target = 5): number[] {
  if (!(hi > lo) || !Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  const raw = (hi - lo) / Math.max(1, target);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step)
    out.push(Math.abs(v) < step * 1e-9 ? 0 : Number(v.toPrecision(12)));
  return out;
}

/** Maps data coordinates into a plot box (y grows downwards on screen). */
export interface Frame {
  left: number;
  top: number;
  width: number;
  height: number;
  ext: Extent;
}

export const toPx = (f: Frame, x: number) => f.left + ((x - f.ext.x0) / (f.ext.x1 - f.ext.x0)) * f.width;
export const toPy = (f: Frame, y: number) => f.top + (1 - (y - f.ext.y0) / (f.ext.y1 - f.ext.y0)) * f.height;

/** A uniform grid over screen points for nearest-point lookup. */
export interface PointGrid {
  cell: number;
  cols: number;
  rows: number;
  /** cell → point indices */
  buckets: Map<number, number[]>;
  px: Float32Array;
  py: Float32Array;
}

export function buildGrid(px: Float32Array, py: Float32Array, width: number, height: number, cell = 12): PointGrid {
  const cols = Math.max(1, Math.ceil(width / cell));
  const rows = Math.max(1, Math.ceil(height / cell));
  const buckets = new Map<number, number[]>();
  for (let i = 0; i < px.length; i++) {
    const x = px[i]!;
    const y = py[i]!;
    if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
    const cx = Math.max(0, Math.min(cols - 1, Math.floor(x / cell)));
    const cy = Math.max(0, Math.min(rows - 1, Math.floor(y / cell)));
    const k = cy * cols + cx;
    let b = buckets.get(k);
    if (!b) buckets.set(k, (b = []));
    b.push(i);
  }
  return { cell, cols, rows, buckets, px, py };
}

/**
 * The point nearest to (x, y) within maxDist pixels, or −1. Among points at the same distance
 * the one with the highest `priority` wins (highlighted tokens over the cloud).
 */
export function nearestPoint(g: PointGrid, x: number, y: number, maxDist = 8, priority?: ArrayLike<number>): number {
  const r = Math.ceil(maxDist / g.cell);
  const cx = Math.floor(x / g.cell);
  const cy = Math.floor(y / g.cell);
  let best = -1;
  let bestD = maxDist * maxDist;
  let bestP = -1;
  for (let j = cy - r; j <= cy + r; j++) {
    if (j < 0 || j >= g.rows) continue;
    for (let i = cx - r; i <= cx + r; i++) {
      if (i < 0 || i >= g.cols) continue;
      for (const k of g.buckets.get(j * g.cols + i) ?? []) {
        const d = (g.px[k]! - x) ** 2 + (g.py[k]! - y) ** 2;
        const p = priority ? priority[k]! : 0;
        if (d < bestD - 1e-9 || (Math.abs(d - bestD) <= 1e-9 && p > bestP)) {
          best = k;
          bestD = d;
          bestP = p;
        }
      }
    }
  }
  return best;
}

export interface LabelBox {
  id: number;
  /** Anchor point (the marker) on screen. */
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface PlacedLabel {
  id: number;
  /** Top-left of the label box. */
  x: number;
  y: number;
  w: number;
  h: number;
  /** Anchor it points at. */
  ax: number;
  ay: number;
}

const overlaps = (a: { x: number; y: number; w: number; h: number }, b: { x: number; y: number; w: number; h: number }) =>
  a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;

/**
 * Greedy label placement: each label (in priority order) takes the first of eight positions
 * around its anchor that stays inside `bounds` and overlaps no placed label; labels with no
 * free position are dropped.
 */
export function placeLabels(items: readonly LabelBox[], bounds: { x: number; y: number; w: number; h: number }, gap = 4): PlacedLabel[] {
  const placed: PlacedLabel[] = [];
  for (const it of items) {
    const { w, h } = it;
    const cands: [number, number][] = [
      [it.x + gap, it.y - h / 2],
      [it.x - gap - w, it.y - h / 2],
      [it.x - w / 2, it.y - gap - h],
      [it.x - w / 2, it.y + gap],
      [it.x + gap, it.y - gap - h],
      [it.x + gap, it.y + gap],
      [it.x - gap - w, it.y - gap - h],
      [it.x - gap - w, it.y + gap],
    ];
    for (const [x, y] of cands) {
      const box = { x, y, w, h };
      if (x < bounds.x || y < bounds.y || x + w > bounds.x + bounds.w || y + h > bounds.y + bounds.h) continue;
      if (placed.some((p) => overlaps(p, box))) continue;
      placed.push({ id: it.id, x, y, w, h, ax: it.x, ay: it.y });
      break;
    }
  }
  return placed;
}

/**
 * Indices to keep when the cloud is thinned for SVG export: the first point in every
 * `cell` × `cell` pixel square, plus every point whose kind is not KIND_REST.
 */
export function decimate(px: Float32Array, py: Float32Array, kinds: Uint8Array, cell = 2): number[] {
  const seen = new Set<number>();
  const keep: number[] = [];
  for (let i = 0; i < px.length; i++) {
    const x = px[i]!;
    const y = py[i]!;
    if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
    if (kinds[i] !== KIND_REST) {
      keep.push(i);
      continue;
    }
    const k = Math.floor(x / cell) * 100003 + Math.floor(y / cell);
    if (seen.has(k)) continue;
    seen.add(k);
    keep.push(i);
  }
  return keep;
}

export interface RankedToken {
  id: number;
  logit: number;
  cos: number;
  /** Also in the other top-k list. */
  shared: boolean;
}

/** The top-k list by logit or by cosine, with both values and whether the other list has the token. */
export function topList(r: ProximityResult, by: 'logit' | 'cos'): RankedToken[] {
  const mine = by === 'logit' ? r.topByLogit : r.topByCos;
  const other = new Set(by === 'logit' ? r.topByCos : r.topByLogit);
  return mine.map((id) => ({ id, logit: r.logits[id]!, cos: r.cos[id]!, shared: other.has(id) }));
}

/** Rank (0 = highest) of token `id` in `values`, counting strictly greater values. */
export function rankOf(values: Float32Array, id: number): number {
  const v = values[id]!;
  let n = 0;
  for (const x of values) if (x > v) n++;
  return n;
}

/** Per-layer cosines of the normed residual stream at one position: to the actual next token and to the final prediction. */
export function lensCosSeries(lens: LensTable, pos: number): { next: (number | null)[]; pred: (number | null)[] } {
  const T = lens.pos;
  const next: (number | null)[] = [];
  const pred: (number | null)[] = [];
  for (let r = 0; r < lens.rows; r++) {
    const i = r * T + pos;
    const a = lens.cosNext[i]!;
    const b = lens.cosPred[i]!;
    next.push(pos < T - 1 && Number.isFinite(a) ? a : null);
    pred.push(Number.isFinite(b) ? b : null);
  }
  return { next, pred };
}

export interface ProximitySvgStyle {
  background: string;
  foreground: string;
  muted: string;
  grid: string;
  rest: string;
  logit: string;
  cos: string;
  both: string;
  next: string;
  fontFamily: string;
}

/**
 * The scatter as standalone SVG (for export): axes with ticks, the thinned cloud, the
 * highlighted tokens and their labels. Every string is escaped.
 */
export function proximitySvg(
  r: ProximityResult,
  label: (id: number) => string,
  size: { width: number; height: number },
  style: ProximitySvgStyle,
  nextId: number | null,
): string {
  const { width: W, height: H } = size;
  const m = { l: 56, r: 14, t: 14, b: 40 };
  const ext = extentOf(r.cos, r.logits);
  const f: Frame = { left: m.l, top: m.t, width: W - m.l - m.r, height: H - m.t - m.b, ext };
  const V = r.logits.length;
  const px = new Float32Array(V);
  const py = new Float32Array(V);
  for (let t = 0; t < V; t++) {
    px[t] = toPx(f, r.cos[t]!);
    py[t] = toPy(f, r.logits[t]!);
  }
  const kinds = pointKinds(r);
  const keep = decimate(px, py, kinds, 2);
  const ff = escapeXml(style.fontFamily);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="${ff}" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="${style.background}"/>`,
  ];
  for (const v of niceTicks(ext.x0, ext.x1, 6)) {
    const x = toPx(f, v).toFixed(1);
    parts.push(`<line x1="${x}" x2="${x}" y1="${f.top}" y2="${f.top + f.height}" stroke="${style.grid}"/>`);
    parts.push(`<text x="${x}" y="${f.top + f.height + 14}" fill="${style.muted}" text-anchor="middle">${v}</text>`);
  }
  for (const v of niceTicks(ext.y0, ext.y1, 6)) {
    const y = toPy(f, v).toFixed(1);
    parts.push(`<line x1="${f.left}" x2="${f.left + f.width}" y1="${y}" y2="${y}" stroke="${style.grid}"/>`);
    parts.push(`<text x="${f.left - 6}" y="${y}" fill="${style.muted}" text-anchor="end" dominant-baseline="central">${v}</text>`);
  }
  parts.push(
    `<text x="${f.left + f.width / 2}" y="${H - 8}" fill="${style.foreground}" text-anchor="middle">cos(ln_final(x), W_U[:, t])</text>`,
    `<text transform="translate(14 ${f.top + f.height / 2}) rotate(-90)" fill="${style.foreground}" text-anchor="middle">logit</text>`,
  );
  const colour = [style.rest, style.cos, style.logit, style.both];
  for (const kind of [KIND_REST, KIND_COS, KIND_LOGIT, KIND_BOTH]) {
    const circles = keep
      .filter((t) => kinds[t] === kind)
      .map((t) => `<circle cx="${px[t]!.toFixed(1)}" cy="${py[t]!.toFixed(1)}" r="${kind === KIND_REST ? 1.5 : 3.5}"/>`);
    if (circles.length) parts.push(`<g fill="${colour[kind]}"${kind === KIND_REST ? ' fill-opacity="0.5"' : ''}>${circles.join('')}</g>`);
  }
  if (nextId !== null && nextId >= 0 && nextId < V)
    parts.push(
      `<circle cx="${px[nextId]!.toFixed(1)}" cy="${py[nextId]!.toFixed(1)}" r="6" fill="none" stroke="${style.next}" stroke-width="2"/>`,
    );
  const ids = [...new Set([...r.topByLogit, ...r.topByCos, ...(nextId !== null ? [nextId] : [])])];
  const boxes = ids.map((id) => ({ id, x: px[id]!, y: py[id]!, w: 7 * Math.min(16, label(id).length) + 6, h: 14 }));
  for (const p of placeLabels(boxes, { x: f.left, y: f.top, w: f.width, h: f.height })) {
    parts.push(
      `<text x="${(p.x + 3).toFixed(1)}" y="${(p.y + p.h / 2).toFixed(1)}" fill="${style.foreground}" dominant-baseline="central">${escapeXml(clip(label(p.id), 16))}</text>`,
    );
  }
  parts.push('</svg>');
  return parts.join('');
}

/** A vocabulary token as a label: visible whitespace, clipped. */
export function vocabLabel(text: string | undefined, id: number, max = 16): string {
  return text === undefined ? `#${id}` : clip(visibleText(text), max) || '∅';
}
