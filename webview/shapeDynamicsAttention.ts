// The attention view's data: per-head rows (self-bias, induction, kernel peak), sorting, the
// position-kernel sparklines of the layer × head grid and checks on what the host sent.
import type { HeadStatsResult } from '../src/shared/analysis';

export type KernelMode = 'raw' | 'norm';
export type HeadSort = 'layer' | 'selfBias' | 'induction';

export interface HeadRow {
  layer: number;
  head: number;
  /** layer · n_heads + head: index into selfBias / induction / kernel blocks. */
  index: number;
  selfBias: number;
  induction: number;
  /** K(0) and K(1): attention to the token itself and to the previous token. */
  k0: number;
  k1: number;
  /** Offset d with the largest normalised kernel value (the head's preferred distance). */
  peak: number;
}

const isF32 = (v: unknown, n: number) => v instanceof Float32Array && v.length === n;

/** True when `v` is a HeadStatsResult whose arrays match its dimensions (and the model's, when given). */
export function isHeadStats(v: unknown, nLayers?: number, nHeads?: number): v is HeadStatsResult {
  if (!v || typeof v !== 'object') return false;
  const s = v as HeadStatsResult;
  if (![s.n_layers, s.n_heads, s.maxOffset].every((x) => Number.isInteger(x) && x >= 0)) return false;
  if (nLayers !== undefined && s.n_layers !== nLayers) return false;
  if (nHeads !== undefined && s.n_heads !== nHeads) return false;
  const H = s.n_layers * s.n_heads;
  const K = H * (s.maxOffset + 1);
  return isF32(s.kernel, K) && isF32(s.kernelNorm, K) && isF32(s.selfBias, H) && isF32(s.induction, H);
}

export function headLabel(layer: number, head: number): string {
  return `L${layer}.H${head}`;
}

/** The kernel of one head: K(d) for d = 0..maxOffset (a view into the result). */
export function kernelOf(s: HeadStatsResult, index: number, mode: KernelMode): Float32Array {
  const D = s.maxOffset + 1;
  return (mode === 'raw' ? s.kernel : s.kernelNorm).subarray(index * D, (index + 1) * D);
}

export function headRows(s: HeadStatsResult): HeadRow[] {
  const rows: HeadRow[] = [];
  for (let layer = 0; layer < s.n_layers; layer++) {
    for (let head = 0; head < s.n_heads; head++) {
      const index = layer * s.n_heads + head;
      const raw = kernelOf(s, index, 'raw');
      const norm = kernelOf(s, index, 'norm');
      let peak = 0;
      for (let d = 1; d < norm.length; d++) if (norm[d]! > norm[peak]!) peak = d;
      rows.push({
        layer,
        head,
        index,
        selfBias: s.selfBias[index]!,
        induction: s.induction[index]!,
        k0: raw[0] ?? NaN,
        k1: raw[1] ?? NaN,
        peak,
      });
    }
  }
  return rows;
}

/**
 * Heads in display order: by layer and head, by self-bias (most self-avoiding first) or by
 * induction score (strongest first). NaN sorts last; ties keep layer order. `reverse` flips
 * the measure's direction (NaN stays last).
 */
export function sortHeads(rows: readonly HeadRow[], sort: HeadSort, reverse = false): HeadRow[] {
  const out = [...rows];
  if (sort === 'layer') {
    out.sort((a, b) => a.index - b.index);
    return reverse ? out.reverse() : out;
  }
  const key = (r: HeadRow) => (sort === 'selfBias' ? r.selfBias : -r.induction);
  const sign = reverse ? -1 : 1;
  out.sort((a, b) => {
    const ka = key(a);
    const kb = key(b);
    const na = !Number.isFinite(ka);
    const nb = !Number.isFinite(kb);
    if (na || nb) return na === nb ? a.index - b.index : na ? 1 : -1;
    return sign * (ka - kb) || a.index - b.index;
  });
  return out;
}

/** The shared y-scale of the grid's sparklines. */
export interface KernelScale {
  lo: number;
  hi: number;
  log: boolean;
}

/**
 * Raw kernels: linear from 0 to the largest value of any head. Normalised kernels: log scale
 * from 1/16 to the largest value (at least 2), so a flat kernel (1) sits mid-height and both
 * peaks and dips show.
 */
export function kernelScale(s: HeadStatsResult, mode: KernelMode): KernelScale {
  const arr = mode === 'raw' ? s.kernel : s.kernelNorm;
  let m = 0;
  for (const v of arr) if (Number.isFinite(v) && v > m) m = v;
  if (mode === 'raw') return { lo: 0, hi: m > 0 ? m : 1, log: false };
  return { lo: 1 / 16, hi: Math.max(2, m), log: true };
}

/** Where v falls on the scale, in [0, 1] (values outside are clamped; NaN → 0). */
export function scaleT(v: number, sc: KernelScale): number {
  if (!Number.isFinite(v)) return 0;
  const t = sc.log ? (Math.log(Math.max(v, sc.lo)) - Math.log(sc.lo)) / (Math.log(sc.hi) - Math.log(sc.lo)) : (v - sc.lo) / (sc.hi - sc.lo);
  return Math.max(0, Math.min(1, t));
}

/** SVG polyline points for a kernel in a w × h box (y up: the scale's low end at the bottom). */
export function sparkPoints(values: ArrayLike<number>, w: number, h: number, sc: KernelScale): string {
  const n = values.length;
  if (n === 0) return '';
  const dx = n > 1 ? w / (n - 1) : 0;
  const pts: string[] = [];
  for (let d = 0; d < n; d++) pts.push(`${(n > 1 ? d * dx : w / 2).toFixed(1)},${(h - scaleT(values[d]!, sc) * h).toFixed(1)}`);
  return pts.join(' ');
}

/** The largest |self-bias| (the symmetric range of the diverging colour scale), never 0. */
export function selfBiasRange(s: HeadStatsResult): number {
  let m = 0;
  for (const v of s.selfBias) if (Number.isFinite(v)) m = Math.max(m, Math.abs(v));
  return m > 1e-9 ? m : 1;
}

/** Position on a diverging scale in [−1, 1] (0 for NaN). */
export function divergingT(v: number, range: number): number {
  if (!Number.isFinite(v) || range <= 0) return 0;
  return Math.max(-1, Math.min(1, v / range));
}

/** True when `v` is one head's attention pattern for T tokens. */
export function isPattern(v: unknown, T: number): v is Float32Array {
  return v instanceof Float32Array && v.length === T * T;
}

/** The keys a query attends to most: [{ key, p }] by probability, at most k. */
export function topKeys(pattern: Float32Array, T: number, q: number, k = 5): { key: number; p: number }[] {
  if (q < 0 || q >= T) return [];
  const out: { key: number; p: number }[] = [];
  for (let j = 0; j <= q; j++) out.push({ key: j, p: pattern[q * T + j]! });
  out.sort((a, b) => b.p - a.p || a.key - b.key);
  return out.slice(0, k);
}

/** The induction score as text (NaN means the text has no repeated token). */
export function inductionText(v: number, digits = 2): string {
  return Number.isFinite(v) ? v.toFixed(digits) : 'n/a';
}

/** Self-bias with an explicit sign (−0.05 / +0.12). */
export function signedText(v: number, digits = 2): string {
  if (!Number.isFinite(v)) return '–';
  const s = v.toFixed(digits);
  return v >= 0 ? `+${s}` : s.replace('-', '−');
}
