// `npm run screenshots`: the README's pictures, taken in a real VS Code (code-server + Chromium,
// the e2e harness) with the packaged extension and the bundled model td-mini: select a paragraph
// of media/sample.md, Analyze Selection, then every tab of the panel; the lens again in the dark
// theme; then Compare Completions with the default presets. A second window takes the what-if
// pictures: td-mini's three top induction heads ablated on a repetitive text (the Repetition tab,
// both runs beside each other), then activation patching between two prompts that differ in one
// name (the Diff tab: the residual stream, then all three sites), and the MLP heatmap's strongest
// cell opened as a whole run (the logit lens, patched − unpatched). Writes docs/screenshots/*.png.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildVsix, e2eSkipReason, repoRoot, withVsCode, type VsCodeSession } from '../test/e2e/harness';
import { WHATIF_FILES, patchPrompts } from '../test/e2e/whatif-flow';

const ROOT = repoRoot();
const OUT = path.join(ROOT, 'docs', 'screenshots');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function log(s: string): void {
  process.stderr.write(`${s}\n`);
}

async function shot(vs: VsCodeSession, name: string): Promise<void> {
  const file = await vs.screenshot(name);
  fs.copyFileSync(file, path.join(OUT, `${name}.png`));
  log(`  docs/screenshots/${name}.png`);
}

/** What each tab shows once it is drawn. */
const READY = {
  lens: '.lens-body .lc',
  trajectories: '.tab-trajectories .js-plotly-plot .scatterlayer .trace',
  repetition: '.tab-repetition .js-plotly-plot',
  attention: '.att-svg .att-cell',
  proximity: '.prox-layers .main-svg',
  ball: '.ball-after .main-svg',
  clusters: '.cl-heat .main-svg',
} as const;

async function tab(vs: VsCodeSession, id: keyof typeof READY): Promise<void> {
  await vs.webviewFrame().locator(`vscode-tab-header[data-tab="${id}"]`).click();
  await vs.waitForWebview((f) => f.locator(READY[id]).first(), { timeoutMs: 60_000 });
  await sleep(1200); // plots finish their layout
}

/** Opens a tab and saves a screenshot of it. */
async function tabShot(vs: VsCodeSession, id: keyof typeof READY, name: string): Promise<void> {
  await tab(vs, id);
  await shot(vs, name);
}

/** whatif-light and patching-light, in a window of their own. */
async function whatIfShots(vsix: string): Promise<void> {
  await withVsCode(
    {
      name: 'screenshots-whatif',
      vsix,
      files: WHATIF_FILES,
      theme: 'light',
      viewport: { width: 1600, height: 940 },
    },
    async (vs) => {
      await vs.openFile('repeats.md');
      await vs.selectAll();
      await vs.runCommand('Transformer Dynamics: Analyze Selection');
      await vs.waitForWebview((f) => f.locator(READY.lens).first(), { timeoutMs: 120_000 });
      const frame = vs.webviewFrame();
      await tab(vs, 'attention');
      await frame.getByRole('button', { name: /Top 3 induction/ }).click();
      await frame.locator('.abl-run').click();
      await vs.waitForWebview((f) => f.locator('.td-whatif .wi-what').getByText(/zero ablation/), { timeoutMs: 120_000 });
      await frame.locator('vscode-tab-header[data-tab="repetition"]').click();
      await vs.waitForWebview((f) => f.locator('.rep-copy .js-plotly-plot .scatterlayer .trace').nth(1), { timeoutMs: 60_000 });
      await frame.locator('.ngram').first().click(); // the longest repeat, outlined in the heatmap
      await sleep(1500);
      await shot(vs, 'whatif-light');

      // back to the clean run; the corrupted prompt in a group below the clean one, so the
      // panel keeps its width
      await frame.getByRole('button', { name: 'Clear' }).click();
      await frame.locator('.td-whatif').waitFor({ state: 'hidden', timeout: 30_000 });
      await vs.page.keyboard.press('Control+1');
      await patchPrompts(vs, 'View: Move Editor into Group Below');
      await frame.locator('.pat-card').scrollIntoViewIfNeeded();
      await sleep(1200);
      await shot(vs, 'patching-light');
      // the three sites, one heatmap above the other
      await frame.locator('.pat-bar [aria-label="Patched activation"] .seg', { hasText: 'all three' }).click();
      await frame.getByRole('button', { name: /Run patching/ }).click();
      await vs.waitForWebview((f) => f.locator('.pat-bar .chart-status', { hasText: /^3 heatmaps: / }), { timeoutMs: 120_000 });
      await frame.locator('.pat-heat').scrollIntoViewIfNeeded();
      await sleep(1200);
      await shot(vs, 'patching-sites-light');
      // one cell as a whole run: the MLP heatmap's strongest cell, in the logit lens, compared
      await frame.locator('.pat-bar [aria-label="Patched activation"] .seg', { hasText: 'MLP' }).click();
      await frame.getByRole('button', { name: /Run patching/ }).click();
      await vs.waitForWebview((f) => f.locator('.pat-summary', { hasText: 'MLP output (mlp_out)' }), { timeoutMs: 120_000 });
      await frame.getByRole('button', { name: /Open strongest cell/ }).click();
      await vs.waitForWebview((f) => f.locator('.td-whatif .wi-what', { hasText: 'patched' }), { timeoutMs: 120_000 });
      await frame.locator('.td-whatif [aria-label="Compare"] .seg', { hasText: 'Difference' }).click();
      await sleep(1500);
      await shot(vs, 'patched-run-light');
      // the same pair in the Trajectories tab: both walks of the patched token (the second name), in
      // the unpatched run's axes
      await frame.locator('.td-whatif [aria-label="Compare"] .seg', { hasText: 'Beside' }).click();
      await tab(vs, 'trajectories');
      await frame.locator('.strip-tokens .tok[data-pos="9"]').click();
      await vs.page.mouse.move(5, 400); // (the token's hover card away from the tabs)
      await sleep(1500);
      await shot(vs, 'patched-trajectories-light');
      await vs.assertNoCspViolations();
    },
  );
}

async function main(): Promise<void> {
  const skip = e2eSkipReason();
  if (skip) throw new Error(`cannot take screenshots: ${skip}`);
  fs.mkdirSync(OUT, { recursive: true });
  const sample = fs.readFileSync(path.join(ROOT, 'media', 'sample.md'), 'utf8');
  const lines = sample.split('\n');
  const first = lines.findIndex((l) => l.startsWith('It is a truth')) + 1;
  const last = lines.findIndex((l, i) => i >= first && l.trim() === '');
  log('packaging the extension…');
  const vsix = buildVsix();
  await withVsCode(
    {
      name: 'screenshots',
      vsix,
      files: { 'sample.md': sample },
      theme: 'light',
      viewport: { width: 1600, height: 940 },
    },
    async (vs) => {
      await vs.openFile('sample.md');
      await vs.selectLines(first, last);
      await vs.runCommand('Transformer Dynamics: Analyze Selection');
      await vs.waitForWebview((f) => f.locator(READY.lens).first(), { timeoutMs: 120_000 });
      await sleep(1500);
      const frame = vs.webviewFrame();
      await frame.locator('.strip-tokens .tok[data-pos="40"]').click();
      await sleep(800);
      await shot(vs, 'panel-light');
      await tabShot(vs, 'trajectories', 'trajectories-light');
      await tabShot(vs, 'repetition', 'repetition-light');
      await tab(vs, 'attention');
      await frame.locator('.att-svg .att-cell[data-head="5"]').click();
      await vs.waitForWebview((f) => f.locator('.att-heat .main-svg').first(), { timeoutMs: 60_000 });
      await sleep(1200);
      await shot(vs, 'attention-light');
      await tabShot(vs, 'proximity', 'proximity-light');
      await tabShot(vs, 'ball', 'ball-light');
      await tabShot(vs, 'clusters', 'clusters-light');
      await vs.setTheme('dark');
      await tabShot(vs, 'lens', 'panel-dark');
      await tabShot(vs, 'trajectories', 'trajectories-dark');

      // Compare Completions on the same paragraph, default presets, default length (clicking a
      // token in the panel selected that token in the editor: select the paragraph again, its
      // lines unwrapped for that — Shift+Down moves by wrapped lines — then wrapped again).
      await vs.page.keyboard.press('Control+1');
      await vs.page.keyboard.press('Alt+Z');
      await vs.selectLines(first, last);
      await vs.page.keyboard.press('Alt+Z');
      await vs.runCommand('Transformer Dynamics: Compare Completions…');
      await vs.page.locator('.quick-input-widget').waitFor({ timeout: 20_000 });
      await vs.page.keyboard.press('Enter'); // the preselected default presets
      await sleep(800);
      await vs.page.keyboard.press('Enter'); // the default number of tokens
      await vs.waitForWebview((f) => f.locator('.comp-col .comp-metrics:not([hidden])').nth(5), { timeoutMs: 300_000 });
      await vs
        .webviewFrame()
        .locator('.comp-col')
        .nth(0)
        .locator('.ctok[data-step="3"]')
        .click()
        .catch(() => undefined); // the decoding walk of the greedy column
      await sleep(1500);
      await shot(vs, 'completions-dark');
      await vs.assertNoCspViolations();
    },
  );
  await whatIfShots(vsix);
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
