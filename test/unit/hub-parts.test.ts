// The pieces of the Hub downloader that need no server: file selection, ids, messages,
// cache bookkeeping and the suggested models.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { planFiles, shardsFromIndex } from '../../src/engine/hub/download';
import { acquireLock, listCachedModels, parseRepoInput, removeCachedModel, validateRevision } from '../../src/engine/hub/cache';
import { fsError, httpError, networkErrorCode, redact, formatBytes, TOKEN_COMMAND } from '../../src/engine/hub/messages';
import { SUGGESTED_MODELS, approximateSize } from '../../src/engine/hub/suggested';
import { specFromConfig } from '../../src/engine/arch/spec';
import { EngineError } from '../../src/engine/errors';
import { tmpDir } from '../helpers';

function thrown(f: () => unknown): EngineError {
  try {
    f();
  } catch (e) {
    return e as EngineError;
  }
  assert.fail('expected an error');
}

const set = (...p: string[]) => new Set(p);

describe('planFiles', () => {
  test('single safetensors file; optional JSON only when present', () => {
    const p = planFiles(
      'a/b',
      set('config.json', 'tokenizer.json', 'model.safetensors', 'README.md', 'pytorch_model.bin', 'generation_config.json'),
    );
    assert.deepEqual(p, {
      layout: 'safetensors',
      meta: ['config.json', 'tokenizer.json', 'generation_config.json'],
      index: null,
      weights: ['model.safetensors'],
    });
  });

  test('sharded, and ONNX-only', () => {
    const sharded = planFiles(
      'a/b',
      set('config.json', 'tokenizer.json', 'model.safetensors.index.json', 'model-00001-of-00002.safetensors'),
    );
    assert.equal(sharded.index, 'model.safetensors.index.json');
    assert.deepEqual(sharded.weights, []);
    const onnx = planFiles(
      'a/b',
      set('config.json', 'tokenizer.json', 'onnx/model.onnx', 'onnx/model.onnx_data', 'onnx/model_fp16.onnx', 'onnx/model_quantized.onnx'),
    );
    assert.deepEqual(
      { layout: onnx.layout, weights: onnx.weights },
      { layout: 'onnx', weights: ['onnx/model.onnx', 'onnx/model.onnx_data'] },
    );
  });

  test('refusals', () => {
    const pickle = thrown(() => planFiles('a/b', set('config.json', 'tokenizer.json', 'pytorch_model.bin')));
    assert.equal(pickle.code, 'PICKLE_REFUSED');
    assert.match(pickle.message, /^a\/b has no safetensors weights\. .*pickle.*refs\/pr\/N/);
    const sharded = thrown(() => planFiles('a/b', set('config.json', 'tokenizer.json', 'pytorch_model-00001-of-00002.bin')));
    assert.equal(sharded.code, 'PICKLE_REFUSED');
    assert.equal(thrown(() => planFiles('a/b', set('config.json', 'model.safetensors'))).code, 'MISSING_TOKENIZER');
    assert.match(thrown(() => planFiles('a/b', set('tokenizer.json', 'model.safetensors'))).message, /no config\.json/);
    assert.match(thrown(() => planFiles('a/b', set('config.json', 'tokenizer.json', 'README.md'))).message, /has no model\.safetensors/);
  });

  test('shard index: exactly the listed shards, validated', () => {
    const avail = set('a.safetensors', 'b.safetensors', 'c.safetensors');
    assert.deepEqual(shardsFromIndex('r', { weight_map: { x: 'b.safetensors', y: 'a.safetensors', z: 'b.safetensors' } }, avail), [
      'a.safetensors',
      'b.safetensors',
    ]);
    for (const bad of ['../x.safetensors', 'sub/a.safetensors', '.hidden.safetensors', 'a.bin', 7]) {
      assert.equal(thrown(() => shardsFromIndex('r', { weight_map: { x: bad } }, avail)).code, 'BAD_WEIGHTS', String(bad));
    }
    assert.match(
      thrown(() => shardsFromIndex('r', { weight_map: { x: 'd.safetensors' } }, avail)).message,
      /d\.safetensors .* not in the repository/,
    );
    assert.match(thrown(() => shardsFromIndex('r', {}, avail)).message, /no "weight_map"/);
  });
});

describe('repo ids and revisions', () => {
  test('parseRepoInput', () => {
    assert.deepEqual(parseRepoInput(' openai-community/gpt2 '), { repo: 'openai-community/gpt2' });
    assert.deepEqual(parseRepoInput('gpt2'), { repo: 'gpt2' });
    assert.deepEqual(parseRepoInput('Qwen/Qwen2.5-0.5B@refs/pr/3'), { repo: 'Qwen/Qwen2.5-0.5B', revision: 'refs/pr/3' });
    assert.deepEqual(parseRepoInput('https://huggingface.co/EleutherAI/pythia-70m'), { repo: 'EleutherAI/pythia-70m' });
    assert.deepEqual(parseRepoInput('https://huggingface.co/EleutherAI/pythia-70m/tree/step1000'), {
      repo: 'EleutherAI/pythia-70m',
      revision: 'step1000',
    });
    for (const bad of ['', 'a/b/c', '../x', 'a/..', 'a b/c', 'a/b?x'])
      assert.equal(thrown(() => parseRepoInput(bad)).code, 'DOWNLOAD', bad);
    assert.equal(validateRevision('refs/pr/1'), 'refs/pr/1');
    for (const bad of ['', '../x', 'a//b', 'a/./b', 'x y']) assert.equal(thrown(() => validateRevision(bad)).code, 'DOWNLOAD', bad);
  });
});

describe('messages', () => {
  const ctx = { repo: 'o/m', revision: 'main', endpoint: 'https://huggingface.co', hasToken: false };
  test('HTTP statuses', () => {
    assert.match(httpError(ctx, { status: 404 }).message, /"o\/m" was not found\. Check the name.*Set Hugging Face Token/);
    assert.match(httpError(ctx, { status: 401, errorCode: 'RepoNotFound' }).message, /was not found/);
    assert.match(
      httpError({ ...ctx, hasToken: true }, { status: 404, errorCode: 'RepoNotFound' }).message,
      /or your access token cannot see it/,
    );
    assert.match(
      httpError(ctx, { status: 401, errorCode: 'GatedRepo' }).message,
      new RegExp(`gated or private.*https://huggingface.co/o/m.*settings/tokens.*"${TOKEN_COMMAND}"`),
    );
    assert.match(httpError({ ...ctx, hasToken: true }, { status: 401 }).message, /rejected for o\/m \(HTTP 401: invalid or expired\)/);
    assert.match(httpError({ ...ctx, hasToken: true }, { status: 403, errorCode: 'GatedRepo' }).message, /no access to o\/m \(HTTP 403\)/);
    assert.match(httpError(ctx, { status: 404, errorCode: 'RevisionNotFound' }).message, /Revision "main" does not exist/);
    assert.match(httpError({ ...ctx, file: 'x.json' }, { status: 404, errorCode: 'EntryNotFound' }).message, /lists x\.json but/);
    assert.match(httpError(ctx, { status: 429 }).message, /rate-limiting/);
    assert.match(httpError(ctx, { status: 503 }).message, /server error \(HTTP 503\)/);
    assert.match(httpError(ctx, { status: 418, serverMessage: 'teapot\nhere' }).message, /HTTP 418: teapot here/);
    for (const s of [401, 403, 404, 429, 500, 418]) assert.equal(httpError(ctx, { status: s }).code, 'DOWNLOAD');
  });

  test('file-system errors: disk full, read-only, permission', () => {
    const err = (code: string) => Object.assign(new Error(code), { code, syscall: 'write' });
    const full = fsError(err('ENOSPC'), '/c', 'o/m', 2.5e9)!;
    assert.equal(full.code, 'DOWNLOAD');
    assert.match(
      full.message,
      /The disk holding the model cache \(\/c\) is full: o\/m needs about 2\.5 GB more\. Free some space.*resumes on the next try/,
    );
    assert.match(
      fsError(err('EROFS'), '/c', 'o/m')!.message,
      /Cannot write to the model cache folder \/c \(read-only file system\)\. Choose a writable/,
    );
    assert.match(fsError(err('EACCES'), '/c', 'o/m')!.message, /\(permission denied\)/);
    assert.match(fsError(err('ENOTDIR'), '/c', 'o/m')!.message, /part of that path is a file/);
    assert.equal(fsError(new Error('plain'), '/c', 'o/m'), null);
  });

  test('network error codes in cause chains', () => {
    const fetchFailed = Object.assign(new TypeError('fetch failed'), { cause: Object.assign(new Error('x'), { code: 'ENOTFOUND' }) });
    assert.equal(networkErrorCode(fetchFailed), 'ENOTFOUND');
    const agg = Object.assign(new TypeError('fetch failed'), {
      cause: Object.assign(new AggregateError([Object.assign(new Error(), { code: 'ECONNREFUSED' })]), {}),
    });
    assert.equal(networkErrorCode(agg), 'ECONNREFUSED');
    assert.equal(networkErrorCode(new TypeError('terminated')), 'NETWORK');
    assert.equal(networkErrorCode(new Error('other')), null);
    assert.equal(networkErrorCode(Object.assign(new Error(), { code: 'ENOSPC' })), null);
  });

  test('redact and formatBytes', () => {
    assert.equal(redact('Bearer hf_secret123 and hf_secret123', 'hf_secret123'), 'Bearer hf_*** and hf_***');
    assert.equal(redact('text', undefined), 'text');
    assert.equal(formatBytes(548e6), '548 MB');
    assert.equal(formatBytes(1.5e9), '1.5 GB');
    assert.equal(formatBytes(12), '12 B');
  });
});

describe('cache bookkeeping', () => {
  test('partial snapshots are not listed; removeCachedModel validates', () => {
    const cache = tmpDir();
    const sha = 'a'.repeat(40);
    const snap = path.join(cache, 'models--o--m', 'snapshots', sha);
    fs.mkdirSync(snap, { recursive: true });
    fs.writeFileSync(path.join(snap, 'config.json'), '{}');
    assert.deepEqual(listCachedModels(cache), [], 'no .complete marker');
    fs.writeFileSync(
      path.join(snap, '.complete'),
      JSON.stringify({
        format: 1,
        repo: 'o/m',
        revision: 'main',
        sha,
        layout: 'safetensors',
        files: [{ path: 'config.json', size: 2, sha256: null, gitSha1: null }],
        bytes: 2,
        completedAt: '2025-01-01T00:00:00Z',
      }),
    );
    assert.deepEqual(
      listCachedModels(cache).map((m) => [m.repo, m.sha, m.size, m.revisions]),
      [['o/m', sha, 2, ['main']]],
    );
    assert.deepEqual(listCachedModels(path.join(cache, 'missing')), []);
    assert.equal(thrown(() => removeCachedModel(cache, 'o/m', 'nope')).code, 'BAD_REQUEST');
    assert.equal(thrown(() => removeCachedModel(cache, '../x')).code, 'DOWNLOAD');
    removeCachedModel(cache, 'o/m', sha);
    assert.deepEqual(listCachedModels(cache), []);
    assert.ok(!fs.existsSync(path.join(cache, 'models--o--m')));
  });

  test('download lock: a stale lock (dead process) is taken over, a live one refused', () => {
    const lock = path.join(tmpDir(), 'x.lock');
    fs.writeFileSync(lock, JSON.stringify({ pid: 2 ** 22 + 12345, host: os.hostname() }));
    const release = acquireLock(lock, 'o/m');
    assert.match(thrown(() => acquireLock(lock, 'o/m')).message, /already being downloaded/);
    release();
    assert.ok(!fs.existsSync(lock));
    fs.writeFileSync(lock, JSON.stringify({ pid: 1, host: os.hostname() })); // pid 1 is alive
    assert.match(thrown(() => acquireLock(lock, 'o/m')).message, /another process \(pid 1/);
  });
});

describe('suggested models', () => {
  test('the picker entries with approximate sizes and valid configs', () => {
    assert.deepEqual(
      SUGGESTED_MODELS.map((m) => [m.repo, approximateSize(m)]),
      [
        ['openai-community/gpt2', '~548 MB'],
        ['EleutherAI/pythia-70m', '~166 MB'],
        ['HuggingFaceTB/SmolLM2-135M', '~269 MB'],
        ['Qwen/Qwen2.5-0.5B', '~988 MB'],
        ['Qwen/Qwen3-0.6B', '~1.5 GB'],
        ['google/gemma-3-270m', '~536 MB'],
        ['meta-llama/Llama-3.2-1B', '~2.5 GB'],
        ['allenai/OLMo-2-0425-1B', '~5.9 GB'],
        ['HuggingFaceTB/SmolLM3-3B', '~6.2 GB'],
        ['microsoft/Phi-4-mini-instruct', '~7.7 GB'],
      ],
    );
    for (const m of SUGGESTED_MODELS) {
      assert.equal(m.approximate, true);
      const s = specFromConfig(m.config);
      assert.ok(s.nLayers > 0, m.repo);
    }
  });
});
