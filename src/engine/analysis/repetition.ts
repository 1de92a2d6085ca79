// Repetition measures on token ids (METRICS.md "Repetition" and "Decoding walk").

export interface RepeatedNgram {
  n: number;
  ids: number[];
  /** Start positions of every occurrence (ascending). */
  positions: number[];
}

/**
 * Every n-gram (nMin ≤ n ≤ nMax) that occurs more than once, longest first. An n-gram is
 * left out when each of its occurrences lies inside an occurrence of a longer repeated
 * n-gram (so "a b c" repeated does not also list "a b" and "b c").
 */
export function repeatedNgrams(ids: readonly number[], nMin = 1, nMax = 8): RepeatedNgram[] {
  const found: RepeatedNgram[] = [];
  const covered = new Map<number, Uint8Array>(); // n → 1 at each start of a repeated n-gram
  for (let n = Math.min(nMax, ids.length); n >= nMin; n--) {
    const groups = new Map<string, number[]>();
    for (let i = 0; i + n <= ids.length; i++) {
      const key = ids.slice(i, i + n).join(',');
      const g = groups.get(key);
      if (g) g.push(i);
      else groups.set(key, [i]);
    }
    const cover = new Uint8Array(ids.length);
    for (const positions of groups.values()) {
      if (positions.length < 2) continue;
      const allInside = positions.every((p) => isInside(covered, p, n));
      if (!allInside) found.push({ n, ids: ids.slice(positions[0]!, positions[0]! + n), positions });
      for (const p of positions) cover[p] = 1;
    }
    covered.set(n, cover);
  }
  return found;
}

/** Is the span [p, p+n) inside an occurrence of a repeated longer n-gram? */
function isInside(covered: Map<number, Uint8Array>, p: number, n: number): boolean {
  for (const [m, cover] of covered) {
    if (m <= n) continue;
    for (let s = Math.max(0, p + n - m); s <= p; s++) if (cover[s]) return true;
  }
  return false;
}

/** distinct-n = unique n-grams / total n-grams (1 when there are none). */
export function distinctN(ids: readonly number[], n: number): number {
  const total = ids.length - n + 1;
  if (total <= 0) return 1;
  const seen = new Set<string>();
  for (let i = 0; i < total; i++) seen.add(ids.slice(i, i + n).join(','));
  return seen.size / total;
}

/** Fraction of tokens inside some 4-gram (or n-gram) that occurs at least twice. */
export function repetitionRate(ids: readonly number[], n = 4): number {
  if (ids.length === 0) return 0;
  const groups = new Map<string, number[]>();
  for (let i = 0; i + n <= ids.length; i++) {
    const key = ids.slice(i, i + n).join(',');
    const g = groups.get(key);
    if (g) g.push(i);
    else groups.set(key, [i]);
  }
  const inside = new Uint8Array(ids.length);
  for (const starts of groups.values()) {
    if (starts.length < 2) continue;
    for (const s of starts) for (let j = s; j < s + n; j++) inside[j] = 1;
  }
  let c = 0;
  for (const v of inside) c += v;
  return c / ids.length;
}

/**
 * First step where a loop starts: the smallest s such that ids[s..] is periodic with some
 * period p ≤ maxPeriod and spans at least two full periods (ids[j] = ids[j+p] for all
 * j ≥ s). null when the sequence does not end in a loop.
 */
export function loopStart(ids: readonly number[], maxPeriod = 32): { step: number; period: number } | null {
  let best: { step: number; period: number } | null = null;
  for (let p = 1; p <= Math.min(maxPeriod, Math.floor(ids.length / 2)); p++) {
    let s = ids.length - p;
    while (s - 1 >= 0 && ids[s - 1] === ids[s - 1 + p]) s--;
    if (ids.length - s >= 2 * p && (!best || s < best.step)) best = { step: s, period: p };
  }
  return best;
}
