// config.json conformance: every key of every fixture config is read by its family's reader,
// known not to matter, or refused by name — in both formats transformers writes (the
// transformers 5 rope_parameters and the older rope_theta / rope_scaling / rotary_* keys) —
// and the keys that change the numbers follow transformers 5.17's defaults and precedence.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { paramCount, readConfig, specFromConfig, type ModelSpec, type RopeSpec } from '../../src/engine/arch/spec';
import { SafetensorsFile } from '../../src/engine/checkpoint/safetensors';
import { IRRELEVANT_KEYS } from '../../src/engine/arch/config';
import { EngineError } from '../../src/engine/errors';
import { BUNDLED_MODEL, FIXTURES } from '../helpers';
import { HF_DIR, hfFixtureNames, olderFormat, readHfConfig } from '../hfReference';

type Json = Record<string, unknown>;

function configsOnDisk(): { where: string; cfg: Json }[] {
  const out: { where: string; cfg: Json }[] = [];
  for (const name of hfFixtureNames()) {
    const cfg = readHfConfig(name);
    out.push({ where: `hf-transformers/${name}`, cfg });
    for (const typeKey of ['type', 'rope_type'] as const) {
      const older = olderFormat(cfg, typeKey);
      if (older) out.push({ where: `hf-transformers/${name} (older keys, "${typeKey}")`, cfg: older });
    }
  }
  for (const name of fs.readdirSync(path.join(FIXTURES, 'models')).sort()) {
    const file = path.join(FIXTURES, 'models', name, 'config.json');
    out.push({ where: `models/${name}`, cfg: JSON.parse(fs.readFileSync(file, 'utf8')) as Json });
  }
  // today's Hub models as published, and the bundled model
  for (const name of fs.readdirSync(path.join(FIXTURES, 'hub-configs')).filter((f) => f.endsWith('.json'))) {
    out.push({ where: `hub-configs/${name}`, cfg: JSON.parse(fs.readFileSync(path.join(FIXTURES, 'hub-configs', name), 'utf8')) as Json });
  }
  out.push({ where: 'media/models/td-mini', cfg: JSON.parse(fs.readFileSync(path.join(BUNDLED_MODEL, 'config.json'), 'utf8')) as Json });
  return out;
}

function refusal(f: () => unknown): EngineError {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof EngineError, `not an EngineError: ${String(e)}`);
    return e;
  }
  assert.fail('expected the config to be refused');
}

const LLAMA: Json = {
  model_type: 'llama',
  hidden_size: 32,
  num_hidden_layers: 3,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  intermediate_size: 64,
  vocab_size: 256,
  max_position_embeddings: 128,
};

function fixed(r: RopeSpec | null): Float32Array {
  assert.ok(r && r.freq.kind === 'fixed', 'a fixed-frequency rope');
  return r.freq.kind === 'fixed' ? r.freq.invFreq : new Float32Array(0);
}

const windows = (s: ModelSpec) => s.layers.map((l) => l.window);

describe('config key walk', () => {
  for (const { where, cfg } of configsOnDisk()) {
    test(`${where}: every key is used or irrelevant`, () => {
      const { keys, reasons } = readConfig(cfg);
      for (const key of Object.keys(cfg)) {
        const use = keys[key];
        assert.ok(use === 'used' || use === 'irrelevant', `${where}: key "${key}" is not accounted for`);
        if (use === 'irrelevant') assert.ok(reasons[key], `${where}: "${key}" is irrelevant without a reason`);
        if (key in IRRELEVANT_KEYS) assert.equal(use, 'irrelevant', `${where}: "${key}" is listed as irrelevant but was read`);
      }
      assert.deepEqual(Object.keys(keys).sort(), Object.keys(cfg).sort());
    });
  }

  test('an unknown key that could change the numbers is refused with its name and value', () => {
    const e = refusal(() => specFromConfig({ ...LLAMA, embedding_multiplier: 12 }));
    assert.equal(e.code, 'UNSUPPORTED_ARCHITECTURE');
    assert.match(e.message, /"embedding_multiplier" = 12 is not a key Transformer Dynamics knows for llama/);
    // a key another family reads is unknown to this one
    assert.match(refusal(() => specFromConfig({ ...LLAMA, query_pre_attn_scalar: 64 })).message, /"query_pre_attn_scalar" = 64/);
    // an unknown key set to null says nothing
    assert.doesNotThrow(() => specFromConfig({ ...LLAMA, embedding_multiplier: null }));
  });

  test('the irrelevant keys are accounted for as such', () => {
    const { keys } = readConfig({
      ...LLAMA,
      torch_dtype: 'bfloat16',
      use_cache: false,
      attention_dropout: 0.1,
      transformers_version: '4.40.0',
    });
    for (const k of ['torch_dtype', 'use_cache', 'attention_dropout', 'transformers_version']) assert.equal(keys[k], 'irrelevant');
    assert.equal(keys.hidden_size, 'used');
  });
});

describe('rope: both formats, transformers 5.17 precedence', () => {
  test('an unknown rope_type is refused by name, in either format', () => {
    for (const cfg of [
      { ...LLAMA, rope_parameters: { rope_type: 'made-up-rope', rope_theta: 10000 } },
      { ...LLAMA, rope_scaling: { type: 'made-up-rope', factor: 2 } },
    ]) {
      const e = refusal(() => specFromConfig(cfg));
      assert.equal(e.code, 'UNSUPPORTED_ARCHITECTURE');
      assert.match(e.message, /rope_type" "made-up-rope" is not supported/);
    }
    assert.match(
      refusal(() => specFromConfig({ ...LLAMA, rope_parameters: { rope_type: 'proportional', rope_theta: 1e4 } })).message,
      /"proportional"/,
    );
  });

  test('a rope key the rope type does not use is refused; a missing required one too', () => {
    const e = refusal(() =>
      specFromConfig({ ...LLAMA, rope_parameters: { rope_type: 'linear', factor: 2, rope_theta: 1e4, beta_fast: 8 } }),
    );
    assert.match(e.message, /"rope_parameters.beta_fast" = 8 is not used by rope_type "linear"/);
    const d = refusal(() => specFromConfig({ ...LLAMA, rope_parameters: { rope_type: 'default', rope_theta: 1e4, factor: 4 } }));
    assert.match(d.message, /"rope_parameters.factor" = 4 is not used by rope_type "default"/);
    const m = refusal(() => specFromConfig({ ...LLAMA, rope_scaling: { rope_type: 'llama3', factor: 8 } }));
    assert.equal(m.code, 'BAD_CONFIG');
    assert.match(m.message, /"rope_scaling" of rope_type "llama3" has no "low_freq_factor"/);
    // original_max_position_embeddings defaults to max_position_embeddings, as in transformers
    assert.doesNotThrow(() => specFromConfig({ ...LLAMA, rope_scaling: { rope_type: 'yarn', factor: 4 } }));
  });

  test('rope_parameters.rope_theta wins over a top-level rope_theta; rope_scaling replaces rope_parameters', () => {
    const base = fixed(specFromConfig({ ...LLAMA, rope_theta: 10000 }).layers[0]!.rope);
    const inDict = fixed(
      specFromConfig({ ...LLAMA, rope_theta: 500000, rope_parameters: { rope_type: 'default', rope_theta: 10000 } }).layers[0]!.rope,
    );
    assert.deepEqual(inDict, base);
    const scaled = fixed(
      specFromConfig({
        ...LLAMA,
        rope_theta: 10000,
        rope_parameters: { rope_type: 'default', rope_theta: 10000 },
        rope_scaling: { type: 'linear', factor: 4 },
      }).layers[0]!.rope,
    );
    base.forEach((f, i) => assert.ok(Math.abs(scaled[i]! - f / 4) <= 1e-7 * f, `linear scaling at ${i}`));
  });

  test('every supported rope type, both formats give the same frequencies', () => {
    const types: Json[] = [
      { rope_type: 'linear', factor: 4 },
      { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 32 },
      { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 32 },
      { rope_type: 'dynamic', factor: 2 },
    ];
    for (const t of types) {
      const a = specFromConfig({ ...LLAMA, rope_parameters: { ...t, rope_theta: 500000 } }).layers[0]!.rope!;
      const { rope_type: type, ...rest } = t;
      const b = specFromConfig({ ...LLAMA, rope_theta: 500000, rope_scaling: { type, ...rest } }).layers[0]!.rope!;
      assert.deepEqual(a, b, String(t.rope_type));
      assert.equal(a.type, t.rope_type);
    }
  });

  test('dynamic NTK: frequencies computed in the graph; the context is max_position_embeddings × factor', () => {
    const s = specFromConfig({
      ...LLAMA,
      max_position_embeddings: 32,
      rope_parameters: { rope_type: 'dynamic', factor: 2, rope_theta: 1e4 },
    });
    assert.deepEqual(s.layers[0]!.rope!.freq, { kind: 'dynamic', theta: 1e4, factor: 2, maxPositions: 32 });
    assert.equal(s.maxPositions, 64);
  });

  test('yarn: the attention factor 0.1·ln(factor) + 1 unless given', () => {
    const y = specFromConfig({
      ...LLAMA,
      rope_parameters: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 32, rope_theta: 1e4 },
    });
    assert.ok(Math.abs(y.layers[0]!.rope!.attentionFactor - (0.1 * Math.log(4) + 1)) < 1e-12);
    const given = specFromConfig({
      ...LLAMA,
      rope_parameters: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 32, rope_theta: 1e4, attention_factor: 1.5 },
    });
    assert.equal(given.layers[0]!.rope!.attentionFactor, 1.5);
  });

  test('partial rotary: honoured by Phi-3 and GPT-NeoX, refused where transformers rotates whole heads', () => {
    const e = refusal(() => specFromConfig({ ...LLAMA, partial_rotary_factor: 0.5 }));
    assert.match(e.message, /partial_rotary_factor" = 0.5: llama rotates whole heads/);
    const neox = specFromConfig({
      model_type: 'gpt_neox',
      hidden_size: 32,
      num_hidden_layers: 1,
      num_attention_heads: 4,
      vocab_size: 9,
      intermediate_size: 8,
      rotary_pct: 0.5,
    });
    assert.equal(neox.layers[0]!.rope!.rotaryDim, 4);
    const neoxNew = specFromConfig({
      model_type: 'gpt_neox',
      hidden_size: 32,
      num_hidden_layers: 1,
      num_attention_heads: 4,
      vocab_size: 9,
      intermediate_size: 8,
      rope_parameters: { rope_type: 'default', rope_theta: 1e4, partial_rotary_factor: 0.5 },
    });
    assert.deepEqual(neoxNew.layers[0]!.rope, neox.layers[0]!.rope);
  });

  test('GPT-NeoX: a top-level rope_theta transformers 5.17 does not read is refused when it disagrees', () => {
    const cfg = {
      model_type: 'gpt_neox',
      hidden_size: 32,
      num_hidden_layers: 1,
      num_attention_heads: 4,
      vocab_size: 9,
      intermediate_size: 8,
    };
    assert.match(
      refusal(() => specFromConfig({ ...cfg, rotary_emb_base: 10000, rope_theta: 500000 })).message,
      /"rope_theta" = 500000 is not supported for gpt_neox/,
    );
    assert.doesNotThrow(() => specFromConfig({ ...cfg, rotary_emb_base: 10000, rope_theta: 10000 }));
  });

  test('Phi-3: the top-level original_max_position_embeddings wins; su and yarn mean longrope; longrope switches by length', () => {
    const phi = {
      model_type: 'phi3',
      hidden_size: 32,
      num_hidden_layers: 1,
      num_attention_heads: 4,
      intermediate_size: 8,
      vocab_size: 9,
      max_position_embeddings: 128,
      original_max_position_embeddings: 32,
    };
    const factors = { short_factor: [1, 1, 1, 1], long_factor: [1, 2, 3, 4] };
    const s = specFromConfig({ ...phi, rope_scaling: { type: 'su', ...factors, original_max_position_embeddings: 64 } });
    const f = s.layers[0]!.rope!.freq;
    assert.equal(f.kind, 'longrope');
    assert.equal(f.kind === 'longrope' && f.originalMax, 32);
    assert.ok(Math.abs(s.layers[0]!.rope!.attentionFactor - Math.sqrt(1 + Math.log(4) / Math.log(32))) < 1e-12);
    assert.match(refusal(() => specFromConfig({ ...phi, rope_scaling: { type: 'linear', factor: 2 } })).message, /not one phi3 accepts/);
    assert.match(
      refusal(() => specFromConfig({ ...phi, rope_scaling: { type: 'longrope', short_factor: [1], long_factor: [1] } })).message,
      /must be 4 positive numbers/,
    );
  });

  test('Gemma 3: rope per layer type; older configs give rope_theta (global) and rope_local_base_freq (local)', () => {
    const g3 = {
      model_type: 'gemma3_text',
      hidden_size: 32,
      num_hidden_layers: 3,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 8,
      intermediate_size: 64,
      vocab_size: 256,
      sliding_window: 8,
      sliding_window_pattern: 3,
    };
    const older = specFromConfig({ ...g3, rope_theta: 1e6, rope_local_base_freq: 1e4, rope_scaling: { rope_type: 'linear', factor: 8 } });
    const newer = specFromConfig({
      ...g3,
      rope_parameters: {
        full_attention: { rope_type: 'linear', factor: 8, rope_theta: 1e6 },
        sliding_attention: { rope_type: 'default', rope_theta: 1e4 },
      },
    });
    assert.deepEqual(older.layers, newer.layers);
    assert.deepEqual(windows(older), [8, 8, null]);
    assert.ok(older.layers[0]!.rope === older.layers[1]!.rope && older.layers[0]!.rope !== older.layers[2]!.rope);
    assert.ok(Math.abs(fixed(older.layers[2]!.rope)[0]! - 1 / 8) < 1e-9);
    assert.match(
      refusal(() => specFromConfig({ ...g3, rope_parameters: { rope_type: 'default', rope_theta: 1e4 } })).message,
      /keyed by layer type/,
    );
  });
});

describe('sliding windows, layer types and other keys that change the numbers', () => {
  test('Qwen2/Qwen3: use_sliding_window on layers ≥ max_window_layers; layer_types wins when given', () => {
    const q = { ...LLAMA, model_type: 'qwen2', sliding_window: 8, max_window_layers: 1 };
    assert.deepEqual(windows(specFromConfig({ ...q, use_sliding_window: true })), [null, 8, 8]);
    assert.deepEqual(windows(specFromConfig({ ...q, use_sliding_window: false })), [null, null, null]);
    const typed = { ...q, use_sliding_window: true, layer_types: ['sliding_attention', 'full_attention', 'sliding_attention'] };
    assert.deepEqual(windows(specFromConfig(typed)), [8, null, 8]);
    // a sliding layer without a window: transformers refuses this too
    assert.match(refusal(() => specFromConfig({ ...typed, use_sliding_window: false })).message, /no sliding window is set/);
  });

  test('Mistral: sliding_window (default 4096) on every layer; Llama refuses one', () => {
    const m = { ...LLAMA, model_type: 'mistral' };
    assert.deepEqual(windows(specFromConfig(m)), [4096, 4096, 4096]);
    assert.deepEqual(windows(specFromConfig({ ...m, sliding_window: null })), [null, null, null]);
    assert.match(
      refusal(() => specFromConfig({ ...LLAMA, sliding_window: 4096 })).message,
      /"sliding_window" = 4096 is not supported for llama/,
    );
  });

  test('Gemma 2: alternating windows, soft-capping and query_pre_attn_scalar defaults', () => {
    const g2 = { ...LLAMA, model_type: 'gemma2', num_hidden_layers: 4, head_dim: 8, sliding_window: 16 };
    const s = specFromConfig(g2);
    assert.deepEqual(windows(s), [16, null, 16, null]);
    assert.equal(s.attnSoftcap, 50);
    assert.equal(s.finalSoftcap, 30);
    assert.equal(s.attnScale, 1 / 16);
    assert.equal(s.embedScale, Math.fround(Math.sqrt(32)));
    assert.equal(s.blockNorms, 'sandwich');
    const off = specFromConfig({ ...g2, attn_logit_softcapping: null, final_logit_softcapping: null, query_pre_attn_scalar: 8 });
    assert.equal(off.attnSoftcap, null);
    assert.equal(off.finalSoftcap, null);
    assert.equal(off.attnScale, 1 / Math.sqrt(8));
  });

  test('SmolLM3: no_rope_layers removes RoPE from a layer (default: every 4th)', () => {
    const s = { ...LLAMA, model_type: 'smollm3', num_hidden_layers: 4 };
    assert.deepEqual(
      specFromConfig(s).layers.map((l) => l.rope !== null),
      [true, true, true, false],
    );
    assert.deepEqual(
      specFromConfig({ ...s, no_rope_layers: [1, 0, 1, 1] }).layers.map((l) => l.rope !== null),
      [true, false, true, true],
    );
  });

  test("families' defaults for keys a config omits (transformers' configuration_*.py)", () => {
    const { num_key_value_heads: _kv, ...noKv } = LLAMA;
    const qwen3 = specFromConfig({ ...noKv, model_type: 'qwen3', num_attention_heads: 32 });
    assert.equal(qwen3.headDim, 128);
    assert.equal(qwen3.nKvHeads, 32);
    assert.equal(specFromConfig({ ...noKv, model_type: 'mistral', num_attention_heads: 8 }).nKvHeads, 8);
    assert.equal(qwen3.qkNorm, 'head');
    assert.equal(specFromConfig({ ...LLAMA, model_type: 'phi3' }).normEps, 1e-5);
    assert.equal(specFromConfig({ ...LLAMA, model_type: 'olmo2' }).blockNorms, 'post');
    assert.equal(specFromConfig({ ...LLAMA, model_type: 'gemma', head_dim: 8 }).tiedEmbeddings, true);
    assert.equal(specFromConfig({ ...LLAMA, model_type: 'llama' }).tiedEmbeddings, false);
    assert.equal(specFromConfig({ ...LLAMA, model_type: 'smollm3' }).layers[0]!.rope!.freq.kind, 'fixed');
    assert.ok(Math.abs(fixed(specFromConfig({ ...LLAMA, model_type: 'smollm3' }).layers[0]!.rope)[1]! / (1 / 2e6 ** (2 / 8)) - 1) < 1e-7); // base 2e6
  });

  test('keys a family does not read are refused when they would mean something', () => {
    const cases: [Json, RegExp][] = [
      [{ ...LLAMA, model_type: 'mistral', attention_bias: true }, /"attention_bias" = true is not supported for mistral/],
      [{ ...LLAMA, model_type: 'qwen3', mlp_bias: true }, /"mlp_bias" = true is not supported for qwen3/],
      [{ ...LLAMA, model_type: 'gemma3_text', head_dim: 8, use_bidirectional_attention: true }, /use_bidirectional_attention/],
      [
        { ...LLAMA, model_type: 'gemma2', head_dim: 8, use_bidirectional_attention: true },
        /"use_bidirectional_attention" = true is not supported for gemma2/,
      ],
      [{ ...LLAMA, is_causal: false }, /"is_causal" = false/],
      [{ ...LLAMA, quantization_config: { quant_method: 'gptq' } }, /quantization_config.*quantized checkpoints are not supported/],
      [{ ...LLAMA, model_type: 'phi3', head_dim: 16 }, /"head_dim" = 16 is not supported for phi3/],
      [{ ...LLAMA, layer_types: ['full_attention', 'sliding_attention', 'full_attention'] }, /"layer_types".*not supported for llama/],
      [
        { ...LLAMA, model_type: 'qwen2', layer_types: ['full_attention', 'chunked_attention', 'full_attention'] },
        /"chunked_attention" is not supported/,
      ],
      [{ ...LLAMA, hidden_act: 'quick_gelu' }, /"hidden_act" = "quick_gelu" is not supported/],
    ];
    for (const [cfg, re] of cases) assert.match(refusal(() => specFromConfig(cfg)).message, re);
  });

  test('model types near a supported one say which to use', () => {
    assert.match(refusal(() => specFromConfig({ model_type: 'gemma3' })).message, /gemma3_text/);
  });
});

describe('parameter count (memory estimate) of every layout', () => {
  for (const name of hfFixtureNames()) {
    test(`${name}: paramCount equals the checkpoint's tensor sizes`, () => {
      const spec = specFromConfig(readHfConfig(name));
      const st = SafetensorsFile.open(path.join(HF_DIR, name, 'model.safetensors'));
      let n = 0;
      for (const e of st.entries.values()) n += e.shape.reduce((a, b) => a * b, 1);
      assert.equal(paramCount(spec), n);
    });
  }
});
