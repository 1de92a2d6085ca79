// On-demand views on real weights (stories260K): angular proximity, attention statistics,
// clusters and prompt diff through the engine.
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { Engine } from '../../src/engine/engine';
import { SafetensorsFile } from '../../src/engine/checkpoint/safetensors';
import { spearman } from '../../src/engine/queries';
import { convertLlama2c } from '../../tools/convert/llama2c';
import type { ProximityResult } from '../../src/shared/analysis';
import { FIXTURES, STORIES260K, assertClose, readJson, tmpDir } from '../helpers';

describe('queries on stories260K', () => {
  const engine = new Engine();
  let dir = '';
  const golden = () =>
    readJson<{ ids: number[]; logits: number[][]; resid_post: number[][][]; n_layers: number }>(
      path.join(FIXTURES, 'goldens', 'stories260K.json'),
    );
  before(async () => {
    dir = path.join(tmpDir(), 'stories260K');
    convertLlama2c(STORIES260K.bin, STORIES260K.tokenizer, dir);
    await engine.load({ dir, threads: 1, executionProvider: 'cpu' });
  });
  after(() => engine.dispose());

  test('logit_t = ‖x‖·‖W_U[:,t]‖·cos_t for every token (independent cosines from the weights)', async () => {
    const g = golden();
    await engine.analyze({ ids: g.ids, topK: 5, maxTokens: 512, patterns: true }, undefined, 1);
    const st = SafetensorsFile.open(path.join(dir, 'model.safetensors'));
    const wE = st.readFloat32(st.entries.get('model.embed_tokens.weight')!); // tied: W_U = W_Eᵀ
    const normW = st.readFloat32(st.entries.get('model.norm.weight')!);
    const d = 64;
    for (const pos of [0, 7, g.ids.length - 1]) {
      const p = (await engine.query({ type: 'proximity', runId: 1, pos })) as ProximityResult;
      // test-side RMSNorm of the numpy reference's final residual stream
      const x = g.resid_post[g.n_layers - 1]![pos]!;
      const ms = x.reduce((s, v) => s + v * v, 0) / d;
      const xn = x.map((v, i) => (v / Math.sqrt(ms + 1e-5)) * normW[i]!);
      const xNorm = Math.sqrt(xn.reduce((s, v) => s + v * v, 0));
      assertClose([p.xNorm], [xNorm], 1e-4, '‖x‖');
      const a = await engine.analyze({ ids: g.ids, topK: 5, maxTokens: 512, patterns: false }, undefined, 9);
      assertClose([a.walk.normsFinal[g.n_layers * g.ids.length + pos]!], [xNorm], 1e-4, 'the ball: norm after ln_final');
      let worst = 0;
      for (let t = 0; t < 512; t++) {
        let dot = 0;
        let wn = 0;
        for (let i = 0; i < d; i++) {
          dot += xn[i]! * wE[t * d + i]!;
          wn += wE[t * d + i]! ** 2;
        }
        const cos = dot / (xNorm * Math.sqrt(wn));
        worst = Math.max(worst, Math.abs(g.logits[pos]![t]! - xNorm * Math.sqrt(wn) * cos));
        assert.ok(Math.abs(p.cos[t]! - cos) < 1e-4, `cos_${t} engine ${p.cos[t]} vs ${cos}`);
        assert.ok(Math.abs(p.logits[t]! - g.logits[pos]![t]!) < 1e-4, `logit_${t}`);
      }
      assert.ok(worst < 1e-4, `identity off by ${worst}`);
      assert.ok(p.spearman > 0.5 && p.spearman <= 1, `spearman ${p.spearman}`);
      assert.ok(p.topkOverlap >= 0 && p.topkOverlap <= 1);
      assert.equal(p.topByLogit[0], g.logits[pos]!.indexOf(Math.max(...g.logits[pos]!)));
    }
  });

  test('attention rows sum to 1; head statistics have the right shape', async () => {
    await engine.analyze({ text: 'Lily saw a ball. Lily saw a ball. Lily saw a', topK: 5, maxTokens: 512, patterns: true }, undefined, 2);
    const s = (await engine.query({ type: 'headStats', runId: 2, maxOffset: 8 })) as {
      selfBias: Float32Array;
      induction: Float32Array;
      kernel: Float32Array;
    };
    assert.equal(s.selfBias.length, 5 * 8);
    assert.equal(s.kernel.length, 5 * 8 * 9);
    assert.ok(
      s.induction.every((v) => v >= 0 && v <= 1),
      'induction scores are attention masses',
    );
    const pat = (await engine.query({ type: 'pattern', runId: 2, layer: 3, head: 1 })) as Float32Array;
    const T = Math.sqrt(pat.length);
    for (let q = 0; q < T; q++) {
      let sum = 0;
      for (let k = 0; k < T; k++) sum += pat[q * T + k]!;
      assert.ok(Math.abs(sum - 1) < 1e-5);
      for (let k = q + 1; k < T; k++) assert.equal(pat[q * T + k], 0, 'causal');
    }
  });

  test('long inputs: patterns not kept are recomputed on demand, with the same numbers', async () => {
    const text = 'Lily saw a ball. Lily saw a ball. Lily saw a';
    const kept = await engine.analyze({ text, topK: 5, maxTokens: 512, patterns: 'auto' }, undefined, 4);
    assert.ok(kept.cache.patterns, 'small input: patterns kept');
    const statsKept = (await engine.query({ type: 'headStats', runId: 4, maxOffset: 8 })) as {
      selfBias: Float32Array;
      kernel: Float32Array;
    };
    const patKept = (await engine.query({ type: 'pattern', runId: 4, layer: 2, head: 5 })) as Float32Array;
    const lazy = await engine.analyze({ text, topK: 5, maxTokens: 512, patterns: 'auto', patternBudgetFloats: 10 }, undefined, 5);
    assert.equal(lazy.cache.patterns, null, 'over the budget: not kept');
    const statsLazy = (await engine.query({ type: 'headStats', runId: 5, maxOffset: 8 })) as {
      selfBias: Float32Array;
      kernel: Float32Array;
    };
    assertClose(statsLazy.selfBias, statsKept.selfBias, 1e-6, 'self-bias');
    assertClose(statsLazy.kernel, statsKept.kernel, 1e-6, 'kernels');
    assertClose((await engine.query({ type: 'pattern', runId: 5, layer: 2, head: 5 })) as Float32Array, patKept, 1e-6, 'pattern');
  });

  test('clusters and prompt diff', async () => {
    const c = (await engine.query({ type: 'clusters', runId: 2, row: 5 })) as { order: number[]; merges: unknown[] };
    assert.deepEqual(
      [...c.order].sort((a, b) => a - b),
      Array.from({ length: c.order.length }, (_, i) => i),
    );
    await engine.analyze({ text: 'Lily saw a ball. Lily saw a dog. Lily saw a', topK: 5, maxTokens: 512, patterns: true }, undefined, 3);
    const d = (await engine.query({ type: 'diff', runId: 2, otherRunId: 3 })) as { cosine: Float32Array; rows: number };
    assert.equal(d.rows, 6);
    assertClose([d.cosine[0]!], [1], 1e-5, 'same last token → same embedding');
    assert.ok(d.cosine.every((v) => v <= 1 + 1e-6));
    await assert.rejects(engine.query({ type: 'diff', runId: 2, otherRunId: 99 }), /no longer in memory/);
  });

  test('retain frees the analyses the host no longer shows, never a newer one', async () => {
    const req = { text: 'Once upon a time', topK: 3, maxTokens: 64, patterns: false };
    for (const id of [10, 11, 12]) await engine.analyze(req, undefined, id);
    engine.retain([11]);
    assert.deepEqual(
      engine.keptRuns().filter((r) => r >= 10),
      [11, 12],
      'run 10 freed; 12 is newer than the host knows about',
    );
    await assert.rejects(engine.query({ type: 'clusters', runId: 10, row: 1 }), /no longer in memory/);
    engine.retain([12]);
    assert.deepEqual(engine.keptRuns(), [12]);
  });

  test('spearman on known rankings', () => {
    assert.equal(spearman(Float32Array.of(1, 2, 3), Float32Array.of(10, 20, 30)), 1);
    assert.equal(spearman(Float32Array.of(1, 2, 3), Float32Array.of(3, 2, 1)), -1);
  });
});
