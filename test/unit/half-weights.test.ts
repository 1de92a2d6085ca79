// Half-precision weights (issue 10): float16/bfloat16 checkpoints can keep their weight
// matrices in float16 inside the graphs (GPU providers), with activations in float32.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadModel, resolveWeightPrecision, type WeightPrecisionRequest } from '../../src/engine/model';
import { analyze } from '../../src/engine/analyze';
import { SafetensorsFile, f32ToF16 } from '../../src/engine/checkpoint/safetensors';
import { liveSessionCount } from '../../src/engine/runtime/ort';
import { encodeSafetensors } from '../../tools/convert/safetensors-writer';
import { onnx } from 'onnx-proto';
import { failingCudaEnvironment, FIXTURES, maxAbsDiff, rejectsWith, tmpDir } from '../helpers';

const TEXT = 'the cat sat on the mat and the dog sat on the log';

/** A copy of a fixture model whose float tensors are stored as F16 or BF16. */
function halfCopy(name: string, dtype: 'F16' | 'BF16'): string {
  const src = path.join(FIXTURES, 'models', name);
  const dir = path.join(tmpDir(), `${name}-${dtype}`);
  fs.mkdirSync(dir);
  for (const f of fs.readdirSync(src)) if (f !== 'model.safetensors') fs.copyFileSync(path.join(src, f), path.join(dir, f));
  const st = SafetensorsFile.open(path.join(src, 'model.safetensors'));
  const tensors = [...st.entries.values()].map((e) => {
    const f32 = st.readFloat32(e);
    // bfloat16: the high half of the float32 bits (truncation is enough for a test checkpoint)
    const data =
      dtype === 'F16'
        ? f32ToF16(f32)
        : new Uint16Array(Uint32Array.from(new Uint32Array(f32.buffer, f32.byteOffset, f32.length), (u) => u >>> 16));
    return { name: e.name, dtype, shape: e.shape, data };
  });
  fs.writeFileSync(path.join(dir, 'model.safetensors'), encodeSafetensors(tensors, { format: 'pt' }));
  return dir;
}

async function run(dir: string, weightPrecision: WeightPrecisionRequest, cacheDir?: string) {
  const m = await loadModel(dir, { threads: 1, executionProvider: 'cpu', weightPrecision, cacheDir });
  try {
    const a = await analyze(m, { text: TEXT, topK: 5, maxTokens: 64, patterns: true });
    return { info: m.info, lens: a.lens, resid: a.cache.resid };
  } finally {
    await m.release();
  }
}

describe('half-precision weights', () => {
  test('auto keeps float16 only for half checkpoints on GPU providers', () => {
    const cases: [WeightPrecisionRequest | undefined, string, boolean, string][] = [
      ['auto', 'cpu', true, 'float32'],
      [undefined, 'cpu', true, 'float32'],
      ['auto', 'cuda', true, 'float16'],
      ['auto', 'dml', true, 'float16'],
      ['auto', 'cuda', false, 'float32'],
      ['float16', 'cpu', false, 'float16'],
      ['float32', 'cuda', true, 'float32'],
    ];
    for (const [req, provider, half, want] of cases)
      assert.equal(resolveWeightPrecision(req, provider, half), want, `${req} ${provider} ${half}`);
  });

  for (const [name, dtype] of [
    ['tiny-llama', 'BF16'],
    ['tiny-gpt2', 'F16'],
  ] as const) {
    // On CPU onnxruntime has no float16 GEMM: it computes these products in float32 (the results
    // are then exact); a GPU provider runs them in half precision, hence the tolerances.
    test(`${name} (${dtype}): float16 weights give the float32 results within half-precision rounding`, async () => {
      const dir = halfCopy(name, dtype);
      const full = await run(dir, 'auto'); // CPU: auto = float32
      const half = await run(dir, 'float16');
      assert.equal(full.info.weights, 'float32');
      assert.equal(half.info.weights, 'float16');
      // the residual stream: only the products' inputs were rounded to float16
      let scale = 0;
      for (const v of full.resid) scale = Math.max(scale, Math.abs(v));
      const dResid = maxAbsDiff(half.resid, full.resid);
      assert.ok(dResid < 0.01 * scale, `resid differs by ${dResid} (scale ${scale})`);
      const dEntropy = maxAbsDiff(half.lens.entropy, full.lens.entropy);
      assert.ok(dEntropy < 0.02, `lens entropy differs by ${dEntropy} nats`);
      const dCos = maxAbsDiff(half.lens.cosPred, full.lens.cosPred);
      assert.ok(dCos < 0.01, `cos_pred differs by ${dCos}`);
    });
  }

  test('a weight beyond float16 range is refused with a clear message when float16 is forced', async () => {
    const dir = halfCopy('tiny-llama', 'BF16');
    const file = path.join(dir, 'model.safetensors');
    const st = SafetensorsFile.open(file);
    const tensors = [...st.entries.values()].map((e) => {
      const bits = new Uint16Array(st.readBytes(e).slice().buffer);
      if (e.name === 'model.layers.0.mlp.down_proj.weight') bits[3] = 0x4880; // bfloat16 2.62e5
      return { name: e.name, dtype: e.dtype as 'BF16', shape: e.shape, data: bits };
    });
    fs.writeFileSync(file, encodeSafetensors(tensors, { format: 'pt' }));
    await rejectsWith(
      loadModel(dir, { threads: 1, executionProvider: 'cpu', weightPrecision: 'float16' }),
      'BAD_WEIGHTS',
      /blocks\.0\.mlp\.W_out\.w holds 2\.621e\+5, beyond float16's range .* float32/,
    );
    const ok = await run(dir, 'float32');
    assert.equal(ok.info.weights, 'float32');
  });

  test('auto chose float16 for CUDA, CUDA failed to start: float32 graphs on the CPU instead', async (t) => {
    // claims CUDA is installed: the session really tries it, and onnxruntime fails to load it
    const environment = failingCudaEnvironment();
    if (!environment) return t.skip('CUDA works on this machine');
    const dir = halfCopy('tiny-llama', 'F16');
    const cacheDir = tmpDir();
    const before = liveSessionCount();
    const m = await loadModel(dir, { threads: 1, executionProvider: 'auto', environment, cacheDir });
    try {
      assert.equal(m.info.provider, 'cpu');
      assert.match(m.info.provider_note ?? '', /CUDA execution provider failed to start .*running on CPU/);
      assert.equal(m.info.weights, 'float32');
      const a = await analyze(m, { text: TEXT, topK: 5, maxTokens: 64, patterns: true });
      const ref = await run(dir, 'float32');
      assert.ok(maxAbsDiff(a.cache.resid, ref.resid) < 1e-5, 'same results as a float32 load');
    } finally {
      await m.release();
    }
    assert.equal(liveSessionCount(), before, 'the float16 session was released');
  });

  test('the graph cache stores float16 weights in half the bytes, keyed by precision', async () => {
    const dir = halfCopy('tiny-llama', 'F16');
    const cacheDir = tmpDir();
    await run(dir, 'float32', cacheDir);
    await run(dir, 'float16', cacheDir);
    const sizes = fs
      .readdirSync(cacheDir)
      .filter((e) => fs.existsSync(path.join(cacheDir, e, 'complete')))
      .map((e) => fs.statSync(path.join(cacheDir, e, 'weights.bin')).size)
      .sort((a, b) => a - b);
    assert.equal(sizes.length, 2, 'one cache entry per precision');
    const ratio = sizes[0]! / sizes[1]!;
    assert.ok(ratio > 0.45 && ratio < 0.56, `float16 weights file is ${ratio.toFixed(3)} of the float32 one`);
    const again = await run(dir, 'float16', cacheDir);
    assert.equal(again.info.weights, 'float16');
    // the graph itself declares the weight matrices float16 and norms float32
    const entry = fs.readdirSync(cacheDir).find((e) => fs.statSync(path.join(cacheDir, e, 'weights.bin')).size === sizes[0]);
    const proto = onnx.ModelProto.decode(fs.readFileSync(path.join(cacheDir, entry!, 'forward.onnx')));
    const types = new Map((proto.graph?.initializer ?? []).map((t) => [t.name, t.dataType]));
    const F16 = onnx.TensorProto.DataType.FLOAT16;
    const F32 = onnx.TensorProto.DataType.FLOAT;
    assert.equal(types.get('W_E'), F16);
    assert.equal(types.get('blocks.0.attn.W_Q.w'), F16);
    assert.equal(types.get('blocks.0.mlp.W_out.w'), F16);
    assert.equal(types.get('blocks.0.ln1.w'), F32);
  });
});
