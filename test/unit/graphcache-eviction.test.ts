// The graph cache's size control (src/engine/graphcache.ts): bounded by bytes, not by a count
// of models; past the limit the entries used longest ago go, never the one being loaded; the
// automatic limit is the smaller of 20 GB and a quarter of the disk; Clear reports what it freed.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  DEFAULT_LIMIT_BYTES,
  clearCache,
  defaultLimitBytes,
  evictionPlan,
  limitBytes,
  listCache,
  markUsed,
  pruneCache,
  type CacheEntry,
} from '../../src/engine/graphcache';
import { loadModel } from '../../src/engine/model';
import { FIXTURES, tmpDir } from '../helpers';

const entry = (key: string, bytes: number, lastUsed: number): CacheEntry => ({ key, path: `/c/${key}`, model: null, bytes, lastUsed });

/** A complete entry on disk: `bytes` of weights, last used `ageS` seconds ago. */
function writeEntry(cacheDir: string, key: string, bytes: number, ageS: number, model = `/models/${key}`): string {
  const dir = path.join(cacheDir, key);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'weights.bin'), Buffer.alloc(bytes));
  fs.writeFileSync(path.join(dir, 'meta.json'), JSON.stringify({ key, model }));
  fs.writeFileSync(path.join(dir, 'complete'), '');
  const t = new Date(Date.now() - ageS * 1000);
  fs.utimesSync(path.join(dir, 'complete'), t, t);
  return dir;
}

const metaBytes = (key: string, model = `/models/${key}`) => JSON.stringify({ key, model }).length;

describe('graph cache eviction policy', () => {
  test('least recently used first, only until the rest fits; the entry being loaded is never evicted', () => {
    const es = [entry('a', 5e9, 300), entry('b', 1e9, 100), entry('c', 4e9, 200), entry('d', 2e9, 400)];
    // 12 GB against 10 GB: the oldest use (b, 1 GB) is not enough, c (4 GB) next
    assert.deepEqual(
      evictionPlan(es, 10e9).map((e) => e.key),
      ['b', 'c'],
    );
    assert.deepEqual(evictionPlan(es, 12e9), [], 'everything fits');
    // a big model is not thrown away because four small ones came after it
    const small = [entry('big', 5e9, 1), ...['s1', 's2', 's3', 's4'].map((k, i) => entry(k, 30e6, 2 + i))];
    assert.deepEqual(evictionPlan(small, 20e9), []);
    // the entry being loaded stays even when it alone is over the limit
    assert.deepEqual(
      evictionPlan(es, 1e9, new Set(['b'])).map((e) => e.key),
      ['c', 'a', 'd'],
    );
  });

  test('the automatic limit: 20 GB, or a quarter of the free disk plus what the cache holds', () => {
    assert.equal(defaultLimitBytes(1e12, 0), DEFAULT_LIMIT_BYTES);
    assert.equal(defaultLimitBytes(40e9, 0), 10e9);
    assert.equal(defaultLimitBytes(30e9, 10e9), 10e9, 'the cache’s own bytes count as available to it');
    const dir = tmpDir();
    assert.equal(limitBytes(dir, 3e9), 3e9, 'a limit set by the user wins');
    assert.ok(limitBytes(dir, 0) > 0 && limitBytes(dir, 0) <= DEFAULT_LIMIT_BYTES);
  });

  test('on disk: sizes from the files, use order from the marker; a use moves an entry to the back', () => {
    const cacheDir = tmpDir();
    writeEntry(cacheDir, 'aa', 3000, 30);
    writeEntry(cacheDir, 'bb', 2000, 20);
    writeEntry(cacheDir, 'cc', 1000, 10);
    fs.mkdirSync(path.join(cacheDir, 'dd')); // not complete: not an entry
    const listed = listCache(cacheDir).sort((x, y) => x.key.localeCompare(y.key));
    assert.deepEqual(
      listed.map((e) => [e.key, e.bytes, e.model]),
      [
        ['aa', 3000 + metaBytes('aa'), '/models/aa'],
        ['bb', 2000 + metaBytes('bb'), '/models/bb'],
        ['cc', 1000 + metaBytes('cc'), '/models/cc'],
      ],
    );
    markUsed(path.join(cacheDir, 'aa')); // aa was loaded again: now the newest
    const limit = 3000 + metaBytes('aa') + 1000 + metaBytes('cc');
    const r = pruneCache(cacheDir, { maxBytes: limit, keep: ['cc'] });
    assert.deepEqual(r, { entries: 1, freedBytes: 2000 + metaBytes('bb'), failed: 0 });
    assert.deepEqual(fs.readdirSync(cacheDir).sort(), ['aa', 'cc', 'dd']);
  });

  test('half-written entries: a live process’s stays, a dead one’s goes', () => {
    const cacheDir = tmpDir();
    const live = path.join(cacheDir, `ab12.tmp-${process.pid}-1`);
    fs.mkdirSync(live);
    // a pid that cannot belong to a running process (above Linux's pid_max)
    const dead = path.join(cacheDir, 'cd34.tmp-99999999-1');
    fs.mkdirSync(dead);
    fs.writeFileSync(path.join(dead, 'weights.bin'), Buffer.alloc(500));
    const r = pruneCache(cacheDir, { maxBytes: 1e12 });
    assert.deepEqual(r, { entries: 0, freedBytes: 500, failed: 0 });
    assert.ok(fs.existsSync(live) && !fs.existsSync(dead));
  });

  test('Clear removes every entry and says how much it freed; an empty or missing cache frees nothing', () => {
    const cacheDir = tmpDir();
    writeEntry(cacheDir, 'aa', 3000, 30);
    writeEntry(cacheDir, 'bb', 2000, 20);
    assert.deepEqual(clearCache(cacheDir), { entries: 2, freedBytes: 5000 + metaBytes('aa') + metaBytes('bb'), failed: 0 });
    assert.deepEqual(fs.readdirSync(cacheDir), []);
    assert.deepEqual(clearCache(cacheDir), { entries: 0, freedBytes: 0, failed: 0 });
    assert.deepEqual(clearCache(path.join(cacheDir, 'missing')), { entries: 0, freedBytes: 0, failed: 0 });
  });

  test('loads keep the cache under its limit by last use, not by count', async () => {
    const cacheDir = tmpDir();
    const load = async (name: string, cacheMaxBytes: number) => {
      const m = await loadModel(path.join(FIXTURES, 'models', name), { threads: 1, executionProvider: 'cpu', cacheDir, cacheMaxBytes });
      await m.release();
      return m.graphSource;
    };
    // five models fit under a generous limit: no count limit throws any away
    const names = ['tiny-llama', 'tiny-gpt2', 'tiny-neox', 'tiny-qwen2', 'tiny-neox-seq'];
    for (const n of names) assert.equal(await load(n, 1e12), 'cache-write');
    assert.equal(listCache(cacheDir).length, names.length);
    assert.equal(await load(names[0]!, 1e12), 'cache-hit', 'the first model, used again: now the newest');
    // a limit that holds only the two newest: the least recently used go
    const sizes = Object.fromEntries(listCache(cacheDir).map((e) => [e.model, e.bytes]));
    const dirOf = (n: string) => path.join(FIXTURES, 'models', n);
    const limit = sizes[dirOf(names[0]!)]! + sizes[dirOf(names[4]!)]!;
    assert.equal(await load(names[4]!, limit), 'cache-hit');
    assert.deepEqual(
      listCache(cacheDir)
        .map((e) => e.model)
        .sort(),
      [dirOf(names[0]!), dirOf(names[4]!)].sort(),
    );
  });
});
