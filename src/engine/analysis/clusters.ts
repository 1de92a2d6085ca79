// Encoding-walk clusters (METRICS.md "aggregation clusters"): average-linkage hierarchical
// clustering of positions by the cosine distance 1 − cos of their residual-stream vectors at
// one layer. O(n²) with the nearest-neighbour-chain algorithm.

export interface Dendrogram {
  /** Leaf order that places every cluster's members next to each other. */
  order: number[];
  /** Merges in order of increasing height: clusters a and b (ids: leaves 0..n−1, merges n..) joined at `height`. */
  merges: { a: number; b: number; height: number; size: number }[];
  n: number;
}

/** Average-linkage clustering of a symmetric distance matrix [n, n]. */
export function averageLinkage(dist: Float64Array | Float32Array, n: number): Dendrogram {
  if (n === 0) return { order: [], merges: [], n };
  const D = Float64Array.from(dist);
  const size = new Float64Array(n).fill(1);
  const active = new Uint8Array(n).fill(1);
  const clusterId = Int32Array.from({ length: n }, (_, i) => i); // slot → cluster id
  const raw: { a: number; b: number; height: number; size: number }[] = [];
  const chain: number[] = [];
  let remaining = n;
  while (remaining > 1) {
    if (chain.length === 0) chain.push(active.indexOf(1));
    for (;;) {
      const x = chain[chain.length - 1]!;
      const prev = chain.length > 1 ? chain[chain.length - 2]! : -1;
      let best = -1;
      let bestD = Infinity;
      for (let y = 0; y < n; y++) {
        if (!active[y] || y === x) continue;
        const d = D[x * n + y]!;
        // prefer the previous chain element on ties so the chain terminates
        if (d < bestD || (d === bestD && y === prev)) {
          bestD = d;
          best = y;
        }
      }
      if (best === prev) {
        chain.pop();
        chain.pop();
        // merge x and prev into slot `prev`
        const [keep, drop] = [prev, x];
        raw.push({ a: clusterId[keep]!, b: clusterId[drop]!, height: bestD, size: size[keep]! + size[drop]! });
        for (let y = 0; y < n; y++) {
          if (!active[y] || y === keep || y === drop) continue;
          const v = (size[keep]! * D[keep * n + y]! + size[drop]! * D[drop * n + y]!) / (size[keep]! + size[drop]!);
          D[keep * n + y] = v;
          D[y * n + keep] = v;
        }
        size[keep] = size[keep]! + size[drop]!;
        active[drop] = 0;
        clusterId[keep] = n + raw.length - 1;
        remaining--;
        break;
      }
      chain.push(best);
    }
  }
  // NN-chain finds merges out of height order; renumber after sorting by height.
  const order = raw.map((_, i) => i).sort((i, j) => raw[i]!.height - raw[j]!.height || i - j);
  const newId = new Map<number, number>();
  order.forEach((oldIdx, k) => newId.set(n + oldIdx, n + k));
  const merges = order.map((oldIdx) => {
    const m = raw[oldIdx]!;
    const map = (c: number) => (c < n ? c : newId.get(c)!);
    return { a: map(m.a), b: map(m.b), height: m.height, size: m.size };
  });
  return { order: leafOrder(merges, n), merges, n };
}

function leafOrder(merges: Dendrogram['merges'], n: number): number[] {
  if (n === 1) return [0];
  const children = new Map<number, [number, number]>();
  merges.forEach((m, k) => children.set(n + k, [Math.min(m.a, m.b), Math.max(m.a, m.b)]));
  const out: number[] = [];
  const stack = [n + merges.length - 1];
  while (stack.length) {
    const c = stack.pop()!;
    const ch = children.get(c);
    if (!ch) out.push(c);
    else stack.push(ch[1], ch[0]);
  }
  return out;
}

/** Flat clusters: cut the dendrogram at a distance threshold → a label per leaf (0-based, in leaf order). */
export function cutTree(d: Dendrogram, threshold: number): number[] {
  const parent = Int32Array.from({ length: d.n + d.merges.length }, (_, i) => i);
  const find = (x: number): number => {
    while (parent[x] !== x) x = parent[x] = parent[parent[x]!]!;
    return x;
  };
  d.merges.forEach((m, k) => {
    if (m.height <= threshold) {
      parent[find(m.a)] = d.n + k;
      parent[find(m.b)] = d.n + k;
    }
  });
  const labels = new Array<number>(d.n);
  const names = new Map<number, number>();
  for (const leaf of d.order) {
    const root = find(leaf);
    if (!names.has(root)) names.set(root, names.size);
    labels[leaf] = names.get(root)!;
  }
  return labels;
}

/** Cosine distance matrix 1 − S from a similarity matrix. */
export function cosineDistance(similarity: Float32Array, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n * n; i++) out[i] = Math.max(0, 1 - similarity[i]!);
  for (let i = 0; i < n; i++) out[i * n + i] = 0;
  return out;
}
