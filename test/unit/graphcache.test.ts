// Built graphs cached on disk with external data: written once, reused, invalidated when the
// weights change; large models go to external data automatically (the 2 GB proto limit).
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { GraphBuilder } from '../../src/engine/onnx/builder';
import { ExternalWeightFile, WEIGHTS_FILE } from '../../src/engine/graphcache';
import { graphCacheDir, loadModel, INLINE_LIMIT_BYTES } from '../../src/engine/model';
import { analyze } from '../../src/engine/analyze';
import { specFromConfig } from '../../src/engine/arch/spec';
import { liveSessionCount } from '../../src/engine/runtime/ort';
import { FIXTURES, rejectsWith, tmpDir } from '../helpers';

const opts = { threads: 1, executionProvider: 'cpu' as const };

async function topIds(dir: string, extra: Record<string, unknown>) {
  const m = await loadModel(dir, { ...opts, ...extra });
  try {
    const a = await analyze(m, { text: 'the cat sat on the mat', topK: 5, maxTokens: 64, patterns: true });
    return { source: m.graphSource, ids: Array.from(a.lens.topIds), resid: a.cache.resid };
  } finally {
    await m.release();
  }
}

describe('graph cache', () => {
  test('first load writes, second load reads, results identical to the in-memory graph', async () => {
    const cacheDir = tmpDir();
    for (const name of ['tiny-llama', 'tiny-gpt2', 'tiny-neox']) {
      const dir = path.join(FIXTURES, 'models', name);
      const mem = await topIds(dir, {});
      const first = await topIds(dir, { cacheDir });
      const second = await topIds(dir, { cacheDir });
      assert.equal(mem.source, 'memory');
      assert.equal(first.source, 'cache-write');
      assert.equal(second.source, 'cache-hit');
      assert.deepEqual(first.ids, mem.ids);
      assert.deepEqual(second.ids, mem.ids);
      assert.deepEqual(second.resid, mem.resid);
    }
    const entries = fs.readdirSync(cacheDir);
    assert.equal(entries.length, 3);
    for (const e of entries) assert.ok(fs.existsSync(path.join(cacheDir, e, 'weights.bin')), 'weights live in external data');
  });

  test('a changed weight file or option gets a new entry; a damaged entry is rebuilt', async () => {
    const cacheDir = tmpDir();
    const dir = path.join(tmpDir(), 'm');
    fs.cpSync(path.join(FIXTURES, 'models', 'tiny-llama'), dir, { recursive: true });
    await topIds(dir, { cacheDir });
    assert.equal((await topIds(dir, { cacheDir, patterns: false })).source, 'cache-write');
    const f = path.join(dir, 'model.safetensors');
    fs.utimesSync(f, new Date(), new Date(Date.now() + 5000));
    assert.equal((await topIds(dir, { cacheDir })).source, 'cache-write');
    const entry = fs
      .readdirSync(cacheDir)
      .map((e) => path.join(cacheDir, e))
      .find((e) => fs.existsSync(path.join(e, 'norms.bin')))!;
    fs.writeFileSync(path.join(entry, 'meta.json'), '{broken');
    const again = await topIds(dir, { cacheDir });
    assert.ok(['cache-write', 'cache-hit'].includes(again.source));
  });

  test('graphs above the 2 GB proto limit use external data without being asked', async () => {
    const big = specFromConfig({
      model_type: 'llama',
      hidden_size: 4096,
      num_hidden_layers: 32,
      num_attention_heads: 32,
      intermediate_size: 11008,
      vocab_size: 32000,
    });
    assert.ok(graphCacheDir(big, {})?.includes('transformer-dynamics-graphs'), '7B-shaped model → external data');
    const small = specFromConfig(JSON.parse(fs.readFileSync(path.join(FIXTURES, 'models', 'tiny-llama', 'config.json'), 'utf8')));
    assert.equal(graphCacheDir(small, {}), undefined);
    assert.ok(INLINE_LIMIT_BYTES < 2 ** 31);
    // a model "over the limit" (limit lowered for the test) loads through external data
    const r = await topIds(path.join(FIXTURES, 'models', 'tiny-qwen2'), { inlineLimitBytes: 1000 });
    assert.ok(r.source === 'cache-write' || r.source === 'cache-hit');
    assert.deepEqual(r.ids, (await topIds(path.join(FIXTURES, 'models', 'tiny-qwen2'), {})).ids);
  });
});

describe('cancelling a load', () => {
  test('a conversion cancelled between layers leaves nothing in the cache, and the next load converts afresh', async () => {
    const cacheDir = tmpDir();
    const dir = path.join(FIXTURES, 'models', 'tiny-llama');
    const before = liveSessionCount();
    for (const stopAfter of [0, 1]) {
      const ctl = new AbortController();
      let seen = 0;
      await rejectsWith(
        loadModel(
          dir,
          { ...opts, cacheDir, progressIntervalMs: 0 },
          { signal: ctl.signal, onProgress: () => seen++ === stopAfter && ctl.abort() },
        ),
        'CANCELLED',
        /model load was cancelled/,
      );
      assert.equal(seen, stopAfter + 1, 'stopped at the next layer');
      assert.deepEqual(fs.readdirSync(cacheDir), [], 'no entry, no half-written folder');
    }
    // in memory too (no cache folder)
    const ctl = new AbortController();
    ctl.abort();
    await rejectsWith(loadModel(dir, opts, { signal: ctl.signal }), 'CANCELLED', /cancelled/);
    assert.equal(liveSessionCount(), before, 'no session was created');
    const m = await loadModel(dir, { ...opts, cacheDir });
    assert.equal(m.graphSource, 'cache-write');
    await m.release();
  });
});

describe('graph builder and weight sink', () => {
  test('an initializer written to the sink is not kept alive by the builder; names are checked', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const sink = new ExternalWeightFile(path.join(tmpDir(), WEIGHTS_FILE));
    const g = new GraphBuilder('t', sink);
    let ref: WeakRef<Float32Array>;
    (() => {
      const data = new Float32Array(1 << 16).fill(0.5);
      ref = new WeakRef(data);
      assert.equal(g.initializer('w', data, [1 << 16]), 'w');
      assert.equal(g.initializer('w', data, [1 << 16]), 'w', 'the same array under the same name is one initializer');
      assert.equal(g.initializer('w2', data, [1 << 16]), 'w2', 'the same array may serve two names');
      assert.throws(() => g.initializer('w', new Float32Array(1 << 16), [1 << 16]), /defined twice with different data/);
    })();
    sink.close();
    // a WeakRef's target lives until the current job ends: collect in a later one
    await new Promise((r) => setImmediate(r));
    gc();
    assert.equal(ref!.deref(), undefined, 'a multi-GB model would otherwise stay in memory until the graph is encoded');
    assert.throws(() => g.initializer('w', new Float32Array(1 << 16), [1 << 16]), /defined twice/);
    assert.equal(sink.bytesWritten, 4 << 16, 'written once');
  });
});
