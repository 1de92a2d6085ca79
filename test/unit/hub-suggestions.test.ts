// Select Model → Hub suggestions for today's small models: each entry's config describes the
// same model as its full published config.json (test/fixtures/hub-configs), which the engine
// accepts key by key, and the memory estimate the picker shows is computed from it.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { paramCount, readConfig, specFromConfig } from '../../src/engine/arch/spec';
import { estimateMemory } from '../../src/engine/memory';
import { SUGGESTED_MODELS, suggestionSummary } from '../../src/engine/hub/suggested';
import { FIXTURES, readJson } from '../helpers';

const CONFIGS = path.join(FIXTURES, 'hub-configs');
const fixtureOf = (repo: string) => path.join(CONFIGS, `${repo.replace('/', '--')}.json`);
const TODAY = [
  'Qwen/Qwen3-0.6B',
  'google/gemma-3-270m',
  'meta-llama/Llama-3.2-1B',
  'allenai/OLMo-2-0425-1B',
  'HuggingFaceTB/SmolLM3-3B',
  'microsoft/Phi-4-mini-instruct',
];

/** "0.6B" / "268M" → a number of parameters. */
function stated(params: string): number {
  const m = /^([\d.]+)([MB])$/.exec(params);
  assert.ok(m, `params label ${params}`);
  return Number(m[1]) * (m[2] === 'B' ? 1e9 : 1e6);
}

describe("Hub suggestions: today's small models", () => {
  test('the picker suggests them, each with a full published config in test/fixtures/hub-configs', () => {
    const repos = SUGGESTED_MODELS.map((m) => m.repo);
    for (const r of TODAY) {
      assert.ok(repos.includes(r), `${r} is suggested`);
      assert.ok(fs.existsSync(fixtureOf(r)), `${r} has a config fixture`);
    }
  });

  for (const repo of TODAY) {
    test(`${repo}: the suggestion's config is the published model; the estimate follows from it`, () => {
      const m = SUGGESTED_MODELS.find((s) => s.repo === repo)!;
      const full = readJson<Record<string, unknown>>(fixtureOf(repo));
      const { spec, keys } = readConfig(full); // every published key accounted for
      assert.equal(Object.keys(keys).length, Object.keys(full).length);
      // the shape the estimate reads (memory.ts MemorySpec) is the published model's
      const e = estimateMemory(spec, m.downloadBytes, 1024, { patterns: true });
      const fromSuggestion = estimateMemory(specFromConfig(m.config), m.downloadBytes, 1024, { patterns: true });
      assert.deepEqual(fromSuggestion.spec, e.spec);
      assert.deepEqual(fromSuggestion, e);
      // the label's parameter count is the model's (as the checkpoint stores it, within rounding)
      assert.ok(Math.abs(paramCount(spec) / stated(m.params) - 1) < 0.01, `${repo}: ${paramCount(spec)} vs ${m.params}`);
      // float32 weights take at least the bytes of the download (half-precision or float32 files)
      assert.ok(e.weights.total >= m.downloadBytes * (m.dtype === 'F32' ? 0.99 : 1.5), `${repo}: weights ${e.weights.total}`);
      const summary = suggestionSummary(m, { tokens: 1024, patterns: true, graphCache: false });
      assert.match(summary, /^~\d+(\.\d)? [MG]B download · about \d+(\.\d+)? GB of memory for 1024 tokens( · gated)?$/);
      assert.ok(summary.includes(`about ${(e.peak / 1e9).toFixed(e.peak >= 10e9 ? 1 : 2)} GB`), summary);
      assert.equal(summary.endsWith(' · gated'), m.gated === true);
    });
  }

  test('the summary caps the tokens at the context window and follows the patterns setting', () => {
    const gpt2 = SUGGESTED_MODELS.find((s) => s.repo === 'openai-community/gpt2')!;
    assert.match(suggestionSummary(gpt2, { tokens: 100_000, patterns: false, graphCache: true }), /for 1024 tokens$/);
    const withPatterns = suggestionSummary(gpt2, { tokens: 1024, patterns: true, graphCache: true });
    const without = suggestionSummary(gpt2, { tokens: 1024, patterns: false, graphCache: true });
    assert.notEqual(withPatterns, without);
  });
});
