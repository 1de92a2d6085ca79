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
 * Batches of positions for one layer's patched runs: each batch recomputes from its smallest
 * position to the end, so positions are taken from the end and a batch grows while its rows
 * (batch × positions recomputed) stay within `rowBudget` and its size within `maxBatch`.
 */
export function batchPositions(positions: readonly number[], T: number, rowBudget: number, maxBatch: number): number[][] {
  const desc = [...positions].sort((a, b) => b - a);
  const batches: number[][] = [];
  let cur: number[] = [];
  for (const p of desc) {
    const rows = (cur.length + 1) * (T - p);
    if (cur.length > 0 && (rows > rowBudget || cur.length >= maxBatch)) {
      batches.push(cur);
      cur = [];
    }
    cur.push(p);
  }
  if (cur.length > 0) batches.push(cur);
  return batches;
}
