// The host↔webview protocol: guards accept every well-formed message, reject malformed ones,
// and the router survives random messages (fuzz), calling exactly one handler each time.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isHostToWebview, isStrategy, isWebviewToHost, routeWebviewMessage, type WebviewToHost } from '../../src/shared/protocol';
import { DEFAULT_STRATEGIES } from '../../src/shared/generation';
import { Prng } from '../../tools/fuzz/mutate';
import { ROOT } from '../helpers';

const VALID: WebviewToHost[] = [
  { type: 'ready' },
  { type: 'selectPosition', runId: 3, pos: 7 },
  { type: 'log', level: 'warn', message: 'x' },
  { type: 'request', id: 1, method: 'similarity', params: { runId: 1, row: 2 } },
  { type: 'request', id: 2, method: 'exportAnalysis', params: { format: 'csv' } },
  { type: 'request', id: 3, method: 'saveImage', params: { name: 'a', format: 'png', data: 'data:image/png;base64,AA==' } },
  { type: 'request', id: 4, method: 'pattern', params: { runId: 1, layer: 0, head: 2 } },
  { type: 'request', id: 5, method: 'proximity', params: { runId: 1, pos: 0 } },
  { type: 'request', id: 6, method: 'generate', params: { prompt: 'hi', strategies: DEFAULT_STRATEGIES, maxNewTokens: 20 } },
  { type: 'request', id: 7, method: 'showClusters', params: { runId: 1, labels: [0, 0, 1] } },
  { type: 'request', id: 8, method: 'insertText', params: { text: 'abc' } },
  { type: 'request', id: 9, method: 'runCommand', params: { command: 'openSample' } },
  { type: 'request', id: 10, method: 'runCommand', params: { command: 'selectModel' } },
  { type: 'request', id: 11, method: 'runCommand', params: { command: 'comparePrompts' } },
  { type: 'request', id: 12, method: 'runCommand', params: { command: 'compareCompletions' } },
];

function randomValue(r: Prng, depth = 0): unknown {
  switch (r.int(depth > 3 ? 6 : 9)) {
    case 0:
      return null;
    case 1:
      return r.int(2) === 0;
    case 2:
      return r.pick([0, -1, 1.5, 2 ** 53, NaN, Infinity, 42]);
    case 3:
      return r.pick(['', 'ready', 'request', 'similarity', '<script>', 'x'.repeat(50)]);
    case 4:
      return undefined;
    case 5:
      return r.int(3);
    case 6:
      return Array.from({ length: r.int(4) }, () => randomValue(r, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (const k of ['type', 'id', 'method', 'params', 'runId', 'pos', 'level', 'message', 'row', 'format'].filter(() => r.int(2) === 0))
        o[k] = randomValue(r, depth + 1);
      return o;
    }
  }
}

/** A valid message with one field replaced by a random value. */
function mutate(r: Prng): unknown {
  const m = structuredClone(r.pick(VALID)) as unknown as Record<string, unknown>;
  const target = r.int(2) === 0 || !m.params ? m : (m.params as Record<string, unknown>);
  const keys = Object.keys(target);
  target[r.pick(keys)] = randomValue(r);
  return m;
}

describe('protocol guards', () => {
  test('every valid message passes; strategies are validated', () => {
    for (const m of VALID) assert.ok(isWebviewToHost(m), JSON.stringify(m));
    for (const s of DEFAULT_STRATEGIES) assert.ok(isStrategy(s));
    assert.equal(isStrategy({ label: 'x', kind: 'sample', topK: 'many' }), false);
    assert.equal(
      isWebviewToHost({ type: 'request', id: 1, method: 'generate', params: { prompt: 'a', strategies: [], maxNewTokens: 5 } }),
      false,
    );
    assert.equal(isWebviewToHost({ type: 'request', id: 1, method: 'similarity', params: { runId: -1, row: 0 } }), false);
    // the panel runs only the commands of its buttons: no other, no command id from elsewhere
    for (const command of ['setToken', 'clearCache', 'transformerDynamics.openSample', 'workbench.action.terminal.new', '', null])
      assert.equal(isWebviewToHost({ type: 'request', id: 1, method: 'runCommand', params: { command } }), false, String(command));
    assert.equal(isHostToWebview({ type: 'analysis', payload: { runId: 1 } }), false);
    assert.equal(isHostToWebview({ type: 'runState', state: { kind: 'running', message: 'x' } }), true);
  });

  test('fuzz: 20,000 random and mutated messages never throw; each reaches exactly one handler', () => {
    const r = new Prng(99);
    const seen = { ready: 0, selectPosition: 0, request: 0, log: 0, dropped: 0 };
    for (let i = 0; i < 20000; i++) {
      const raw = i % 2 ? randomValue(r) : mutate(r);
      let calls = 0;
      routeWebviewMessage(raw, {
        ready: () => (calls++, seen.ready++),
        selectPosition: (runId, pos) => {
          calls++;
          seen.selectPosition++;
          assert.ok(Number.isInteger(runId) && runId >= 0 && Number.isInteger(pos) && pos >= 0);
        },
        request: (m) => {
          calls++;
          seen.request++;
          assert.ok(Number.isInteger(m.id) && typeof m.params === 'object' && m.params !== null);
        },
        log: (level, message) => {
          calls++;
          seen.log++;
          assert.ok(['info', 'warn', 'error'].includes(level) && typeof message === 'string');
        },
        dropped: () => (calls++, seen.dropped++),
      });
      assert.equal(calls, 1);
      assert.doesNotThrow(() => isHostToWebview(raw));
    }
    assert.ok(seen.dropped > 1000 && seen.request > 100, JSON.stringify(seen));
  });
});

describe('architecture boundaries', () => {
  test('the extension host bundle never loads onnxruntime (it runs in the engine process)', () => {
    const bundle = fs.readFileSync(path.join(ROOT, 'dist', 'extension.js'), 'utf8');
    assert.ok(!bundle.includes('onnxruntime-node'), 'dist/extension.js references onnxruntime-node');
    assert.ok(fs.readFileSync(path.join(ROOT, 'dist', 'engine-worker.js'), 'utf8').includes('onnxruntime-node'));
  });
});
