// Attention as data-dependent aggregation (METRICS.md "Attention"): position kernels,
// self-bias and induction scores per head. Patterns are [n_layers, n_heads, pos, pos]
// softmax probabilities (causal: key ≤ query).

export interface HeadStats {
  /** K(d) = mean over q ≥ d of pattern[q][q−d], d = 0..D → [n_layers, n_heads, D+1] */
  kernel: Float32Array;
  /** The kernel normalised by the uniform baseline: mean over q of pattern[q][q−d]·(q+1). */
  kernelNorm: Float32Array;
  /** mean_q pattern[q][q] − mean_q 1/(q+1) → [n_layers, n_heads] */
  selfBias: Float32Array;
  /** Mean attention to the successors of earlier occurrences of the query token → [n_layers, n_heads] (NaN without repeats) */
  induction: Float32Array;
  maxOffset: number;
}

/**
 * Kernels, self-bias and induction scores for every head. `maxOffset` caps D (the kernel is
 * defined for d ≤ pos−1).
 */
export function headStats(
  patterns: Float32Array,
  nLayers: number,
  nHeads: number,
  T: number,
  ids: readonly number[],
  maxOffset = 64,
): HeadStats {
  const D = Math.max(0, Math.min(maxOffset, T - 1));
  const heads = nLayers * nHeads;
  const kernel = new Float32Array(heads * (D + 1));
  const kernelNorm = new Float32Array(heads * (D + 1));
  const selfBias = new Float32Array(heads);
  const induction = new Float32Array(heads);
  let uniformSelf = 0;
  for (let q = 0; q < T; q++) uniformSelf += 1 / (q + 1);
  uniformSelf /= T;
  // successors of earlier occurrences: for each query i, the keys j+1 with ids[j] = ids[i], j < i
  const targets: number[][] = ids.map(() => []);
  const lastSeen = new Map<number, number[]>();
  ids.forEach((id, i) => {
    const prev = lastSeen.get(id) ?? [];
    targets[i] = prev.map((j) => j + 1).filter((k) => k <= i);
    prev.push(i);
    lastSeen.set(id, prev);
  });
  const withTargets = targets.map((t, i) => (t.length ? i : -1)).filter((i) => i >= 0);
  for (let h = 0; h < heads; h++) {
    const base = h * T * T;
    let diag = 0;
    for (let q = 0; q < T; q++) diag += patterns[base + q * T + q]!;
    selfBias[h] = diag / T - uniformSelf;
    for (let d = 0; d <= D; d++) {
      let s = 0;
      let sn = 0;
      for (let q = d; q < T; q++) {
        const a = patterns[base + q * T + (q - d)]!;
        s += a;
        sn += a * (q + 1);
      }
      kernel[h * (D + 1) + d] = s / (T - d);
      kernelNorm[h * (D + 1) + d] = sn / (T - d);
    }
    if (withTargets.length === 0) induction[h] = NaN;
    else {
      let s = 0;
      for (const i of withTargets) for (const k of targets[i]!) s += patterns[base + i * T + k]!;
      induction[h] = s / withTargets.length;
    }
  }
  return { kernel, kernelNorm, selfBias, induction, maxOffset: D };
}
