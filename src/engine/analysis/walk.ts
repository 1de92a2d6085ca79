// Per-layer measures of the walk (METRICS.md "Per-layer measures"). Pure functions over
// the residual stream `resid` [rows, pos, d_model] where rows = n_layers + 1
// (row 0 = resid_pre[0], row L+1 = resid_post[L]).

export interface WalkShape {
  rows: number;
  pos: number;
  d: number;
}

function dot(a: Float32Array, ao: number, b: Float32Array, bo: number, d: number): number {
  let s = 0;
  for (let i = 0; i < d; i++) s += a[ao + i]! * b[bo + i]!;
  return s;
}

/** ||x||_2 for every row × position → [rows, pos]. */
export function norms(resid: Float32Array, s: WalkShape): Float32Array {
  const out = new Float32Array(s.rows * s.pos);
  for (let i = 0; i < s.rows * s.pos; i++) out[i] = Math.sqrt(dot(resid, i * s.d, resid, i * s.d, s.d));
  return out;
}

export function cosine(a: Float32Array, ao: number, b: Float32Array, bo: number, d: number): number {
  const na = Math.sqrt(dot(a, ao, a, ao, d));
  const nb = Math.sqrt(dot(b, bo, b, bo, d));
  if (na === 0 || nb === 0) return 0;
  return dot(a, ao, b, bo, d) / (na * nb);
}

/**
 * step[L] = ||resid_post[L] − resid_pre[L]|| and stepCos[L] = cos(resid_pre[L], resid_post[L])
 * for L = 0..n_layers−1 → both [n_layers, pos].
 */
export function steps(resid: Float32Array, s: WalkShape): { size: Float32Array; cos: Float32Array } {
  const nL = s.rows - 1;
  const size = new Float32Array(nL * s.pos);
  const cos = new Float32Array(nL * s.pos);
  for (let L = 0; L < nL; L++) {
    for (let p = 0; p < s.pos; p++) {
      const a = (L * s.pos + p) * s.d;
      const b = ((L + 1) * s.pos + p) * s.d;
      let sq = 0;
      for (let i = 0; i < s.d; i++) {
        const diff = resid[b + i]! - resid[a + i]!;
        sq += diff * diff;
      }
      size[L * s.pos + p] = Math.sqrt(sq);
      cos[L * s.pos + p] = cosine(resid, a, resid, b, s.d);
    }
  }
  return { size, cos };
}

/** cos(x_row, x_final) with x_final = resid_post[n_layers−1] → [rows, pos]. */
export function cosToFinal(resid: Float32Array, s: WalkShape): Float32Array {
  const out = new Float32Array(s.rows * s.pos);
  const last = s.rows - 1;
  for (let r = 0; r < s.rows; r++) {
    for (let p = 0; p < s.pos; p++) out[r * s.pos + p] = cosine(resid, (r * s.pos + p) * s.d, resid, (last * s.pos + p) * s.d, s.d);
  }
  return out;
}

/** S[i][j] = cos(x_i, x_j) for the vectors of one row (layer) → [pos, pos], full and symmetric. */
export function similarityMatrix(resid: Float32Array, s: WalkShape, row: number): Float32Array {
  const T = s.pos;
  const unit = new Float32Array(T * s.d);
  for (let p = 0; p < T; p++) {
    const o = (row * T + p) * s.d;
    const n = Math.sqrt(dot(resid, o, resid, o, s.d)) || 1;
    for (let i = 0; i < s.d; i++) unit[p * s.d + i] = resid[o + i]! / n;
  }
  const out = new Float32Array(T * T);
  for (let i = 0; i < T; i++) {
    for (let j = 0; j <= i; j++) {
      const c = dot(unit, i * s.d, unit, j * s.d, s.d);
      out[i * T + j] = c;
      out[j * T + i] = c;
    }
  }
  return out;
}
