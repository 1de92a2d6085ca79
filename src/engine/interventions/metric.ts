// The activation-patching metric (README "Metrics"): the logit difference of a target token
// against a contrast token at the last position, or the target's log-probability when there is
// no contrast, and its normalisation between the clean and the corrupted run.

/** LD of one logits row: logit(target) − logit(contrast), or log p(target) without a contrast. */
export function logitDiff(logits: Float32Array, target: number, contrast: number | null): number {
  if (contrast !== null) return logits[target]! - logits[contrast]!;
  let max = -Infinity;
  for (const v of logits) if (v > max) max = v;
  let sum = 0;
  for (const v of logits) sum += Math.exp(v - max);
  return logits[target]! - (max + Math.log(sum));
}

/**
 * (LD − LD_corrupted) / (LD_clean − LD_corrupted): 1 = the clean run's behaviour, 0 = the
 * corrupted run's. NaN when the two runs give the same LD (nothing to restore) or LD is NaN.
 */
export function normalizedLd(ld: number, ldClean: number, ldCorrupted: number): number {
  const span = ldClean - ldCorrupted;
  if (!(Math.abs(span) > 0) || !Number.isFinite(ld)) return NaN;
  return (ld - ldCorrupted) / span;
}

export function argmax(v: Float32Array): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[best]!) best = i;
  return best;
}

/**
 * Packs of one layer's patched runs, one call each: the run patched at position p recomputes
 * positions p..T−1 (T − p rows), and a pack grows while its rows stay within `rowBudget` and
 * its runs within `maxRuns` (a run longer than the budget gets a pack of its own).
 */
export function packPositions(positions: readonly number[], T: number, rowBudget: number, maxRuns: number): number[][] {
  const desc = [...positions].sort((a, b) => b - a);
  const packs: number[][] = [];
  let cur: number[] = [];
  let rows = 0;
  for (const p of desc) {
    if (cur.length > 0 && (rows + T - p > rowBudget || cur.length >= maxRuns)) {
      packs.push(cur);
      cur = [];
      rows = 0;
    }
    cur.push(p);
    rows += T - p;
  }
  if (cur.length > 0) packs.push(cur);
  return packs;
}

/**
 * The attention bias of a pack [rows, past + rows]: the run patched at p (its rows at
 * `offset`, positions p..T−1) sees the clean prefix's positions < p and its own rows, causally,
 * and within the sliding window when the model has one (q − window < k ≤ q). 0 = attend, −inf = not.
 */
export function packBias(runs: readonly { p: number; offset: number }[], T: number, past: number, window: number | null): Float32Array {
  const rows = runs.reduce((n, r) => n + T - r.p, 0);
  const total = past + rows;
  const bias = new Float32Array(rows * total).fill(-Infinity);
  const inWindow = (q: number, k: number) => window === null || k > q - window;
  for (const { p, offset } of runs) {
    for (let i = 0; i < T - p; i++) {
      const q = p + i;
      const row = (offset + i) * total;
      for (let k = 0; k < p; k++) if (inWindow(q, k)) bias[row + k] = 0;
      for (let j = 0; j <= i; j++) if (inWindow(q, p + j)) bias[row + past + offset + j] = 0;
    }
  }
  return bias;
}
