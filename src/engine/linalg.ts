// Dense linear algebra for the analyses, run by onnxruntime (tens of GFLOP/s) instead of
// JavaScript loops: the covariance behind the PCA of the walk, the products of its subspace
// iteration, the projection onto its components, and cosine-similarity matrices. Multi-threaded like the model (the `threads` setting).
import { GraphBuilder } from './onnx/builder';
import { createSession, type RuntimeOptions, type Session } from './runtime/ort';

export interface LinAlg {
  /** mean [d] and covariance XcᵀXc/(n−1) [d, d] of points X [n, d]. */
  covariance(points: Float32Array, n: number, d: number): Promise<{ mean: Float32Array; cov: Float32Array }>;
  /** Q·C for Q [m, d] and a symmetric C [d, d] (= (C·Qᵀ)ᵀ: the PCA's subspace-iteration product). */
  symmetricProduct(q: Float32Array, m: number, c: Float32Array, d: number): Promise<Float32Array>;
  /** S[i][j] = cos(x_i, x_j) for rows of X [n, d] → [n, n]. */
  cosineMatrix(x: Float32Array, n: number, d: number): Promise<Float32Array>;
  /** (X − mean)·Pᵀ for points X [n, d], mean [d] and components P [k, d] → [n, k]. */
  project(x: Float32Array, n: number, d: number, mean: Float32Array, components: Float32Array, k: number): Promise<Float32Array>;
  release(): Promise<void>;
}

function covarianceGraph(): Uint8Array {
  const g = new GraphBuilder('covariance');
  const x = g.input('x', 'float32', ['n', 'd']);
  const mean = g.op('ReduceMean', [x], { axes: [0], keepdims: 1 }); // [1, d]
  const xc = g.op('Sub', [x, mean]);
  const n = g.cast(g.op('Gather', [g.op('Shape', [x]), g.ints([0], true)], { axis: 0 }), 'float32');
  const denom = g.op('Max', [g.op('Sub', [n, g.float(1)]), g.float(1)]);
  // Gemm reads xc transposed in place: no [d, n] copy of the points (41 MB at 1024 tokens of
  // GPT-2-small, kept by the session's arena after the run)
  const cov = g.op('Div', [g.op('Gemm', [xc, xc], { transA: 1 }), denom]);
  g.output('mean', g.op('Squeeze', [mean, g.ints([0])]), 'float32', ['d']);
  g.output('cov', cov, 'float32', ['d', 'd']);
  return g.encode();
}

function projectGraph(): Uint8Array {
  const g = new GraphBuilder('project');
  const x = g.input('x', 'float32', ['n', 'd']);
  const mean = g.input('mean', 'float32', [1, 'd']);
  const p = g.input('p', 'float32', ['k', 'd']);
  // X·Pᵀ − mean·Pᵀ: no centred copy of X
  const pT = g.op('Transpose', [p], { perm: [1, 0] });
  g.output('y', g.op('Sub', [g.op('MatMul', [x, pT]), g.op('MatMul', [mean, pT])]), 'float32', ['n', 'k']);
  return g.encode();
}

function productGraph(): Uint8Array {
  const g = new GraphBuilder('product');
  const q = g.input('q', 'float32', ['m', 'd']);
  const c = g.input('c', 'float32', ['d', 'd']);
  g.output('y', g.op('MatMul', [q, c]), 'float32', ['m', 'd']);
  return g.encode();
}

function cosineGraph(): Uint8Array {
  const g = new GraphBuilder('cosine');
  const x = g.input('x', 'float32', ['n', 'd']);
  const norm = g.op('Sqrt', [g.op('ReduceSum', [g.op('Mul', [x, x]), g.ints([1])], { keepdims: 1 })]);
  const unit = g.op('Div', [x, g.op('Max', [norm, g.float(1e-30)])]);
  g.output('s', g.op('MatMul', [unit, g.op('Transpose', [unit], { perm: [1, 0] })]), 'float32', ['n', 'n']);
  return g.encode();
}

export async function createLinAlg(opts: RuntimeOptions): Promise<LinAlg> {
  const sessions: Session[] = [];
  try {
    for (const graph of [covarianceGraph(), productGraph(), cosineGraph(), projectGraph()])
      sessions.push(await createSession(graph, { ...opts, executionProvider: 'cpu', spin: false }));
  } catch (e) {
    for (const s of sessions) await s.release();
    throw e;
  }
  const [cov, prodS, cosS, projS] = sessions as [Session, Session, Session, Session];
  return {
    async covariance(points, n, d) {
      const out = await cov.run({ x: { data: points.subarray(0, n * d), dims: [n, d] } }, ['mean', 'cov']);
      return { mean: out.mean!.data as Float32Array, cov: out.cov!.data as Float32Array };
    },
    async symmetricProduct(q, m, c, d) {
      const out = await prodS.run(
        {
          q: { data: q, dims: [m, d] },
          c: { data: c.subarray(0, d * d), dims: [d, d] },
        },
        ['y'],
      );
      return out.y!.data as Float32Array;
    },
    async cosineMatrix(x, n, d) {
      const out = await cosS.run({ x: { data: x.subarray(0, n * d), dims: [n, d] } }, ['s']);
      return out.s!.data as Float32Array;
    },
    async project(x, n, d, mean, components, k) {
      const out = await projS.run(
        { x: { data: x.subarray(0, n * d), dims: [n, d] }, mean: { data: mean, dims: [1, d] }, p: { data: components, dims: [k, d] } },
        ['y'],
      );
      return out.y!.data as Float32Array;
    },
    async release() {
      for (const s of sessions) await s.release();
    },
  };
}
