// Every checkpoint transformers 5.17 made in test/fixtures/hf-transformers, run by the engine
// and compared with transformers' own float64 numbers: residual streams, logits of every
// position, attention patterns, the last logit-lens row, and the greedy continuation through
// the KV-cache generation path (ids and step logits). Each model is checked with its config as
// transformers 5 wrote it (rope_parameters) and, where expressible, in the older keys
// (rope_theta / rope_scaling / rotary_pct …): both must give the same numbers.
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { loadModel, type LoadedModel } from '../../src/engine/model';
import { analyze } from '../../src/engine/analyze';
import { openCheckpoint } from '../../src/engine/checkpoint/hf';
import { specFromConfig } from '../../src/engine/arch/spec';
import { weightReader } from '../../src/engine/arch/weights';
import { withInterventionDefaults } from '../../src/engine/interventions/session';
import { buildForwardGraph } from '../../src/engine/graph/forward';
import { createSession } from '../../src/engine/runtime/ort';
import { emptyPast } from '../../src/engine/analyze';
import { generate } from '../../src/engine/generate';
import { KvStepModel, RecomputeStepModel, type StepModel } from '../../src/engine/generate/generator';
import type { Analysis } from '../../src/shared/analysis';
import * as fs from 'node:fs';
import { FIXTURES, assertClose, flat, readJson, tmpDir } from '../helpers';
import {
  HF_DIR,
  checkAnalysis,
  fixtureWithConfig,
  hfFixtureNames,
  olderFormat,
  readHfConfig,
  readHfReference,
  type HfReference,
} from '../hfReference';

const TOL = 1e-4;
const NAMES = hfFixtureNames();

test('the fixture set is complete (26 models, README)', () => {
  assert.equal(NAMES.length, 26);
});

/** Logits of every position, from the engine's forward graph with its all-positions read-out. */
async function allLogits(dir: string, ids: number[]): Promise<Float32Array> {
  const ckpt = openCheckpoint(dir);
  const spec = specFromConfig(ckpt.config);
  const g = buildForwardGraph(spec, weightReader(spec, ckpt.weights), { patterns: false, logits: 'all' });
  // the graph as shipped, its intervention inputs fed "no intervention" (interventions/session.ts)
  const session = withInterventionDefaults(await createSession(g.encode(), { threads: 2, executionProvider: 'cpu' }), spec);
  try {
    const past: Parameters<typeof emptyPast>[0] = { spec } as LoadedModel;
    const out = await session.run({ input_ids: { data: BigInt64Array.from(ids, BigInt), dims: [1, ids.length] }, ...emptyPast(past) }, [
      'logits',
    ]);
    return out.logits!.data as Float32Array;
  } finally {
    await session.release();
  }
}

/** A StepModel that records the logits each step hands to the decoder. */
class Recording implements StepModel {
  readonly logits: Float32Array[] = [];
  constructor(private readonly inner: KvStepModel) {}
  get vocabSize() {
    return this.inner.vocabSize;
  }
  get length() {
    return this.inner.length;
  }
  async prefill(ids: readonly number[]) {
    const l = await this.inner.prefill(ids);
    this.logits.push(Float32Array.from(l));
    return l;
  }
  expand(n: number) {
    this.inner.expand(n);
  }
  reorder(from: readonly number[]) {
    this.inner.reorder(from);
  }
  async step(tokens: readonly number[]) {
    const l = await this.inner.step(tokens);
    this.logits.push(Float32Array.from(l[0]!));
    return l;
  }
}

async function checkGeneration(model: LoadedModel, ref: Pick<HfReference, 'inputIds' | 'genIds' | 'genLogits'>): Promise<void> {
  model.spec.eosTokenIds = []; // the reference continues past EOS
  const rec = new Recording(new KvStepModel(model));
  const out = await generate(
    model,
    { promptIds: ref.inputIds, maxNewTokens: ref.genIds.length, strategy: { kind: 'greedy', label: 'greedy' } },
    undefined,
    undefined,
    rec,
  );
  assert.deepEqual(
    out.steps.map((s) => s.id),
    ref.genIds,
    'greedy continuation through the KV cache',
  );
  const V = model.spec.dVocab;
  rec.logits
    .slice(0, ref.genIds.length)
    .forEach((l, i) => assertClose(l, ref.genLogits.subarray(i * V, (i + 1) * V), TOL, `step ${i} logits`));
}

function formatsOf(name: string): { label: string; dir: string }[] {
  const cfg = readHfConfig(name);
  const older = olderFormat(cfg, NAMES.indexOf(name) % 2 ? 'type' : 'rope_type');
  const out = [{ label: 'rope_parameters', dir: path.join(HF_DIR, name) }];
  if (older) out.push({ label: 'older keys', dir: fixtureWithConfig(name, older) });
  return out;
}

for (const name of NAMES) {
  describe(`transformers 5.17 fixture: ${name}`, () => {
    const ref = readHfReference(name);
    for (const { label, dir } of formatsOf(name)) {
      describe(label, () => {
        let model: LoadedModel;
        let a: Analysis;
        before(async () => {
          model = await loadModel(dir, { threads: 2, executionProvider: 'cpu' });
          a = await analyze(model, { ids: ref.inputIds, topK: 5, maxTokens: 4096, patterns: true });
        });
        after(async () => model?.release());

        test('residual streams, attention patterns and the last lens row', () => checkAnalysis(a, ref, model.spec.dVocab));

        test('logits of every position', async () => {
          assertClose(await allLogits(dir, ref.inputIds), ref.logits, TOL, 'logits');
        });

        test('greedy continuation through the KV cache', () => checkGeneration(model, ref));
      });
    }
  });
}

// The extension loads through the graph cache (its default): there the forward graph takes its
// token embeddings as input_embeds, read from the cache's weights file (embedrows.ts), not
// through a Gather on W_E. The same numbers, Gemma's √d_model scale included.
describe('every fixture through the graph cache (input_embeds read from the weights file)', () => {
  const cacheDir = tmpDir();
  const cases = NAMES.flatMap((name) => formatsOf(name).map((f) => ({ name, ...f })));
  for (const { name, label, dir } of cases) {
    test(`${name} (${label})`, async () => {
      const ref = readHfReference(name);
      const model = await loadModel(dir, { threads: 2, executionProvider: 'cpu', cacheDir });
      try {
        assert.equal(model.graphSource, 'cache-write');
        assert.ok(!model.forward.inputNames.includes('input_embeds'), 'the session feeds input_embeds itself');
        checkAnalysis(await analyze(model, { ids: ref.inputIds, topK: 5, maxTokens: 4096, patterns: true }), ref, model.spec.dVocab);
        await checkGeneration(model, ref);
      } finally {
        await model.release();
      }
    });
  }
  test('the entries say where W_E is, and the forward graphs take input_embeds', () => {
    const entries = fs.readdirSync(cacheDir);
    assert.equal(entries.length, cases.length);
    for (const e of entries) {
      const meta = JSON.parse(fs.readFileSync(path.join(cacheDir, e, 'meta.json'), 'utf8')) as { embedOffset?: number };
      assert.ok(Number.isInteger(meta.embedOffset), `${e}: embedOffset`);
      assert.ok(fs.readFileSync(path.join(cacheDir, e, 'forward.onnx')).includes('input_embeds'), `${e}: input_embeds`);
    }
  });
});

interface KvCase {
  model: string;
  what: string;
  prompt: number[];
  gen_ids: number[];
  gen_logits: number[][];
}

describe('KV-cache generation across a change of RoPE frequencies (numpy reference, goldens/hf/kv-cache.json)', () => {
  const { cases } = readJson<{ cases: KvCase[] }>(path.join(FIXTURES, 'goldens', 'hf', 'kv-cache.json'));
  for (const c of cases) {
    test(`${c.model}: ${c.what}`, async () => {
      const model = await loadModel(path.join(HF_DIR, c.model), { threads: 2, executionProvider: 'cpu' });
      try {
        await checkGeneration(model, { inputIds: c.prompt, genIds: c.gen_ids, genLogits: Float32Array.from(flat(c.gen_logits)) });
      } finally {
        await model.release();
      }
    });
  }
});

describe('KV cache equals full recompute, beams reordered (all but dynamic NTK)', () => {
  // phi3-longrope-short: the steps cross LongRoPE's original context (64), where the cache is rebuilt
  for (const [name, promptLength] of [
    ['gemma3-mixed', 12],
    ['qwen2-window', 12],
    ['olmo2-3l', 12],
    ['phi3', 12],
    ['smollm3-nope', 12],
    ['phi3-longrope-short', 62],
  ] as const) {
    test(`${name}, ${promptLength}-token prompt`, async () => {
      const model = await loadModel(path.join(HF_DIR, name), { threads: 2, executionProvider: 'cpu' });
      try {
        const kv = new KvStepModel(model);
        const re = new RecomputeStepModel(model);
        const ids = readHfReference(name).inputIds;
        const prompt = [...ids, ...ids].slice(0, promptLength);
        assertClose(await kv.prefill(prompt), await re.prefill(prompt), TOL, 'prefill logits');
        kv.reorder([0, 0]);
        re.reorder([0, 0]);
        for (const tokens of [
          [40, 41],
          [42, 43],
          [44, 44],
        ]) {
          const a = await kv.step(tokens);
          const b = await re.step(tokens);
          for (let i = 0; i < 2; i++) assertClose(a[i]!, b[i]!, TOL, `beam ${i}`);
          kv.reorder([1, 0]);
          re.reorder([1, 0]);
        }
      } finally {
        await model.release();
      }
    });
  }
});

describe('float16 weight matrices (the GPU path) on the bfloat16 fixtures', () => {
  // On the CPU onnxruntime widens float16 weights back to float32, so these bfloat16 weights
  // (exact in float16 at these magnitudes) must give transformers' numbers as float32 does.
  for (const name of ['gemma2-window64', 'olmo2-3l', 'qwen2-window', 'llama-llama3rope-bf16']) {
    test(name, async () => {
      const ref = readHfReference(name);
      const model = await loadModel(path.join(HF_DIR, name), { threads: 2, executionProvider: 'cpu', weightPrecision: 'float16' });
      try {
        assert.equal(model.info.weights, 'float16');
        const a = await analyze(model, { ids: ref.inputIds, topK: 5, maxTokens: 4096, patterns: true });
        checkAnalysis(a, ref, model.spec.dVocab);
      } finally {
        await model.release();
      }
    });
  }
});
