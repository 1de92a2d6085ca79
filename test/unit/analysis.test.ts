// The pure analyses of METRICS.md on hand-made arrays with known answers.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { cosToFinal, norms, similarityMatrix, steps } from '../../src/engine/analysis/walk';
import { covariance, pca, pcaFromCovariance, project, symmetricEigen } from '../../src/engine/analysis/pca';
import { distinctN, loopStart, repeatedNgrams, repetitionRate } from '../../src/engine/analysis/repetition';
import { onnx } from 'onnx-proto';
import { assertClose, FIXTURES, ROOT } from '../helpers';
import { openCheckpoint } from '../../src/engine/checkpoint/hf';
import { specFromConfig } from '../../src/engine/arch/spec';
import { weightReader } from '../../src/engine/arch/weights';
import { buildLensGraph } from '../../src/engine/graph/lens';
import { loadModel } from '../../src/engine/model';
import { analyze } from '../../src/engine/analyze';
import { runtimeClock } from '../../src/engine/runtime/ort';
import { applyLnFinal } from '../../src/engine/queries';
import * as path from 'node:path';

const BUNDLED = path.join(ROOT, 'media', 'models', 'td-mini');

// rows = 3 (resid_pre[0], resid_post[0], resid_post[1]), pos = 2, d = 2
const resid = Float32Array.of(
  3,
  4,
  /**/ 1,
  0, // row 0
  0,
  5,
  /**/ 0,
  2, // row 1
  6,
  8,
  /**/ 0,
  1, // row 2 (final)
);
const shape = { rows: 3, pos: 2, d: 2 };

describe('walk measures', () => {
  test('norms', () => {
    assertClose(norms(resid, shape), [5, 1, 5, 2, 10, 1], 1e-6, 'norms');
  });

  test('steps: size and cosine between consecutive rows', () => {
    const s = steps(resid, shape);
    // pos 0: (3,4)→(0,5): diff (-3,1) → √10; cos = 20/25 = 0.8. (0,5)→(6,8): diff (6,3) → √45; cos = 40/50
    assertClose(s.size, [Math.sqrt(10), Math.sqrt(5), Math.sqrt(45), 1], 1e-6, 'step size');
    assertClose(s.cos, [0.8, 0, 0.8, 1], 1e-6, 'step cos');
  });

  test('cos_to_final', () => {
    assertClose(cosToFinal(resid, shape), [1, 0, 0.8, 1, 1, 1], 1e-6, 'cos_to_final');
  });

  test('similarity matrix is symmetric with ones on the diagonal', () => {
    const S = similarityMatrix(resid, shape, 0);
    assertClose(S, [1, 0.6, 0.6, 1], 1e-6, 'similarity row 0');
  });
});

describe('PCA', () => {
  test('recovers the direction of largest variance and the explained variance', () => {
    // points on a line along (1, 2, 0)/√5 plus a small orthogonal spread along z
    const n = 50;
    const pts = new Float32Array(n * 3);
    for (let i = 0; i < n; i++) {
      const t = i - n / 2;
      pts[i * 3] = 10 + t;
      pts[i * 3 + 1] = -3 + 2 * t;
      pts[i * 3 + 2] = i % 2 ? 0.5 : -0.5;
    }
    const p = pca(pts, n, 3, 2);
    const c0 = Array.from(p.components.subarray(0, 3));
    assertClose(c0, [1 / Math.sqrt(5), 2 / Math.sqrt(5), 0], 1e-3, 'first component ≈ the line');
    // exact answer: full eigen-decomposition (Jacobi) of the covariance
    const { cov } = covariance(pts, n, 3);
    const eig = symmetricEigen(cov, 3);
    const order = eig.values.map((v, i) => [v, i] as const).sort((a, b) => b[0] - a[0]);
    for (let c = 0; c < 2; c++) {
      const idx = order[c]![1];
      const exact = [0, 1, 2].map((r) => eig.vectors[r * 3 + idx]!);
      const sign = Math.sign(exact[exact.map(Math.abs).indexOf(Math.max(...exact.map(Math.abs)))]!);
      assertClose(
        p.components.subarray(c * 3, c * 3 + 3),
        exact.map((v) => v * sign),
        1e-6,
        `component ${c}`,
      );
      const total = cov[0]! + cov[4]! + cov[8]!;
      assertClose([p.explained[c]!], [order[c]![0] / total], 1e-9, `explained variance ${c}`);
    }
    assert.ok(p.explained[0]! > 0.999);
    const proj = project(pts, n, p);
    let mean0 = 0;
    for (let i = 0; i < n; i++) mean0 += proj[i * 2]!;
    assert.ok(Math.abs(mean0 / n) < 1e-4, 'projections are centred');
  });

  test('symmetric eigen-decomposition', () => {
    const { values, vectors } = symmetricEigen(Float64Array.of(2, 1, 1, 2), 2);
    const sorted = [...values].sort((a, b) => b - a);
    assertClose(sorted, [3, 1], 1e-12, 'eigenvalues');
    const i3 = values.indexOf(Math.max(...values));
    assertClose([Math.abs(vectors[i3]!), Math.abs(vectors[2 + i3]!)], [Math.SQRT1_2, Math.SQRT1_2], 1e-12, 'eigenvector');
  });

  test('is deterministic and sign-stable', () => {
    const cov = Float64Array.of(4, 1, 0, 1, 3, 0, 0, 0, 1);
    const a = pcaFromCovariance(cov, new Float64Array(3), 3, 3);
    const b = pcaFromCovariance(cov, new Float64Array(3), 3, 3);
    assert.deepEqual(a.components, b.components);
    assertClose([a.explained.reduce((s, v) => s + v, 0)], [1], 1e-9, 'all variance explained');
  });
});

describe('repetition', () => {
  test('repeated n-grams: maximal repeats only, longest first', () => {
    // 5 6 7 | 1 | 5 6 7 | 2 | 9
    const found = repeatedNgrams([5, 6, 7, 1, 5, 6, 7, 2, 9], 1, 8);
    assert.deepEqual(found, [{ n: 3, ids: [5, 6, 7], positions: [0, 4] }]);
  });

  test('repeated n-grams: a shorter repeat outside the longer one is kept', () => {
    // "1 2" occurs at 0 and 3 and also inside nothing longer → kept; "2" also at 5 outside "1 2"
    const found = repeatedNgrams([1, 2, 3, 1, 2, 2], 1, 8);
    assert.deepEqual(found, [
      { n: 2, ids: [1, 2], positions: [0, 3] },
      { n: 1, ids: [2], positions: [1, 4, 5] },
    ]);
  });

  test('distinct-n', () => {
    assert.equal(distinctN([1, 2, 1, 2], 1), 0.5);
    assert.equal(distinctN([1, 2, 1, 2], 2), 2 / 3);
    assert.equal(distinctN([1], 2), 1);
  });

  test('repetition rate = fraction of tokens inside a repeated 4-gram', () => {
    assert.equal(repetitionRate([1, 2, 3, 4, 9, 1, 2, 3, 4, 8]), 0.8);
    assert.equal(repetitionRate([1, 2, 3, 4, 5, 6]), 0);
    assert.equal(repetitionRate([]), 0);
  });

  test('loop start', () => {
    assert.deepEqual(loopStart([9, 8, 1, 2, 3, 1, 2, 3, 1, 2, 3]), { step: 2, period: 3 });
    assert.deepEqual(loopStart([4, 5, 7, 7, 7, 7]), { step: 2, period: 1 });
    assert.equal(loopStart([1, 2, 3, 4, 5]), null);
  });
});

describe('angular proximity in the lens graph', () => {
  // td-mini: tied; gemma2: tied with final soft-capping (the cosine uses the logits before it);
  // qwen2: untied (the cosine reads W_E rows, the logits W_U)
  const MODELS = [BUNDLED, path.join(FIXTURES, 'hf-transformers', 'gemma2'), path.join(FIXTURES, 'hf-transformers', 'qwen2')];
  for (const dir of MODELS) {
    test(`cos_next and cos_pred equal cos(ln_final(x), W_E[t]) computed here (${path.basename(dir)})`, async () => {
      const ckpt = openCheckpoint(dir);
      const spec = specFromConfig(ckpt.config);
      const wE = weightReader(spec, ckpt.weights).globals().embed;
      const m = await loadModel(dir, { threads: 1, executionProvider: 'cpu' });
      try {
        const ids = Array.from({ length: 11 }, (_, i) => (i * 37 + 5) % spec.dVocab);
        const k = 3;
        const a = await analyze(m, { ids, topK: k, maxTokens: 64, patterns: false });
        const { resid, pos: T, d_model: d } = a.cache;
        const rows = a.cache.n_layers + 1;
        const cos = (x: Float32Array, t: number) => {
          let dot = 0;
          let ex = 0;
          for (let i = 0; i < d; i++) {
            dot += x[i]! * wE[t * d + i]!;
            ex += wE[t * d + i]! ** 2;
          }
          return dot / (Math.hypot(...x) * Math.sqrt(ex));
        };
        const next: number[] = [];
        const pred: number[] = [];
        for (let r = 0; r < rows; r++)
          for (let p = 0; p < T; p++) {
            const x = applyLnFinal(m.spec, m.lnFinal, resid, (r * T + p) * d);
            next.push(p + 1 < T ? cos(x, ids[p + 1]!) : NaN);
            pred.push(cos(x, a.lens.topIds[((rows - 1) * T + p) * k]!));
          }
        // no next token at the last position: NaN there, and only there
        const last = (i: number) => i % T === T - 1;
        assert.ok(Array.from(a.lens.cosNext).every((v, i) => Number.isNaN(v) === last(i)));
        assertClose(
          Array.from(a.lens.cosNext).filter((_, i) => !last(i)),
          next.filter((_, i) => !last(i)),
          1e-5,
          'cos to the next token',
        );
        assertClose(a.lens.cosPred, pred, 1e-5, "cos to the final layer's top-1");
      } finally {
        await m.release();
      }
    });
  }

  test('a tied lens reads W_E through the unembedding product alone, so pre-packing replaces it', () => {
    for (const [dir, tied] of [
      [BUNDLED, true],
      [path.join(FIXTURES, 'hf-transformers', 'qwen2'), false],
    ] as const) {
      const ckpt = openCheckpoint(dir);
      const spec = specFromConfig(ckpt.config);
      const globals = weightReader(spec, ckpt.weights).globals();
      assert.equal(globals.unembed === globals.embed, tied, dir);
      const proto = onnx.ModelProto.decode(buildLensGraph(spec, globals).encode());
      const readers = (name: string) => proto.graph!.node!.filter((n) => n.input!.includes(name)).map((n) => n.opType);
      // the unembedding: W_E when tied, W_U otherwise — one Gemm and nothing else
      assert.deepEqual(readers(tied ? 'W_E' : 'W_U'), ['Gemm'], dir);
      if (!tied) assert.deepEqual(readers('W_E'), ['Gather', 'Gather'], dir);
    }
  });
});

describe('walk PCA in the engine', () => {
  test('onnxruntime products give the JavaScript reference PCA (bundled model)', async () => {
    const m = await loadModel(BUNDLED, { threads: 1, executionProvider: 'cpu' });
    try {
      const a = await analyze(m, {
        text: 'It is a truth universally acknowledged, that a single man',
        topK: 3,
        maxTokens: 64,
        patterns: false,
      });
      const n = (a.cache.n_layers + 1) * a.cache.pos;
      const ref = pca(a.cache.resid, n, a.cache.d_model, 3);
      assertClose(a.walk.pca.explained, ref.explained, 1e-5, 'explained variance');
      const coords = project(a.cache.resid, n, ref);
      let scale = 0;
      for (const v of coords) scale = Math.max(scale, Math.abs(v));
      assertClose(a.walk.pca.coords, coords, 1e-4 * scale, 'coordinates');
    } finally {
      await m.release();
    }
  });

  test("the lens graph's per-position measures equal the JavaScript definitions (bundled model)", async () => {
    const m = await loadModel(BUNDLED, { threads: 1, executionProvider: 'cpu' });
    try {
      const a = await analyze(m, { text: 'The sea was calm, and the sky was calm.', topK: 3, maxTokens: 64, patterns: false });
      const c = a.cache;
      const shape = { rows: c.n_layers + 1, pos: c.pos, d: c.d_model };
      const rel = (x: Float32Array) => 1e-5 * Math.max(1, ...Array.from(x, Math.abs));
      const ref = norms(c.resid, shape);
      assertClose(a.walk.norms, ref, rel(ref), 'norms');
      const st = steps(c.resid, shape);
      assertClose(a.walk.stepSize, st.size, rel(st.size), 'step sizes');
      assertClose(a.walk.stepCos, st.cos, 1e-5, 'step cosines');
      assertClose(a.walk.cosToFinal, cosToFinal(c.resid, shape), 1e-5, 'cos to final');
      const final = Float32Array.from({ length: shape.rows * shape.pos }, (_, i) =>
        Math.hypot(...applyLnFinal(m.spec, m.lnFinal, c.resid, i * shape.d)),
      );
      assertClose(a.walk.normsFinal, final, rel(final), 'norms after ln_final');
    } finally {
      await m.release();
    }
  });

  test('timings split each phase into onnxruntime and the rest', async () => {
    const m = await loadModel(BUNDLED, { threads: 1, executionProvider: 'cpu' });
    try {
      const clock = runtimeClock();
      const a = await analyze(m, { text: 'The sea was calm, and the sky was calm.', topK: 3, maxTokens: 64, patterns: false });
      const t = a.timings;
      const r = t.runtime!;
      assert.ok(r, 'timings.runtime');
      // the forward pass, the lens and the metrics each run onnxruntime sessions; tokenizing does not
      for (const phase of ['forwardMs', 'lensMs', 'metricsMs'] as const) {
        assert.ok(r[phase] > 0, `${phase}: some time inside onnxruntime`);
        assert.ok(r[phase] <= t[phase] + 0.01, `${phase}: ${r[phase]} ms inside onnxruntime ≤ the phase's ${t[phase]} ms`);
      }
      assert.equal(r.tokenizeMs, 0);
      const sum = r.tokenizeMs + r.forwardMs + r.lensMs + r.metricsMs;
      assert.ok(Math.abs(runtimeClock() - clock - sum) < 1e-6, 'the clock advanced by the phases’ sum');
    } finally {
      await m.release();
    }
  });
});
