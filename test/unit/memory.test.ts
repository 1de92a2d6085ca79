// Memory estimate and guard: the breakdown for known shapes, and the TOO_LARGE refusal.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import {
  checkMemory,
  estimateMemory,
  BASE_OVERHEAD_BYTES,
  ACTIVATIONS_BEYOND_LOAD,
  OVERHEAD_PER_VOCAB_BYTES,
  type MemorySpec,
} from '../../src/engine/memory';
import { specFromConfig, paramCount } from '../../src/engine/arch/spec';
import { SUGGESTED_MODELS } from '../../src/engine/hub/suggested';
import { EngineError } from '../../src/engine/errors';

const tiny: MemorySpec = {
  family: 'llama',
  nLayers: 2,
  dModel: 8,
  nHeads: 2,
  nKvHeads: 1,
  headDim: 4,
  dVocab: 10,
  dMlp: 16,
  gatedMlp: true,
  tiedEmbeddings: false,
  maxPositions: 64,
  norm: 'rmsnorm',
  blockNorms: 'pre',
  qkNorm: 'none',
  qkvBias: false,
  outBias: false,
  mlpBias: false,
};

const gpt2 = () => specFromConfig(SUGGESTED_MODELS.find((m) => m.repo === 'openai-community/gpt2')!.config);

function thrown(f: () => unknown): EngineError {
  try {
    f();
  } catch (e) {
    return e as EngineError;
  }
  assert.fail('expected an error');
}

describe('estimateMemory', () => {
  test('breakdown of a tiny model, by hand', () => {
    const e = estimateMemory(tiny, 1234, 4, { patterns: true });
    // params: emb 10·8·2 = 160; per layer attn 8·2·4·2 + 8·1·4·2 = 192, gated mlp 8·16·3 = 384,
    // two RMSNorms 2·8; the final norm 8
    assert.equal(e.params, 160 + 2 * (192 + 384 + 16) + 8);
    assert.deepEqual(e.weights, { forward: 1352 * 4, lens: 10 * 8 * 4 * 2, total: 1352 * 4 + 640 });
    assert.deepEqual(e.activations, {
      residual: 5 * 4 * 8 * 4 * 2, // (2L+1)·T·d floats, ORT output + JS copy
      patterns: 2 * 2 * 16 * 4 * 2, // L·H·T² floats, twice
      attentionScores: 2 * 2 * 16 * 4,
      mlp: 4 * 16 * 4 * 3 + 4 * 4 * 8 * 4,
      kvCache: 2 * 2 * 1 * 4 * 4 * 4,
      lens: 4 * (3 * 10 * 16) + 4 * 10 * 4 + 3 * 4 * 8 * 4, // chunk = all 4 positions
      total: 1280 + 512 + 256 + 1280 + 256 + 2464,
    });
    assert.equal(e.overhead, BASE_OVERHEAD_BYTES + 10 * OVERHEAD_PER_VOCAB_BYTES);
    assert.equal(e.total, 6048 + 6048 + e.overhead);
    assert.equal(e.loadTransient, 2 * 5408 + 640);
    assert.equal(e.loadPeak, 6048 + 11456 + e.overhead);
    assert.equal(ACTIVATIONS_BEYOND_LOAD, 0.5);
    assert.equal(e.peak, e.loadPeak + 0.5 * 6048);
    assert.equal(e.diskBytes, 1234);
    assert.equal(e.tokens, 4);
  });

  test('without patterns, the lens chunk cap, and the context window cap', () => {
    const off = estimateMemory(tiny, 0, 4, { patterns: false });
    assert.equal(off.activations.patterns, 0);
    assert.equal(off.activations.total, 6048 - 512);
    const capped = estimateMemory(tiny, 0, 4, { patterns: false, lensChunkBytes: 1000 });
    assert.equal(capped.activations.lens, 2 * 480 + 2 * 10 * 4 + 3 * 2 * 8 * 4); // 2 positions per chunk
    assert.equal(estimateMemory(tiny, 0, 10_000, { patterns: true }).tokens, 64);
  });

  test('GPT-2 numbers', () => {
    const s = gpt2();
    const e = estimateMemory(s, 548e6, 1024, { patterns: true });
    assert.equal(e.params, 124_439_808); // as published: embeddings, positions, weights, biases, LayerNorms
    assert.equal(e.params, paramCount(s));
    assert.equal(e.weights.forward, 124_439_808 * 4);
    assert.equal(e.weights.lens, 50257 * 768 * 4); // tied: the lens session holds W_E once
    assert.equal(e.activations.patterns, 12 * 12 * 1024 * 1024 * 4 * 2);
    assert.equal(e.activations.residual, 25 * 1024 * 768 * 4 * 2);
    // the lens chunk stays within its 192 MiB budget
    assert.ok(e.activations.lens < 200 * 1024 * 1024);
    // untied models hold W_U in both sessions
    const untied = estimateMemory({ ...s, tiedEmbeddings: false }, 0, 1, { patterns: false });
    assert.equal(untied.weights.lens, 2 * 50257 * 768 * 4);
  });

  test('through the graph cache a load adds nothing beyond the weights (calibrated on the bench 1.17 B model)', () => {
    // bench/checkpoints.ts LLAMA_1B: measured peak RSS with the first analysis (16 tokens + patterns)
    // 5.90 GB on the load that converts into the cache, 5.02 GB on the next
    const bench = specFromConfig({
      model_type: 'llama',
      hidden_size: 2048,
      num_hidden_layers: 22,
      num_attention_heads: 32,
      num_key_value_heads: 4,
      intermediate_size: 5632,
      vocab_size: 50304,
    });
    const cached = estimateMemory(bench, 2.35e9, 16, { patterns: true, graphCache: true });
    assert.equal(cached.loadTransient, 0);
    assert.equal(cached.loadPeak, cached.weights.total + cached.overhead);
    assert.ok(cached.peak >= 5.9e9 && cached.peak <= 1.1 * 5.9e9, `estimate ${cached.peak}`);
    const plain = estimateMemory(bench, 2.35e9, 16, { patterns: true });
    assert.equal(plain.loadTransient, 2 * plain.weights.forward + plain.weights.lens);
    assert.ok(plain.peak > 2 * cached.peak);
  });

  test('attention patterns grow with tokens², the rest linearly', () => {
    const s = gpt2();
    const a = estimateMemory(s, 0, 256, { patterns: true });
    const b = estimateMemory(s, 0, 512, { patterns: true });
    assert.equal(b.activations.patterns, 4 * a.activations.patterns);
    assert.equal(b.activations.residual, 2 * a.activations.residual);
    assert.equal(b.weights.total, a.weights.total);
  });

  test('every suggested model has a config the engine accepts', () => {
    for (const m of SUGGESTED_MODELS) {
      const e = estimateMemory(specFromConfig(m.config), m.downloadBytes, 512, { patterns: false });
      assert.ok(e.weights.total > m.downloadBytes * 0.9, `${m.repo}: float32 weights are at least the download`);
    }
  });
});

describe('checkMemory', () => {
  test('passes when it fits; returns the figures', () => {
    const e = estimateMemory(gpt2(), 548e6, 512, { patterns: false });
    const r = checkMemory(e, { freeBytes: 16e9 });
    assert.deepEqual(r, { need: e.peak, budget: 16e9 * 0.85, footprint: e.peak });
    // an already-loaded model needs only the activations from the free memory
    const loaded = checkMemory(e, { freeBytes: (e.activations.total + 1) / 0.85, loaded: true });
    assert.equal(loaded.need, e.activations.total);
  });

  test('TOO_LARGE for free memory: numbers in GB and what to change', () => {
    const e = estimateMemory(gpt2(), 548e6, 1024, { patterns: true });
    const err = thrown(() => checkMemory(e, { freeBytes: 3e9, modelName: 'openai-community/gpt2' }));
    assert.equal(err.code, 'TOO_LARGE');
    assert.match(err.message, /^Loading openai-community\/gpt2 and analysing 1024 tokens with attention patterns needs about \d+\.\d\d GB/);
    assert.match(err.message, /weights 0\.65 GB as float32/);
    assert.match(err.message, /attention patterns 1\.21 GB/);
    assert.match(err.message, /only 3\.00 GB of memory is free \(at most 85% of it, 2\.55 GB, is used\)/);
    assert.match(err.message, /turn off attention patterns \(transformerDynamics\.attentionPatterns\), which saves 1\.21 GB/);
    assert.match(err.message, /choose a smaller model/);
    assert.match(err.message, /close other applications/);
    // the suggested token count fits and one more does not
    const fit = Number(/about (\d+) would fit/.exec(err.message)?.[1]);
    assert.ok(fit > 1 && fit < 1024, err.message);
    checkMemory(estimateMemory(gpt2(), 548e6, fit, { patterns: true }), { freeBytes: 3e9 });
    assert.equal(
      thrown(() => checkMemory(estimateMemory(gpt2(), 548e6, fit + 1, { patterns: true }), { freeBytes: 3e9 })).code,
      'TOO_LARGE',
    );
  });

  test('TOO_LARGE for the cap, even with plenty of free memory', () => {
    const e = estimateMemory(gpt2(), 548e6, 512, { patterns: false });
    const err = thrown(() => checkMemory(e, { freeBytes: 64e9, capBytes: 2e9, capSetting: 'transformerDynamics.memoryCapGB' }));
    assert.equal(err.code, 'TOO_LARGE');
    assert.match(err.message, /the memory cap is 2\.00 GB/);
    assert.match(err.message, /raise transformerDynamics\.memoryCapGB/);
    assert.doesNotMatch(err.message, /turn off attention patterns/);
    assert.doesNotMatch(err.message, /close other applications/);
    assert.doesNotThrow(() => checkMemory(e, { freeBytes: 64e9, capBytes: 4e9 }));
  });

  test('a model that does not fit even for one token says so without a token count', () => {
    const e = estimateMemory(gpt2(), 548e6, 64, { patterns: false });
    const err = thrown(() => checkMemory(e, { freeBytes: 1e9 }));
    assert.doesNotMatch(err.message, /would fit/);
    assert.match(err.message, /analyse fewer tokens.*choose a smaller model/);
  });
});
