// "The ball": the distribution of residual-stream norms per row over all positions, before
// and after the final norm. Box statistics (Tukey: whiskers at 1.5 IQR), outliers and a
// one-line summary of how tightly the normed vectors sit on a sphere.

export interface BoxStats {
  n: number;
  min: number;
  q1: number;
  median: number;
  q3: number;
  max: number;
  /** Whisker ends: the most extreme values within 1.5 IQR of the box. */
  lower: number;
  upper: number;
  mean: number;
  std: number;
  /** Positions whose value lies outside the whiskers (at most `maxOutliers`, most extreme first). */
  outliers: number[];
}

/** Quantile of sorted values with linear interpolation (numpy's default). */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  const h = (n - 1) * Math.max(0, Math.min(1, q));
  const lo = Math.floor(h);
  const hi = Math.min(n - 1, lo + 1);
  return sorted[lo]! + (h - lo) * (sorted[hi]! - sorted[lo]!);
}

/** Box statistics of `values` (NaN ignored); outliers are indices into `values`. */
export function boxStats(values: ArrayLike<number>, maxOutliers = 200): BoxStats {
  const idx: number[] = [];
  for (let i = 0; i < values.length; i++) if (Number.isFinite(values[i]!)) idx.push(i);
  const n = idx.length;
  if (n === 0)
    return { n: 0, min: NaN, q1: NaN, median: NaN, q3: NaN, max: NaN, lower: NaN, upper: NaN, mean: NaN, std: NaN, outliers: [] };
  const sorted = Float64Array.from(idx, (i) => values[i]!).sort();
  const q1 = quantile(sorted, 0.25);
  const median = quantile(sorted, 0.5);
  const q3 = quantile(sorted, 0.75);
  const iqr = q3 - q1;
  const lo = q1 - 1.5 * iqr;
  const hi = q3 + 1.5 * iqr;
  let lower = Infinity;
  let upper = -Infinity;
  let sum = 0;
  for (const v of sorted) {
    sum += v;
    if (v >= lo && v < lower) lower = v;
    if (v <= hi && v > upper) upper = v;
  }
  const mean = sum / n;
  let ss = 0;
  for (const v of sorted) ss += (v - mean) ** 2;
  const out = idx.filter((i) => values[i]! < lower || values[i]! > upper);
  out.sort((a, b) => Math.abs(values[b]! - median) - Math.abs(values[a]! - median) || a - b);
  return {
    n,
    min: sorted[0]!,
    q1,
    median,
    q3,
    max: sorted[n - 1]!,
    lower,
    upper,
    mean,
    std: Math.sqrt(ss / n),
    outliers: out.slice(0, maxOutliers),
  };
}

/** One BoxStats per row of a [rows, pos] array (outliers are positions). */
export function rowBoxes(arr: Float32Array, rows: number, T: number, maxOutliers = 200): BoxStats[] {
  if (arr.length !== rows * T) return [];
  return Array.from({ length: rows }, (_, r) => boxStats(arr.subarray(r * T, (r + 1) * T), maxOutliers));
}

/** Values of one position through the rows of a [rows, pos] array. */
export function positionSeries(arr: Float32Array, rows: number, T: number, pos: number): (number | null)[] {
  if (pos < 0 || pos >= T || arr.length !== rows * T) return [];
  return Array.from({ length: rows }, (_, r) => {
    const v = arr[r * T + pos]!;
    return Number.isFinite(v) ? v : null;
  });
}

export interface BallSummary {
  /** Mean ‖ln_final(x)‖ over every row and position: the ball's radius. */
  radius: number;
  /** Coefficient of variation (std / mean) after the final norm, over every row and position. */
  cvAfter: number;
  /** Same before the final norm. */
  cvBefore: number;
  /** Growth of the median norm before the final norm from the first to the last row. */
  growth: number;
}

function meanCv(a: ArrayLike<number>): [number, number] {
  let n = 0;
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i]!)) continue;
    s += a[i]!;
    n++;
  }
  if (n === 0) return [NaN, NaN];
  const m = s / n;
  let ss = 0;
  for (let i = 0; i < a.length; i++) if (Number.isFinite(a[i]!)) ss += (a[i]! - m) ** 2;
  return [m, m !== 0 ? Math.sqrt(ss / n) / Math.abs(m) : NaN];
}

export function ballSummary(before: Float32Array, after: Float32Array, rows: number, T: number): BallSummary {
  const [radius, cvAfter] = meanCv(after);
  const [, cvBefore] = meanCv(before);
  const boxes = rowBoxes(before, rows, T, 0);
  const first = boxes[0]?.median ?? NaN;
  const last = boxes[boxes.length - 1]?.median ?? NaN;
  return { radius, cvAfter, cvBefore, growth: first > 0 ? last / first : NaN };
}
