// PCA of the walk (METRICS.md "PCA trajectories"): fitted on every point shown (all
// positions × all rows), centred; one basis for every token so paths are comparable.

export interface Pca {
  /** Component vectors [k, d], unit length. */
  components: Float32Array;
  /** Fraction of total variance per component [k]. */
  explained: number[];
  mean: Float32Array; // [d]
  k: number;
  d: number;
}

/** Mean [d] and covariance X_cᵀX_c / (n−1) [d, d] of row-major points [n, d] (reference). */
export function covariance(points: Float32Array, n: number, d: number): { mean: Float64Array; cov: Float64Array } {
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j]! += points[i * d + j]!;
  for (let j = 0; j < d; j++) mean[j]! /= n;
  const cov = new Float64Array(d * d);
  const row = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) row[j] = points[i * d + j]! - mean[j]!;
    for (let a = 0; a < d; a++) {
      const ra = row[a]!;
      if (ra === 0) continue;
      const off = a * d;
      for (let b = a; b < d; b++) cov[off + b]! += ra * row[b]!;
    }
  }
  const div = Math.max(1, n - 1);
  for (let a = 0; a < d; a++) {
    for (let b = a; b < d; b++) {
      const v = cov[a * d + b]! / div;
      cov[a * d + b] = v;
      cov[b * d + a] = v;
    }
  }
  return { mean, cov };
}

/** A small deterministic PRNG (mulberry32) so PCA is reproducible run to run. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Orthonormalises the k columns of Q in place (stored column by column: column c is
 * Q[c·d … c·d+d)): Gram–Schmidt done twice ("twice is enough"), and a column that vanishes
 * (lies in the span of the others) is replaced by a fresh direction, so Q stays orthonormal
 * even when C has a null space.
 */
function orthonormalize(Q: Float64Array, d: number, k: number, rand: () => number = mulberry32(99)): void {
  for (let c = 0; c < k; c++) {
    const qc = c * d;
    for (let attempt = 0; attempt < 4; attempt++) {
      let before = 0;
      for (let i = 0; i < d; i++) before += Q[qc + i]! ** 2;
      for (let pass = 0; pass < 2; pass++) {
        for (let p = 0; p < c; p++) {
          const qp = p * d;
          let s = 0;
          for (let i = 0; i < d; i++) s += Q[qc + i]! * Q[qp + i]!;
          for (let i = 0; i < d; i++) Q[qc + i]! -= s * Q[qp + i]!;
        }
      }
      let n = 0;
      for (let i = 0; i < d; i++) n += Q[qc + i]! ** 2;
      if (n > 1e-20 * Math.max(before, 1e-300) && n > 0) {
        n = Math.sqrt(n);
        for (let i = 0; i < d; i++) Q[qc + i]! /= n;
        break;
      }
      for (let i = 0; i < d; i++) Q[qc + i] = rand() - 0.5;
    }
  }
}

/** out = C·Q for C [d, d] row-major and Q, out stored column by column ([m][d]). */
function mulColumns(C: Float64Array, Q: Float64Array, out: Float64Array, d: number, m: number): void {
  for (let i = 0; i < d; i++) {
    const off = i * d;
    for (let c = 0; c < m; c++) {
      const qc = c * d;
      let s = 0;
      for (let j = 0; j < d; j++) s += C[off + j]! * Q[qc + j]!;
      out[qc + i] = s;
    }
  }
}

/** Eigen-decomposition of a small symmetric matrix (cyclic Jacobi). */
export function symmetricEigen(A: Float64Array, n: number): { values: number[]; vectors: Float64Array } {
  const a = Float64Array.from(A);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q]! ** 2;
    if (off < 1e-30) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q]!;
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (a[q * n + q]! - a[p * n + p]!) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p]!;
          const akq = a[k * n + q]!;
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k]!;
          const aqk = a[q * n + k]!;
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p]!;
          const vkq = v[k * n + q]!;
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  return { values: Array.from({ length: n }, (_, i) => a[i * n + i]!), vectors: v };
}

/** A product W = C·Q the iteration needs (Q, W: m columns of length d, stored column by column). */
interface ProductRequest {
  Q: Float64Array;
  W: Float64Array;
  m: number;
}

/**
 * Top-k principal components from a covariance matrix [d, d] by subspace iteration with a
 * Rayleigh–Ritz step. Signs are fixed so each component's largest-magnitude entry is positive.
 * A generator: it yields every product C·Q it needs, so the products (d²·m multiply-adds each,
 * the whole cost) can run in JavaScript or in onnxruntime.
 */
function* subspacePca(cov: Float64Array, mean: Float64Array | Float32Array, d: number, k: number): Generator<ProductRequest, Pca, void> {
  const kk = Math.min(k, d);
  const m = Math.min(d, kk + 4); // oversampling speeds convergence
  const rand = mulberry32(1234);
  // Q [d, m] is kept column by column (Q[col·d + i]) so every product is a contiguous dot product.
  let Q = new Float64Array(d * m);
  for (let i = 0; i < d; i++) for (let col = 0; col < m; col++) Q[col * d + i] = rand() - 0.5;
  orthonormalize(Q, d, m);
  let W = new Float64Array(d * m);
  for (let it = 0; it < 300; it++) {
    yield { Q, W, m };
    orthonormalize(W, d, m);
    let change = 0;
    for (let col = 0; col < kk; col++) {
      let s = 0;
      for (let i = 0; i < d; i++) s += W[col * d + i]! * Q[col * d + i]!;
      change = Math.max(change, 1 - Math.abs(s));
    }
    [Q, W] = [W, Q];
    if ((change < 1e-10 && it > 5) || it >= 120) break; // the Rayleigh–Ritz step below refines
  }
  // Rayleigh–Ritz: B = Qᵀ C Q (m × m)
  const CQ = new Float64Array(d * m);
  yield { Q, W: CQ, m };
  const B = new Float64Array(m * m);
  for (let a = 0; a < m; a++)
    for (let b = 0; b < m; b++) {
      let s = 0;
      for (let i = 0; i < d; i++) s += Q[a * d + i]! * CQ[b * d + i]!;
      B[a * m + b] = s;
    }
  const { values, vectors } = symmetricEigen(B, m);
  const order = values.map((v, i) => [v, i] as const).sort((x, y) => y[0] - x[0]);
  let total = 0;
  for (let i = 0; i < d; i++) total += cov[i * d + i]!;
  const components = new Float32Array(kk * d);
  const explained: number[] = [];
  for (let c = 0; c < kk; c++) {
    const [val, idx] = order[c]!;
    let maxAbs = 0;
    let sign = 1;
    const vec = new Float64Array(d);
    for (let i = 0; i < d; i++) {
      let s = 0;
      for (let j = 0; j < m; j++) s += Q[j * d + i]! * vectors[j * m + idx]!;
      vec[i] = s;
      if (Math.abs(s) > maxAbs) {
        maxAbs = Math.abs(s);
        sign = s < 0 ? -1 : 1;
      }
    }
    for (let i = 0; i < d; i++) components[c * d + i] = sign * vec[i]!;
    explained.push(total > 0 ? Math.max(0, val) / total : 0);
  }
  return { components, explained, mean: Float32Array.from(mean), k: kk, d };
}

/** Top-k principal components of a covariance matrix, all in JavaScript (reference path). */
export function pcaFromCovariance(cov: Float64Array, mean: Float64Array | Float32Array, d: number, k: number): Pca {
  const steps = subspacePca(cov, mean, d, k);
  for (let r = steps.next(); ; r = steps.next()) {
    if (r.done) return r.value;
    mulColumns(cov, r.value.Q, r.value.W, d, r.value.m);
  }
}

/** The same, with the products C·Q computed by `product` (the engine: onnxruntime). */
export async function pcaFromCovarianceWith(
  cov: Float64Array,
  mean: Float64Array | Float32Array,
  d: number,
  k: number,
  product: (Q: Float64Array, W: Float64Array, m: number) => Promise<void>,
): Promise<Pca> {
  const steps = subspacePca(cov, mean, d, k);
  for (let r = steps.next(); ; r = steps.next()) {
    if (r.done) return r.value;
    await product(r.value.Q, r.value.W, r.value.m);
  }
}

/** Projects points [n, d] onto the components → [n, k]. */
export function project(points: Float32Array, n: number, pca: Pca): Float32Array {
  const { d, k } = pca;
  const out = new Float32Array(n * k);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < k; c++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += (points[i * d + j]! - pca.mean[j]!) * pca.components[c * d + j]!;
      out[i * k + c] = s;
    }
  }
  return out;
}

/**
 * The fraction of the points' total variance along each of k axes, given the points' coordinates
 * on them [n, k] (axes of another set of points: how much of *these* points' spread they show).
 */
export function explainedAlong(points: Float32Array, n: number, d: number, coords: Float32Array, k: number): number[] {
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j]! += points[i * d + j]!;
  for (let j = 0; j < d; j++) mean[j]! /= n;
  let total = 0;
  for (let i = 0; i < n; i++)
    for (let j = 0; j < d; j++) {
      const v = points[i * d + j]! - mean[j]!;
      total += v * v;
    }
  return Array.from({ length: k }, (_, c) => {
    let m = 0;
    for (let i = 0; i < n; i++) m += coords[i * k + c]!;
    m /= n;
    let s = 0;
    for (let i = 0; i < n; i++) s += (coords[i * k + c]! - m) ** 2;
    return total > 0 ? s / total : NaN;
  });
}

/** PCA of points [n, d] in one call (reference path; the engine computes the covariance in onnxruntime). */
export function pca(points: Float32Array, n: number, d: number, k: number): Pca {
  const { mean, cov } = covariance(points, n, d);
  return pcaFromCovariance(cov, mean, d, k);
}
