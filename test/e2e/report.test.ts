// The CLI's standalone HTML report opened in Debian's Chromium from file://, offline: no
// failed or external requests, no console errors, no CSP violations, and every tab renders
// from the inlined data. Needs only Chromium (not code-server).
//   TD_E2E_SKIP=1 skips; TD_CHROMIUM overrides the browser binary.
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { assertNothingCut } from './checks';

const ROOT = path.resolve(__dirname, '..', '..', '..'); // out/test/e2e → repository
const CLI = path.join(ROOT, 'dist', 'cli.js');
const TINY = path.join(ROOT, 'test', 'fixtures', 'models', 'tiny-llama');
const CHROMIUM = process.env.TD_CHROMIUM ?? '/usr/bin/chromium';
const ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
  '--use-angle=swiftshader',
  '--enable-unsafe-swiftshader',
];

function skipReason(): string | undefined {
  if (process.env.TD_E2E_SKIP === '1') return 'TD_E2E_SKIP=1';
  if (!fs.existsSync(CHROMIUM)) return `Chromium not found at ${CHROMIUM}`;
  if (!fs.existsSync(CLI)) return `${CLI} is not built (npm run build)`;
  return undefined;
}

interface Watch {
  errors: string[];
  requests: string[];
}

async function openReport(
  browser: Browser,
  file: string,
  colorScheme: 'light' | 'dark',
): Promise<{ page: Page; watch: Watch; close(): Promise<void> }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme, acceptDownloads: true });
  // offline: anything that tries the network fails loudly
  await context.setOffline(true);
  const page = await context.newPage();
  const watch: Watch = { errors: [], requests: [] };
  page.on('console', (m) => m.type() === 'error' && watch.errors.push(`console: ${m.text()}`));
  page.on('pageerror', (e) => watch.errors.push(`pageerror: ${e.message}`));
  page.on('request', (r) => watch.requests.push(r.url()));
  page.on('requestfailed', (r) => watch.errors.push(`request failed: ${r.url().slice(0, 100)} ${r.failure()?.errorText ?? ''}`));
  page.on('dialog', (d) => {
    watch.errors.push(`dialog: ${d.message()}`);
    void d.dismiss();
  });
  // (browser-side code as strings: this file compiles without the DOM library)
  await page.addInitScript({
    content:
      "document.addEventListener('securitypolicyviolation', (e) => console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI));",
  });
  await page.goto(pathToFileURL(file).href);
  return { page, watch, close: () => context.close() };
}

async function tab(page: Page, title: string): Promise<void> {
  await page.locator('vscode-tab-header', { hasText: title }).click();
  await page.waitForTimeout(150);
}

describe('HTML report in Chromium', { skip: skipReason(), timeout: 240_000 }, () => {
  let dir = '';
  let file = '';
  let ablatedFile = '';
  let browser: Browser;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'td-report-'));
    file = path.join(dir, 'report.html');
    ablatedFile = path.join(dir, 'ablated.html');
    const text = 'the cat sat on the mat. the cat sat on the mat and slept.';
    for (const [out, extra] of [
      [file, []],
      [ablatedFile, ['--ablate', '0.1,1.2']], // the what-if bar and the two-run views
    ] as const) {
      const r = spawnSync(process.execPath, [CLI, 'analyze', '--model', TINY, '--threads', '1', '--text', text, '--html', out, ...extra], {
        encoding: 'utf8',
      });
      assert.equal(r.status, 0, r.stderr);
    }
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
  });
  after(async () => {
    await browser?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const scheme of ['light', 'dark'] as const) {
    test(`renders every tab offline (${scheme})`, async () => {
      const { page, watch, close } = await openReport(browser, file, scheme);
      try {
        await page.waitForSelector('.lc', { timeout: 60_000 });
        const bodyClass = (await page.evaluate('document.body.className')) as string;
        assert.match(bodyClass, scheme === 'dark' ? /vscode-dark/ : /vscode-light/, 'follows the system colour scheme');
        assert.ok((await page.locator('.strip-tokens .tok').count()) > 5, 'token strip');
        await tab(page, 'Trajectories');
        await page.waitForSelector('.traj-main .main-svg', { timeout: 30_000 });
        await tab(page, 'Repetition');
        await page.waitForSelector('.rep-heat .main-svg', { timeout: 30_000 });
        await tab(page, 'Attention');
        await page.waitForSelector('.att-svg .att-cell', { timeout: 30_000 });
        await page.waitForSelector('.att-heat .main-svg', { timeout: 30_000 });
        assert.equal(await page.locator('.att-svg .att-cell').count(), 3 * 4, 'one cell per head of tiny-llama');
        await tab(page, 'Proximity');
        await page.waitForSelector('.prox-canvas:not([hidden])', { timeout: 30_000 });
        assert.ok((await page.locator('.prox-row').count()) >= 10, 'top-token lists');
        await tab(page, 'The Ball');
        await page.waitForSelector('.ball-after .main-svg', { timeout: 30_000 });
        await tab(page, 'Clusters');
        await page.waitForSelector('.cl-heat .main-svg', { timeout: 30_000 });
        // another row is clustered in the page from its inlined similarity matrix
        await page.locator('.cl-layer-slider').fill('1');
        await page.waitForFunction("document.querySelector('.cl-layer-name')?.textContent?.includes('layer 0')", null, { timeout: 15_000 });
        await page.waitForTimeout(300);
        assert.equal(await page.locator('.cl-heat .dyn-note:not([hidden])').count(), 0);
        await tab(page, 'Diff');
        assert.match((await page.locator('.diff-empty').textContent()) ?? '', /Compare Prompts/);
        assert.equal(await page.locator('.empty-action').filter({ visible: true }).count(), 0, 'no command buttons in a report');
        // the analysis's export is on the tabs that show it, not on Diff
        assert.equal(await page.locator('.tool-btn', { hasText: 'CSV' }).isVisible(), false, 'no CSV export on the Diff tab');
        await tab(page, 'Logit Lens');
        if (scheme === 'light') {
          const [download] = await Promise.all([
            page.waitForEvent('download', { timeout: 10_000 }),
            page.locator('.tool-btn', { hasText: 'CSV' }).click(),
          ]);
          assert.equal(download.suggestedFilename(), 'transformer-dynamics-analysis.csv');
        }
        await page.waitForTimeout(300);
        const external = watch.requests.filter((u) => !u.startsWith('file:') && !u.startsWith('data:') && !u.startsWith('blob:'));
        assert.deepEqual(external, [], 'no network requests');
        assert.deepEqual(watch.errors, [], 'no failed requests, console errors or CSP violations');
      } finally {
        await close();
      }
    });
  }

  test('a narrow panel (360 px) wraps its tabs and controls instead of cutting them', async () => {
    const context = await browser.newContext({ viewport: { width: 360, height: 800 } });
    await context.setOffline(true);
    try {
      const page = await context.newPage();
      await page.goto(pathToFileURL(ablatedFile).href);
      await page.waitForSelector('.lc', { timeout: 60_000 });
      assert.ok(await page.locator('.td-whatif').isVisible(), 'the what-if bar is shown');
      await page.locator('.strip-tokens .tok[data-pos="3"]').click(); // a token with a next token (its ranks in Proximity)
      for (const title of [
        'Logit Lens',
        'Trajectories',
        'Repetition',
        'Attention',
        'Proximity',
        'The Ball',
        'Clusters',
        'Diff',
        'Completions',
      ]) {
        await tab(page, title);
        await page.waitForTimeout(600); // plots lay out
        await assertNothingCut(page.locator('body'), `the ${title} tab`);
      }
    } finally {
      await context.close();
    }
  });
});
