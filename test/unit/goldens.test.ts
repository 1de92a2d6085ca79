// The engine against an independent numpy reference (tools/reference/numpy_ref.py):
// every residual stream, attention pattern, the final logits and the logit lens of tiny
// random checkpoints of each family and of the real stories260K weights (test/fixtures/
// stories260K); and resid_mid and the logit lens of every transformers 5.17 fixture
// (test/fixtures/hf-transformers, whose other numbers hf-fixtures.test.ts checks).
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { loadModel, type LoadedModel } from '../../src/engine/model';
import { analyze, emptyPast } from '../../src/engine/analyze';
import type { Analysis } from '../../src/shared/analysis';
import { FIXTURES, assertClose, readJson } from '../helpers';
import { HF_DIR, hfFixtureNames } from '../hfReference';
import { compareMidAndLens, compareToGolden, goldenModelDir, TOL, type Golden, type LensAndMid } from '../goldens-compare';

/** log-softmax of a row of golden logits. */
function logSoftmax(row: number[]): number[] {
  const m = Math.max(...row);
  const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
  return row.map((v) => v - lse);
}

for (const name of ['tiny-gpt2', 'tiny-llama', 'tiny-qwen2', 'tiny-neox', 'tiny-neox-seq', 'stories260K']) {
  describe(`golden: ${name}`, () => {
    const goldenFile = path.join(FIXTURES, 'goldens', `${name}.json`);
    let model: LoadedModel;
    let g: Golden;
    let a: Analysis;
    before(async () => {
      g = readJson<Golden>(goldenFile);
      model = await loadModel(goldenModelDir(name), { threads: 2, executionProvider: 'cpu' });
      a = await analyze(model, { ids: g.ids, topK: 5, maxTokens: 4096, patterns: true });
    });
    after(async () => model?.release());

    test('residual streams, patterns and lens match the numpy reference', () => {
      compareToGolden(a, g);
    });

    test('last layer of the lens equals the model logits', async () => {
      const T = g.ids.length;
      const k = a.lens.k;
      const last = a.lens.rows - 1;
      for (let p = 0; p < T; p++) {
        const lp = logSoftmax(g.logits[p]!);
        const order = lp.map((v, i) => [v, i] as const).sort((x, y) => y[0] - x[0]);
        for (let j = 0; j < k; j++) {
          assert.equal(a.lens.topIds[(last * T + p) * k + j], order[j]![1]);
          assertClose([a.lens.topProbs[(last * T + p) * k + j]!], [Math.exp(order[j]![0])], TOL, `final prob ${p},${j}`);
        }
      }
      // the forward graph's own logits at the last position (as generation reads them) agree with the lens
      const out = await model.forward.run({ input_ids: { data: BigInt64Array.from(g.ids, BigInt), dims: [1, T] }, ...emptyPast(model) }, [
        'logits',
      ]);
      const lp = logSoftmax(Array.from(out.logits!.data as Float32Array));
      const top = lp.indexOf(Math.max(...lp));
      assert.equal(a.lastLogitsTop[0]!.id, top);
      assertClose([a.lastLogitsTop[0]!.prob], [Math.exp(lp[top]!)], 1e-5, 'logits vs lens');
    });

    test('lens probabilities and attention rows are distributions', () => {
      const { patterns, pos } = a.cache;
      const rows = patterns!.length / pos;
      for (let r = 0; r < rows; r++) {
        let s = 0;
        for (let j = 0; j < pos; j++) s += patterns![r * pos + j]!;
        assert.ok(Math.abs(s - 1) < 1e-5, `attention row ${r} sums to ${s}`);
      }
      for (const v of a.lens.entropy) assert.ok(v >= -1e-6 && v <= Math.log(g.d_vocab) + 1e-4);
    });

    if (name === 'stories260K') {
      test('greedy decoding from BOS reproduces the published llama2.c sample', async () => {
        const ids = [1];
        for (let i = 0; i < 60; i++) {
          const out = await model.forward.run(
            { input_ids: { data: BigInt64Array.from(ids, BigInt), dims: [1, ids.length] }, ...emptyPast(model) },
            ['logits'],
          );
          const l = out.logits!.data as Float32Array;
          let best = 0;
          for (let v = 1; v < l.length; v++) if (l[v]! > l[best]!) best = v;
          ids.push(best);
        }
        assert.deepEqual(ids.slice(1), g.greedy_ids!.slice(0, 60));
        const text = model.tokenizer.decode(ids.slice(1));
        const published =
          'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with';
        assert.ok(text.startsWith(published), `decoded: ${JSON.stringify(text)}`);
      });

      test('tokenizer gives llama2.c ids', () => {
        assert.deepEqual(model.tokenizer.encodeIds('Once upon a time', false), g.encode_once_upon_a_time);
        assert.deepEqual(model.tokenizer.encodeIds('Once upon a time', false), [403, 407, 261, 378]);
        for (const c of g.encode_cases ?? [])
          assert.deepEqual(model.tokenizer.encodeIds(c.text, false), c.ids, `encode ${JSON.stringify(c.text)}`);
      });
    }
  });
}

for (const name of hfFixtureNames()) {
  describe(`golden: hf-transformers/${name}`, () => {
    let model: LoadedModel;
    let g: LensAndMid;
    let a: Analysis;
    before(async () => {
      g = readJson<LensAndMid>(path.join(FIXTURES, 'goldens', 'hf', `${name}.json`));
      model = await loadModel(path.join(HF_DIR, name), { threads: 2, executionProvider: 'cpu' });
      a = await analyze(model, { ids: g.ids, topK: 5, maxTokens: 4096, patterns: false });
    });
    after(async () => model?.release());

    test('resid_mid and the logit lens of every layer match the numpy reference', () => compareMidAndLens(a, g));
  });
}
