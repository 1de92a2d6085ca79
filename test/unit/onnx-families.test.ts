// Graph surgery on exports of today's families (Optimum-shaped graphs of the transformers 5.17
// fixtures, test/exportLike.ts): the surgery finds q/k norms, post-norms and the final
// soft-capping, the lens reproduces the logits, and the numbers equal transformers'. An export
// that lacks what its config.json's family computes is refused, saying what was not found.
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import { specFromConfig } from '../../src/engine/arch/spec';
import type { LoadedExport } from '../../src/engine/onnx/export-model';
import { loadModel } from '../../src/engine/model';
import { analyze } from '../../src/engine/analyze';
import { rejectsWith, tmpDir } from '../helpers';
import { exportLikeOf, roundTrip } from '../exportLike';
import { HF_DIR, checkAnalysis, readHfConfig, readHfReference } from '../hfReference';

const RT = { threads: 2, executionProvider: 'cpu' as const };

function writeExport(name: string, proto: onnx.IModelProto): string {
  const dir = path.join(tmpDir('td-onnx-fam-'), name);
  fs.mkdirSync(path.join(dir, 'onnx'), { recursive: true });
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json'])
    fs.copyFileSync(path.join(HF_DIR, name, f), path.join(dir, f));
  fs.writeFileSync(path.join(dir, 'onnx', 'model.onnx'), onnx.ModelProto.encode(onnx.ModelProto.create(roundTrip(proto))).finish());
  return dir;
}

const exportOf = (name: string) => exportLikeOf(path.join(HF_DIR, name));

/** Removes the norms whose weight initializer matches `re`: their consumers read the norm's input instead. */
function bypassNorms(proto: onnx.IModelProto, re: RegExp): number {
  const g = proto.graph!;
  const producer = new Map(g.node!.map((n) => [n.output![0]!, n]));
  let removed = 0;
  for (const mul of g.node!) {
    if (mul.opType !== 'Mul' || !re.test(mul.input![1] ?? '')) continue;
    const div = producer.get(mul.input![0]!);
    assert.equal(div?.opType, 'Div', 'an RMSNorm written as x / rms · w');
    const x = div!.input![0]!;
    const out = mul.output![0]!;
    for (const n of g.node!) n.input = n.input!.map((i) => (i === out ? x : i));
    removed++;
  }
  return removed;
}

/** The export's final soft-capping Mul(Tanh(Div(x, cap)), cap) → `replace(tanh output, raw logits)`. */
function editSoftcap(proto: onnx.IModelProto, keep: 'raw' | 'tanh-only'): void {
  const g = proto.graph!;
  const last = g.node!.find((n) => n.output![0] === 'logits')!;
  assert.equal(last.opType, 'Mul', 'logits come out of the soft-capping Mul');
  const tanh = g.node!.find((n) => n.output![0] === last.input![0])!;
  const div = g.node!.find((n) => n.output![0] === tanh.input![0])!;
  Object.assign(last, { opType: 'Identity', input: [keep === 'raw' ? div.input![0]! : tanh.output![0]!], attribute: [] });
}

/** Gemma's final-norm weight as an export that did not fold it: Add(1, w − 1). */
function unfoldFinalNorm(proto: onnx.IModelProto): void {
  const g = proto.graph!;
  const init = g.initializer!.find((t) => t.name === 'ln_final.w')!;
  const w = new Float32Array(init.rawData!.slice().buffer);
  init.rawData = new Uint8Array(Float32Array.from(w, (v) => v - 1).buffer);
  init.name = 'ln_final.w_minus_1';
  g.initializer!.push({ name: 'one', dataType: 1, dims: [], rawData: new Uint8Array(Float32Array.of(1).buffer) });
  g.node!.unshift({ opType: 'Add', input: ['one', 'ln_final.w_minus_1'], output: ['ln_final.w'], name: 'unfolded_norm_weight' });
}

describe("exports of today's families: structure found, numbers equal transformers", () => {
  const cases: { name: string; edit?: (p: onnx.IModelProto) => void; label?: string }[] = [
    { name: 'qwen3' },
    { name: 'qwen3-window' },
    { name: 'gemma' },
    { name: 'gemma2' },
    { name: 'gemma3-mixed' },
    { name: 'olmo2-3l' },
    { name: 'phi3' },
    { name: 'smollm3-nope' },
    { name: 'gemma2', edit: unfoldFinalNorm, label: 'gemma2, final norm weight 1 + w computed in the graph' },
  ];
  for (const c of cases) {
    describe(c.label ?? c.name, () => {
      let model: LoadedExport;
      before(async () => {
        const proto = exportOf(c.name);
        c.edit?.(proto);
        model = (await loadModel(writeExport(c.name, proto), RT)) as LoadedExport;
      });
      after(async () => model?.release());

      test('the surgery finds q/k norms, post-norms and the final soft-capping', () => {
        const spec = specFromConfig(readHfConfig(c.name));
        const d = model.surgery;
        assert.equal(d.qkNorms, spec.qkNorm !== 'none');
        assert.equal(d.postNorms, spec.blockNorms !== 'pre');
        assert.equal(d.finalSoftcap, spec.finalSoftcap);
        assert.equal(d.patterns, true, d.patternsNote);
        assert.deepEqual(d.notes, []);
      });

      test('residual streams, attention and the last lens row equal transformers', async () => {
        const ref = readHfReference(c.name);
        const a = await analyze(model, { ids: ref.inputIds, topK: 5, maxTokens: 4096, patterns: true });
        checkAnalysis(a, ref, model.spec.dVocab);
      });
    });
  }
});

describe('exports that lack what config.json says are refused, saying what was not found', () => {
  test('Qwen3 without its q/k norms', async () => {
    const p = exportOf('qwen3');
    assert.equal(bypassNorms(p, /attn\.[qk]_ln\.w$/), 4);
    await rejectsWith(loadModel(writeExport('qwen3', p), RT), 'BAD_ONNX', /qwen3.*no q\/k norms were found in the graph/);
  });

  test('Gemma 2 without its post-norms', async () => {
    const p = exportOf('gemma2');
    assert.equal(bypassNorms(p, /ln[12]_post\.w$/), 4);
    await rejectsWith(loadModel(writeExport('gemma2', p), RT), 'BAD_ONNX', /gemma2.*no such post-norms were found in the graph/);
  });

  test('Gemma 2 without its final soft-capping', async () => {
    const p = exportOf('gemma2');
    editSoftcap(p, 'raw');
    await rejectsWith(loadModel(writeExport('gemma2', p), RT), 'BAD_ONNX', /soft-caps the logits at 30.*the graph does not/);
  });

  test('a Tanh on the logits that is not a soft-capping', async () => {
    const p = exportOf('gemma2');
    editSoftcap(p, 'tanh-only');
    await rejectsWith(loadModel(writeExport('gemma2', p), RT), 'BAD_ONNX', /Tanh that is not a soft-capping/);
  });

  test('Llama config, graph with q/k norms (the export belongs to another model)', async () => {
    const p = exportOf('qwen3');
    const dir = writeExport('qwen3', p);
    const cfg = { ...readHfConfig('qwen3'), model_type: 'llama', architectures: ['LlamaForCausalLM'] };
    delete (cfg as Record<string, unknown>).use_sliding_window;
    delete (cfg as Record<string, unknown>).max_window_layers;
    delete (cfg as Record<string, unknown>).layer_types;
    delete (cfg as Record<string, unknown>).sliding_window;
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    await rejectsWith(loadModel(dir, RT), 'BAD_ONNX', /normalises queries and keys .* which this family does not/);
  });

  test('LongRoPE and dynamic NTK exports: frequencies fixed at the traced length', async () => {
    for (const name of ['phi3-longrope', 'llama-dynamic']) {
      await rejectsWith(
        loadModel(writeExport(name, exportOf(name)), RT),
        'BAD_ONNX',
        /depend on the sequence length.*safetensors checkpoint/,
      );
    }
  });
});
