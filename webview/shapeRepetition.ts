// The repetition view's data: the token × token similarity heatmap (lower triangle only),
// repeated n-grams as runs of matching tokens, and in-context copy mass per position.
import type { LensTable, RepeatedNgram } from '../src/shared/analysis';

/** z[i][j] = S[i][j] for j ≤ i and null above the diagonal (S is [pos, pos] row-major). */
export function lowerTriangle(matrix: Float32Array, T: number): (number | null)[][] {
  const z: (number | null)[][] = new Array(T);
  for (let i = 0; i < T; i++) {
    const row: (number | null)[] = new Array(T);
    for (let j = 0; j < T; j++) row[j] = j <= i ? matrix[i * T + j]! : null;
    z[i] = row;
  }
  return z;
}

/** Min and max of the lower triangle, excluding the diagonal (always 1) when there is more. */
export function offDiagonalRange(matrix: Float32Array, T: number): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 1; i < T; i++) {
    for (let j = 0; j < i; j++) {
      const v = matrix[i * T + j]!;
      if (!Number.isFinite(v)) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  return lo <= hi ? [lo, hi] : [0, 1];
}

/**
 * A repeated stretch: tokens [src, src+len) recur at [dst, dst+len) (dst > src). On the
 * heatmap it is the block rows dst.., columns src.. — a diagonal of high similarity.
 */
export interface RepeatRun {
  src: number;
  dst: number;
  len: number;
}

/**
 * Every pair of occurrences of the repeated n-grams (n ≥ minN), merged per offset dst−src
 * into maximal runs (overlapping 8-grams of a long repeat become one run), longest first,
 * at most `limit` runs.
 */
export function repeatRuns(ngrams: RepeatedNgram[], minN: number, limit = 300): RepeatRun[] {
  const byOffset = new Map<number, [number, number][]>(); // offset → [start, end) intervals of src
  for (const g of ngrams) {
    if (g.n < minN) continue;
    const ps = [...g.positions].sort((a, b) => a - b);
    for (let a = 0; a < ps.length; a++) {
      for (let b = a + 1; b < ps.length; b++) {
        const d = ps[b]! - ps[a]!;
        let list = byOffset.get(d);
        if (!list) byOffset.set(d, (list = []));
        list.push([ps[a]!, ps[a]! + g.n]);
      }
    }
  }
  const runs: RepeatRun[] = [];
  for (const [d, list] of byOffset) {
    list.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    let [s, e] = list[0]!;
    for (const [s2, e2] of list.slice(1)) {
      if (s2 <= e) e = Math.max(e, e2);
      else {
        runs.push({ src: s, dst: s + d, len: e - s });
        [s, e] = [s2, e2];
      }
    }
    runs.push({ src: s, dst: s + d, len: e - s });
  }
  runs.sort((a, b) => b.len - a.len || a.dst - b.dst || a.src - b.src);
  return runs.slice(0, limit);
}

/** A run's rectangle in heatmap coordinates (cell centres at integers): x = columns j, y = rows i. */
export function runRect(run: RepeatRun): { x0: number; x1: number; y0: number; y1: number } {
  return { x0: run.src - 0.5, x1: run.src + run.len - 0.5, y0: run.dst - 0.5, y1: run.dst + run.len - 0.5 };
}

/**
 * Rectangle outlines as one polyline with null breaks (x0,y0 → x1,y0 → x1,y1 → x0,y1 → x0,y0),
 * so hundreds of repeats cost one SVG path instead of hundreds of layout shapes.
 */
export function rectOutlines(rects: { x0: number; x1: number; y0: number; y1: number }[]): { x: (number | null)[]; y: (number | null)[] } {
  const x: (number | null)[] = [];
  const y: (number | null)[] = [];
  for (const r of rects) {
    if (x.length > 0) {
      x.push(null);
      y.push(null);
    }
    x.push(r.x0, r.x1, r.x1, r.x0, r.x0);
    y.push(r.y0, r.y0, r.y1, r.y1, r.y0);
  }
  return { x, y };
}

/** Positions inside a later occurrence of a repeat (where copying can happen), as sorted [start, end) spans. */
export function repeatedSpans(runs: RepeatRun[]): [number, number][] {
  const spans = runs.map((r) => [r.dst, r.dst + r.len] as [number, number]).sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  for (const sp of spans) {
    const last = out[out.length - 1];
    if (last && sp[0] <= last[1]) last[1] = Math.max(last[1], sp[1]);
    else out.push([sp[0], sp[1]]);
  }
  return out;
}

/** In-context copy mass at one row for every position (lens.copyMass [rows, pos]). */
export function copyMassSeries(lens: LensTable, row: number): number[] {
  const r = Math.max(0, Math.min(lens.rows - 1, row));
  return Array.from(lens.copyMass.subarray(r * lens.pos, (r + 1) * lens.pos));
}

/** A similarity matrix result is usable for a run with T positions. */
export function isSimilarityMatrix(v: unknown, T: number): v is Float32Array {
  return v instanceof Float32Array && v.length === T * T;
}
