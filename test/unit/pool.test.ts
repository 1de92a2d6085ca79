// The worker's buffer pool: reuse for the same length, bounded by count and bytes, oldest first.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { BufferPool } from '../../src/engine/pool';
import { loadModel } from '../../src/engine/model';
import { analyze } from '../../src/engine/analyze';
import { FIXTURES } from '../helpers';

describe('BufferPool', () => {
  test('gives back a buffer of the same length, never a buffer of another length', () => {
    const pool = new BufferPool();
    const a = new Float32Array(100);
    pool.give(a);
    assert.equal(pool.take(99).length, 99);
    assert.notEqual(pool.take(99), a);
    assert.equal(pool.take(100), a);
    assert.equal(pool.heldBuffers, 0);
    assert.notEqual(pool.take(100), a, 'taken once only');
  });

  test('holds at most maxBuffers and capBytes, dropping the oldest; views and duplicates are refused', () => {
    const pool = new BufferPool(4000, 3);
    const bufs = [1, 2, 3, 4, 5].map((k) => new Float32Array(100 + k)); // ~400 bytes each
    pool.give(...bufs);
    assert.equal(pool.heldBuffers, 3);
    assert.notEqual(pool.take(101), bufs[0], 'the oldest was dropped');
    assert.equal(pool.take(105), bufs[4]);
    pool.give(new Float32Array(2000)); // 8000 bytes: over the cap on its own
    assert.ok(pool.heldBytes <= 4000);
    const big = new Float32Array(900); // 3600 bytes: fits alone, evicts the rest
    pool.give(big);
    assert.ok(pool.heldBytes <= 4000);
    assert.equal(pool.take(900), big);
    const backing = new Float32Array(64);
    pool.give(backing.subarray(8), backing.subarray(0, 8));
    assert.equal(pool.heldBuffers, 0, 'views of a larger buffer are not pooled');
    pool.give(backing, backing);
    assert.equal(pool.heldBuffers, 1);
    pool.clear();
    assert.equal(pool.heldBuffers, 0);
    assert.equal(pool.heldBytes, 0);
  });
});

describe('resid_mid not kept (the extension worker: keepResidMid false)', () => {
  test('the forward pass does not fetch it: no buffer taken from the pool or allocated; the rest is unchanged', async () => {
    const model = await loadModel(path.join(FIXTURES, 'models', 'tiny-gpt2'), { threads: 1, executionProvider: 'cpu' });
    try {
      const req = { text: 'the cat sat on the mat and the cat sat', topK: 5, maxTokens: 64, patterns: 'auto' as const };
      const kept = await analyze(model, req);
      assert.ok(kept.cache.residMid.length > 0, 'kept by default');
      const pool = new BufferPool();
      const spare = new Float32Array(kept.cache.residMid.length);
      pool.give(spare);
      const a = await analyze(model, { ...req, keepResidMid: false }, undefined, pool);
      assert.equal(a.cache.residMid.length, 0);
      assert.equal(pool.heldBuffers, 1, 'the pool still holds the spare buffer');
      assert.equal(pool.take(spare.length), spare, 'untouched: resid_mid was not fetched into it');
      assert.deepEqual(a.cache.resid, kept.cache.resid);
      assert.deepEqual(a.lens.topIds, kept.lens.topIds);
      assert.deepEqual(a.lens.entropy, kept.lens.entropy);
      assert.deepEqual(a.cache.headStats, kept.cache.headStats);
    } finally {
      await model.release();
    }
  });
});
