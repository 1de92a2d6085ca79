// End-to-end what-if in a real VS Code (code-server + Chromium): on a repetitive text, pick the
// three heads with the highest induction score in the Attention tab, re-run with them ablated,
// and see the copy mass change (Repetition tab, against the engine run in this process) and the
// completions' repetition change (Compare Completions with an ablated copy of the greedy column).
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { assertLensCells, assertNothingCut } from './checks';
import { buildVsix, e2eSkipReason, repoRoot, startVsCode, type VsCodeSession } from './harness';
import { CLEAN, CORRUPTED, REPEATS, WHATIF_FILES, patchPrompts } from './whatif-flow';
import { Engine } from '../../src/engine/engine';
import type { Analysis, HeadStatsResult } from '../../src/shared/analysis';
import { strongestCell, type HeadRef } from '../../src/shared/interventions';
import { percent } from '../../webview/shapeCompletions';
import { repeatRuns } from '../../webview/shapeRepetition';
import { patchingZ, repeatCopyMass, topInductionHeads } from '../../webview/shapeWhatIf';
import { pct } from '../../webview/shapeText';

const BUNDLED = path.join(repoRoot(), 'media', 'models', 'td-mini');
const NEW_TOKENS = 40;

interface Expected {
  heads: HeadRef[];
  /** "copy a → b" of the longest repeat at the last layer. */
  firstRepeat: string;
  cleanCopy: number;
  ablatedCopy: number;
  repetition: { clean: number; ablated: number };
  /** The normalised heatmap of clean.md vs corrupted.md, patching each layer's MLP output (denoise). */
  mlpPatching: (number | null)[][];
  /** The same with each head's z patched at every position: layer × head. */
  headPatching: (number | null)[][];
  /** The heads heatmap's strongest cell, and corrupted.md analysed with that head patched from clean.md. */
  strongestHead: HeadRef;
  patchedRun: Analysis;
  unpatchedRun: Analysis;
}

/** The same experiment in this process: the heads, the copy mass of the longest repeat, greedy repetition. */
async function expectedNumbers(): Promise<Expected> {
  const engine = new Engine();
  await engine.load({ dir: BUNDLED, threads: 2, executionProvider: 'cpu' });
  try {
    const req = { text: REPEATS, topK: 5, maxTokens: 1024, patterns: true as const };
    const clean = await engine.analyze(req, undefined, 1);
    const stats = (await engine.query({ type: 'headStats', runId: 1 })) as HeadStatsResult;
    const heads = topInductionHeads(stats, 3);
    const ablated = await engine.analyze({ ...req, interventions: { ablation: { heads, mode: 'zero' } } }, undefined, 2);
    const run = repeatRuns(clean.walk.ngrams, 2)[0]!;
    const row = clean.lens.rows - 1;
    const a = repeatCopyMass(clean.lens, run, row);
    const b = repeatCopyMass(ablated.lens, run, row);
    const greedy = { label: 'greedy', kind: 'greedy' as const };
    const c0 = await engine.generate({ text: REPEATS, strategy: greedy, maxNewTokens: NEW_TOKENS });
    const c1 = await engine.generate({
      text: REPEATS,
      strategy: { ...greedy, ablation: { heads, mode: 'zero' } },
      maxNewTokens: NEW_TOKENS,
      ablation: { heads, mode: 'zero' },
    });
    const pat = { topK: 5, maxTokens: 1024, patterns: false as const };
    const cleanRun = await engine.analyze({ ...pat, text: CLEAN }, undefined, 3);
    const unpatchedRun = await engine.analyze({ ...pat, text: CORRUPTED }, undefined, 4);
    const mlp = await engine.patching({ type: 'patching', cleanRunId: 3, corruptedRunId: 4, direction: 'denoise', site: 'mlp_out' });
    const z = await engine.patching({ type: 'patching', cleanRunId: 3, corruptedRunId: 4, direction: 'denoise', site: 'z' });
    const best = strongestCell(z)!;
    const strongestHead = { layer: best.layer, head: best.col };
    const patch = { sourceIds: cleanRun.tokens.map((t) => t.id), site: 'z' as const, cells: [], heads: [strongestHead] };
    const patchedRun = await engine.analyze({ ...pat, text: CORRUPTED, interventions: { patch } }, undefined, 5);
    return {
      strongestHead,
      patchedRun,
      unpatchedRun,
      mlpPatching: patchingZ(mlp, 'normalized'),
      headPatching: patchingZ(z, 'normalized'),
      heads,
      firstRepeat: `copy ${pct(a)} → ${pct(b)}`,
      cleanCopy: a,
      ablatedCopy: b,
      repetition: { clean: c0.metrics.repetitionRate, ablated: c1.metrics.repetitionRate },
    };
  } finally {
    await engine.dispose();
  }
}

describe('real VS Code: what-if', { skip: e2eSkipReason() }, () => {
  let vs: VsCodeSession;
  let want: Expected;
  let failed = false;

  before(async () => {
    want = await expectedNumbers();
    vs = await startVsCode({
      name: 'whatif',
      vsix: buildVsix(),
      files: WHATIF_FILES,
      theme: 'light',
      viewport: { width: 1680, height: 1000 },
    });
  });

  after(async () => {
    await vs?.dispose({ failed });
  });

  test('ablating the top induction heads lowers the copy mass and changes the completions’ repetition', async (t) => {
    try {
      // the experiment is worth running: the ablation changes what this test looks for
      assert.ok(want.ablatedCopy < want.cleanCopy - 0.01, `copy mass ${want.cleanCopy} → ${want.ablatedCopy}`);
      assert.notEqual(want.repetition.ablated, want.repetition.clean);
      t.diagnostic(`heads ${JSON.stringify(want.heads)}; ${want.firstRepeat}; repetition ${JSON.stringify(want.repetition)}`);

      await vs.openFile('repeats.md');
      await vs.selectAll();
      await vs.runCommand('Transformer Dynamics: Analyze Selection');
      const frame = vs.webviewFrame();
      await vs.waitForWebview((f) => f.locator('.lens-body .lc').first(), { timeoutMs: 120_000 });

      // Attention tab: the three heads with the highest induction score, then the re-run
      await frame.locator('vscode-tab-header[data-tab="attention"]').click();
      await vs.waitForWebview((f) => f.locator('.att-svg .att-cell').first(), { timeoutMs: 60_000 });
      await frame.getByRole('button', { name: /Top 3 induction/ }).click();
      const chosen = want.heads.map((h) => `L${h.layer}H${h.head}`).join(', ');
      assert.equal(await frame.locator('.abl-chosen').innerText(), chosen);
      assert.equal(await frame.locator('.att-abl.on').count(), 3, 'the three heads are marked in the grid');
      await vs.screenshot('attention-ablate-light');
      await assertNothingCut(frame.locator('body'), 'the Attention tab with heads chosen');
      await frame.locator('.abl-run').click();
      await vs.waitForWebview((f) => f.locator('.td-whatif .wi-what').getByText(`${chosen} · zero ablation`), { timeoutMs: 120_000 });

      // Repetition tab: both runs' copy mass, and the longest repeat copied less
      await frame.locator('vscode-tab-header[data-tab="repetition"]').click();
      await vs.waitForWebview((f) => f.locator('.rep-copy .js-plotly-plot .scatterlayer .trace').nth(1), { timeoutMs: 60_000 });
      assert.equal(await frame.locator('.rep-copy .js-plotly-plot .scatterlayer .trace').count(), 2, 'clean and ablated copy mass');
      assert.equal(await frame.locator('.ngram .rep-cmp').first().innerText(), want.firstRepeat);
      await vs.screenshot('repetition-whatif-light');
      await assertNothingCut(frame.locator('body'), 'the Repetition tab with the what-if bar');
      // as a difference: one trace, ablated − clean
      await frame.locator('.td-whatif .seg[data-value="difference"]').click();
      await vs.waitForWebview((f) => f.locator('.rep-copy .legend').first().or(f.locator('.rep-copy .scatterlayer .trace').first()));
      await frame.locator('vscode-tab-header[data-tab="lens"]').click();
      await vs.waitForWebview((f) => f.locator('.lens-body .lc.chg').first(), { timeoutMs: 30_000 });
      await vs.screenshot('lens-difference-light');
      await vs.setTheme('dark');
      await vs.screenshot('lens-difference-dark');
      await vs.setTheme('light');

      // Compare Completions: the greedy column and its ablated copy
      await vs.page.keyboard.press('Control+1');
      await vs.selectAll();
      await vs.runCommand('Transformer Dynamics: Compare Completions…');
      await vs.page.locator('.quick-input-widget').waitFor({ timeout: 20_000 });
      await vs.page.keyboard.press('Enter'); // the default presets
      await vs.page.waitForTimeout(800);
      await vs.page.keyboard.type(String(NEW_TOKENS));
      await vs.page.keyboard.press('Enter');
      await vs.waitForWebview((f) => f.locator('.comp-col .comp-metrics:not([hidden])').nth(5), { timeoutMs: 300_000 });
      // the panel repaints on its next frame: wait for each change before the next click
      const columns = frame.locator('.comp-col');
      for (let n = await columns.count(); n > 1; n--) {
        await columns.nth(1).getByRole('button', { name: 'Remove column' }).click();
        await columns.nth(n - 1).waitFor({ state: 'detached', timeout: 10_000 });
      }
      assert.equal(await columns.count(), 1);
      await frame.getByRole('button', { name: /Ablated copies/ }).click();
      await columns.nth(1).waitFor({ timeout: 10_000 });
      assert.equal(await columns.count(), 2);
      await frame.getByRole('button', { name: /Generate/ }).click();
      await vs.waitForWebview((f) => f.locator('.comp-col').nth(1).locator('.comp-metrics:not([hidden])'), { timeoutMs: 300_000 });
      const repetitionOf = async (i: number) => {
        const m = frame.locator('.comp-col').nth(i).locator('.comp-metrics');
        const labels = await m.locator('.m-label').allInnerTexts();
        return (await m.locator('.m-value').allInnerTexts())[labels.indexOf('repetition')];
      };
      assert.match(await frame.locator('.comp-col').nth(1).locator('.col-sub').innerText(), new RegExp(`zero-ablated ${chosen}`));
      assert.equal(await repetitionOf(0), percent(want.repetition.clean), 'clean greedy repetition');
      assert.equal(await repetitionOf(1), percent(want.repetition.ablated), 'ablated greedy repetition');
      await vs.screenshot('completions-ablated-light');
      // the analysis's what-if bar is not on the Completions tab, and back on the lens
      assert.equal(await frame.locator('.td-whatif').isVisible(), false, 'no what-if bar on the Completions tab');
      await frame.locator('vscode-tab-header[data-tab="lens"]').click();
      await frame.locator('.td-whatif .wi-what').getByText(`${chosen} · zero ablation`).waitFor({ timeout: 10_000 });
      await vs.assertNoCspViolations();
    } catch (e) {
      failed = true;
      throw e;
    }
  });

  test('activation patching between two prompts from Compare Prompts (the Diff tab)', async () => {
    try {
      // the corrupted prompt in an editor beside the clean one
      await patchPrompts(vs, 'View: Move Editor into Right Group');
      const frame = vs.webviewFrame();
      const summary = await frame.locator('.pat-summary').innerText();
      assert.match(summary, /LD = .* at the last position: clean -?[\d.]+, corrupted -?[\d.]+/);
      assert.match(summary, /have the same length/);
      assert.match(await frame.locator('.pat-bar .chart-status').innerText(), /\d+ patched runs, \d+ unchanged cells/);
      await frame.locator('.pat-card').scrollIntoViewIfNeeded();
      await vs.screenshot('patching-light');
      // each layer's MLP output instead: the heatmap drawn is the engine's
      await frame.locator('.pat-bar [aria-label="Patched activation"] .seg', { hasText: 'MLP' }).click();
      await frame.getByRole('button', { name: /Run patching/ }).click();
      await vs.waitForWebview((f) => f.locator('.pat-summary', { hasText: 'MLP output (mlp_out)' }), { timeoutMs: 120_000 });
      const z = await frame.locator('.pat-heat .js-plotly-plot').evaluate((p) => (p as unknown as { data: { z: unknown }[] }).data[0]!.z);
      assert.deepEqual(z, want.mlpPatching, 'the mlp_out heatmap equals the engine’s');
      assert.ok(
        want.mlpPatching.flat().some((v) => v !== null && v > 0.5),
        'some MLP output restores the clean prediction',
      );
      assert.equal(await frame.locator('.pat-heat .ytitle').textContent(), 'layer (mlp_out)');
      // and each head's output: a layer × head heatmap, the engine's
      await frame.locator('.pat-bar [aria-label="Patched activation"] .seg', { hasText: 'heads' }).click();
      await frame.getByRole('button', { name: /Run patching/ }).click();
      await vs.waitForWebview((f) => f.locator('.pat-summary', { hasText: 'each attention head’s output z' }), { timeoutMs: 120_000 });
      const zh = await frame.locator('.pat-heat .js-plotly-plot').evaluate((p) => (p as unknown as { data: { z: unknown }[] }).data[0]!.z);
      assert.deepEqual(zh, want.headPatching, 'the heads heatmap equals the engine’s');
      assert.equal(await frame.locator('.pat-heat .xtitle').textContent(), 'head');
      // this panel is narrow (about 370 px): nothing is cut, here nor in Proximity at a token
      // with a next token (its ranks make the longest stats row)
      await assertNothingCut(frame.locator('body'), 'the Diff tab of a narrow panel');
      // (the analysis's token strip is not on the Diff tab: it shows two other texts)
      assert.equal(await frame.locator('.strip-tokens').isVisible(), false, 'no token strip on the Diff tab');
      await frame.locator('vscode-tab-header[data-tab="proximity"]').click();
      await frame.locator('.strip-tokens .tok[data-pos="40"]').click();
      await vs.waitForWebview((f) => f.locator('.prox-stats').getByText('next token rank'), { timeoutMs: 60_000 });
      await vs.waitForWebview((f) => f.locator('.prox-layers .main-svg').first(), { timeoutMs: 60_000 });
      await assertNothingCut(frame.locator('body'), 'the Proximity tab of a narrow panel');
      await vs.screenshot('proximity-narrow-light');
      await frame.locator('vscode-tab-header[data-tab="diff"]').click();
      await frame.locator('.pat-card').scrollIntoViewIfNeeded();
      await vs.setTheme('dark');
      await vs.screenshot('patching-dark');
      // the heads heatmap's strongest cell as a whole run: corrupted.md with that head patched,
      // in the logit lens beside corrupted.md unpatched
      const h = want.strongestHead;
      await frame.getByRole('button', { name: /Open strongest cell/ }).click();
      await vs.waitForWebview((f) => f.locator('.td-whatif .wi-what', { hasText: `z of L${h.layer}H${h.head} patched` }), {
        timeoutMs: 120_000,
      });
      await frame.locator('.lens-body .lc:not([hidden])').first().waitFor({ state: 'visible', timeout: 10_000 }); // the panel went to the lens
      await assertLensCells(frame, want.patchedRun, 10);
      const changed = want.patchedRun.lens.topIds.some((id, i) => id !== want.unpatchedRun.lens.topIds[i]);
      if (changed) await frame.locator('.lens-body .lc.chg:not([hidden])').first().waitFor({ timeout: 10_000 }); // outlined: top-1 changed
      await frame.locator('.td-whatif .seg', { hasText: 'Unpatched' }).click();
      await assertLensCells(frame, want.unpatchedRun, 10);
      await frame.locator('.td-whatif .seg', { hasText: /^Patched$/ }).click();
      await vs.screenshot('patched-run-dark');
      // the Trajectories tab draws both runs' walks of the selected token in the unpatched run's axes
      await frame.locator('vscode-tab-header[data-tab="trajectories"]').click();
      await vs.waitForWebview((f) => f.locator('.traj-main .js-plotly-plot .scatterlayer .trace:nth-child(3)'), { timeoutMs: 60_000 });
      const names = await frame
        .locator('.traj-main .js-plotly-plot')
        .evaluate((p) => (p as unknown as { data: { name: string }[] }).data.map((t) => t.name));
      assert.deepEqual(names, ['other tokens', 'selected token, patched run', 'selected token, unpatched run']);
      await vs.assertNoCspViolations();
    } catch (e) {
      failed = true;
      throw e;
    }
  });
});
