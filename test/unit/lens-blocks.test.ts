// The logit lens in vocabulary blocks (lensblocked.ts, graph/lensblocks.ts): what the CPU runs
// through the graph cache, with W_U read from the weights file a block at a time. Held to the
// numpy reference of every family (each layer's top-k, probabilities, entropy, KL to the final
// layer, log-prob and rank of the next token; copy mass where the golden has the logits) with
// blocks of 37 tokens, so every vocabulary spans several blocks and a ragged last one; and to
// the whole-vocabulary lens (lens.ts) on everything else it computes: the cosines and the walk.
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadModel, type LoadedModel } from '../../src/engine/model';
import { analyze, Cancelled } from '../../src/engine/analyze';
import { vocabBlocks } from '../../src/engine/lensblocked';
import type { Analysis } from '../../src/shared/analysis';
import { FIXTURES, assertClose, readJson, tmpDir, withEnv } from '../helpers';
import { HF_DIR, hfFixtureNames } from '../hfReference';
import { compareMidAndLens, compareToGolden, goldenModelDir, type Golden, type LensAndMid } from '../goldens-compare';

const BLOCK = 37;

describe('vocabulary blocks', () => {
  const check = (V: number, rows: number, k: number) => {
    const b = vocabBlocks(V, rows, k);
    assert.equal(b[0], 0);
    assert.equal(b[b.length - 1], V);
    for (let i = 1; i < b.length; i++) {
      const n = b[i]! - b[i - 1]!;
      assert.ok(n <= Math.max(rows, 2 * k), `block ${i} of ${n} tokens exceeds ${rows}`);
      assert.ok(n >= k, `block ${i} of ${n} tokens is smaller than k = ${k}`);
    }
    return b;
  };
  test('at most the block size, none smaller than k, the whole vocabulary once', () => {
    assert.equal(check(50257, 4096, 5).length - 1, 13);
    assert.deepEqual(check(256, 37, 5), [0, 36, 73, 109, 146, 182, 219, 256]);
    assert.deepEqual(check(10, 4, 5), [0, 5, 10], 'k wins over the block size: TopK needs k tokens in every block');
    assert.deepEqual(check(3, 4096, 3), [0, 3]);
    check(151936, 4096, 100);
  });
});

/** Analyses of one model: blocked (graph cache, blocks of BLOCK) and whole (in memory). */
function pair(dir: () => string, ids: () => number[], patterns: boolean) {
  const state: { blocked?: Analysis; whole?: Analysis; model?: LoadedModel } = {};
  before(async () => {
    const cacheDir = tmpDir('td-lensblocks-');
    state.model = await loadModel(dir(), { threads: 2, executionProvider: 'cpu', cacheDir, lensVocabBlock: BLOCK });
    assert.ok(state.model.lensBlocks, 'the blocked lens runs through the graph cache on the CPU');
    state.blocked = await analyze(state.model, { ids: ids(), topK: 5, maxTokens: 4096, patterns });
    const whole = await loadModel(dir(), { threads: 2, executionProvider: 'cpu' });
    try {
      assert.equal(whole.lensBlocks, undefined, 'graphs built in memory: the whole-vocabulary lens');
      state.whole = await analyze(whole, { ids: ids(), topK: 5, maxTokens: 4096, patterns });
    } finally {
      await whole.release();
    }
  });
  after(async () => state.model?.release());
  return state;
}

/** What the goldens do not hold: both cosines and the walk's measures, against lens.ts. */
function sameAsWhole(b: Analysis, w: Analysis): void {
  assertClose(
    b.lens.cosNext.filter((v) => !Number.isNaN(v)),
    w.lens.cosNext.filter((v) => !Number.isNaN(v)),
    1e-5,
    'cos_next',
  );
  assertClose(b.lens.cosPred, w.lens.cosPred, 1e-5, 'cos_pred');
  assertClose(b.lens.copyMass, w.lens.copyMass, 1e-5, 'copy mass');
  assert.deepEqual(Array.from(b.lens.topIds), Array.from(w.lens.topIds), 'top ids');
  assert.deepEqual(Array.from(b.lens.nextRank), Array.from(w.lens.nextRank), 'ranks');
  for (const k of ['norms', 'normsFinal', 'cosToFinal', 'stepSize', 'stepCos'] as const) assertClose(b.walk[k], w.walk[k], 1e-6, k);
  assert.deepEqual(
    b.lastLogitsTop.map((t) => t.id),
    w.lastLogitsTop.map((t) => t.id),
  );
}

for (const name of ['tiny-gpt2', 'tiny-llama', 'tiny-qwen2', 'tiny-neox', 'tiny-neox-seq', 'stories260K']) {
  describe(`blocked lens, golden: ${name}`, () => {
    const g = readJson<Golden>(path.join(FIXTURES, 'goldens', `${name}.json`));
    const a = pair(
      () => goldenModelDir(name),
      () => g.ids,
      true,
    );
    test('every layer of the lens, copy mass included, matches the numpy reference', () => compareToGolden(a.blocked!, g));
    test('cosines and the walk equal the whole-vocabulary lens', () => sameAsWhole(a.blocked!, a.whole!));
  });
}

for (const name of hfFixtureNames()) {
  describe(`blocked lens, golden: hf-transformers/${name}`, () => {
    const g = readJson<LensAndMid>(path.join(FIXTURES, 'goldens', 'hf', `${name}.json`));
    const a = pair(
      () => path.join(HF_DIR, name),
      () => g.ids,
      false,
    );
    test('every layer of the lens matches the numpy reference', () => compareMidAndLens(a.blocked!, g));
    test('cosines and the walk equal the whole-vocabulary lens', () => sameAsWhole(a.blocked!, a.whole!));
  });
}

describe('when the blocked lens runs', () => {
  const dir = path.join(HF_DIR, 'gemma2');
  const g = readJson<LensAndMid>(path.join(FIXTURES, 'goldens', 'hf', 'gemma2.json'));

  test('a second load reads the cache entry (cache-hit) and runs the same lens', async () => {
    const cacheDir = tmpDir('td-lensblocks-');
    const first = await loadModel(dir, { threads: 2, executionProvider: 'cpu', cacheDir, lensVocabBlock: BLOCK });
    const a1 = await analyze(first, { ids: g.ids, topK: 5, maxTokens: 4096, patterns: false });
    await first.release();
    const meta = fs.readdirSync(cacheDir).map((e) => readJson<{ unembedOffset?: number }>(path.join(cacheDir, e, 'meta.json')));
    assert.ok(Number.isInteger(meta[0]!.unembedOffset), 'the entry says where W_U is');
    const second = await loadModel(dir, { threads: 2, executionProvider: 'cpu', cacheDir, lensVocabBlock: BLOCK });
    try {
      assert.equal(second.graphSource, 'cache-hit');
      assert.ok(second.lensBlocks);
      const a2 = await analyze(second, { ids: g.ids, topK: 5, maxTokens: 4096, patterns: false });
      assert.deepEqual(Array.from(a2.lens.topIds), Array.from(a1.lens.topIds));
      assert.deepEqual(Array.from(a2.lens.entropy), Array.from(a1.lens.entropy));
      compareMidAndLens(a2, g);
    } finally {
      await second.release();
    }
  });

  test('lensVocabBlock 0 and float16 weights: the whole-vocabulary lens, the same numbers', async () => {
    const cacheDir = tmpDir('td-lensblocks-');
    for (const opts of [{ lensVocabBlock: 0 }, { weightPrecision: 'float16' as const }]) {
      const m = await loadModel(dir, { threads: 2, executionProvider: 'cpu', cacheDir, ...opts });
      try {
        assert.equal(m.lensBlocks, undefined, JSON.stringify(opts));
        if (opts.lensVocabBlock === 0) compareMidAndLens(await analyze(m, { ids: g.ids, topK: 5, maxTokens: 4096, patterns: false }), g);
      } finally {
        await m.release();
      }
    }
  });

  test('TD_LENS_VOCAB_BLOCK sets the block size; a value that is not a whole number is refused by name', async () => {
    const cacheDir = tmpDir('td-lensblocks-');
    await withEnv('TD_LENS_VOCAB_BLOCK', '64', async () => {
      const m = await loadModel(dir, { threads: 2, executionProvider: 'cpu', cacheDir });
      assert.equal(m.lensBlocks?.blockRows, 64);
      await m.release();
    });
    await withEnv('TD_LENS_VOCAB_BLOCK', 'lots', () =>
      assert.rejects(loadModel(dir, { threads: 2, executionProvider: 'cpu', cacheDir }), /TD_LENS_VOCAB_BLOCK must be a whole number/),
    );
  });

  test('a cancel between two blocks stops the lens', async () => {
    const m = await loadModel(dir, { threads: 2, executionProvider: 'cpu', cacheDir: tmpDir('td-lensblocks-'), lensVocabBlock: 8 });
    try {
      const ac = new AbortController();
      const run = m.lensBlocks!.block.run;
      let calls = 0;
      m.lensBlocks!.block.run = (...args) => {
        if (++calls === 3) ac.abort();
        return run(...args);
      };
      await assert.rejects(analyze(m, { ids: g.ids, topK: 5, maxTokens: 4096, patterns: false }, ac.signal), (e) => e instanceof Cancelled);
      assert.equal(calls, 3, 'no block ran after the cancel');
    } finally {
      await m.release();
    }
  });
});
