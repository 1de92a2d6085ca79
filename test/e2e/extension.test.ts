// End-to-end in a real VS Code (code-server + Chromium, TESTING.md): install the packaged
// VSIX, select text, run "Analyze Selection", and check what a user sees — the lens table's
// top-1 tokens (against the engine run in this process), the plots, the editor overlay and
// hover, the status bar, hostile text shown as text, no CSP violation, and screenshots.
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildVsix, e2eSkipReason, repoRoot, resultsDir, startVsCode, withVsCode, type VsCodeSession } from './harness';
import { Engine } from '../../src/engine/engine';
import { assertLensCells } from './checks';
import type { Analysis } from '../../src/shared/analysis';

const ROOT = repoRoot();
const BUNDLED = path.join(ROOT, 'media', 'models', 'td-mini');
const SCREENSHOTS = path.join(ROOT, 'docs', 'screenshots');

/** The model the extension uses: the bundled td-mini (no setting needed). */
function modelForTest(): { dir: string; settings: Record<string, unknown>; name: RegExp } {
  return { dir: BUNDLED, settings: {}, name: /td-mini/ };
}

/** Elements the hostile text would create if it were parsed as HTML (VS Code's own scripts excluded). */
async function hostileElements(frame: ReturnType<VsCodeSession['webviewFrame']>): Promise<number> {
  const imgs = await frame.locator('img[src="x"], a[href^="javascript"]').count();
  const scripts = await frame.locator('script').evaluateAll((els) => els.filter((e) => /alert\(/.test(e.textContent ?? '')).length);
  return imgs + scripts;
}

const PROSE = [
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the park.',
  'One day, she saw a big, red ball. She wanted to play with the ball. She wanted to play with the ball.',
  'Her mom said <img src=x onerror=alert(1)> and </script><script>alert(2)</script> were not toys.',
];
const FILE = [...PROSE, '', 'def fibonacci(n):', '    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)', ''].join('\n');

describe('real VS Code: Analyze Selection', { skip: e2eSkipReason() }, () => {
  let vs: VsCodeSession;
  let expected: Analysis;
  let failed = false;

  before(async () => {
    const vsix = buildVsix();
    const model = modelForTest();
    const engine = new Engine();
    await engine.load({ dir: model.dir, threads: 2, executionProvider: 'cpu' });
    expected = await engine.analyze({ text: PROSE.join('\n'), topK: 5, maxTokens: 1024, patterns: false });
    await engine.dispose();
    vs = await startVsCode({
      name: 'extension',
      vsix,
      files: { 'sample.md': FILE },
      machineSettings: model.settings,
      theme: 'light',
      viewport: { width: 1680, height: 1000 },
    });
  });

  after(async () => {
    await vs?.dispose({ failed });
  });

  test('panel, lens table, plots, overlay, hover, status bar — and hostile text stays text', async (t) => {
    try {
      await vs.openFile('sample.md');
      await vs.selectLines(1, PROSE.length);
      const t0 = Date.now();
      await vs.runCommand('Transformer Dynamics: Analyze Selection');
      const frame = vs.webviewFrame();
      await vs.waitForWebview((f) => f.locator('.lens-body .lc').first(), { timeoutMs: 120_000 });
      t.diagnostic(`command → lens table painted: ${Date.now() - t0} ms`);

      // Every painted lens cell shows the top-1 token the engine computes for that layer and position.
      await assertLensCells(frame, expected);
      // token strip: the tokens as the model sees them, hostile markup as text
      const strip = (await frame.locator('.strip-tokens').textContent()) ?? '';
      assert.ok(
        strip.replace(/·/g, ' ').includes('<img src=x onerror=alert(1)>'),
        `the <img onerror> markup is shown as text: ${strip.slice(0, 400)}`,
      );
      assert.equal(await hostileElements(frame), 0, 'no element created from the text');
      assert.deepEqual(vs.dialogs, [], 'no alert() ran');

      // header: model name and token count
      assert.match(await frame.locator('.title-row').innerText(), new RegExp(`${expected.tokens.length} tokens`));

      // Trajectories and Repetition tabs render Plotly charts with data.
      await frame.locator('vscode-tab-header[data-tab="trajectories"]').click();
      await vs.waitForWebview((f) => f.locator('.tab-trajectories .js-plotly-plot .scatterlayer .trace').first(), { timeoutMs: 60_000 });
      assert.ok((await frame.locator('.tab-trajectories .js-plotly-plot').count()) >= 2, 'trajectory plot and per-layer charts');
      await vs.screenshot('trajectories-light');
      await frame.locator('vscode-tab-header[data-tab="repetition"]').click();
      await vs.waitForWebview(
        (f) => f.locator('.tab-repetition .js-plotly-plot .heatmaplayer image, .tab-repetition .js-plotly-plot .hm').first(),
        { timeoutMs: 60_000 },
      );
      await vs.screenshot('repetition-light');
      await frame.locator('vscode-tab-header[data-tab="lens"]').click();

      // Editor overlay: surprisal tint decorations and a hover with predictions.
      // the panel's column is active now: address the text editor in the first group
      const editor = vs.page.locator('.editor-group-container .editor-instance .monaco-editor').first();
      const decorated = editor.locator('.view-lines span[class*="ced-"], .view-overlays div[class*="ced-"]');
      await decorated.first().waitFor({ timeout: 20_000 });
      assert.ok((await decorated.count()) > 5, 'surprisal tint on the analysed text');
      await editor.locator('.view-line').first().locator('span').first().hover();
      await editor
        .locator('.view-line')
        .first()
        .hover({ position: { x: 60, y: 8 } });
      const hover = vs.page.locator('.monaco-hover:visible');
      await hover
        .getByText(/predictions for the next token/)
        .first()
        .waitFor({ timeout: 20_000 });

      // Status bar: model and the last run.
      assert.match(await vs.statusBarText(), /tok ·/);

      // Selection sync: clicking a token in the panel selects it in the editor.
      await frame.locator('.strip-tokens .tok[data-pos="5"]').click();
      await editor.locator('.selected-text').first().waitFor({ timeout: 10_000 });

      await vs.assertNoCspViolations();
      fs.mkdirSync(SCREENSHOTS, { recursive: true });
      fs.copyFileSync(await vs.screenshot('panel-light'), path.join(resultsDir(), 'panel-light.png'));
      await vs.setTheme('dark');
      await frame.locator('.lens-body .lc').first().waitFor();
      await vs.screenshot('panel-dark');
      await vs.assertNoCspViolations();
    } catch (e) {
      failed = true;
      throw e;
    }
  });

  test('no selection: the whole document, cut to the token limit with a notice; hostile inputs', async () => {
    try {
      const hostile = [
        '<script>alert("x")</script> <a href="javascript:alert(1)">link</a> <img src=x onerror=alert(1)>',
        'bidi: \u202Eevil\u202C and \u2066isolate\u2069; NUL: \u0000; lone surrogate: \uD800 end',
        'A'.repeat(200_000),
      ].join('\n');
      fs.writeFileSync(path.join(vs.workspaceDir, 'hostile.txt'), hostile);
      // VS Code treats a file with a NUL byte as binary: open it anyway, as a user would.
      await vs.page.keyboard.press('Control+1'); // the editor column, not the panel's
      const quick = await vs.openQuickInput('Control+P');
      await quick.fill(path.join(vs.workspaceDir, 'hostile.txt'));
      await vs.page.locator('.quick-input-list .monaco-list-row').filter({ hasText: 'hostile.txt' }).first().waitFor({ timeout: 20_000 });
      await vs.page.keyboard.press('Enter');
      await vs.page.getByRole('button', { name: 'Open Anyway' }).click({ timeout: 20_000 });
      await vs.page.locator('.quick-input-list .monaco-list-row').filter({ hasText: 'Text Editor' }).first().click({ timeout: 20_000 });
      await vs.activeEditor().locator('.view-lines').waitFor({ timeout: 30_000 });
      await vs.focusEditor();
      await vs.page.keyboard.press('Control+Home');
      await vs.runCommand('Transformer Dynamics: Analyze Selection');
      const frame = vs.webviewFrame();
      // (200,000 characters: only the text's start is tokenized, so the notice names its length)
      const notice = `the first 512 tokens of a ${hostile.length.toLocaleString('en-US')}-character text`;
      await vs.waitForWebview((f) => f.locator('.notice').filter({ hasText: notice }), { timeoutMs: 120_000 });
      const strip = (await frame.locator('.strip-tokens').textContent()) ?? '';
      assert.ok(strip.replace(/·/g, ' ').includes('<script>alert("x")</script>'), 'markup shown as text');
      assert.ok(
        !/[\u202a-\u202e\u2066-\u2069]/.test(strip),
        'no raw bidi control character reaches the page (escaped or split into bytes)',
      );
      assert.equal(await hostileElements(frame), 0, 'no element created from the text');
      assert.deepEqual(vs.dialogs, []);
      await vs.assertNoCspViolations();
      // the panel keeps working: another run replaces the result
      await vs.page.keyboard.press('Escape');
      await vs.page.locator('.tabs-container .tab').filter({ hasText: 'sample.md' }).first().click();
      await vs.selectLines(1, 1);
      await vs.runCommand('Transformer Dynamics: Analyze Selection');
      const deadline = Date.now() + 60_000;
      let title = '';
      while (Date.now() < deadline) {
        title = await vs
          .webviewFrame()
          .locator('.title-row')
          .innerText()
          .catch(() => '');
        if (/\b\d{1,2} tokens/.test(title)) break;
        await new Promise((r) => setTimeout(r, 500));
      }
      assert.match(title, /\b\d{1,2} tokens/, 'the new, short analysis replaced the long one');

      // A setting outside its schema, typed into settings.json, would fall back to a default that
      // changes the numbers: the run is refused, the message names it and opens it in Settings.
      const before = fs.readFileSync(vs.settingsPath(), 'utf8');
      const editSettings = async (text: string) => {
        await vs.runCommand('Preferences: Open User Settings (JSON)');
        await vs.activeEditor().locator('.view-lines').waitFor({ timeout: 20_000 });
        await vs.focusEditor();
        await vs.page.keyboard.press('Control+A');
        await vs.page.keyboard.insertText(text);
        await vs.page.keyboard.press('Control+S');
        await new Promise((r) => setTimeout(r, 1000));
      };
      await editSettings(JSON.stringify({ ...JSON.parse(before), 'transformerDynamics.weightPrecision': 'fp16' }, null, 2));
      try {
        await vs.page.locator('.tabs-container .tab').filter({ hasText: 'sample.md' }).first().click();
        await vs.runCommand('Transformer Dynamics: Analyze Selection');
        const toast = await vs.waitForNotification(
          'transformerDynamics.weightPrecision = "fp16" is not one of auto, float32, float16. Fix it in Settings.',
          30_000,
        );
        await toast.getByRole('button', { name: 'Open Settings' }).click();
        await vs.page
          .locator('.settings-editor .setting-item-contents')
          .filter({ hasText: 'Weight Precision' })
          .first()
          .waitFor({ timeout: 20_000 });
        assert.match(await vs.webviewFrame().locator('.title-row').innerText(), /\b\d{1,2} tokens/, 'the last result stays on show');
      } finally {
        await editSettings(before);
      }
    } catch (e) {
      failed = true;
      throw e;
    }
  });
});

describe('real VS Code: restricted (untrusted) workspace', { skip: e2eSkipReason() }, () => {
  test('a model path in workspace settings is ignored until the workspace is trusted', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'td-e2e-trust-'));
    const model = modelForTest();
    const evil = path.join(tmp, 'not-a-model');
    await withVsCode(
      {
        name: 'trust',
        vsix: buildVsix(),
        workspaceTrust: true,
        files: { 'notes.md': PROSE[0]!, '.vscode/settings.json': JSON.stringify({ 'transformerDynamics.modelPath': evil }) },
        machineSettings: model.settings,
        viewport: { width: 1500, height: 900 },
      },
      async (vs) => {
        // VS Code asks whether to trust the folder: say no (restricted mode).
        const dontTrust = vs.page.getByRole('button', { name: /No, I don't trust the authors/ });
        await dontTrust.click({ timeout: 60_000 });
        await vs.openFile('notes.md');
        await vs.selectLines(1, 1);
        await vs.runCommand('Transformer Dynamics: Analyze Selection');
        await vs.waitForWebview((f) => f.locator('.lens-body .lc').first(), { timeoutMs: 120_000 });
        const title = await vs.webviewFrame().locator('.title-row').innerText();
        assert.match(title, model.name, 'the user-level model ran, not the workspace setting');
        assert.ok(!(await vs.notificationTexts()).some((t) => t.includes('not-a-model')), 'the workspace path was never tried');
        await vs.assertNoCspViolations();
      },
    );
  });
});

describe('real VS Code: a damaged model', { skip: e2eSkipReason() }, () => {
  test('a NaN weight: the error names the layer, the token and the tensor, and no NaN result is shown', async () => {
    // tiny-gpt2 with one NaN in block 1's MLP bias (test/unit/non-finite.test.ts has the engine's side)
    const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'td-e2e-nan-')), 'tiny-gpt2-nan');
    fs.cpSync(path.join(ROOT, 'test', 'fixtures', 'models', 'tiny-gpt2'), dir, { recursive: true });
    const file = path.join(dir, 'model.safetensors');
    const bytes = fs.readFileSync(file);
    const n = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, { data_offsets: number[] }>;
    bytes.writeFloatLE(NaN, 8 + n + header['transformer.h.1.mlp.c_proj.bias']!.data_offsets[0]! + 4 * 3);
    fs.writeFileSync(file, bytes);
    await withVsCode(
      {
        name: 'damaged',
        vsix: buildVsix(),
        files: { 'notes.md': PROSE[0]! },
        machineSettings: { 'transformerDynamics.modelPath': dir },
        viewport: { width: 1500, height: 900 },
      },
      async (vs) => {
        await vs.openFile('notes.md');
        await vs.selectLines(1, 1);
        await vs.runCommand('Transformer Dynamics: Analyze Selection');
        const deadline = Date.now() + 120_000;
        let message = '';
        while (Date.now() < deadline && !message) {
          message = (await vs.notificationTexts()).find((t) => t.includes('not finite')) ?? '';
          if (!message) await new Promise((r) => setTimeout(r, 500));
        }
        assert.match(message, /residual stream is not finite \(NaN\) from L1 \(the output of block 1\) at position 0/);
        assert.match(message, /transformer\.h\.1\.mlp\.c_proj\.bias/);
        assert.match(message, /Select Model/, 'the notification offers another model');
        // the panel says it too, in its error banner, and shows no result made of NaN
        await vs.waitForWebview((f) => f.locator('.banner.error').filter({ hasText: /not finite/ }), { timeoutMs: 60_000 });
        await vs.screenshot('damaged-model');
        const panel = await vs
          .webviewFrame()
          .locator('body')
          .innerText({ timeout: 5_000 })
          .catch(() => '');
        assert.ok(!/NaN\s*(%|bits)/.test(panel), 'no NaN percentages or surprisals on the panel');
        assert.equal(
          await vs
            .webviewFrame()
            .locator('.lens-body .lc')
            .count()
            .catch(() => 0),
          0,
          'no lens table',
        );
        await vs.assertNoCspViolations();
      },
    );
  });
});
