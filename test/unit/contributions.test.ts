// What package.json promises a newcomer holds: every command it contributes is registered by the
// extension, every command a menu, key, walkthrough step or link names exists, and the Getting
// Started walkthrough's model table names exactly the model types the engine loads (it once
// listed five of twelve families).
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SUPPORTED_MODEL_TYPES } from '../../src/engine/arch/spec';
import { PROVIDERS, WEIGHT_PRECISIONS } from '../../src/engine/runtime/providers';
import { RUN_SETTINGS, settingProblem, settingProblems, type SettingSchema } from '../../src/extension/settingsCheck';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  contributes: {
    commands: { command: string }[];
    menus: Record<string, { command: string }[]>;
    keybindings: { command: string }[];
    walkthroughs: { steps: { id: string; description: string; media: { markdown?: string }; completionEvents?: string[] }[] }[];
    configuration: { properties: Record<string, SettingSchema & { default: unknown }> };
  };
};
const contributed = new Set(pkg.contributes.commands.map((c) => c.command));
const steps = pkg.contributes.walkthroughs.flatMap((w) => w.steps);
const read = (rel: string) => fs.readFileSync(path.join(ROOT, rel), 'utf8');

/** `command:<id>` links in markdown or a step description. */
const commandLinks = (text: string) => [...text.matchAll(/\(command:([\w.]+)/g)].map((m) => m[1]!);

/** The model types in the first column of a markdown table whose header starts with "| `model_type`" or "| Family | `model_type`". */
function tableModelTypes(md: string, column: number): string[] {
  const lines = md.split('\n');
  const start = lines.findIndex((l) => l.startsWith('|') && l.includes('`model_type`'));
  assert.ok(start >= 0, 'a table with a `model_type` column');
  const types: string[] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    const cell = line.split('|')[column + 1]!.trim();
    const m = /^`([a-z0-9_]+)`$/.exec(cell);
    if (m) types.push(m[1]!);
  }
  return types;
}

describe('package.json contributions', () => {
  test('every contributed command is registered by the extension, and every registered one is contributed', () => {
    const main = read('src/extension/main.ts');
    const registered = new Set([...main.matchAll(/'(transformerDynamics\.[A-Za-z]+)':/g)].map((m) => m[1]!));
    assert.deepEqual([...contributed].sort(), [...registered].sort());
  });

  test('menus, keybindings, walkthrough steps and their links name contributed commands', () => {
    const named = [
      ...Object.values(pkg.contributes.menus).flatMap((items) => items.map((i) => i.command)),
      ...pkg.contributes.keybindings.map((k) => k.command),
      ...steps.flatMap((s) => (s.completionEvents ?? []).map((e) => e.replace(/^onCommand:/, ''))),
      ...steps.flatMap((s) => commandLinks(s.description)),
      ...steps.flatMap((s) => (s.media.markdown ? commandLinks(read(s.media.markdown)) : [])),
    ];
    assert.ok(named.length > 10);
    for (const c of named) assert.ok(contributed.has(c), `${c} is not a contributed command`);
  });

  test('the walkthrough: every step has its markdown, shipped under media/, and one step per feature', () => {
    assert.deepEqual(
      steps.map((s) => s.id),
      ['select', 'analyze', 'lens', 'completions', 'whatif', 'model'],
    );
    for (const s of steps) {
      const md = s.media.markdown;
      assert.ok(md?.startsWith('media/'), `${s.id}: its markdown is in media/ (what the VSIX ships)`);
      assert.match(read(md!), /^# \S/, `${s.id}: ${md} has a title`);
    }
  });

  test("the walkthrough's model table and the README's name exactly the model types the engine loads", () => {
    const supported = [...SUPPORTED_MODEL_TYPES].sort();
    assert.deepEqual(tableModelTypes(read('media/walkthrough/model.md'), 0).sort(), supported, 'media/walkthrough/model.md');
    assert.deepEqual(tableModelTypes(read('README.md'), 1).sort(), supported, 'README "Supported architectures"');
  });
});

describe('settings outside their schema are refused by name (settingsCheck.ts)', () => {
  const props = pkg.contributes.configuration.properties;
  const key = (k: string) => `transformerDynamics.${k}`;

  test('every default is valid, and every setting a run reads is declared', () => {
    for (const [k, schema] of Object.entries(props)) assert.equal(settingProblem(k, schema, schema.default), null, k);
    assert.deepEqual(
      settingProblems(props, RUN_SETTINGS.map(key), () => undefined),
      [],
      'unset settings are the defaults',
    );
    for (const k of RUN_SETTINGS) assert.ok(props[key(k)], `${k} is in package.json`);
  });

  test("the settings' choices are the engine's", () => {
    assert.deepEqual(props[key('executionProvider')]!.enum, [...PROVIDERS]);
    assert.deepEqual(props[key('weightPrecision')]!.enum, [...WEIGHT_PRECISIONS]);
  });

  test('each kind of bad value, in a sentence naming the setting', () => {
    const values: Record<string, unknown> = {
      [key('weightPrecision')]: 'fp16',
      [key('executionProvider')]: 'gpu',
      [key('lensTopK')]: 50,
      [key('maxTokens')]: 0,
      [key('threads')]: 2.5,
      [key('attentionPatterns')]: 'yes',
      [key('memoryCapGB')]: -1,
      [key('graphCacheLimitGB')]: '10',
      [key('modelPath')]: 42,
    };
    assert.deepEqual(
      settingProblems(props, RUN_SETTINGS.map(key), (k) => values[k]),
      [
        'transformerDynamics.modelPath = 42 is not a string.',
        'transformerDynamics.maxTokens = 0 is below its minimum, 1.',
        'transformerDynamics.threads = 2.5 is not a whole number.',
        'transformerDynamics.lensTopK = 50 is above its maximum, 20.',
        'transformerDynamics.attentionPatterns = "yes" is not true or false.',
        'transformerDynamics.executionProvider = "gpu" is not one of auto, cpu, webgpu, cuda, dml, coreml.',
        'transformerDynamics.weightPrecision = "fp16" is not one of auto, float32, float16.',
        'transformerDynamics.graphCacheLimitGB = "10" is not a number.',
        'transformerDynamics.memoryCapGB = -1 is below its minimum, 0.',
      ],
    );
    const hub = props[key('hubEndpoint')]!;
    assert.equal(settingProblem(key('hubEndpoint'), hub, 'https://hf-mirror.example.org/'), null);
    assert.equal(settingProblem(key('hubEndpoint'), hub, 'http://10.0.0.5:8080'), null);
    assert.match(
      settingProblem(key('hubEndpoint'), hub, 'hf-mirror.example.org') ?? '',
      /^transformerDynamics\.hubEndpoint = "hf-mirror\.example\.org" is not of the form/,
    );
    assert.match(settingProblem(key('hubEndpoint'), hub, 'ftp://x') ?? '', /is not of the form/);
    assert.match(settingProblem('x', { type: 'number' }, Number.NaN) ?? '', /^x = null is not a number\.$/, 'NaN (JSON null)');
    assert.equal(
      settingProblem('x', { type: 'number' }, 'y'.repeat(100)),
      `x = "${'y'.repeat(56)}… is not a number.`,
      'a long value is clipped',
    );
  });

  test('an unknown setting name is a programming error, not a user one', () => {
    assert.throws(() => settingProblems(props, [key('noSuchSetting')], () => 1), /noSuchSetting is not a contributed setting/);
  });
});
