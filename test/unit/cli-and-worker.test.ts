// The CLI (its JSON schema) and the engine worker process used by the extension host.
import { after, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EngineClient, withHugePages } from '../../src/engine/client';
import { LatestOnly } from '../../src/shared/latest';
import { JSON_SCHEMA_VERSION } from '../../src/shared/export';
import { FIXTURES, ROOT, rejectsWith, tmpDir } from '../helpers';

const CLI = path.join(ROOT, 'dist', 'cli.js');
const WORKER = path.join(ROOT, 'dist', 'engine-worker.js');
const TINY = path.join(FIXTURES, 'models', 'tiny-llama');

const CLI_CACHE = tmpDir();

function cli(args: string[], input?: string, env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', input, env: { ...process.env, TD_CACHE_DIR: CLI_CACHE, ...env } });
}

/** Files named forward.onnx anywhere under dir. */
function cachedGraphs(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return (fs.readdirSync(dir, { recursive: true }) as string[]).filter((f) => path.basename(f) === 'forward.onnx');
}

describe('CLI', () => {
  test('keeps built graphs in its cache folder (TD_CACHE_DIR) and reuses them; --no-cache writes nothing', () => {
    const cache = path.join(tmpDir(), 'graphs');
    const args = ['analyze', '--model', TINY, '--text', 'the cat sat on the mat'];
    const first = cli(args, undefined, { TD_CACHE_DIR: cache });
    assert.equal(first.status, 0, first.stderr);
    assert.equal(cachedGraphs(cache).length, 1, 'one cache entry written');
    const second = cli(args, undefined, { TD_CACHE_DIR: cache });
    assert.equal(second.status, 0, second.stderr);
    assert.equal(cachedGraphs(cache).length, 1, 'the entry is reused, not duplicated');
    const none = path.join(tmpDir(), 'unused');
    const r = cli([...args, '--no-cache'], undefined, { TD_CACHE_DIR: none });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(cachedGraphs(none), []);
    // an unwritable cache location: the CLI still works, building in memory
    const blocked = path.join(tmpDir(), 'a-file');
    fs.writeFileSync(blocked, '');
    const r2 = cli(args, undefined, { TD_CACHE_DIR: path.join(blocked, 'graphs') });
    assert.equal(r2.status, 0, r2.stderr);
  });

  test('--weights picks the weight precision; a bad value is a clear error', () => {
    const args = ['analyze', '--model', TINY, '--text', 'the cat sat on the mat', '--no-cache'];
    const half = cli([...args, '--weights', 'float16', '--json', '-']);
    assert.equal(half.status, 0, half.stderr);
    const bad = cli([...args, '--weights', 'half']);
    assert.equal(bad.status, 1, bad.stderr);
    assert.match(bad.stderr, /--weights must be one of auto, float32, float16/);
  });

  test('analyze writes the documented JSON', () => {
    const out = path.join(tmpDir(), 'a.json');
    const r = cli(['analyze', '--model', TINY, '--text', 'the cat sat on the mat. the cat sat', '--top-k', '3', '--json', out]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /tokens in \d+ ms \(forward \d+ ms, lens \d+ ms, metrics \d+ ms; \d+ ms of it inside onnxruntime\)/);
    const j = JSON.parse(fs.readFileSync(out, 'utf8'));
    assert.equal(j.version, JSON_SCHEMA_VERSION);
    // timings_ms as the README documents it: each phase, and each phase's part inside onnxruntime
    const tm = j.timings_ms;
    for (const k of ['tokenizeMs', 'forwardMs', 'lensMs', 'metricsMs', 'totalMs']) assert.equal(typeof tm[k], 'number', `timings_ms.${k}`);
    for (const k of ['tokenizeMs', 'forwardMs', 'lensMs', 'metricsMs']) {
      assert.equal(typeof tm.runtime[k], 'number', `timings_ms.runtime.${k}`);
      assert.ok(tm.runtime[k] >= 0 && tm.runtime[k] <= tm[k] + 0.01, `timings_ms.runtime.${k} within its phase`);
    }
    for (const k of ['architecture', 'n_layers', 'd_model', 'd_vocab', 'n_heads']) assert.ok(k in j.model, `model.${k}`);
    const T = j.tokens.length;
    assert.ok(T > 5);
    for (const t of j.tokens) for (const k of ['id', 'text', 'start', 'end']) assert.ok(k in t);
    assert.equal(j.lens.length, j.model.n_layers);
    assert.equal(j.norms.length, j.model.n_layers + 1);
    assert.equal(j.logits_top.length, T);
    for (const row of j.lens) {
      assert.equal(row.length, T);
      for (const [p, cell] of row.entries()) {
        assert.equal(cell.top.length, 3);
        assert.ok(typeof cell.entropy === 'number');
        if (p === T - 1) assert.equal(cell.next_rank, null);
        else assert.ok(Number.isInteger(cell.next_rank) && cell.next_rank >= 0);
      }
    }
    // the last lens row is the model's own prediction
    assert.deepEqual(
      j.lens[j.lens.length - 1].map((c: { top: { id: number }[] }) => c.top[0]!.id),
      j.logits_top.map((t: { id: number }[]) => t[0]!.id),
    );
    assert.ok(
      j.repeated_ngrams.some((g: { n: number }) => g.n >= 3),
      'the repeated phrase is found',
    );
  });

  test('reads stdin and writes JSON to stdout', () => {
    const r = cli(['analyze', '--model', TINY, '--text-file', '-', '--json', '-'], 'hello world');
    assert.equal(r.status, 0, r.stderr);
    assert.ok(JSON.parse(r.stdout).tokens.length > 0);
  });

  test('clear errors for bad input', () => {
    const empty = cli(['analyze', '--model', TINY, '--text', '']);
    assert.equal(empty.status, 1);
    assert.match(empty.stderr, /Nothing to analyse: the text is empty/);
    const noModel = cli(['analyze', '--model', '/nope', '--text', 'x']);
    assert.match(noModel.stderr, /Model folder not found: \/nope/);
    const badK = cli(['analyze', '--model', TINY, '--text', 'x', '--top-k', 'zero']);
    assert.match(badK.stderr, /--top-k must be a positive integer/);
    assert.equal(cli([]).status, 2);
  });

  test('truncates to --max-tokens and reports it', () => {
    const r = cli(['analyze', '--model', TINY, '--text', 'a b c d e f g h i j k l m n o p', '--max-tokens', '4', '--json', '-']);
    const j = JSON.parse(r.stdout);
    assert.equal(j.tokens.length, 4);
    assert.equal(j.truncation.kept, 4);
    assert.ok(j.truncation.total > 4);
    assert.equal(j.truncation.chars, 31);
    const summary = cli(['analyze', '--model', TINY, '--text', 'a b c d e f g h i j k l m n o p', '--max-tokens', '4']);
    assert.match(summary.stderr, new RegExp(`4 tokens \\(the first 4 of ${j.truncation.total} tokens\\)`));
  });
});

describe('engine worker process', () => {
  const client = new EngineClient({ workerPath: WORKER });
  after(() => client.dispose());

  test('loads, analyses, and reports load errors without dying', async () => {
    await rejectsWith(client.load({ dir: '/nope', threads: 1, executionProvider: 'cpu' }), 'NOT_FOUND', /Model folder not found/);
    const { info } = await client.load({ dir: TINY, threads: 1, executionProvider: 'cpu' });
    assert.equal(info.architecture, 'llama');
    const a = await client.analyze({ text: 'hello there', topK: 5, maxTokens: 64, patterns: true });
    assert.ok(a.lens.topIds instanceof Int32Array, 'typed arrays cross the process boundary');
    assert.equal(a.cache.resid.length, (info.n_layers + 1) * a.tokens.length * info.d_model);
    await client.retain([0]); // the host's "free the rest" round trip (run id 0 = this analysis)
  });

  test('a first load into the graph cache reports its progress layer by layer; a load from the cache has none to report', async () => {
    const cacheDir = tmpDir();
    const req = { dir: TINY, threads: 1, executionProvider: 'cpu' as const, cacheDir, progressIntervalMs: 0 };
    const first: [string, number][] = [];
    const { info } = await client.load(req, (m, f) => first.push([m, f]));
    const L = info.n_layers;
    assert.deepEqual(
      first.map(([m]) => m),
      Array.from({ length: L }, (_, i) => `converting the weights into the graph cache (once per model): layer ${i + 1} of ${L}`),
    );
    assert.deepEqual(
      first.map(([, f]) => f),
      Array.from({ length: L }, (_, i) => (i + 1) / (L + 1)),
    );
    const second: string[] = [];
    await client.load({ ...req, name: 'again' }, (m) => second.push(m)); // another request key: loads again
    assert.deepEqual(second, [], 'read from the cache: nothing to convert');
  });

  test('the worker asks glibc for transparent huge pages, keeping a user-set value', { skip: process.platform !== 'linux' }, () => {
    const env = fs.readFileSync(`/proc/${client.pid}/environ`, 'utf8').split('\0');
    const tunables = env.find((e) => e.startsWith('GLIBC_TUNABLES='));
    assert.match(tunables ?? '', /glibc\.malloc\.hugetlb=1/);
    assert.equal(withHugePages(undefined), 'glibc.malloc.hugetlb=1');
    assert.equal(withHugePages('glibc.malloc.arena_max=2'), 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1');
    assert.equal(withHugePages('glibc.malloc.hugetlb=0'), 'glibc.malloc.hugetlb=0');
  });

  test('a cancelled analysis rejects with CANCELLED', async () => {
    const ctl = new AbortController();
    ctl.abort();
    await rejectsWith(client.analyze({ text: 'hello', topK: 5, maxTokens: 64, patterns: true }, ctl.signal), 'CANCELLED', /cancelled/);
    const ctl2 = new AbortController();
    const p = client.analyze({ text: 'hello there '.repeat(20), topK: 5, maxTokens: 64, patterns: true }, ctl2.signal);
    ctl2.abort();
    await p.then(
      () => undefined, // finished before the cancel arrived: fine
      (e: { code: string }) => assert.equal(e.code, 'CANCELLED'),
    );
  });

  test('a killed worker fails the run clearly and restarts on the next one', async () => {
    const p = client.analyze({ text: 'hello there '.repeat(10), topK: 5, maxTokens: 64, patterns: true });
    client.kill();
    await rejectsWith(p, 'ENGINE_CRASHED', /stopped unexpectedly.*restart on the next run/);
    const a = await client.analyze({ text: 'again', topK: 5, maxTokens: 64, patterns: false });
    assert.ok(a.tokens.length > 0);
    const stats = await client.stats();
    assert.equal(
      stats.liveSessions,
      7,
      'forward, the blocked lens (prep and block graphs) and the four linear-algebra sessions (covariance, product, cosine, projection)',
    );
    assert.equal(stats.model?.architecture, 'llama');
  });
});

describe('typing-speed re-runs', () => {
  const client = new EngineClient({ workerPath: WORKER });
  after(() => client.dispose());

  test('20 rapid re-runs end with exactly the last result shown, never an older one after a newer', async () => {
    await client.load({ dir: TINY, threads: 1, executionProvider: 'cpu' });
    const runs = new LatestOnly();
    const shown: { id: number; text: string }[] = [];
    const pending: Promise<void>[] = [];
    const texts = Array.from({ length: 20 }, (_, i) => 'the quick brown fox jumps over the lazy dog '.slice(0, 10 + i * 2));
    for (const [i, text] of texts.entries()) {
      const t = runs.begin();
      pending.push(
        client.analyze({ text, topK: 5, maxTokens: 64, patterns: false }, t.signal, false, i).then(
          (a) => {
            if (t.isCurrent()) shown.push({ id: t.id, text: a.text });
            t.end();
          },
          (e: { code?: string }) => {
            assert.equal(e.code, 'CANCELLED');
            t.end();
          },
        ),
      );
      await new Promise((r) => setTimeout(r, 15)); // typing speed
    }
    await Promise.all(pending);
    assert.ok(shown.length >= 1);
    assert.equal(shown[shown.length - 1]!.text, texts[texts.length - 1], 'the last run is what is shown');
    for (let k = 1; k < shown.length; k++) assert.ok(shown[k]!.id > shown[k - 1]!.id, 'no stale result after a newer one');
  });
});
