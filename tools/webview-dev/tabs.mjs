// The panel's tab bar at the widths a panel beside an editor has (500 and 900 px) in the light,
// dark and high-contrast themes: every tab header must lie fully inside the panel (the bar
// wraps onto more rows), and the screenshots show how it looks.
//   node tools/webview-dev/tabs.mjs [--no-build] [--only light,dark,hc]
// Screenshots: test-results/webview-dev/tabs-<theme>-<width>.png. Exit code 1 on a failed check.
/* global document, window */ // used inside page.evaluate callbacks
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { chromium } from 'playwright-core';
import { ROOT, hostilePayload, realPayload, writeBundle } from './payloads.mjs';
import { OUT_DIR, PAYLOAD_DIR, startServer } from './serve.mjs';

const args = process.argv.slice(2);
const only = args.includes('--only') ? args[args.indexOf('--only') + 1].split(',') : ['light', 'dark', 'hc'];
const WIDTHS = [500, 900];
const failures = [];
const check = (ok, what) => {
  console.log(`${ok ? '  ok  ' : '  FAIL'} ${what}`);
  if (!ok) failures.push(what);
};

if (!args.includes('--no-build')) {
  const b = spawnSync(process.execPath, ['esbuild.mjs'], { cwd: ROOT, stdio: 'inherit' });
  if (b.status !== 0) process.exit(1);
}
fs.mkdirSync(PAYLOAD_DIR, { recursive: true });
if (!fs.existsSync(path.join(PAYLOAD_DIR, 'stories.json'))) {
  const real = await realPayload();
  writeBundle(path.join(PAYLOAD_DIR, 'stories.json'), real);
  writeBundle(path.join(PAYLOAD_DIR, 'xss.json'), hostilePayload(real));
}

const server = await startServer();
const browser = await chromium.launch({
  executablePath: process.env.TD_CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--no-first-run'],
});
try {
  for (const theme of only) {
    for (const width of WIDTHS) {
      const context = await browser.newContext({ viewport: { width, height: 640 }, deviceScaleFactor: 1 });
      const page = await context.newPage();
      const errors = [];
      page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`${server.origin}/?theme=${theme}&payload=stories`);
      await page.waitForSelector('.lc');
      await page.waitForTimeout(400);
      const boxes = await page.evaluate(() =>
        Array.from(document.querySelectorAll('vscode-tab-header'), (h) => {
          const r = h.getBoundingClientRect();
          return { text: h.textContent, left: r.left, right: r.right, top: r.top, width: r.width, inner: window.innerWidth };
        }),
      );
      const cut = boxes.filter((b) => b.width <= 0 || b.left < 0 || b.right > b.inner + 0.5);
      check(
        cut.length === 0,
        `${theme} ${width} px: all ${boxes.length} tabs inside the panel${cut.length ? ` — cut: ${cut.map((b) => b.text).join(', ')}` : ''}`,
      );
      const rows = new Set(boxes.map((b) => Math.round(b.top))).size;
      console.log(`        ${rows} row${rows === 1 ? '' : 's'} of tabs`);
      // the last tab works: it is clickable and shows its view
      await page.locator('vscode-tab-header[data-tab="completions"]').click();
      await page.waitForTimeout(200);
      const active = await page.evaluate(() => document.querySelector('vscode-tab-header[active]')?.getAttribute('data-tab'));
      check(active === 'completions', `${theme} ${width} px: the last tab can be selected`);
      if (theme === 'dark' && width === 500) {
        // each view's tool bar in the narrow panel
        for (const id of await page.evaluate(() =>
          Array.from(document.querySelectorAll('vscode-tab-header'), (h) => h.getAttribute('data-tab')),
        )) {
          await page.locator(`vscode-tab-header[data-tab="${id}"]`).click();
          await page.waitForTimeout(600);
          await page.screenshot({ path: path.join(OUT_DIR, `tabs-narrow-${id}.png`) });
        }
      }
      await page.locator('vscode-tab-header[data-tab="lens"]').click();
      await page.waitForTimeout(200);
      await page.screenshot({ path: path.join(OUT_DIR, `tabs-${theme}-${width}.png`) });
      check(errors.length === 0, `${theme} ${width} px: no console errors${errors.length ? ` — ${errors.slice(0, 3).join(' | ')}` : ''}`);
      await context.close();
    }
  }
} finally {
  await browser.close();
  server.close();
}
console.log(failures.length ? `\ntabs: FAIL (${failures.length})` : '\ntabs: PASS');
process.exit(failures.length ? 1 : 0);
