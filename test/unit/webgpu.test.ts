// The WebGPU execution provider, run for real on SwiftShader (the Vulkan driver that ships with
// Debian's chromium package; .ci/run installs it with the Vulkan loader): the golden numbers of
// every family on WebGPU, generation with the KV cache kept in GPU memory, the adapter probe, and
// the fallback to CPU when no adapter exists. SwiftShader is slow: tiny fixtures only.
import * as fs from 'node:fs';
import * as path from 'node:path';

/** SwiftShader's Vulkan driver manifest (Debian's chromium package). */
const SWIFTSHADER = '/usr/lib/chromium/vk_swiftshader_icd.json';
// Before onnxruntime creates its first WebGPU device (node's test runner gives each file a process).
process.env.VK_ICD_FILENAMES = SWIFTSHADER;

import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { loadModel, type LoadedModel } from '../../src/engine/model';
import { analyze } from '../../src/engine/analyze';
import { KvStepModel, RecomputeStepModel } from '../../src/engine/generate/generator';
import { takesStepCache } from '../../src/engine/generate/kvcache';
import { chooseProvider, createSession, liveSessionCount, providerEnvironmentFor } from '../../src/engine/runtime/ort';
import { GraphBuilder } from '../../src/engine/onnx/builder';
import { blockTopK } from '../../src/engine/graph/lens';
import { parseProbeLog } from '../../src/engine/runtime/adapter';
import { adapterLabel, resolveWeightPrecision, type ProviderEnvironment, type WebGpuAdapter } from '../../src/engine/runtime/providers';
import { runsOn } from '../../src/shared/runs-on';
import { FIXTURES, ROOT, maxAbsDiff, readJson, rejectsWith, sameGreedyAndBeam } from '../helpers';
import { compareMidAndLens, compareToGolden, type Golden, type LensAndMid } from '../goldens-compare';
import { HF_DIR, hfFixtureNames } from '../hfReference';

const hw: WebGpuAdapter = { name: 'NVIDIA H200', vendor: 'NVIDIA', kind: 'hardware', f16: true };
const sw: WebGpuAdapter = { name: 'SwiftShader Device (Subzero)', vendor: null, kind: 'software', f16: false };
const base: ProviderEnvironment = {
  backends: [
    { name: 'cpu', bundled: true },
    { name: 'webgpu', bundled: true },
  ],
  cudaLibrary: false,
  nvidiaGpu: false,
  platform: 'linux',
};

describe('webgpu: choosing the provider and the precision', () => {
  test('auto picks WebGPU on a hardware adapter only, never on a software one', () => {
    assert.equal(chooseProvider('auto', { ...base, webgpu: { adapter: hw, error: null } }).provider, 'webgpu');
    assert.equal(chooseProvider('auto', { ...base, webgpu: { adapter: sw, error: null } }).provider, 'cpu');
    assert.equal(chooseProvider('auto', { ...base, webgpu: { adapter: { ...hw, kind: 'unknown' }, error: null } }).provider, 'cpu');
    const cuda = { ...base, backends: [...base.backends, { name: 'cuda', bundled: false }], cudaLibrary: true, nvidiaGpu: true };
    assert.equal(chooseProvider('auto', { ...cuda, webgpu: { adapter: sw, error: null } }).provider, 'cuda');
    assert.equal(chooseProvider('auto', { ...cuda, webgpu: { adapter: hw, error: null } }).provider, 'webgpu');
  });

  test('webgpu by name runs on any adapter, and says why it cannot when there is none', () => {
    assert.deepEqual(chooseProvider('webgpu', { ...base, webgpu: { adapter: sw, error: null } }), { provider: 'webgpu', note: null });
    const none = chooseProvider('webgpu', { ...base, webgpu: { adapter: null, error: 'No supported adapters' } });
    assert.deepEqual(none, { provider: 'cpu', note: 'No WebGPU adapter (No supported adapters); running on CPU.' });
    assert.match(chooseProvider('webgpu', { ...base, backends: [{ name: 'cpu', bundled: true }] }).note!, /no WebGPU provider/);
  });

  test('float16 weights need shader-f16: auto keeps float32 without it, float16 by name is refused by name', () => {
    assert.equal(resolveWeightPrecision('auto', 'webgpu', true, true), 'float16');
    assert.equal(resolveWeightPrecision('auto', 'webgpu', true, false), 'float32');
    assert.throws(() => resolveWeightPrecision('float16', 'webgpu', true, false), /no float16 arithmetic \(shader-f16\).*weightPrecision/);
  });

  test('the adapter is read from the Vulkan loader log and onnxruntime device discovery', () => {
    const nvidia =
      'DRIVER:   Using "NVIDIA H200" with driver: "/usr/lib/x86_64-linux-gnu/libGLX_nvidia.so.0"\n' +
      '[I:onnxruntime:onnxruntime-node, device_discovery_common.cc:34 operator()] Discovered OrtHardwareDevice {vendor_id:0x10de, device_id:0x2335, vendor:NVIDIA, type:1, metadata: []}';
    assert.deepEqual(parseProbeLog(nvidia, 'linux'), { name: 'NVIDIA H200', vendor: 'NVIDIA', kind: 'hardware', f16: false });
    const swiftshader = 'Using "SwiftShader Device (Subzero)" with driver: "/usr/lib/chromium/./libvk_swiftshader.so"';
    assert.equal(parseProbeLog(swiftshader, 'linux')?.kind, 'software');
    assert.equal(
      parseProbeLog('Using "llvmpipe (LLVM 15.0.6, 256 bits)" with driver: "/usr/lib/libvulkan_lvp.so"', 'linux')?.kind,
      'software',
    );
    // Metal (macOS) has no Vulkan loader log: the GPU onnxruntime discovered
    const mac = 'Discovered OrtHardwareDevice {vendor_id:0x106b, device_id:0x0, vendor:Apple, type:1, metadata: []}';
    assert.deepEqual(parseProbeLog(mac, 'darwin'), { name: 'GPU 0x0', vendor: 'Apple', kind: 'hardware', f16: false });
    assert.equal(parseProbeLog('', 'linux'), null);
    assert.equal(adapterLabel(hw), 'NVIDIA H200');
    assert.equal(adapterLabel(sw), 'SwiftShader Device (Subzero), software');
    assert.equal(runsOn({ provider: 'webgpu', weights: 'float16', adapter: 'NVIDIA H200' }), 'webgpu fp16 · NVIDIA H200');
    assert.equal(runsOn({ provider: 'cpu', weights: 'float32', adapter: null }), 'cpu');
  });
});

describe('webgpu on SwiftShader', () => {
  before(() => {
    assert.ok(fs.existsSync(SWIFTSHADER), `${SWIFTSHADER} is missing: install Debian's chromium and libvulkan1 (.ci/run does)`);
  });

  test('the probe finds SwiftShader, a software adapter without float16, which auto never picks', async () => {
    const env = await providerEnvironmentFor('webgpu');
    assert.equal(env.webgpu?.error, null);
    assert.match(env.webgpu!.adapter!.name, /SwiftShader/);
    assert.equal(env.webgpu!.adapter!.kind, 'software');
    assert.equal(env.webgpu!.adapter!.f16, false);
    assert.equal(chooseProvider('auto', env).provider, 'cpu');
  });

  for (const name of ['tiny-gpt2', 'tiny-llama', 'tiny-qwen2', 'tiny-neox', 'tiny-neox-seq']) {
    test(`${name}: residual streams, patterns and lens on WebGPU match the numpy golden within 1e-4`, async () => {
      const g = readJson<Golden>(path.join(FIXTURES, 'goldens', `${name}.json`));
      const model = await loadModel(path.join(FIXTURES, 'models', name), { threads: 2, executionProvider: 'webgpu' });
      try {
        assert.equal(model.info.provider, 'webgpu', model.info.provider_note ?? '');
        assert.match(model.info.adapter ?? '', /SwiftShader/);
        assert.equal(model.info.weights, 'float32', 'auto keeps float32 on an adapter without shader-f16');
        const a = await analyze(model, { ids: g.ids, topK: 5, maxTokens: 4096, patterns: true });
        compareToGolden(a, g);
      } finally {
        await model.release();
      }
    });
  }

  // transformers 5.17's models, one per feature the tiny fixtures above lack (SwiftShader takes
  // ~5 s each; all 26 pass on it too, in 2-5 minutes): Gemma 2's soft-capping and sliding window,
  // Gemma 3's per-layer ropes, Phi-3's LongRoPE, dynamic NTK, Qwen 3's q/k norms, OLMo 2's
  // post-norms, NeoX's partial rotary.
  const HF_ON_WEBGPU = ['gemma2', 'gemma3-mixed', 'phi3-longrope', 'llama-dynamic', 'qwen3', 'olmo2', 'gpt-neox-partial'];
  test('the hf-transformers models run on WebGPU here exist', () => {
    for (const name of HF_ON_WEBGPU) assert.ok(hfFixtureNames().includes(name), name);
  });
  for (const name of HF_ON_WEBGPU) {
    test(`hf-transformers/${name}: resid_mid and the lens on WebGPU match the numpy golden`, async () => {
      const g = readJson<LensAndMid>(path.join(FIXTURES, 'goldens', 'hf', `${name}.json`));
      const model = await loadModel(path.join(HF_DIR, name), { threads: 2, executionProvider: 'webgpu' });
      try {
        assert.equal(model.info.provider, 'webgpu', model.info.provider_note ?? '');
        compareMidAndLens(await analyze(model, { ids: g.ids, topK: 5, maxTokens: 4096, patterns: false }), g);
      } finally {
        await model.release();
      }
    });
  }

  describe('generation with the KV cache in GPU memory', () => {
    let model: LoadedModel;
    before(async () => {
      model = await loadModel(path.join(FIXTURES, 'models', 'tiny-llama'), { threads: 2, executionProvider: 'webgpu' });
      assert.equal(model.info.provider, 'webgpu');
    });
    after(async () => model?.release());

    test('incremental steps (cache on the device, beams reordered there) equal recomputation', async () => {
      const kv = new KvStepModel(model);
      const re = new RecomputeStepModel(model);
      try {
        const prompt = [5, 17, 42, 8];
        assert.ok(maxAbsDiff(await kv.prefill(prompt), await re.prefill(prompt)) < 1e-4);
        await kv.reorder([0, 0, 0]);
        re.reorder([0, 0, 0]);
        for (const step of [
          [3, 9, 27],
          [11, 11, 4],
          [60, 2, 2],
        ]) {
          const a = await kv.step(step);
          const b = await re.step(step);
          for (let i = 0; i < 3; i++) assert.ok(maxAbsDiff(a[i]!, b[i]!) < 1e-4, `beam ${i}`);
          await kv.reorder([2, 0, 0]);
          re.reorder([2, 0, 0]);
        }
      } finally {
        kv.release();
      }
    });

    test('greedy and beam search give the same tokens as on the CPU', async () => {
      const cpu = await loadModel(path.join(FIXTURES, 'models', 'tiny-llama'), { threads: 2, executionProvider: 'cpu' });
      try {
        await sameGreedyAndBeam(model, cpu, [1, 2, 3], 8);
      } finally {
        await cpu.release();
      }
    });

    test('an ONNX export on WebGPU passes present.* back through host memory (its step-cache inputs left empty): same tokens as on the CPU', async () => {
      const dir = path.join(FIXTURES, 'onnx', 'tiny-gpt2-torch');
      const gpu = await loadModel(dir, { threads: 2, executionProvider: 'webgpu' });
      const cpu = await loadModel(dir, { threads: 2, executionProvider: 'cpu' });
      try {
        assert.equal(gpu.info.provider, 'webgpu', gpu.info.provider_note ?? '');
        assert.ok(!takesStepCache(await gpu.generation()), 'on WebGPU the export keeps present → past');
        assert.ok(takesStepCache(await cpu.generation()), 'on the CPU it takes the step cache');
        await sameGreedyAndBeam(gpu, cpu, [5, 17, 42, 8], 8, 1e-5);
      } finally {
        await gpu.release();
        await cpu.release();
      }
    });
  });

  test('the lens top-k in two stages (vocabularies over 2048) equals TopK on the CPU and on WebGPU, ties included', async () => {
    const V = 5000;
    const g = new GraphBuilder('topk');
    const x = g.input('x', 'float32', [2, 3, V]);
    const k = g.input('k', 'int64', [1]);
    const [values, ids] = blockTopK(g, x, k, V);
    const [refValues, refIds] = g.opN('TopK', [x, k], 2, { axis: -1, largest: 1, sorted: 1 });
    g.output('values', values!, 'float32', [2, 3, 'k']);
    g.output('ids', ids!, 'int64', [2, 3, 'k']);
    g.output('ref_values', refValues!, 'float32', [2, 3, 'k']);
    g.output('ref_ids', refIds!, 'int64', [2, 3, 'k']);
    const bytes = g.encode();
    // integers 0..40: many ties, also across block boundaries; the last block is partial
    let s = 7;
    const data = Float32Array.from({ length: 6 * V }, () => ((s = (s * 48271) % 2147483647), s % 41));
    for (const executionProvider of ['cpu', 'webgpu'] as const) {
      const session = await createSession(bytes, { threads: 1, executionProvider });
      try {
        assert.equal(session.provider, executionProvider);
        for (const kk of [1, 5, 20]) {
          const out = await session.run({ x: { data, dims: [2, 3, V] }, k: { data: BigInt64Array.of(BigInt(kk)), dims: [1] } }, [
            'values',
            'ids',
            'ref_values',
            'ref_ids',
          ]);
          assert.deepEqual(out.ids!.data, out.ref_ids!.data, `${executionProvider} k=${kk} ids`);
          assert.deepEqual(out.values!.data, out.ref_values!.data, `${executionProvider} k=${kk} values`);
        }
      } finally {
        await session.release();
      }
    }
  });

  test('float16 weights by name on an adapter without shader-f16: refused with the reason', async () => {
    await rejectsWith(
      loadModel(path.join(FIXTURES, 'models', 'tiny-llama'), { threads: 1, executionProvider: 'webgpu', weightPrecision: 'float16' }),
      'BAD_REQUEST',
      /no float16 arithmetic \(shader-f16\)/,
    );
  });

  test('every session and device buffer is released', () => {
    assert.equal(liveSessionCount(), 0);
  });
});

describe('webgpu without an adapter', () => {
  test('the CLI falls back to CPU and says why (VK_ICD_FILENAMES naming no driver)', () => {
    const out = spawnSync(
      process.execPath,
      [
        path.join(ROOT, 'dist', 'cli.js'),
        'analyze',
        '--model',
        path.join(FIXTURES, 'models', 'tiny-gpt2'),
        '--text',
        'hello world',
        '--execution-provider',
        'webgpu',
        '--no-cache',
        '--json',
        '-',
      ],
      { env: { ...process.env, VK_ICD_FILENAMES: '/nonexistent/no_icd.json' }, encoding: 'utf8' },
    );
    assert.equal(out.status, 0, out.stderr);
    assert.match(out.stderr, /note: No WebGPU adapter \(No supported adapters\); running on CPU\./);
    const analysis = JSON.parse(out.stdout) as { model: { provider: string; adapter: string | null } };
    assert.equal(analysis.model.provider, 'cpu');
    assert.equal(analysis.model.adapter, null);
  });
});
