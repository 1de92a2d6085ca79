// The MLP activations are written in the node order onnxruntime's graph optimizer fuses into one
// kernel on the CPU (FastGelu for the tanh GELU, Gelu/BiasGelu for the erf GELU, QuickGelu for
// SiLU) instead of 4–8 elementwise passes over [T, d_mlp]. A rewrite of activation() that
// breaks the pattern still computes the right numbers, so only these tests would notice: they
// read the optimized graph onnxruntime writes with the engine's own session options, and check
// the fused kernels' values against float64 formulas.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { onnx } from 'onnx-proto';
import { openCheckpoint } from '../../src/engine/checkpoint/hf';
import { specFromConfig, type ModelSpec } from '../../src/engine/arch/spec';
import { weightReader } from '../../src/engine/arch/weights';
import { activation, buildForwardGraph } from '../../src/engine/graph/forward';
import { GraphBuilder } from '../../src/engine/onnx/builder';
import { sessionOptions } from '../../src/engine/runtime/ort';
import { HF_DIR } from '../hfReference';
import { tmpDir } from '../helpers';

/** Node counts by op type of the graph onnxruntime runs (If branches included). */
async function optimizedOps(model: Uint8Array): Promise<Map<string, number>> {
  const file = path.join(tmpDir('td-fusion-'), 'optimized.onnx');
  try {
    const opts = { ...sessionOptions('cpu', 2, {}), optimizedModelFilePath: file };
    const session = await ort.InferenceSession.create(model, opts);
    await session.release();
    const counts = new Map<string, number>();
    const walk = (g: onnx.IGraphProto) => {
      for (const n of g.node ?? []) {
        counts.set(n.opType!, (counts.get(n.opType!) ?? 0) + 1);
        for (const a of n.attribute ?? []) if (a.g) walk(a.g);
      }
    };
    walk(onnx.ModelProto.decode(fs.readFileSync(file)).graph!);
    return counts;
  } finally {
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
  }
}

const FUSED: Record<ModelSpec['act'], { fused: string[]; gone: string[] }> = {
  gelu_tanh: { fused: ['FastGelu'], gone: ['Pow'] },
  gelu: { fused: ['Gelu', 'BiasGelu'], gone: ['Erf'] },
  silu: { fused: ['QuickGelu'], gone: ['Sigmoid'] },
  relu: { fused: ['Relu'], gone: [] },
};

describe('MLP activations fuse into one onnxruntime kernel on the CPU', () => {
  // one transformers fixture per activation: gelu_new, gelu_pytorch_tanh, gelu (erf), silu
  for (const name of ['gpt2', 'gemma2', 'gpt-neox-partial', 'llama-linear']) {
    test(`${name}: one fused activation per layer`, async () => {
      const ckpt = openCheckpoint(path.join(HF_DIR, name));
      const spec = specFromConfig(ckpt.config);
      const g = buildForwardGraph(spec, weightReader(spec, ckpt.weights), { patterns: false });
      const ops = await optimizedOps(g.encode());
      const { fused, gone } = FUSED[spec.act];
      const n = fused.reduce((s, op) => s + (ops.get(op) ?? 0), 0);
      assert.equal(n, spec.nLayers, `${fused.join('/')} nodes: ${JSON.stringify(Object.fromEntries(ops))}`);
      for (const op of gone) assert.equal(ops.get(op) ?? 0, 0, `${op} left unfused`);
      // the tanh GELU's own Tanh is gone: what remains are Gemma 2's softcaps (attention per layer, final)
      const softcaps = (spec.attnSoftcap === null ? 0 : spec.nLayers) + (spec.finalSoftcap === null ? 0 : 1);
      assert.equal(ops.get('Tanh') ?? 0, softcaps, 'Tanh nodes other than softcaps');
    });
  }

  // x over [-12, 12] and the tails: the fused kernels (MLAS's tanh and erf) against float64
  const xs = Float32Array.from({ length: 4801 }, (_, i) => -12 + i * 0.005);
  const reference: Record<'gelu_tanh' | 'gelu' | 'silu', (x: number) => number> = {
    gelu_tanh: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
    gelu: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
    silu: (x) => x / (1 + Math.exp(-x)),
  };
  for (const act of ['gelu_tanh', 'gelu', 'silu'] as const) {
    test(`${act}: fused values equal the float64 formula`, async () => {
      const g = new GraphBuilder(`act-${act}`, null, false);
      const x = g.input('x', 'float32', ['n']);
      // through an Unsqueeze: onnxruntime does not fuse a pattern whose last node is a graph output
      g.output('y', g.op('Unsqueeze', [activation(g, { act }, x), g.ints([0])]), 'float32', [1, 'n']);
      const model = g.encode();
      const ops = await optimizedOps(model);
      assert.ok(
        FUSED[act].fused.some((op) => ops.has(op)),
        `not fused: ${JSON.stringify(Object.fromEntries(ops))}`,
      );
      const session = await ort.InferenceSession.create(model, sessionOptions('cpu', 2, {}));
      try {
        const y = (await session.run({ x: new ort.Tensor('float32', xs, [xs.length]) })).y!.data as Float32Array;
        let worst = 0;
        xs.forEach((v, i) => {
          const want = reference[act](v);
          worst = Math.max(worst, Math.abs(y[i]! - want) / Math.max(1, Math.abs(want)));
        });
        // a few float32 ulps: MLAS's polynomial tanh/erf and float32 arithmetic
        assert.ok(worst < 2e-6, `worst error ${worst.toExponential(2)}`);
      } finally {
        await session.release();
      }
    });
  }
});

/** erf to ~1e-15 (Abramowitz–Stegun 7.1.26 is too coarse here): its Maclaurin series, or 1 − erfc's continued fraction. */
function erf(x: number): number {
  const a = Math.abs(x);
  if (a < 3) {
    let term = a;
    let sum = a;
    for (let n = 1; n < 200 && Math.abs(term) > 1e-17 * Math.abs(sum); n++) {
      term *= (-a * a) / n;
      sum += term / (2 * n + 1);
    }
    return Math.sign(x) * ((2 / Math.sqrt(Math.PI)) * sum);
  }
  // erfc(a) = e^(−a²)/√π · 1/(a + 1/2/(a + 1/(a + 3/2/(a + …))))
  let f = a;
  for (let k = 60; k >= 1; k--) f = a + k / 2 / f;
  return Math.sign(x) * (1 - Math.exp(-a * a) / Math.sqrt(Math.PI) / f);
}
