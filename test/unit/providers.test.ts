// Execution-provider selection and CPU fallback.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { chooseProvider, providerEnvironment, type ProviderEnvironment } from '../../src/engine/runtime/ort';
import { loadModel } from '../../src/engine/model';
import { failingCudaEnvironment, FIXTURES } from '../helpers';

const base: ProviderEnvironment = {
  backends: [
    { name: 'cpu', bundled: true },
    { name: 'cuda', bundled: false },
  ],
  cudaLibrary: false,
  nvidiaGpu: false,
  platform: 'linux',
};

describe('execution providers', () => {
  test('auto picks CUDA only with its binaries and a GPU', () => {
    assert.equal(chooseProvider('auto', base).provider, 'cpu');
    assert.equal(chooseProvider('auto', { ...base, cudaLibrary: true }).provider, 'cpu');
    assert.equal(chooseProvider('auto', { ...base, cudaLibrary: true, nvidiaGpu: true }).provider, 'cuda');
  });

  test('an explicit provider that cannot work falls back to CPU with a clear note', () => {
    const cuda = chooseProvider('cuda', base);
    assert.equal(cuda.provider, 'cpu');
    assert.match(cuda.note!, /CUDA binaries are not installed.*running on CPU/);
    assert.match(chooseProvider('cuda', { ...base, cudaLibrary: true }).note!, /No NVIDIA GPU/);
    assert.match(chooseProvider('dml', base).note!, /Windows only/);
    assert.match(chooseProvider('coreml', base).note!, /macOS only/);
    assert.deepEqual(chooseProvider('cuda', { ...base, cudaLibrary: true, nvidiaGpu: true }), { provider: 'cuda', note: null });
    assert.deepEqual(chooseProvider('dml', { ...base, platform: 'win32' }), { provider: 'dml', note: null });
  });

  test('on this machine: cuda requested → runs on CPU and says why', async () => {
    const env = providerEnvironment();
    assert.ok(env.backends.some((b) => b.name === 'cpu'));
    const m = await loadModel(path.join(FIXTURES, 'models', 'tiny-llama'), { threads: 1, executionProvider: 'cuda' });
    try {
      if (!env.cudaLibrary || !env.nvidiaGpu) {
        assert.equal(m.info.provider, 'cpu');
        assert.match(m.info.provider_note ?? '', /running on CPU/);
      } else assert.equal(m.info.provider, 'cuda');
    } finally {
      await m.release();
    }
  });

  test('a GPU provider that fails to start: CPU with the reason, and the other sessions do not retry it', async (t) => {
    const environment = failingCudaEnvironment();
    if (!environment) return t.skip('CUDA works on this machine');
    const m = await loadModel(path.join(FIXTURES, 'models', 'tiny-llama'), { threads: 1, executionProvider: 'cuda', environment });
    try {
      assert.equal(m.info.provider, 'cpu');
      assert.match(m.info.provider_note ?? '', /^The CUDA execution provider failed to start \(.+\); running on CPU\.$/);
      assert.equal(m.info.weights, 'float32');
      // the lens session was created on the CPU directly (a retry would carry its own failure note)
      assert.equal(m.lens.provider, 'cpu');
      assert.equal(m.lens.providerNote, null);
    } finally {
      await m.release();
    }
  });
});
