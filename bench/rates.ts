// Arithmetic the bench's bounds are made of: the GEMM rate onnxruntime reaches here, and the
// FLOPs of a full analysis and of one generation step.
import { GraphBuilder } from '../src/engine/onnx/builder';
import { createSession } from '../src/engine/runtime/ort';
import type { ModelSpec } from '../src/engine/arch/spec';

/**
 * GEMM rate (GFLOP/s) of onnxruntime MatMul [M,K]×[K,N]: the fastest of 12 runs after 3 warm-ups.
 * The product is reduced to one number per row inside the graph, and the session keeps its arena,
 * so what is timed is the product itself: fetching [M, N] (a copy into JS) and mapping fresh pages
 * for it on every run (these VMs fault pages in at about 8 µs each) had made the measured rate
 * a third to a half of what the lens's own products reach (2026-12-06, a Zen 5 EPYC VM: 120–147
 * against 330 GFLOP/s), and the FLOP bound longer than our measured time.
 */
export async function gemmRate(M: number, K: number, N: number, threads: number): Promise<number> {
  const g = new GraphBuilder('gemm');
  const a = g.input('a', 'float32', [M, K]);
  const w = new Float32Array(K * N);
  for (let i = 0; i < w.length; i++) w[i] = ((i * 2654435761) % 1000) / 1000 - 0.5;
  const y = g.op('MatMul', [a, g.initializer('w', w, [K, N])]);
  g.output('y', g.op('ReduceMax', [y], { axes: [1], keepdims: 0 }), 'float32', [M]);
  const s = await createSession(g.encode(), { threads, executionProvider: 'cpu', arena: true });
  const x = new Float32Array(M * K).map((_, i) => (i % 7) / 7);
  let best = Infinity;
  for (let i = 0; i < 15; i++) {
    const t = performance.now();
    await s.run({ a: { data: x, dims: [M, K] } }, ['y']);
    if (i >= 3) best = Math.min(best, performance.now() - t);
  }
  await s.release();
  return (2 * M * K * N) / (best / 1000) / 1e9;
}

/** FLOPs of one full analysis: forward (dense, full attention squares) + lens over n_layers+1 rows. */
export function analysisFlops(s: ModelSpec, T: number): { model: number; lens: number } {
  const q = s.nHeads * s.headDim;
  const kv = s.nKvHeads * s.headDim;
  const perLayer = 2 * T * (s.dModel * (q + 2 * kv) + q * s.dModel) + 2 * T * s.dModel * s.dMlp * (s.gatedMlp ? 3 : 2) + 4 * T * T * q;
  return { model: s.nLayers * perLayer + 2 * s.dModel * s.dVocab, lens: 2 * (s.nLayers + 1) * T * s.dModel * s.dVocab };
}

/** FLOPs of one generation step (one new token) at context C with a KV cache. */
export function stepFlops(s: ModelSpec, C: number): number {
  const q = s.nHeads * s.headDim;
  const kv = s.nKvHeads * s.headDim;
  const perLayer = 2 * (s.dModel * (q + 2 * kv) + q * s.dModel) + 2 * s.dModel * s.dMlp * (s.gatedMlp ? 3 : 2) + 4 * C * q;
  return s.nLayers * perLayer + 2 * s.dModel * s.dVocab;
}
