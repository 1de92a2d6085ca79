// Every command as the first action of a fresh VS Code window (TESTING.md "Every command
// cold"): the panel's webview is not ready when the host first posts to it, so each command
// runs in a window of its own — new browser profile, new workspace folder, new extension host —
// and the test checks what the command produced (the completions' tokens, the diff, the file
// written …) against the engine run in this process on the same model and text. One
// code-server process serves all the windows (its start is paid once).
import { after, before, describe, test, type TestContext } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildVsix, e2eSkipReason, repoRoot, startCodeServer, type CodeServer, type VsCodeSession } from './harness';
import { assertLensCells, columnTokens, shownTokens } from './checks';
import { Engine } from '../../src/engine/engine';
import { listCache } from '../../src/engine/graphcache';
import { formatBytes } from '../../src/engine/hub/messages';
import type { Analysis, DiffResult } from '../../src/shared/analysis';
import { DEFAULT_STRATEGIES, cursorPromptStart } from '../../src/shared/generation';
import { analysisToCsv } from '../../src/shared/export';
import { diffRows, divergeSentence } from '../../webview/shapeDynamicsDiff';
import { rowTitle, tokenDisplay, visibleText } from '../../webview/shapeText';

const ROOT = repoRoot();
const BUNDLED = path.join(ROOT, 'media', 'models', 'td-mini');
/** The extension and the reference engine both run onnxruntime on 2 threads: the same sums, the same numbers. */
const THREADS = 2;
const STORY = [
  'It is a truth universally acknowledged, that a single man in possession of a good fortune,',
  'must be in want of a wife. The old sailor looked at the sea and thought of the long voyage home.',
  'It is a truth universally acknowledged, that a single woman in possession of a good fortune,',
];
const FILE = `${STORY.join('\n')}\n`;
const PROMPT = STORY[0]!;

/** The extension's graph cache in a window's user data (global storage: shared by the windows). */
function graphCacheOf(vs: VsCodeSession): string {
  return path.join(vs.userDataDir, 'User', 'globalStorage', 'transformer-dynamics.transformer-dynamics', 'graphs');
}

async function waitFor(cond: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Same rows and columns; numbers equal to 6 significant digits (another process, the same model). */
function assertSameCsv(actual: string, expected: string): void {
  const rows = (s: string) => s.trimEnd().split('\n');
  const [a, e] = [rows(actual), rows(expected)];
  assert.equal(a[0], e[0], 'header');
  assert.equal(a.length, e.length, 'rows');
  for (let i = 1; i < e.length; i++) {
    const [x, y] = [a[i]!.split(','), e[i]!.split(',')];
    assert.equal(x.length, y.length, `fields of row ${i}`);
    y.forEach((v, j) => {
      const [p, q] = [Number(x[j]), Number(v)];
      if (v !== '' && Number.isFinite(q) && Number.isFinite(p))
        assert.ok(Math.abs(p - q) <= 1e-5 * Math.max(1, Math.abs(q)), `row ${i} field ${j}: ${p} vs ${q}`);
      else assert.equal(x[j], v, `row ${i} field ${j}`);
    });
  }
}

describe('every command as the first action of a fresh window', { skip: e2eSkipReason() }, () => {
  let server: CodeServer;
  let failed = false;
  const engine = new Engine();
  const referenceCache = fs.mkdtempSync(path.join(os.tmpdir(), 'td-e2e-reference-'));
  const times: string[] = [];

  before(async () => {
    const t0 = Date.now();
    const [cs] = await Promise.all([
      startCodeServer({
        name: 'cold',
        vsix: buildVsix(),
        theme: 'light',
        settings: { 'transformerDynamics.threads': THREADS },
      }),
      // through a graph cache, as the extension loads it: the same graphs (the blocked logit lens,
      // lensblocked.ts), so the exported file can be held to the engine's numbers within 1e-5
      engine.load({
        dir: BUNDLED,
        threads: THREADS,
        executionProvider: 'cpu',
        cacheDir: referenceCache,
      }),
    ]);
    server = cs;
    times.push(`server, browser and reference engine: ${Date.now() - t0} ms`);
  });

  after(async () => {
    await server?.dispose({ failed });
    await engine.dispose();
    fs.rmSync(referenceCache, { recursive: true, force: true });
    process.stderr.write(`[e2e cold] ${times.join('; ')}\n`);
  });

  /** Runs `fn` in a fresh window on story.md; its time goes into the summary. */
  function cold(title: string, name: string, fn: (vs: VsCodeSession, t: TestContext) => Promise<void>): void {
    test(title, { timeout: 240_000 }, async (t) => {
      const t0 = Date.now();
      const vs = await server.openWindow({ name: `cold-${name}`, files: { 'story.md': FILE }, viewport: { width: 1500, height: 900 } });
      let ok = false;
      try {
        await fn(vs, t);
        await vs.screenshot('result');
        await vs.assertNoCspViolations();
        assert.deepEqual(vs.consoleErrors(), [], 'no console errors');
        ok = true;
      } finally {
        if (!ok) failed = true;
        await vs.dispose({ failed: !ok });
        times.push(`${name}: ${Date.now() - t0} ms`);
        t.diagnostic(`window opened, command run and checked, window closed: ${Date.now() - t0} ms`);
      }
    });
  }

  let runId = 0;
  /** The engine's analysis of `text` with the extension's defaults; `runId` names it for queries. */
  const analyse = async (text: string, patterns: 'auto' | false = 'auto'): Promise<Analysis & { runId: number }> => {
    const id = ++runId;
    return { ...(await engine.analyze({ text, topK: 5, maxTokens: 1024, patterns }, undefined, id)), runId: id };
  };

  // First: it converts the bundled model into the graph cache (shared by the windows, as the
  // extensions' storage is), so every later window loads it in a fraction of a second and posts
  // to its panel before the webview is ready: the case of issue 18 (Compare Completions stayed
  // "Queued" when the model was already in the cache).
  cold(
    'Select Model: the bundled model loads, a message and the status bar say so; the picker shows the graph cache',
    'select-model',
    async (vs) => {
      const pickerRow = (text: string | RegExp) => vs.page.locator('.quick-input-list .monaco-list-row').filter({ hasText: text }).first();
      await vs.runCommand('Transformer Dynamics: Select Model…');
      await pickerRow(/0 B in 0 graphs · limit \d/).waitFor({ timeout: 20_000 }); // a fresh user: nothing cached yet
      await pickerRow('td-mini (bundled)').click();
      await vs.waitForNotification(/now using td-mini \(bundled\) on cpu/, 120_000);
      await vs.waitForStatusBarItem(/td-mini \(bundled\) · cpu/, 30_000);
      // the conversion went into the cache: the picker says how big it is, as the disk does
      const entries = listCache(graphCacheOf(vs));
      assert.equal(entries.length, 1);
      const size = formatBytes(entries[0]!.bytes);
      await vs.runCommand('Transformer Dynamics: Select Model…');
      await pickerRow(`${size} in 1 graph · limit`).waitFor({ timeout: 20_000 });
      await pickerRow(`graph cached (${size})`).waitFor({ timeout: 5_000 });
      await vs.page.keyboard.press('Escape');
    },
  );

  cold('Analyze Selection: the lens table of the selection', 'analyze', async (vs) => {
    const expected = await analyse(STORY.slice(0, 2).join('\n'));
    await vs.openFile('story.md');
    await vs.selectLines(1, 2);
    await vs.runCommand('Transformer Dynamics: Analyze Selection');
    await vs.waitForWebview((f) => f.locator('.lens-body .lc').first(), { timeoutMs: 120_000 });
    await assertLensCells(vs.webviewFrame(), expected);
    assert.match(await vs.webviewFrame().locator('.title-row').innerText(), new RegExp(`${expected.tokens.length} tokens`));
  });

  cold('Analyze Selection with nothing selected in a 300,000-character file: its first tokens, and a notice', 'long-file', async (vs) => {
    // the whole file is sent; only its start is tokenized (analyze.ts tokenizedPrefixChars)
    const lines: string[] = [];
    for (let i = 0; lines.join('\n').length < 300_000; i++) lines.push(`${i}. ${STORY[i % STORY.length]}`);
    const text = lines.join('\n').slice(0, 300_000);
    const expected = await analyse(text);
    const model = engine.requireModel();
    const kept = Math.min(1024, model.spec.maxPositions);
    assert.deepEqual(
      expected.tokens.map((t) => t.id),
      model.tokenizer.encodeIds(text).slice(0, kept),
      'the first tokens of the whole text',
    );
    fs.writeFileSync(path.join(vs.workspaceDir, 'long.md'), text);
    await vs.openFile('long.md');
    await vs.runCommand('Transformer Dynamics: Analyze Selection');
    await vs.waitForWebview((f) => f.locator('.lens-body .lc').first(), { timeoutMs: 120_000 });
    await assertLensCells(vs.webviewFrame(), expected);
    const notice = `the first ${kept} tokens of a 300,000-character text`;
    assert.equal(await vs.webviewFrame().locator('.notice').innerText(), `Analysed ${notice} (context window or token limit).`);
    await vs.waitForNotification(`Transformer Dynamics analysed ${notice}`, 30_000);
  });

  cold('Compare Completions: six columns with the tokens the engine generates', 'completions', async (vs) => {
    await vs.openFile('story.md');
    await vs.selectLines(1, 1);
    await vs.runCommand('Transformer Dynamics: Compare Completions…');
    await vs.page.locator('.quick-input-widget').filter({ hasText: 'decoding strategies' }).waitFor({ timeout: 20_000 });
    await vs.page.keyboard.press('Enter'); // the six presets, all picked
    const count = vs.page.locator('.quick-input-widget').filter({ hasText: 'new tokens per completion' });
    await count.waitFor({ timeout: 20_000 });
    await count.locator('input').fill('40');
    await vs.page.keyboard.press('Enter');
    const frame = vs.webviewFrame();
    // every column finished: its metrics line shows (none stays "Queued")
    await vs.waitForWebview((f) => f.locator('.comp-col .comp-metrics:not([hidden])').nth(5), { timeoutMs: 180_000 });
    assert.equal(await frame.getByText('Queued').count(), 0, 'no column left queued');
    const shown = await columnTokens(frame);
    assert.equal(shown.length, DEFAULT_STRATEGIES.length);
    const expected: string[][] = [];
    for (const [i, strategy] of DEFAULT_STRATEGIES.entries()) {
      expected.push(shownTokens(await engine.generate({ text: PROMPT, strategy, maxNewTokens: 40, forcedIds: [], topAlternatives: 5 })));
      assert.deepEqual(shown[i], expected[i], `column ${i} (${strategy.label})`);
    }
    // the webview reloads (a new document, empty): the host sends it everything again
    await frame.locator('body').evaluate((b) => b.setAttribute('data-td-before-reload', ''));
    await vs.runCommand('Developer: Reload Webviews');
    await vs.waitForWebview((f) => f.locator('body:not([data-td-before-reload]) .comp-col .comp-metrics:not([hidden])').nth(5), {
      timeoutMs: 60_000,
    });
    assert.deepEqual(await columnTokens(vs.webviewFrame()), expected, 'the same six completions after the reload');

    // Nothing selected, the cursor at the end of a long file: the prompt is the text before the
    // cursor (its last 4,000 characters, from a line start), longer than td-mini's 512-token
    // window leaves room for beside 40 new tokens. Each column still gets its 40 tokens, from
    // the prompt's end; the bar says how much of the prompt the model saw.
    const lines: string[] = [];
    for (let i = 0; lines.join('\n').length < 8000; i++) lines.push(`${i}. ${STORY[i % STORY.length]}`);
    const long = lines.join('\n');
    fs.writeFileSync(path.join(vs.workspaceDir, 'long.md'), long);
    const before = long.slice(long.length - 4001);
    const prompt = before.slice(cursorPromptStart(before, 4000));
    assert.match(prompt, /^\d+\. \w/, 'the prompt starts at a line');
    assert.ok(prompt.length > 3800 && prompt.length <= 4000, `${prompt.length} characters`);
    const model = engine.requireModel();
    const total = model.tokenizer.encodeIds(prompt).length;
    const kept = model.spec.maxPositions - 40;
    assert.ok(total > kept, `${total} prompt tokens`);
    await vs.openFile('long.md');
    await vs.page.keyboard.press('Control+End');
    await vs.runCommand('Transformer Dynamics: Compare Completions…');
    await vs.page.locator('.quick-input-widget').filter({ hasText: 'decoding strategies' }).waitFor({ timeout: 20_000 });
    await vs.page.keyboard.press('Enter');
    await count.waitFor({ timeout: 20_000 });
    await count.locator('input').fill('40');
    await vs.page.keyboard.press('Enter');
    const note = vs.webviewFrame().locator('.comp-prompt-note.warn');
    await note.waitFor({ timeout: 120_000 });
    assert.equal(await note.innerText(), `last ${kept} of ${total.toLocaleString('en-US')} tokens`);
    assert.match(
      (await note.getAttribute('title')) ?? '',
      new RegExp(
        `holds ${model.spec.maxPositions} tokens: the prompt's first ${(total - kept).toLocaleString('en-US')} tokens were dropped`,
      ),
    );
    await vs.waitForWebview((f) => f.locator('.comp-col .comp-metrics:not([hidden])').nth(5), { timeoutMs: 180_000 });
    const fromEnd = await columnTokens(vs.webviewFrame());
    let greedyText = '';
    for (const [i, strategy] of DEFAULT_STRATEGIES.entries()) {
      const c = await engine.generate({ text: prompt, strategy, maxNewTokens: 40, forcedIds: [], topAlternatives: 5 });
      assert.equal(c.promptIds.length, kept);
      assert.ok(c.promptCut && prompt.endsWith(c.promptCut.text), 'the text the model saw is the end of the prompt');
      if (i === 0) {
        // the bar shows the prompt from where the model saw it
        const shownPrompt = await vs.webviewFrame().locator('.comp-prompt').innerText();
        assert.ok(shownPrompt.startsWith(`…${visibleText(c.promptCut.text.slice(0, 20))}`), shownPrompt);
      }
      assert.ok(c.steps.length === 40 || c.stopReason === 'eos', `column ${i}: ${c.steps.length} tokens, ${c.stopReason}`);
      assert.deepEqual(fromEnd[i], shownTokens(c), `column ${i} (${strategy.label}) from the end of the long prompt`);
      if (i === 0) greedyText = c.text;
    }

    // A line typed above the prompt's end, then Insert: the completion goes where the prompt ended
    // (the insertion point follows the edit), not at its old line and column.
    await vs.page.keyboard.press('Control+1');
    await vs.page.keyboard.press('Control+Home');
    await vs.page.keyboard.type('Note.');
    await vs.page.keyboard.press('Enter'); // a line more above: the old line and column are another place
    await vs
      .webviewFrame()
      .locator('.comp-col')
      .nth(0)
      .getByRole('button', { name: /^Insert this completion/ })
      .click();
    await vs.webviewFrame().locator('.comp-status').filter({ hasText: 'Inserted into the editor.' }).waitFor({ timeout: 20_000 });
    await vs.page.keyboard.press('Control+1');
    await vs.page.keyboard.press('Control+S');
    await waitFor(async () => fs.readFileSync(path.join(vs.workspaceDir, 'long.md'), 'utf8') !== long, 10_000, 'long.md saved');
    assert.equal(fs.readFileSync(path.join(vs.workspaceDir, 'long.md'), 'utf8'), `Note.\n${long}${greedyText}`);
  });

  cold('Compare Prompts: the diff of the selection against the clipboard', 'prompts', async (vs) => {
    // as Compare Prompts asks the engine: no attention patterns
    // B, on the clipboard, is longer than td-mini's window: its side says it was cut
    const long = Array.from({ length: 30 }, (_, i) => STORY[(i + 2) % STORY.length]).join('\n');
    const a = await analyse(STORY[0]!, false);
    const b = await analyse(long, false);
    assert.ok(b.truncation && b.truncation.total !== null && b.truncation.total > b.truncation.kept, 'B is cut');
    await vs.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: new URL(vs.url).origin });
    fs.writeFileSync(path.join(vs.workspaceDir, 'long.md'), long);
    await vs.openFile('long.md');
    await vs.selectAll();
    await vs.page.keyboard.press('Control+C');
    await vs.openFile('story.md');
    await vs.selectLines(1, 1);
    await vs.runCommand('Transformer Dynamics: Compare Prompts…');
    await vs.page
      .locator('.quick-input-list .monaco-list-row')
      .filter({ hasText: 'Selection vs clipboard' })
      .first()
      .click({ timeout: 20_000 });
    const frame = vs.webviewFrame();
    await vs.waitForWebview((f) => f.locator('.diff-table tbody tr').first(), { timeoutMs: 120_000 });
    const diff = (await engine.query({ type: 'diff', runId: a.runId, otherRunId: b.runId })) as DiffResult;
    assert.equal(
      await frame.locator('.diff-sentence').innerText(),
      divergeSentence(diff, (r) => rowTitle(r, diff.rows)),
    );
    const rows = await frame
      .locator('.diff-table tbody tr')
      .evaluateAll((trs) =>
        trs.map((tr) => Array.from(tr.querySelectorAll('td'), (td: { textContent: string | null }) => td.textContent ?? '')),
      );
    const expected = diffRows(a, b, diff);
    assert.equal(rows.length, expected.length);
    expected.forEach((r, i) => {
      assert.equal(rows[i]![1], tokenDisplay({ text: r.a.text }).text, `row ${i}, A`);
      assert.equal(rows[i]![3], tokenDisplay({ text: r.b.text }).text, `row ${i}, B`);
    });
    assert.match(await frame.locator('.diff-side.a').innerText(), /story\.md \(selection\)\s*\d+ tokens/);
    assert.equal(await frame.locator('.diff-side.a .diff-count.warn').count(), 0);
    const cut = frame.locator('.diff-side.b .diff-count.warn');
    assert.equal((await cut.innerText()).trim(), `first ${b.truncation!.kept} of ${b.truncation!.total!.toLocaleString('en-US')} tokens`);
    assert.match((await frame.locator('.diff-side.b').getAttribute('title')) ?? '', /^clipboard: analysed the first \d+ of [\d,]+ tokens/);

    // Two selections in one editor (multi-cursor): Compare Prompts offers them as the pair, and
    // Analyze Selection says it took the primary one.
    await vs.focusEditor();
    await vs.page.keyboard.press('Control+Home');
    await vs.runCommand('Add Cursor Below');
    // each cursor's whole line, with its line break (Shift+End would stop where the line wraps)
    await vs.runCommand('Expand Line Selection');
    await waitFor(async () => /^2 selections/.test(await vs.selectionStatus()), 10_000, 'two selections');
    const [l1, l2] = [await analyse(`${STORY[0]!}\n`, false), await analyse(`${STORY[1]!}\n`, false)];
    const pairDiff = (await engine.query({ type: 'diff', runId: l1.runId, otherRunId: l2.runId })) as DiffResult;
    // from the editor's context menu, which offers Compare Prompts… with several selections
    await vs.activeEditor().locator('.view-line').first().click({ button: 'right' });
    // (a click on the item left the menu open in code-server; hovering it and Enter choose it)
    await vs.page.locator('.context-view .monaco-menu .action-label').filter({ hasText: 'Compare Prompts…' }).hover({ timeout: 10_000 });
    await vs.page.keyboard.press('Enter');
    const pairRow = vs.page.locator('.quick-input-list .monaco-list-row').first();
    await pairRow.filter({ hasText: 'Selection 1 vs selection 2' }).waitFor({ timeout: 20_000 });
    assert.match(await pairRow.innerText(), /line 1 vs line 2/);
    await pairRow.click();
    await vs.waitForWebview((f) => f.locator('.diff-side.a').filter({ hasText: 'story.md (selection 1, line 1)' }), { timeoutMs: 60_000 });
    assert.match(await frame.locator('.diff-side.b').innerText(), /story\.md \(selection 2, line 2\)/);
    assert.equal(
      await frame.locator('.diff-sentence').innerText(),
      divergeSentence(pairDiff, (r) => rowTitle(r, pairDiff.rows)),
    );
    const pairRows = await frame.locator('.diff-table tbody tr').count();
    assert.equal(pairRows, diffRows(l1, l2, pairDiff).length);
    assert.match(await vs.selectionStatus(), /^2 selections/, 'the editor keeps both selections');
    await vs.runCommand('Transformer Dynamics: Analyze Selection');
    await vs.waitForNotification('2 selections: analysing the primary one (line 1) only.', 30_000);
    const shown = await analyse(`${STORY[0]!}\n`);
    await vs.waitForWebview((f) => f.locator('.title-row').filter({ hasText: `${shown.tokens.length} tokens` }), { timeoutMs: 60_000 });
    await assertLensCells(frame, shown, 10);
  });

  cold('Export Analysis: analyses the selection and writes the file', 'export', async (vs) => {
    const text = STORY.slice(1, 3).join('\n');
    const expected = await analyse(text);
    const out = path.join(vs.workspaceDir, 'lens.csv');
    await vs.openFile('story.md');
    await vs.selectLines(2, 3);
    await vs.runCommand('Transformer Dynamics: Export Analysis…');
    const format = vs.page.locator('.quick-input-list .monaco-list-row').filter({ hasText: 'CSV' }).first();
    await format.click({ timeout: 120_000 });
    // code-server's save dialog is a quick input holding the path
    const input = vs.page.locator('.quick-input-widget .quick-input-box input');
    await waitFor(
      async () => /transformer-dynamics-analysis\.csv$/.test(await input.inputValue().catch(() => '')),
      30_000,
      'the save dialog',
    );
    await input.fill(out);
    await vs.page.keyboard.press('Enter');
    await vs.waitForNotification(/analysis saved to/, 30_000);
    assertSameCsv(fs.readFileSync(out, 'utf8'), analysisToCsv(expected));
    // the panel shows the analysis that was exported
    await vs.waitForWebview((f) => f.locator('.lens-body .lc').first(), { timeoutMs: 60_000 });
    await assertLensCells(vs.webviewFrame(), expected, 10);
  });

  cold('Open Panel: the empty panel names the model, says what to do and opens the sample', 'open-panel', async (vs) => {
    await vs.runCommand('Transformer Dynamics: Open Panel');
    await vs.waitForWebview('No analysis yet', { timeoutMs: 60_000 });
    assert.equal(await vs.webviewFrame().locator('.model-name').innerText(), 'td-mini (bundled)');
    // its first step for a newcomer: the sample opens in the editor
    await vs.webviewFrame().locator('.empty-actions .tool-btn', { hasText: 'Open Sample Document' }).click();
    await vs.page.locator('.editor-group-container .tab', { hasText: 'sample.md' }).waitFor({ timeout: 30_000 });
    await vs.activeEditor().getByText('A sample to analyse').waitFor({ timeout: 30_000 });
    // in another column: the panel stays on show
    assert.equal(await vs.webviewFrame().locator('.model-name').innerText({ timeout: 10_000 }), 'td-mini (bundled)');
    // with the panel focused VS Code has no active text editor: Analyze Selection (its key, in
    // the panel) takes the editor beside it (nothing selected: the whole sample)
    const expected = await analyse(fs.readFileSync(path.join(ROOT, 'media', 'sample.md'), 'utf8'));
    await vs.page.locator('.tabs-container .tab', { hasText: 'Transformer Dynamics' }).click();
    await waitFor(async () => (await vs.selectionStatus()) === '', 10_000, 'no active text editor (its Ln, Col gone)');
    await vs.page.keyboard.press('Control+Alt+D'); // its key works in the panel too
    await vs.waitForWebview((f) => f.locator('.lens-body .lc').first(), { timeoutMs: 120_000 });
    assert.match(await vs.webviewFrame().locator('.title-row').innerText(), new RegExp(`${expected.tokens.length} tokens`));
    await assertLensCells(vs.webviewFrame(), expected);
  });

  cold('Toggle Surprisal Overlay: off, then an analysis leaves the text untinted; on again tints it', 'overlay', async (vs) => {
    const editor = vs.page.locator('.editor-group-container .editor-instance .monaco-editor').first();
    const tinted = editor.locator('.view-lines span[class*="ced-"], .view-overlays div[class*="ced-"]');
    await vs.openFile('story.md');
    await vs.selectLines(1, 1);
    await vs.runCommand('Transformer Dynamics: Toggle Surprisal Overlay');
    await vs.waitForStatusBarItem(/surprisal overlay off/i, 20_000);
    await vs.runCommand('Transformer Dynamics: Analyze Selection');
    await vs.waitForWebview((f) => f.locator('.lens-body .lc').first(), { timeoutMs: 120_000 });
    assert.equal(await tinted.count(), 0, 'no tint while the overlay is off');
    await vs.runCommand('Transformer Dynamics: Toggle Surprisal Overlay');
    await vs.waitForStatusBarItem(/surprisal overlay on/i, 20_000);
    await tinted.first().waitFor({ timeout: 20_000 });
  });

  cold('Open Sample Document: the sample opens and analyses', 'sample', async (vs) => {
    const sample = fs.readFileSync(path.join(ROOT, 'media', 'sample.md'), 'utf8');
    const expected = await analyse(sample);
    await vs.runCommand('Transformer Dynamics: Open Sample Document');
    await vs.page.locator('.editor-group-container.active .tab.active', { hasText: 'sample.md' }).waitFor({ timeout: 30_000 });
    await vs.activeEditor().getByText('A sample to analyse').waitFor({ timeout: 30_000 });
    await vs.runCommand('Transformer Dynamics: Analyze Selection'); // nothing selected: the whole sample
    await vs.waitForWebview((f) => f.locator('.lens-body .lc').first(), { timeoutMs: 120_000 });
    assert.match(await vs.webviewFrame().locator('.title-row').innerText(), new RegExp(`${expected.tokens.length} tokens`));
    await assertLensCells(vs.webviewFrame(), expected);
  });

  // Last: the windows before it used the cached graph.
  cold('Clear Graph Cache: removes the graphs and says how much it freed', 'clear-cache', async (vs) => {
    const entries = listCache(graphCacheOf(vs));
    assert.ok(entries.length >= 1, 'the earlier windows cached the bundled model');
    const freed = formatBytes(entries.reduce((n, e) => n + e.bytes, 0));
    await vs.runCommand('Transformer Dynamics: Clear Graph Cache');
    await vs.waitForNotification(`freed ${freed} (${entries.length} graph${entries.length === 1 ? '' : 's'})`, 30_000);
    assert.deepEqual(listCache(graphCacheOf(vs)), []);
  });
});
