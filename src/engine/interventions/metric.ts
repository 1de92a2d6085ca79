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

/** One run in a bin: patched at position p, its rows from `offset` of the bin. */
export interface BinnedRun {
  p: number;
  offset: number;
}

/** One call of the suffix graph: B bins of S rows (graph/suffix.ts). */
export interface BinnedCall {
  bins: BinnedRun[][];
  /** rows per bin: the fullest bin's (the others are padded) */
  S: number;
  /** slots per bin: the most runs in a bin */
  Q: number;
  /** clean-prefix positions every bin is given: the largest p of the call */
  past: number;
}

/**
 * One layer's patched runs in calls. The run patched at position p recomputes positions
 * p..T−1 (T − p rows); runs go into bins (rows of the batch) first-fit by decreasing length,
 * a bin holding at most the longest plus the shortest run (so the run at p and the one at
 * T−1−p fill a bin of T+1 rows exactly) and at most `maxRuns` runs; a call takes bins while
 * its rows stay within `rowBudget` and its runs within `maxRuns` (at least one bin).
 */
export function binRuns(positions: readonly number[], T: number, rowBudget: number, maxRuns: number): BinnedCall[] {
  if (positions.length === 0) return [];
  const asc = [...positions].sort((a, b) => a - b); // longest run first
  const longest = T - asc[0]!;
  const capacity = asc.length > 1 ? longest + (T - asc[asc.length - 1]!) : longest;
  const bins: { runs: BinnedRun[]; fill: number }[] = [];
  for (const p of asc) {
    const len = T - p;
    let bin = bins.find((b) => b.fill + len <= capacity && b.runs.length < maxRuns);
    if (!bin) bins.push((bin = { runs: [], fill: 0 }));
    bin.runs.push({ p, offset: bin.fill });
    bin.fill += len;
  }
  const calls: (typeof bins)[] = [];
  let cur: typeof bins = [];
  let runs = 0;
  for (const b of bins) {
    if (cur.length > 0 && ((cur.length + 1) * capacity > rowBudget || runs + b.runs.length > maxRuns)) {
      calls.push(cur);
      cur = [];
      runs = 0;
    }
    cur.push(b);
    runs += b.runs.length;
  }
  if (cur.length > 0) calls.push(cur);
  return calls.map((bs) => ({
    bins: bs.map((b) => b.runs),
    S: Math.max(...bs.map((b) => b.fill)),
    Q: Math.max(...bs.map((b) => b.runs.length)),
    past: Math.max(...bs.flatMap((b) => b.runs.map((r) => r.p))),
  }));
}

/**
 * A call's attention bias [B, S, past + S]: the run patched at p (its rows at `offset` of its
 * bin, positions p..T−1) sees the clean prefix's positions < p and its own rows, causally, and
 * within the sliding window when the model has one (q − window < k ≤ q); a padding row sees
 * itself only (so it stays finite). 0 = attend, −inf = not.
 */
export function binBias(call: BinnedCall, T: number, window: number | null): Float32Array {
  const { S, past } = call;
  const K = past + S;
  const bias = new Float32Array(call.bins.length * S * K).fill(-Infinity);
  const inWindow = (q: number, k: number) => window === null || k > q - window;
  call.bins.forEach((runs, b) => {
    let used = 0;
    for (const { p, offset } of runs) {
      for (let i = 0; i < T - p; i++) {
        const q = p + i;
        const row = (b * S + offset + i) * K;
        for (let k = 0; k < p; k++) if (inWindow(q, k)) bias[row + k] = 0;
        for (let j = 0; j <= i; j++) if (inWindow(q, p + j)) bias[row + past + offset + j] = 0;
      }
      used = Math.max(used, offset + T - p);
    }
    for (let r = used; r < S; r++) bias[(b * S + r) * K + past + r] = 0;
  });
  return bias;
}
