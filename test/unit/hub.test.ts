// Hub downloads against a local fake Hub (test/fixtures/hub/server.ts): file selection,
// atomic cache, resume, cancel, offline use, HTTP errors and token handling. No request
// leaves 127.0.0.1.
import { after, before, beforeEach, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as net from 'node:net';
import {
  downloadModel,
  listCachedModels,
  removeCachedModel,
  type DownloadOptions,
  type DownloadProgress,
} from '../../src/engine/hub/download';
import { openCheckpoint } from '../../src/engine/checkpoint/hf';
import { loadModel } from '../../src/engine/model';
import { EngineError } from '../../src/engine/errors';
import { FakeHub, shardedTinyLlama, singleTinyLlama, sha256, type FakeFile } from '../fixtures/hub/server';
import { rejectsWith, tmpDir } from '../helpers';

const REPO = 'td-test/tiny-llama';
const SHARD1 = 'model-00001-of-00002.safetensors';
const SHARD2 = 'model-00002-of-00002.safetensors';
const NEEDED = [
  'config.json',
  'generation_config.json',
  'model.safetensors.index.json',
  SHARD1,
  SHARD2,
  'tokenizer.json',
  'tokenizer_config.json',
];
const GOOD_TOKEN = 'hf_goodTokenValue1234567890';
const WRONG_TOKEN = 'hf_wrongTokenValue0987654321';
const NO_ACCESS_TOKEN = 'hf_noAccessTokenValue5555555';

const hub = new FakeHub();
let files: FakeFile[];
const sizeOf = (p: string) => files.find((f) => f.path === p)!.data.length;
const TOTAL = () => NEEDED.reduce((s, p) => s + sizeOf(p), 0);

function opts(cacheDir: string, extra: Partial<DownloadOptions> = {}): DownloadOptions {
  return { repo: REPO, cacheDir, endpoint: hub.url, retries: 0, timeoutMs: 10_000, ...extra };
}

/** Files of a folder, recursively, relative, sorted. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(path.join(d, e.name), r);
      else out.push(r);
    }
  };
  walk(dir, '');
  return out.sort();
}

/** A port nothing listens on. */
async function deadEndpoint(): Promise<string> {
  const s = net.createServer();
  const port = await new Promise<number>((r) => s.listen(0, '127.0.0.1', () => r((s.address() as net.AddressInfo).port)));
  await new Promise<void>((r) => s.close(() => r()));
  return `http://127.0.0.1:${port}`;
}

function partials(cacheDir: string): string[] {
  const dir = path.join(cacheDir, 'models--td-test--tiny-llama', 'incomplete');
  return fs.existsSync(dir) ? tree(dir).filter((f) => f.endsWith('.partial')) : [];
}

before(async () => {
  files = shardedTinyLlama();
  hub.addRepo(REPO, files);
  hub.addRepo('td-test/single', singleTinyLlama());
  hub.addRepo('td-test/gated', singleTinyLlama(), { access: 'gated', okTokens: [GOOD_TOKEN], noAccessTokens: [NO_ACCESS_TOKEN] });
  hub.addRepo('td-test/private', singleTinyLlama(), { access: 'private', okTokens: [GOOD_TOKEN] });
  const single = singleTinyLlama();
  const enc = (s: string) => new TextEncoder().encode(s);
  hub.addRepo('td-test/pickle-only', [
    ...single.filter((f) => f.path !== 'model.safetensors'),
    { path: 'pytorch_model.bin', data: new Uint8Array(2048) },
  ]);
  hub.addRepo(
    'td-test/no-tokenizer',
    single.filter((f) => f.path !== 'tokenizer.json'),
  );
  hub.addRepo('td-test/onnx-only', [
    ...single.filter((f) => f.path !== 'model.safetensors'),
    { path: 'onnx/model.onnx', data: new Uint8Array(3000).fill(7) },
    { path: 'onnx/model.onnx_data', data: new Uint8Array(5000).fill(9) },
    { path: 'onnx/model_quantized.onnx', data: new Uint8Array(1000) },
    { path: 'README.md', data: enc('onnx export') },
  ]);
  hub.addRepo('td-test/bert', [
    { path: 'config.json', data: enc(JSON.stringify({ model_type: 'bert' })) },
    ...single.filter((f) => f.path !== 'config.json'),
  ]);
  await hub.start();
});

after(async () => {
  await hub.stop();
});

beforeEach(() => hub.reset());

describe('hub download: files and cache', () => {
  test('downloads only the needed files; the folder loads with openCheckpoint and loadModel', async () => {
    const cacheDir = tmpDir();
    const res = await downloadModel(opts(cacheDir));
    assert.equal(res.fromCache, false);
    assert.equal(res.layout, 'safetensors');
    assert.equal(res.bytesDownloaded, TOTAL());
    assert.deepEqual(tree(res.dir), ['.complete', ...NEEDED].sort());
    for (const p of NEEDED)
      assert.deepEqual(new Uint8Array(fs.readFileSync(path.join(res.dir, p))), files.find((f) => f.path === p)!.data, p);
    // skipped files were never requested, not even probed
    for (const junk of ['pytorch_model.bin', 'README.md', '.gitattributes', 'onnx/model.onnx']) {
      assert.equal(hub.requests.filter((r) => hub.fileOfRequest(r) === junk).length, 0, junk);
    }
    assert.match(res.dir, /models--td-test--tiny-llama[\\/]snapshots[\\/][0-9a-f]{40}$/);
    assert.equal(path.basename(res.dir), res.sha);
    assert.equal(fs.readFileSync(path.join(cacheDir, 'models--td-test--tiny-llama', 'refs', 'main'), 'utf8'), res.sha);
    assert.deepEqual(partials(cacheDir), []);

    const ckpt = openCheckpoint(res.dir);
    assert.equal(ckpt.weights.files.length, 2);
    const model = await loadModel(res.dir, { threads: 1, executionProvider: 'cpu', name: REPO });
    try {
      assert.equal(model.info.name, REPO);
      assert.equal(model.spec.nLayers, 3);
      assert.ok(model.tokenizer.encode('hello world').length > 0);
    } finally {
      await model.release();
    }

    const cached = listCachedModels(cacheDir);
    assert.equal(cached.length, 1);
    assert.deepEqual(
      { repo: cached[0]!.repo, sha: cached[0]!.sha, size: cached[0]!.size, path: cached[0]!.path, revisions: cached[0]!.revisions },
      { repo: REPO, sha: res.sha, size: TOTAL(), path: res.dir, revisions: ['main'] },
    );
  });

  test('progress: throttled, monotonic, ends at the total, with a speed', async () => {
    hub.pace = { chunk: 4096, delayMs: 15 };
    const events: (DownloadProgress & { t: number })[] = [];
    const t0 = performance.now();
    const res = await downloadModel(opts(tmpDir(), { onProgress: (p) => events.push({ ...p, t: performance.now() }) }));
    const elapsed = performance.now() - t0;
    assert.ok(events.length >= 3, `only ${events.length} progress events`);
    assert.ok(events.length <= elapsed / 100 + 3, `${events.length} events in ${elapsed.toFixed(0)} ms is more than ~10/s`);
    for (let i = 1; i < events.length; i++) assert.ok(events[i]!.bytes >= events[i - 1]!.bytes, 'bytes went backwards');
    for (let i = 1; i < events.length - 1; i++) assert.ok(events[i]!.t - events[i - 1]!.t >= 95, 'two events within 100 ms');
    for (const e of events) {
      assert.equal(e.total, TOTAL());
      assert.ok(e.fileBytes <= e.fileTotal && NEEDED.includes(e.file));
    }
    const last = events[events.length - 1]!;
    assert.equal(last.bytes, last.total);
    assert.ok(
      events.some((e) => e.bytesPerSecond > 0),
      'no speed reported',
    );
    assert.equal(res.bytesDownloaded, TOTAL());
  });

  test('a complete snapshot is reused: no file requests, fromCache', async () => {
    const cacheDir = tmpDir();
    const first = await downloadModel(opts(cacheDir));
    hub.requests.length = 0;
    const again = await downloadModel(opts(cacheDir));
    assert.deepEqual(
      { dir: again.dir, fromCache: again.fromCache, bytes: again.bytesDownloaded },
      { dir: first.dir, fromCache: true, bytes: 0 },
    );
    assert.deepEqual(
      hub.requests.map((r) => r.path),
      [`/api/models/${REPO}/revision/main`],
      'only the revision is resolved',
    );
    hub.requests.length = 0;
    const bySha = await downloadModel(opts(cacheDir, { revision: first.sha }));
    assert.equal(bySha.dir, first.dir);
    assert.equal(hub.requests.length, 0, 'a cached commit sha needs no network at all');
  });

  test('a new revision gets its own snapshot; unchanged files are reused, the old snapshot stays', async () => {
    const cacheDir = tmpDir();
    const id = 'td-test/evolving';
    const v1 = shardedTinyLlama().filter((f) => f.path !== 'pytorch_model.bin');
    hub.addRepo(id, v1);
    const a = await downloadModel(opts(cacheDir, { repo: id }));
    // main moves: README and generation config change, weights do not
    const enc = (s: string) => new TextEncoder().encode(s);
    const v2 = v1.map((f) =>
      f.path === 'README.md'
        ? { ...f, data: enc('# v2\n') }
        : f.path === 'generation_config.json'
          ? { ...f, data: enc('{"do_sample": true}') }
          : f,
    );
    hub.addRepo(id, v2);
    hub.requests.length = 0;
    const b = await downloadModel(opts(cacheDir, { repo: id }));
    assert.notEqual(a.sha, b.sha);
    assert.notEqual(a.dir, b.dir);
    assert.equal(b.bytesDownloaded, enc('{"do_sample": true}').length, 'only the changed file is fetched');
    assert.equal(hub.bodyRequests(SHARD1).length + hub.bodyRequests(SHARD2).length, 0);
    assert.equal(
      fs.readFileSync(path.join(a.dir, 'generation_config.json'), 'utf8'),
      JSON.stringify({ bos_token_id: 299, eos_token_id: 299 }),
    );
    assert.equal(fs.readFileSync(path.join(b.dir, 'generation_config.json'), 'utf8'), '{"do_sample": true}');
    openCheckpoint(a.dir);
    openCheckpoint(b.dir);
    const cached = listCachedModels(cacheDir).filter((m) => m.repo === id);
    assert.deepEqual(cached.map((m) => m.sha).sort(), [a.sha, b.sha].sort());
    assert.deepEqual(cached.find((m) => m.sha === b.sha)!.revisions, ['main']);

    // removing the old snapshot keeps the new one intact (hard links)
    const freed = removeCachedModel(cacheDir, id, a.sha);
    assert.ok(freed > 0);
    assert.ok(!fs.existsSync(a.dir));
    openCheckpoint(b.dir);
    assert.deepEqual(
      listCachedModels(cacheDir).map((m) => m.sha),
      [b.sha],
    );
    removeCachedModel(cacheDir, id);
    assert.deepEqual(listCachedModels(cacheDir), []);
    assert.ok(!fs.existsSync(path.join(cacheDir, 'models--td-test--evolving')));
  });

  test('ONNX-only repository: onnx/model.onnx and its data file, nothing else', async () => {
    const res = await downloadModel(opts(tmpDir(), { repo: 'td-test/onnx-only' }));
    assert.equal(res.layout, 'onnx');
    assert.equal(res.onnxPath, path.join(res.dir, 'onnx', 'model.onnx'));
    assert.deepEqual(tree(res.dir), [
      '.complete',
      'config.json',
      'onnx/model.onnx',
      'onnx/model.onnx_data',
      'tokenizer.json',
      'tokenizer_config.json',
    ]);
  });

  test('single model.safetensors repository', async () => {
    const res = await downloadModel(opts(tmpDir(), { repo: 'td-test/single' }));
    assert.deepEqual(tree(res.dir), ['.complete', 'config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    openCheckpoint(res.dir);
  });
});

describe('hub download: interruptions', () => {
  test('resume after a dropped connection: the next call continues with Range', async () => {
    const cacheDir = tmpDir();
    const cut = 20_000;
    hub.drop = { path: SHARD2, after: cut, times: 1 };
    await rejectsWith(
      downloadModel(opts(cacheDir)),
      'DOWNLOAD',
      /interrupted while fetching model-00002-of-00002\.safetensors.*run the download again to resume/,
    );
    assert.deepEqual(listCachedModels(cacheDir), [], 'no complete snapshot after a failure');
    assert.deepEqual(
      partials(cacheDir).map((p) => path.basename(p)),
      [`${SHARD2}.partial`],
    );
    hub.requests.length = 0;
    const res = await downloadModel(opts(cacheDir));
    const ranges = hub.bodyRequests(SHARD2).map((r) => r.range);
    assert.deepEqual(ranges, [`bytes=${cut}-`]);
    assert.equal(res.bytesDownloaded, sizeOf(SHARD2) - cut, 'only the missing bytes are fetched');
    assert.equal(sha256(fs.readFileSync(path.join(res.dir, SHARD2))), sha256(files.find((f) => f.path === SHARD2)!.data));
    openCheckpoint(res.dir);
  });

  test('a dropped connection is resumed within the same call when retries are allowed', async () => {
    hub.drop = { path: SHARD1, after: 12_345, times: 1 };
    const res = await downloadModel(opts(tmpDir(), { retries: 2 }));
    assert.deepEqual(
      hub.bodyRequests(SHARD1).map((r) => r.range),
      [null, 'bytes=12345-'],
    );
    assert.equal(res.bytesDownloaded, TOTAL());
    openCheckpoint(res.dir);
  });

  test('a server that ignores Range: the file is downloaded again from the start', async () => {
    const cacheDir = tmpDir();
    hub.drop = { path: SHARD1, after: 10_000, times: 1 };
    await rejectsWith(downloadModel(opts(cacheDir)), 'DOWNLOAD', /interrupted/);
    hub.ignoreRange = true;
    const res = await downloadModel(opts(cacheDir));
    assert.equal(sha256(fs.readFileSync(path.join(res.dir, SHARD1))), sha256(files.find((f) => f.path === SHARD1)!.data));
    openCheckpoint(res.dir);
  });

  test('cancel mid-file → CANCELLED, no snapshot; a later call completes from where it stopped', async () => {
    const cacheDir = tmpDir();
    const ctl = new AbortController();
    hub.stall = { path: SHARD1, after: 8_000, onStall: () => undefined };
    const pending = downloadModel(opts(cacheDir, { signal: ctl.signal }));
    // abort once the client has written what the server sent
    const partial = path.join(cacheDir, 'models--td-test--tiny-llama', 'incomplete');
    for (let i = 0; i < 500 && !partials(cacheDir).some((p) => fs.statSync(path.join(partial, p)).size === 8_000); i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    ctl.abort();
    await rejectsWith(pending, 'CANCELLED', /cancelled.*resumes on the next try/);
    assert.deepEqual(listCachedModels(cacheDir), []);
    assert.ok(!fs.existsSync(path.join(cacheDir, 'models--td-test--tiny-llama', 'snapshots')));
    hub.stall = null;
    hub.requests.length = 0;
    const res = await downloadModel(opts(cacheDir));
    assert.deepEqual(
      hub.bodyRequests(SHARD1).map((r) => r.range),
      ['bytes=8000-'],
    );
    openCheckpoint(res.dir);
    // an already-aborted signal fails fast
    await rejectsWith(downloadModel(opts(tmpDir(), { signal: AbortSignal.abort() })), 'CANCELLED', /cancelled/);
  });

  test('a stalled server times out with a clear message', async () => {
    hub.stall = { path: SHARD1, after: 4_000, onStall: () => undefined };
    await rejectsWith(downloadModel(opts(tmpDir(), { timeoutMs: 400 })), 'DOWNLOAD', /timed out \(STALLED\).*resume/);
  });

  test('corrupted content fails the checksum and is never marked complete', async () => {
    const cacheDir = tmpDir();
    hub.corrupt = SHARD2;
    await rejectsWith(downloadModel(opts(cacheDir)), 'DOWNLOAD', /does not match the Hub's checksum \(sha256/);
    assert.deepEqual(listCachedModels(cacheDir), []);
    hub.corrupt = null;
    openCheckpoint((await downloadModel(opts(cacheDir))).dir);
  });

  test('a small (non-LFS) file is verified by its git blob sha1', async () => {
    hub.corrupt = 'tokenizer.json';
    await rejectsWith(downloadModel(opts(tmpDir())), 'DOWNLOAD', /tokenizer\.json .*checksum \(gitsha1/);
  });
});

describe('hub download: offline', () => {
  test('server gone: the cached snapshot is returned; offline: true never touches the network', async () => {
    const local = new FakeHub();
    local.addRepo(REPO, files);
    const endpoint = await local.start();
    const cacheDir = tmpDir();
    const first = await downloadModel({ repo: REPO, cacheDir, endpoint });
    await local.stop();
    const res = await downloadModel({ repo: REPO, cacheDir, endpoint, retries: 0 });
    assert.deepEqual(
      { dir: res.dir, fromCache: res.fromCache, offline: res.offline, sha: res.sha },
      { dir: first.dir, fromCache: true, offline: true, sha: first.sha },
    );
    openCheckpoint(res.dir);
    const off = await downloadModel({ repo: REPO, cacheDir, endpoint: 'http://203.0.113.1', offline: true });
    assert.equal(off.dir, first.dir);
  });

  test('offline without a cached copy: a clear message', async () => {
    const endpoint = await deadEndpoint();
    await rejectsWith(
      downloadModel({ repo: REPO, cacheDir: tmpDir(), endpoint }),
      'DOWNLOAD',
      /Cannot reach 127\.0\.0\.1:\d+: the connection was refused \(ECONNREFUSED\)\. You appear to be offline, and there is no cached copy of td-test\/tiny-llama \(main\)/,
    );
    await rejectsWith(downloadModel({ repo: REPO, cacheDir: tmpDir(), offline: true }), 'DOWNLOAD', /offline mode is on.*no cached copy/);
  });
});

describe('hub download: refusals and errors', () => {
  test('repository not found (404)', async () => {
    await rejectsWith(
      downloadModel(opts(tmpDir(), { repo: 'td-test/nope' })),
      'DOWNLOAD',
      /"td-test\/nope" was not found\. Check the name.*private.*Set Hugging Face Token/,
    );
  });

  test('revision not found', async () => {
    await rejectsWith(downloadModel(opts(tmpDir(), { revision: 'v9' })), 'DOWNLOAD', /Revision "v9" does not exist in td-test\/tiny-llama/);
  });

  test('invalid repo ids and revisions are refused before any request', async () => {
    await rejectsWith(downloadModel(opts(tmpDir(), { repo: '../etc/passwd' })), 'DOWNLOAD', /not a Hugging Face model id/);
    await rejectsWith(downloadModel(opts(tmpDir(), { revision: '../../x' })), 'DOWNLOAD', /not a valid revision/);
    assert.equal(hub.requests.length, 0);
  });

  test('gated repository: no token, wrong token, token without access, good token; the token never leaks', async () => {
    const lines: string[] = [];
    const log = (l: string) => lines.push(l);
    const cacheDir = tmpDir();
    const gated = (token?: string) => downloadModel(opts(cacheDir, { repo: 'td-test/gated', log, ...(token ? { token } : {}) }));
    await rejectsWith(
      gated(),
      'DOWNLOAD',
      /gated or private.*Accept the licence on the model page.*"Transformer Dynamics: Set Hugging Face Token" command/,
    );
    for (const [token, re] of [
      [WRONG_TOKEN, /token was rejected .*HTTP 401.*Set Hugging Face Token/],
      [NO_ACCESS_TOKEN, /no access to td-test\/gated \(HTTP 403\)\. Accept the licence/],
    ] as const) {
      try {
        await gated(token);
        assert.fail('expected an error');
      } catch (e) {
        const err = e as EngineError;
        assert.equal(err.code, 'DOWNLOAD');
        assert.match(err.message, re);
        assert.ok(!err.message.includes(token) && !(err.stack ?? '').includes(token), 'token in the error');
      }
    }
    assert.deepEqual(fs.readdirSync(cacheDir), [], 'failed attempts leave no folders behind');
    const ok = await gated(GOOD_TOKEN);
    openCheckpoint(ok.dir);
    const joined = lines.join('\n');
    for (const t of [GOOD_TOKEN, WRONG_TOKEN, NO_ACCESS_TOKEN]) assert.ok(!joined.includes(t), 'token in the log');
    assert.ok(lines.length > 0);
    // the token goes to the Hub, never to the file server on another origin
    assert.ok(hub.requests.some((r) => r.server === 'hub' && r.auth === `Bearer ${GOOD_TOKEN}`));
    assert.deepEqual(
      hub.requests.filter((r) => r.server === 'cdn' && r.auth !== null).map((r) => r.path),
      [],
    );
  });

  test('private repository without a token reads as not found, with the token hint', async () => {
    await rejectsWith(
      downloadModel(opts(tmpDir(), { repo: 'td-test/private' })),
      'DOWNLOAD',
      /was not found.*private repository, add an access token/,
    );
    openCheckpoint((await downloadModel(opts(tmpDir(), { repo: 'td-test/private', token: GOOD_TOKEN }))).dir);
  });

  test('a token that is not a Hugging Face token is refused without echoing it', async () => {
    const token = 'sk-notahftoken-123456';
    try {
      await downloadModel(opts(tmpDir(), { token }));
      assert.fail('expected an error');
    } catch (e) {
      assert.equal((e as EngineError).code, 'DOWNLOAD');
      assert.match((e as Error).message, /not a valid access token \(tokens start with "hf_"\)/);
      assert.ok(!(e as Error).message.includes(token));
    }
  });

  test('pickle-only repository is refused before downloading anything', async () => {
    await rejectsWith(
      downloadModel(opts(tmpDir(), { repo: 'td-test/pickle-only' })),
      'PICKLE_REFUSED',
      /has no safetensors weights.*arbitrary code/,
    );
    assert.equal(hub.requests.filter((r) => r.path.includes('/resolve/') || r.server === 'cdn').length, 0);
  });

  test('repository without tokenizer.json → MISSING_TOKENIZER before downloading', async () => {
    await rejectsWith(
      downloadModel(opts(tmpDir(), { repo: 'td-test/no-tokenizer' })),
      'MISSING_TOKENIZER',
      /no tokenizer\.json.*AutoTokenizer/,
    );
    assert.equal(hub.requests.filter((r) => r.path.includes('/resolve/')).length, 0);
  });

  test('unsupported architecture is refused after config.json, before the weights', async () => {
    await rejectsWith(downloadModel(opts(tmpDir(), { repo: 'td-test/bert' })), 'UNSUPPORTED_ARCHITECTURE', /"bert" is not supported/);
    assert.equal(hub.bodyRequests('model.safetensors').length, 0);
  });

  test('beforeWeights can stop the download (memory guard) before the weights', async () => {
    let seen: unknown = null;
    await rejectsWith(
      downloadModel(
        opts(tmpDir(), {
          beforeWeights: (p) => {
            seen = { layout: p.layout, weightBytes: p.weightBytes, totalBytes: p.totalBytes, model_type: p.config.model_type };
            throw new EngineError('TOO_LARGE', 'too big for this machine');
          },
        }),
      ),
      'TOO_LARGE',
      /too big/,
    );
    assert.deepEqual(seen, {
      layout: 'safetensors',
      weightBytes: sizeOf(SHARD1) + sizeOf(SHARD2),
      totalBytes: TOTAL(),
      model_type: 'llama',
    });
    assert.equal(hub.bodyRequests(SHARD1).length + hub.bodyRequests(SHARD2).length, 0);
  });

  test('cache folder that cannot be created (a path under a file) → clear error', async () => {
    const file = path.join(tmpDir(), 'not-a-folder');
    fs.writeFileSync(file, 'x');
    await rejectsWith(
      downloadModel(opts(path.join(file, 'cache'))),
      'DOWNLOAD',
      /Cannot use .*not-a-folder.* as the model cache folder: part of that path is a file/,
    );
  });

  test('a second concurrent download of the same snapshot is refused, the first completes', async () => {
    const cacheDir = tmpDir();
    let release: () => void = () => undefined;
    const stalled = new Promise<void>((r) => (release = r));
    hub.stall = { path: SHARD1, after: 1_000, onStall: () => release() };
    const ctl = new AbortController();
    const first = downloadModel(opts(cacheDir, { signal: ctl.signal }));
    await stalled;
    await rejectsWith(downloadModel(opts(cacheDir)), 'DOWNLOAD', /already being downloaded/);
    ctl.abort();
    await rejectsWith(first, 'CANCELLED', /cancelled/);
    hub.stall = null;
    openCheckpoint((await downloadModel(opts(cacheDir))).dir);
  });
});
