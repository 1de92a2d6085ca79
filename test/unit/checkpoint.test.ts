// Checkpoint loading: safetensors validation and the specific error for each bad folder.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  parseHeaderLength,
  parseSafetensorsHeader,
  SafetensorsFile,
  f16ToF32,
  bf16ToF32,
  f32ToF16,
} from '../../src/engine/checkpoint/safetensors';
import { openCheckpoint, WeightStore } from '../../src/engine/checkpoint/hf';
import { loadModel } from '../../src/engine/model';
import { specFromConfig, type ModelSpec } from '../../src/engine/arch/spec';
import { encodeSafetensors, writeSafetensorsFile } from '../../tools/convert/safetensors-writer';
import { FIXTURES, rejectsWith, tmpDir } from '../helpers';

const enc = new TextEncoder();
const header = (obj: unknown) => enc.encode(JSON.stringify(obj));

/** A copy of a fixture model folder that a test may break. */
function copyFixture(name = 'tiny-llama'): string {
  const dir = path.join(tmpDir(), name);
  fs.cpSync(path.join(FIXTURES, 'models', name), dir, { recursive: true });
  return dir;
}

describe('safetensors header validation', () => {
  test('accepts a valid header and computes absolute offsets', () => {
    const h = header({ a: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] }, __metadata__: { format: 'pt' } });
    const parsed = parseSafetensorsHeader(h, 8 + h.length + 24, 'x');
    const a = parsed.entries.get('a')!;
    assert.equal(a.begin, 8 + h.length);
    assert.equal(a.end, 8 + h.length + 24);
    assert.deepEqual(parsed.metadata, { format: 'pt' });
  });

  const cases: [string, unknown, number, RegExp][] = [
    ['offset past the end', { a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, 8, /ends at byte 16 .* only 8 bytes/],
    ['shape/offset mismatch', { a: { dtype: 'F32', shape: [3], data_offsets: [0, 16] } }, 16, /needs 12 bytes but data_offsets span 16/],
    ['unknown dtype', { a: { dtype: 'F33', shape: [1], data_offsets: [0, 4] } }, 4, /unknown dtype/],
    ['negative shape', { a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 4, /invalid shape/],
    ['begin after end', { a: { dtype: 'F32', shape: [0], data_offsets: [8, 4] } }, 8, /begin after end/],
    [
      'overlapping tensors',
      { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } },
      12,
      /overlap/,
    ],
    ['huge shape', { a: { dtype: 'F32', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 4] } }, 4, /too large/],
    ['not an object', [1, 2, 3], 0, /not a JSON object/],
    ['bad metadata', { __metadata__: { a: 1 } }, 0, /__metadata__\.a is not a string/],
    ['fractional offsets', { a: { dtype: 'F32', shape: [1], data_offsets: [0.5, 4] } }, 4, /invalid data_offsets/],
  ];
  for (const [what, obj, dataBytes, re] of cases) {
    test(`rejects ${what}`, () => {
      const h = header(obj);
      assert.throws(
        () => parseSafetensorsHeader(h, 8 + h.length + dataBytes, 'bad.safetensors'),
        (e: Error & { code?: string }) => {
          assert.equal(e.code, 'BAD_SAFETENSORS');
          assert.match(e.message, re);
          assert.match(e.message, /bad\.safetensors is not a valid safetensors file/);
          return true;
        },
      );
    });
  }

  test('rejects invalid UTF-8 and deeply nested JSON', () => {
    assert.throws(() => parseSafetensorsHeader(Uint8Array.of(0x7b, 0xff, 0x7d), 100, 'x'), /not valid UTF-8/);
    const deep = enc.encode('['.repeat(200000) + ']'.repeat(200000));
    assert.throws(() => parseSafetensorsHeader(deep, deep.length + 8, 'x'), /not valid JSON|not a JSON object/);
  });

  test('header length checks', () => {
    const len = (n: bigint) => {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setBigUint64(0, n, true);
      return b;
    };
    assert.throws(() => parseHeaderLength(new Uint8Array(3), 3, 'x'), /fewer than the 8-byte header/);
    assert.throws(() => parseHeaderLength(len(2n ** 60n), 100, 'x'), /exceeds/);
    assert.throws(() => parseHeaderLength(len(1000n), 100, 'x'), /points past the end of the file .*truncated/);
    assert.equal(parseHeaderLength(len(50n), 100, 'x'), 50);
  });
});

describe('dtype conversion', () => {
  test('f16 and bf16 convert exactly', () => {
    const values = Float32Array.of(0, -0, 1, -2, 0.5, 65504, 6.103515625e-5, 5.960464477539063e-8, Infinity, -Infinity);
    assert.deepEqual(Array.from(f16ToF32(f32ToF16(values))), Array.from(values));
    assert.ok(Number.isNaN(f16ToF32(f32ToF16(Float32Array.of(NaN)))[0]));
    const bf = Uint16Array.of(0x3f80, 0xc000, 0x4049);
    assert.deepEqual(Array.from(bf16ToF32(bf)), [1, -2, 3.140625]);
  });

  test('reads F16 and BF16 files as float32', () => {
    const dir = tmpDir();
    const file = path.join(dir, 'm.safetensors');
    fs.writeFileSync(
      file,
      encodeSafetensors([
        { name: 'h', dtype: 'F16', shape: [2], data: f32ToF16(Float32Array.of(1.5, -3)) },
        { name: 'b', dtype: 'BF16', shape: [1], data: Uint16Array.of(0x3f80) },
        { name: 'i', dtype: 'I32', shape: [1], data: Int32Array.of(7) },
      ]),
    );
    const st = SafetensorsFile.open(file);
    assert.deepEqual(Array.from(st.readFloat32(st.entries.get('h')!)), [1.5, -3]);
    assert.deepEqual(Array.from(st.readFloat32(st.entries.get('b')!)), [1]);
    assert.throws(() => st.readFloat32(st.entries.get('i')!), /dtype I32; only F32, F16 and BF16/);
  });

  test('transposed reads convert and transpose in one pass, through a reused scratch buffer', () => {
    // shapes that cross the 64×64 tiles unevenly
    const [R, C] = [67, 130];
    const values = Float32Array.from({ length: R * C }, (_, i) => ((i * 7919) % 4001) / 1000 - 2);
    const bf = Uint16Array.from(new Uint32Array(values.buffer), (u) => u >>> 16);
    const naive = (v: Float32Array) => Float32Array.from({ length: R * C }, (_, i) => v[(i % R) * C + Math.floor(i / R)]!);
    const dir = tmpDir();
    const file = path.join(dir, 'm.safetensors');
    writeSafetensorsFile(
      file,
      [
        { name: 'f32', dtype: 'F32', shape: [R, C] },
        { name: 'f16', dtype: 'F16', shape: [R, C] },
        { name: 'bf16', dtype: 'BF16', shape: [R, C] },
        { name: 'other', dtype: 'F32', shape: [C, R] },
      ],
      (e) => (e.name === 'f16' ? f32ToF16(values) : e.name === 'bf16' ? bf : values),
    );
    const st = SafetensorsFile.open(file);
    assert.deepEqual(Array.from(st.readFloat32Transposed(st.entries.get('f32')!)), Array.from(naive(values)));
    assert.deepEqual(Array.from(st.readFloat32Transposed(st.entries.get('f16')!)), Array.from(naive(f16ToF32(f32ToF16(values)))));
    assert.deepEqual(Array.from(st.readFloat32Transposed(st.entries.get('bf16')!)), Array.from(naive(bf16ToF32(bf))));
    // the same bytes as the one-buffer writer
    const whole = encodeSafetensors([
      { name: 'f32', dtype: 'F32', shape: [R, C], data: values },
      { name: 'f16', dtype: 'F16', shape: [R, C], data: f32ToF16(values) },
      { name: 'bf16', dtype: 'BF16', shape: [R, C], data: bf },
      { name: 'other', dtype: 'F32', shape: [C, R], data: values },
    ]);
    assert.deepEqual(new Uint8Array(fs.readFileSync(file)), whole);
    // through the store: one scratch buffer for every read, results independent of it
    const store = new WeightStore([st]);
    const a = store.float32Transposed('bf16', [R, C]);
    const b = store.float32Transposed('f32', [R, C]);
    assert.deepEqual(Array.from(a), Array.from(naive(bf16ToF32(bf))));
    assert.deepEqual(Array.from(b), Array.from(naive(values)));
    assert.throws(() => store.float32Transposed('other', [R, C]), /has shape \[130, 67\] but config.json implies \[67, 130\]/);
  });
});

describe('bad checkpoint folders give specific errors', () => {
  const opts = { threads: 1, executionProvider: 'cpu' as const };

  test('missing folder and missing config.json', async () => {
    await rejectsWith(loadModel('/nonexistent/model', opts), 'NOT_FOUND', /Model folder not found/);
    await rejectsWith(loadModel(tmpDir(), opts), 'NOT_FOUND', /No config\.json/);
  });

  test('truncated safetensors', async () => {
    const dir = copyFixture();
    const f = path.join(dir, 'model.safetensors');
    const size = fs.statSync(f).size;
    fs.truncateSync(f, size - 100);
    await rejectsWith(loadModel(dir, opts), 'BAD_SAFETENSORS', /ends at byte .*(truncated file?)/);
    fs.truncateSync(f, 20);
    await rejectsWith(loadModel(dir, opts), 'BAD_SAFETENSORS', /points past the end of the file/);
  });

  test('header pointing past the end', async () => {
    const dir = copyFixture();
    const f = path.join(dir, 'model.safetensors');
    const bytes = fs.readFileSync(f);
    new DataView(bytes.buffer, bytes.byteOffset).setBigUint64(0, BigInt(bytes.length * 2), true);
    fs.writeFileSync(f, bytes);
    await rejectsWith(loadModel(dir, opts), 'BAD_SAFETENSORS', /points past the end/);
  });

  test('wrong dtype', async () => {
    const dir = copyFixture('tiny-gpt2');
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    const d = cfg.n_embd as number;
    fs.writeFileSync(
      path.join(dir, 'model.safetensors'),
      encodeSafetensors([
        { name: 'transformer.wte.weight', dtype: 'I32', shape: [cfg.vocab_size, d], data: new Int32Array(cfg.vocab_size * d) },
      ]),
    );
    await rejectsWith(loadModel(dir, opts), 'BAD_WEIGHTS', /dtype I32; only F32, F16 and BF16/);
  });

  test('shape mismatch with config', async () => {
    const dir = copyFixture();
    const cfgPath = path.join(dir, 'config.json');
    const cfg = JSON.parse(fs.readFileSync(cfgPath, 'utf8'));
    cfg.intermediate_size = cfg.intermediate_size + 8;
    fs.writeFileSync(cfgPath, JSON.stringify(cfg));
    await rejectsWith(loadModel(dir, opts), 'BAD_WEIGHTS', /has shape \[.*\] but config\.json implies/);
  });

  test('missing tokenizer.json', async () => {
    const dir = copyFixture();
    fs.rmSync(path.join(dir, 'tokenizer.json'));
    await rejectsWith(loadModel(dir, opts), 'MISSING_TOKENIZER', /No tokenizer\.json/);
  });

  test('unknown model_type', async () => {
    const dir = copyFixture();
    const cfgPath = path.join(dir, 'config.json');
    const cfg = JSON.parse(fs.readFileSync(cfgPath, 'utf8'));
    cfg.model_type = 'mamba';
    cfg.architectures = ['MambaForCausalLM'];
    fs.writeFileSync(cfgPath, JSON.stringify(cfg));
    await rejectsWith(
      loadModel(dir, opts),
      'UNSUPPORTED_ARCHITECTURE',
      /model_type "mamba" is not supported\. Supported: gpt2, gpt_neox, llama, mistral, qwen2, qwen3, smollm3, olmo2, phi3, gemma, gemma2, gemma3_text\./,
    );
  });

  test('pickle-only folder is refused with a conversion hint', async () => {
    const dir = copyFixture();
    fs.rmSync(path.join(dir, 'model.safetensors'));
    fs.writeFileSync(path.join(dir, 'pytorch_model.bin'), 'not really a pickle');
    await rejectsWith(loadModel(dir, opts), 'PICKLE_REFUSED', /Pickle files can run arbitrary code.*safe_serialization=True/);
  });

  test('sharded checkpoints load through the index; bad shard names are refused', async () => {
    const dir = copyFixture();
    const st = SafetensorsFile.open(path.join(dir, 'model.safetensors'));
    const names = [...st.entries.keys()];
    const half = Math.ceil(names.length / 2);
    const shard = (ns: string[]) =>
      encodeSafetensors(
        ns.map((n) => {
          const e = st.entries.get(n)!;
          const raw = st.readBytes(e);
          return {
            name: n,
            dtype: e.dtype as 'F16',
            shape: e.shape,
            data: new Uint16Array(raw.buffer, raw.byteOffset, raw.byteLength / 2),
          };
        }),
      );
    fs.writeFileSync(path.join(dir, 'model-00001-of-00002.safetensors'), shard(names.slice(0, half)));
    fs.writeFileSync(path.join(dir, 'model-00002-of-00002.safetensors'), shard(names.slice(half)));
    fs.rmSync(path.join(dir, 'model.safetensors'));
    const weightMap: Record<string, string> = {};
    names.forEach((n, i) => (weightMap[n] = i < half ? 'model-00001-of-00002.safetensors' : 'model-00002-of-00002.safetensors'));
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    const ck = openCheckpoint(dir);
    assert.equal(ck.weights.files.length, 2);
    const m = await loadModel(dir, opts);
    await m.release();
    weightMap[names[0]!] = '../../etc/passwd.safetensors';
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: weightMap }));
    await rejectsWith(loadModel(dir, opts), 'BAD_WEIGHTS', /invalid shard file/);
  });

  test('tokenizer from another model', async () => {
    const dir = copyFixture('tiny-llama');
    fs.copyFileSync(path.join(FIXTURES, 'models', 'tiny-gpt2', 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
    const cfgPath = path.join(dir, 'config.json');
    const vocab = JSON.parse(fs.readFileSync(cfgPath, 'utf8')).vocab_size as number;
    const tokVocab = Object.keys(
      (JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')).model as { vocab: object }).vocab,
    ).length;
    if (tokVocab > vocab) await rejectsWith(loadModel(dir, opts), 'BAD_TOKENIZER', /belong to different models/);
  });
});

/** The inverse frequencies of a spec's (first) fixed rotary embedding. */
function fixedInvFreq(s: ModelSpec): Float32Array {
  const f = s.layers[0]!.rope!.freq;
  assert.equal(f.kind, 'fixed');
  return f.kind === 'fixed' ? f.invFreq : new Float32Array(0);
}

describe('config.json → spec', () => {
  test('families and defaults', () => {
    const llama = specFromConfig({
      model_type: 'llama',
      hidden_size: 64,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      intermediate_size: 128,
      vocab_size: 100,
    });
    assert.equal(llama.family, 'llama');
    assert.equal(llama.headDim, 16);
    assert.equal(fixedInvFreq(llama).length, 8);
    assert.equal(llama.tiedEmbeddings, false);
    const byArch = specFromConfig({
      architectures: ['GPTNeoXForCausalLM'],
      hidden_size: 64,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      vocab_size: 100,
      rotary_pct: 0.25,
    });
    assert.equal(byArch.family, 'gpt_neox');
    assert.equal(byArch.layers[0]!.rope?.rotaryDim, 4);
    assert.equal(byArch.parallelResidual, true);
  });

  test('rejects nonsense values clearly', () => {
    assert.throws(() => specFromConfig({ model_type: 'llama', hidden_size: -5 }), /"hidden_size" must be a positive integer/);
    assert.throws(
      () => specFromConfig({ model_type: 'gpt2', n_embd: 10, n_head: 3, n_layer: 1, vocab_size: 5, n_positions: 8 }),
      /not divisible/,
    );
    assert.throws(
      () =>
        specFromConfig({
          model_type: 'llama',
          hidden_size: 64,
          num_hidden_layers: 2,
          num_attention_heads: 4,
          num_key_value_heads: 3,
          intermediate_size: 8,
          vocab_size: 9,
        }),
      /multiple of num_key_value_heads/,
    );
    assert.throws(() => specFromConfig('x'), /not a JSON object/);
    assert.throws(() => specFromConfig({}), /neither "model_type"/);
    assert.throws(
      () =>
        specFromConfig({
          model_type: 'llama',
          hidden_size: 64,
          num_hidden_layers: 2,
          num_attention_heads: 4,
          intermediate_size: 8,
          vocab_size: 9,
          rope_scaling: { type: 'made-up', factor: 2 },
        }),
      /"rope_scaling.rope_type" "made-up" is not supported/,
    );
  });

  test('llama3 rope scaling slows long wavelengths only', () => {
    const base = {
      model_type: 'llama',
      hidden_size: 128,
      num_hidden_layers: 1,
      num_attention_heads: 1,
      intermediate_size: 8,
      vocab_size: 9,
      rope_theta: 500000,
      max_position_embeddings: 131072,
    };
    const plain = fixedInvFreq(specFromConfig(base));
    const scaled = fixedInvFreq(
      specFromConfig({
        ...base,
        rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
      }),
    );
    assert.equal(scaled[0], plain[0]); // highest frequency untouched
    assert.ok(Math.abs(scaled[scaled.length - 1]! - plain[plain.length - 1]! / 32) < 1e-12);
  });
});
