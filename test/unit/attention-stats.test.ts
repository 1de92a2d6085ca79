// Head statistics computed inside the forward graph (graph/attnstats.ts) against the JS
// definitions (analysis/attention.ts headStats) on the full patterns of the same run, on real
// weights (stories260K) and a GPT-2-shaped model; and the attention views of an analysis that
// kept no patterns.
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { Engine } from '../../src/engine/engine';
import { headStats } from '../../src/engine/analysis/attention';
import { convertLlama2c } from '../../tools/convert/llama2c';
import type { Analysis, HeadStatsResult } from '../../src/shared/analysis';
import { FIXTURES, assertClose, tmpDir } from '../helpers';
import { emptyPast, forwardFeeds } from '../../src/engine/analyze';
import { ATTN_BLOCKED_MIN_SEQ, ATTN_BLOCKS, hook } from '../../src/engine/graph/forward';
import * as fs from 'node:fs';
import { onnx } from 'onnx-proto';
import { gateFeed, PATTERN_ROWS } from '../../src/engine/graph/gates';
import type { NamedTensor } from '../../src/engine/runtime/ort';

/** Equal within tol, NaN only where the reference is NaN. */
function assertStats(actual: HeadStatsResult, expected: Omit<HeadStatsResult, 'n_layers' | 'n_heads'>, what: string): void {
  assert.equal(actual.maxOffset, expected.maxOffset, `${what}: maxOffset`);
  for (const k of ['kernel', 'kernelNorm', 'selfBias'] as const) assertClose(actual[k], expected[k], 2e-5, `${what}: ${k}`);
  for (let i = 0; i < expected.induction.length; i++) {
    const e = expected.induction[i]!;
    const a = actual.induction[i]!;
    if (Number.isNaN(e)) assert.ok(Number.isNaN(a), `${what}: induction[${i}] is NaN without repeats, got ${a}`);
    else assert.ok(Math.abs(a - e) <= 2e-5, `${what}: induction[${i}] ${a} vs ${e}`);
  }
}

function jsStats(a: Analysis, maxOffset = 64) {
  const c = a.cache;
  assert.ok(c.patterns, 'patterns kept');
  return headStats(
    c.patterns,
    c.n_layers,
    c.n_heads,
    c.pos,
    a.tokens.map((t) => t.id),
    maxOffset,
  );
}

describe('attention statistics from the forward graph', () => {
  const stories = new Engine();
  const gpt2 = new Engine();
  before(async () => {
    const dir = path.join(tmpDir(), 'stories260K');
    convertLlama2c(path.join(FIXTURES, 'stories260K', 'stories260K.bin'), path.join(FIXTURES, 'stories260K', 'tok512.bin'), dir);
    await stories.load({ dir, threads: 1, executionProvider: 'cpu' });
    await gpt2.load({ dir: path.join(FIXTURES, 'models', 'tiny-gpt2'), threads: 1, executionProvider: 'cpu' });
  });
  after(async () => {
    await stories.dispose();
    await gpt2.dispose();
  });

  test('equal the definitions on the full patterns: offsets up to 64 of 120 tokens, repeated text (induction)', async () => {
    const text = 'Lily saw a big red ball in the park. She ran to the ball and she was happy. '.repeat(3);
    const a = await stories.analyze({ text, topK: 3, maxTokens: 120, patterns: true }, undefined, 1);
    assert.ok(a.cache.pos > 65, `${a.cache.pos} tokens: offsets capped at 64`);
    assert.ok(a.cache.headStats, 'the graph computed them');
    assertStats(a.cache.headStats, jsStats(a), 'stories260K');
    const s = a.cache.headStats;
    assert.ok(
      s.induction.every((v) => v >= 0 && v <= 1) && s.induction.some((v) => v > 0.05),
      `induction scores are attention masses, some heads look at what followed earlier occurrences (max ${Math.max(...s.induction)})`,
    );
    const cut = (await stories.query({ type: 'headStats', runId: 1, maxOffset: 8 })) as HeadStatsResult;
    assertStats(cut, jsStats(a, 8), 'stories260K, maxOffset 8');
  });

  test('short input (T < 65) and no repeated token: kernels to T−1, induction NaN', async () => {
    const ids = [1, 5, 9, 17, 33, 65, 129, 7, 3];
    const a = await gpt2.analyze({ ids, topK: 3, maxTokens: 64, patterns: true }, undefined, 1);
    assert.ok(a.cache.headStats);
    assert.equal(a.cache.headStats.maxOffset, ids.length - 1);
    assert.ok(a.cache.headStats.induction.every(Number.isNaN));
    assertStats(a.cache.headStats, jsStats(a), 'tiny-gpt2');
  });

  test('an analysis that keeps no patterns: the same statistics, and a head pattern fetched when shown', async () => {
    const text = 'Once upon a time Lily saw a ball. Once upon a time Lily saw a';
    const kept = await stories.analyze({ text, topK: 3, maxTokens: 512, patterns: 'auto' }, undefined, 2);
    const lean = await stories.analyze({ text, topK: 3, maxTokens: 512, patterns: 'auto', patternBudgetFloats: 10 }, undefined, 3);
    assert.ok(kept.cache.patterns, 'within the budget: kept');
    assert.equal(lean.cache.patterns, null, 'over the budget: not kept');
    assertStats((await stories.query({ type: 'headStats', runId: 3 })) as HeadStatsResult, jsStats(kept), 'from the graph');
    const T = kept.cache.pos;
    for (const head of [0, 3]) {
      const shown = (await stories.query({ type: 'pattern', runId: 3, layer: 2, head })) as Float32Array;
      const off = (2 * kept.cache.n_heads + head) * T * T;
      assertClose(shown, kept.cache.patterns.subarray(off, off + T * T), 1e-6, `pattern 2.${head}`);
    }
  });

  test('row gates: patterns are empty and logits present unless a caller says otherwise', async () => {
    const model = gpt2.requireModel();
    const ids = [3, 1, 4, 1, 5];
    const run = (extra: Record<string, NamedTensor>) =>
      model.forward.run({ ...forwardFeeds(model, ids, false), ...extra }, [hook.pattern(0), 'logits']);
    const plain = await model.forward.run({ input_ids: { data: BigInt64Array.from(ids, BigInt), dims: [1, 5] }, ...emptyPast(model) }, [
      hook.pattern(0),
      'logits',
    ]);
    assert.deepEqual(plain[hook.pattern(0)]!.dims, [1, 4, 0, 5], 'no pattern rows by default');
    assert.deepEqual(plain.logits!.dims, [1, 300], 'logits by default (generation)');
    const analysis = await run({});
    assert.deepEqual(analysis.logits!.dims, [0, 300], 'an analysis reads no logits: W_U stays untouched');
    const full = await run({ [PATTERN_ROWS]: gateFeed(5) });
    assert.deepEqual(full[hook.pattern(0)]!.dims, [1, 4, 5, 5]);
  });

  test('long inputs attend in causal query blocks: the same residual streams, statistics and patterns as one block', async () => {
    const cacheDir = tmpDir();
    const dir = path.join(tmpDir(), 'stories260K');
    convertLlama2c(path.join(FIXTURES, 'stories260K', 'stories260K.bin'), path.join(FIXTURES, 'stories260K', 'tok512.bin'), dir);
    const cached = new Engine();
    try {
      await cached.load({ dir, threads: 1, executionProvider: 'cpu', cacheDir });
      // the graph: one If per layer between a step on the KV cache (one softmax) and any other
      // run, whose If attends in ATTN_BLOCKS query blocks or in one
      const [entry] = fs.readdirSync(cacheDir);
      const graph = onnx.ModelProto.decode(fs.readFileSync(path.join(cacheDir, entry!, 'forward.onnx'))).graph!;
      const ifs = graph.node!.filter((n) => n.opType === 'If');
      assert.equal(ifs.length, cached.requireModel().spec.nLayers, 'one If per layer');
      const branch = (node: onnx.INodeProto, name: string) => node.attribute!.find((a) => a.name === name)!.g!;
      const softmaxes = (g: onnx.IGraphProto) => g.node!.filter((n) => n.opType === 'Softmax').length;
      assert.equal(softmaxes(branch(ifs[0]!, 'then_branch')), 1);
      const inner = branch(ifs[0]!, 'else_branch').node!.filter((n) => n.opType === 'If');
      assert.equal(inner.length, 1);
      assert.equal(softmaxes(branch(inner[0]!, 'then_branch')), ATTN_BLOCKS);
      assert.equal(softmaxes(branch(inner[0]!, 'else_branch')), 1);

      const text = 'Lily saw a big red ball in the park. She ran to the ball and she was happy. '.repeat(12);
      const whole = await cached.analyze({ text, topK: 3, maxTokens: 512, patterns: true }, undefined, 1); // pattern rows: one block
      const blocks = await cached.analyze({ text, topK: 3, maxTokens: 512, patterns: 'auto', patternBudgetFloats: 10 }, undefined, 2);
      const T = whole.cache.pos;
      assert.ok(T >= ATTN_BLOCKED_MIN_SEQ, `${T} tokens take the blocked path`);
      assert.equal(blocks.cache.patterns, null);
      assertClose(blocks.cache.resid, whole.cache.resid, 1e-6, 'resid_pre/post');
      assertClose(blocks.cache.residMid, whole.cache.residMid, 1e-6, 'resid_mid');
      assertStats(blocks.cache.headStats!, jsStats(whole), 'blocked statistics vs the full patterns');
      assertClose(blocks.lens.entropy, whole.lens.entropy, 1e-5, 'lens entropy');
      assert.deepEqual(blocks.lens.topIds, whole.lens.topIds, 'lens top tokens');
      // a head's pattern fetched on demand (pattern rows: the one-block branch) equals the kept one
      const shown = (await cached.query({ type: 'pattern', runId: 2, layer: 4, head: 1 })) as Float32Array;
      const off = (4 * whole.cache.n_heads + 1) * T * T;
      assertClose(shown, whole.cache.patterns!.subarray(off, off + T * T), 1e-6, 'pattern 4.1');
    } finally {
      await cached.dispose();
    }
  });

  test('patterns: false computes no attention at all', async () => {
    const a = await stories.analyze({ text: 'Once upon a time', topK: 3, maxTokens: 64, patterns: false }, undefined, 4);
    assert.equal(a.cache.patterns, null);
    assert.equal(a.cache.headStats, null);
  });
});
