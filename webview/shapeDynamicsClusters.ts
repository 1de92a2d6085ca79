// Encoding-walk clusters: the similarity matrix reordered by the dendrogram's leaf order, flat
// clusters from cutting the dendrogram at a merge height (the engine's cutTree, ported), the
// clusters as contiguous bands of that order, and the dendrogram's links for drawing.
import type { ClustersResult } from '../src/shared/analysis';

export type Merge = ClustersResult['merges'][number];

/** True when `v` is a ClustersResult for T positions: an order that is a permutation and T−1 merges. */
export function isClusters(v: unknown, T: number): v is ClustersResult {
  if (!v || typeof v !== 'object') return false;
  const c = v as ClustersResult;
  if (!(c.similarity instanceof Float32Array) || c.similarity.length !== T * T) return false;
  if (!Array.isArray(c.order) || c.order.length !== T || !Array.isArray(c.merges) || c.merges.length !== Math.max(0, T - 1)) return false;
  const seen = new Uint8Array(T);
  for (const i of c.order) {
    if (!Number.isInteger(i) || i < 0 || i >= T || seen[i]) return false;
    seen[i] = 1;
  }
  return c.merges.every(
    (m, k) =>
      Number.isInteger(m.a) && Number.isInteger(m.b) && m.a < T + k && m.b < T + k && m.a >= 0 && m.b >= 0 && Number.isFinite(m.height),
  );
}

/**
 * Flat clusters: apply every merge with height ≤ threshold → a label per position (original
 * order), labels numbered 0.. in leaf order. Same result as the engine's cutTree.
 */
export function cutTree(merges: readonly Merge[], n: number, order: readonly number[], threshold: number): number[] {
  const parent = Int32Array.from({ length: n + merges.length }, (_, i) => i);
  const find = (x: number): number => {
    while (parent[x] !== x) x = parent[x] = parent[parent[x]!]!;
    return x;
  };
  merges.forEach((m, k) => {
    if (m.height <= threshold) {
      parent[find(m.a)] = n + k;
      parent[find(m.b)] = n + k;
    }
  });
  const labels = new Array<number>(n);
  const names = new Map<number, number>();
  for (const leaf of order) {
    const root = find(leaf);
    if (!names.has(root)) names.set(root, names.size);
    labels[leaf] = names.get(root)!;
  }
  return labels;
}

/** Number of clusters a cut at `threshold` gives. */
export function clusterCount(merges: readonly Merge[], n: number, threshold: number): number {
  return n - merges.filter((m) => m.height <= threshold).length;
}

/** Largest merge height (the slider's range), 0 without merges. */
export function maxHeight(merges: readonly Merge[]): number {
  let h = 0;
  for (const m of merges) if (Number.isFinite(m.height) && m.height > h) h = m.height;
  return h;
}

/**
 * A starting cut: about √n clusters — the middle of the widest gap between consecutive merge
 * heights among the cuts that leave between 0.6·k₀ and 1.6·k₀ clusters, k₀ = √n (at most
 * `maxK`). The slider moves it from there.
 */
export function defaultThreshold(merges: readonly Merge[], n: number, maxK = 12): number {
  const h = merges.map((m) => m.height).sort((a, b) => a - b);
  if (h.length === 0) return 0;
  if (h.length === 1) return h[0]! / 2;
  const k0 = Math.max(2, Math.min(maxK, Math.round(Math.sqrt(n))));
  const kLo = Math.max(2, Math.round(k0 * 0.6));
  const kHi = Math.min(n - 1, Math.max(kLo, Math.round(k0 * 1.6)));
  let best = -1;
  let bestGap = -Infinity;
  // cutting between h[m-1] and h[m] applies m merges and leaves n − m clusters
  for (let k = kLo; k <= kHi; k++) {
    const m = n - k;
    if (m < 1 || m >= h.length + 1 || m > h.length - 1) continue;
    const gap = h[m]! - h[m - 1]!;
    if (gap > bestGap) {
      bestGap = gap;
      best = m;
    }
  }
  if (best < 0) return h[h.length - 1]! / 2;
  return (h[best - 1]! + h[best]!) / 2;
}

export interface ClusterBand {
  label: number;
  /** Members in leaf order. */
  members: number[];
  /** [start, end) in the leaf order. */
  start: number;
  end: number;
}

/** The clusters as runs of the leaf order (a dendrogram cut is always contiguous in it). */
export function clusterBands(labels: readonly number[], order: readonly number[]): ClusterBand[] {
  const bands: ClusterBand[] = [];
  order.forEach((pos, i) => {
    const label = labels[pos]!;
    const last = bands[bands.length - 1];
    if (last && last.label === label) {
      last.members.push(pos);
      last.end = i + 1;
    } else bands.push({ label, members: [pos], start: i, end: i + 1 });
  });
  return bands;
}

/** z[i][j] = S[order[i]][order[j]]: the similarity matrix in leaf order (full, symmetric). */
export function reorderMatrix(sim: Float32Array, T: number, order: readonly number[]): number[][] {
  return order.map((a) => order.map((b) => sim[a * T + b]!));
}

/**
 * The dendrogram as line segments (NaN-separated x/y arrays, one ⊓ per merge): x is the
 * position in the leaf order (leaves at 0..n−1), y the merge height.
 */
export function dendrogramLines(merges: readonly Merge[], n: number, order: readonly number[]): { x: number[]; y: number[] } {
  const xOf = new Float64Array(n + merges.length);
  const yOf = new Float64Array(n + merges.length);
  order.forEach((leaf, i) => (xOf[leaf] = i));
  const x: number[] = [];
  const y: number[] = [];
  merges.forEach((m, k) => {
    const id = n + k;
    xOf[id] = (xOf[m.a]! + xOf[m.b]!) / 2;
    yOf[id] = m.height;
    x.push(xOf[m.a]!, xOf[m.a]!, xOf[m.b]!, xOf[m.b]!, NaN);
    y.push(yOf[m.a]!, m.height, m.height, yOf[m.b]!, NaN);
  });
  return { x, y };
}

/** Off-diagonal range of a similarity matrix (for the colour scale). */
export function similarityRange(sim: Float32Array, T: number): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < T; i++)
    for (let j = 0; j < T; j++) {
      if (i === j) continue;
      const v = sim[i * T + j]!;
      if (!Number.isFinite(v)) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  return lo <= hi ? [lo, hi] : [0, 1];
}

/** Mean pairwise similarity of a cluster's members (1 for a single member). */
export function cohesion(sim: Float32Array, T: number, members: readonly number[]): number {
  if (members.length < 2) return 1;
  let s = 0;
  let n = 0;
  for (let a = 0; a < members.length; a++)
    for (let b = a + 1; b < members.length; b++) {
      s += sim[members[a]! * T + members[b]!]!;
      n++;
    }
  return s / n;
}
