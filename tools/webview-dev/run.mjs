// The panel outside VS Code: builds payloads, serves the webview with a mock VS Code API and
// drives Debian's Chromium through playwright-core. Screenshots of every tab in a light, a dark
// and a high-contrast theme go to test-results/webview-dev/; the run fails on console errors,
// CSP violations, script injection, or broken interactions.
//   node tools/webview-dev/run.mjs [--no-build] [--fresh] [--only light,dark,hc]
/* global window, document, requestAnimationFrame */ // used inside page.evaluate callbacks
import * as fs from 'node:fs';
import * as path from 'node:path';
import { chromium } from 'playwright-core';
import { ROOT, buildForDev, hostilePayload, realPayload, syntheticPayload, writeBundle } from './payloads.mjs';
import { runCompletions } from './completions.mjs';
import { makeBigDynamicsPayload, makeDynamicsPayloads, runDynamics } from './dynamics.mjs';
import { OUT_DIR, PAYLOAD_DIR, markPayloadsCurrent, payloadCurrent, startServer } from './serve.mjs';

const args = process.argv.slice(2);
const flag = (f) => args.includes(f);
const only = args.includes('--only') ? args[args.indexOf('--only') + 1].split(',') : ['light', 'dark', 'hc'];
const failures = [];
const report = { screenshots: [], timings: {}, checks: [] };
const check = (ok, what) => {
  report.checks.push({ ok, what });
  console.log(`${ok ? '  ok  ' : '  FAIL'} ${what}`);
  if (!ok) failures.push(what);
};

// ---- build and payloads -------------------------------------------------------------------
if (!flag('--no-build')) {
  buildForDev();
}
fs.mkdirSync(PAYLOAD_DIR, { recursive: true });
const payloadFile = (n) => path.join(PAYLOAD_DIR, `${n}.json`);
// A cached payload is remade when the engine in out/ (or its maker) changed since it was made.
if (flag('--fresh') || !payloadCurrent('stories') || !payloadCurrent('xss')) {
  console.log('Analysing the sample text…');
  const real = await realPayload();
  writeBundle(payloadFile('stories'), real);
  writeBundle(payloadFile('xss'), hostilePayload(real));
  markPayloadsCurrent(['stories', 'xss']);
}
if (flag('--fresh') || !payloadCurrent('big')) {
  writeBundle(payloadFile('big'), syntheticPayload());
  markPayloadsCurrent(['big']);
}

// ---- browser ------------------------------------------------------------------------------
const server = await startServer();
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--use-angle=swiftshader',
    '--enable-unsafe-swiftshader',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});

/** A page on the dev shell with console errors, page errors, dialogs and CSP violations collected. */
async function open(query, { width = 1280, height = 800 } = {}) {
  const context = await browser.newContext({ viewport: { width, height }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  const errors = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('dialog', (d) => {
    errors.push(`dialog opened: ${d.message()}`);
    void d.dismiss();
  });
  page.on('request', (r) => {
    if (!r.url().startsWith(server.origin) && !r.url().startsWith('data:') && !r.url().startsWith('blob:'))
      errors.push(`external request: ${r.url()}`);
  });
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`));
  });
  await page.goto(`${server.origin}/?${query}`);
  return { page, context, errors };
}

const shot = async (page, name) => {
  const file = path.join(OUT_DIR, `${name}.png`);
  await page.screenshot({ path: file });
  report.screenshots.push(path.relative(ROOT, file));
};

const paintMeasures = () => performance.getEntriesByType('measure').filter((e) => e.name.startsWith('td:data→painted'));
const painted = (page) => page.waitForFunction(`(${paintMeasures})().length > 0`, null, { timeout: 60000 });
const dataToPaint = (page) => page.evaluate(`(${paintMeasures})()[0]?.duration ?? NaN`);
const tab = async (page, title) => {
  await page.locator('vscode-tab-header', { hasText: title }).click();
  await page.waitForTimeout(150);
};
const settle = (page, ms = 400) => page.waitForTimeout(ms);

async function finish(name, ctx) {
  check(
    ctx.errors.length === 0,
    `${name}: no console errors, CSP violations or dialogs${ctx.errors.length ? ' — ' + ctx.errors.slice(0, 5).join(' | ') : ''}`,
  );
  await ctx.context.close();
}

try {
  // ---- every tab in every theme -----------------------------------------------------------
  for (const theme of only) {
    const ctx = await open(`theme=${theme}&payload=stories`);
    const { page } = ctx;
    await page.waitForSelector('.lc');
    await painted(page);
    report.timings[`stories-${theme}`] = await dataToPaint(page);
    await settle(page);
    await shot(page, `${theme}-lens`);
    if (theme === 'dark') {
      await page.locator('.tok[data-pos="6"]').click();
      await settle(page, 200);
      const cell = page.locator('.lc[data-r="3"][data-p="6"]');
      await cell.hover();
      await settle(page, 200);
      check(await page.locator('.td-tooltip:not([hidden]) .tt-top').isVisible(), 'lens: hovering a cell shows the top-k tooltip');
      await shot(page, `${theme}-lens-hover`);
      await page.mouse.move(5, 5);
      for (const mode of ['Rank of next token', 'Entropy', 'KL to final']) {
        await page.locator('vscode-single-select.mode-select').click();
        await page.locator('vscode-single-select.mode-select li[role="option"]', { hasText: mode }).click();
        await settle(page, 200);
        await shot(page, `${theme}-lens-${mode.split(' ')[0].toLowerCase()}`);
      }
    }
    await tab(page, 'Trajectories');
    await page.waitForSelector('.traj-main .main-svg');
    await settle(page, 800);
    await shot(page, `${theme}-trajectories`);
    if (theme === 'dark') {
      await page.locator('button.seg', { hasText: '3D' }).click();
      await page.waitForSelector('.traj-main .gl-container canvas', { timeout: 20000 }).catch(() => undefined);
      await settle(page, 1500);
      const webgl = await page.evaluate(() => !!document.createElement('canvas').getContext('webgl'));
      check(webgl, 'WebGL is available (SwiftShader) for scatter3d');
      await shot(page, `${theme}-trajectories-3d`);
      await page.locator('button.seg', { hasText: '2D' }).click();
      await settle(page, 500);
    }
    await tab(page, 'Repetition');
    await page.waitForSelector('.rep-heat .main-svg');
    await settle(page, 800);
    await shot(page, `${theme}-repetition`);
    if (theme === 'dark') {
      const before = await page.evaluate(() => window.__TD_RECORD__.similarity.length);
      await page.locator('.layer-slider').fill('2');
      await page.waitForFunction((n) => window.__TD_RECORD__.similarity.length > n, before, { timeout: 10000 });
      await settle(page, 800);
      await shot(page, `${theme}-repetition-layer2`);
      check(
        (await page.locator('.layer-name').textContent()).includes('layer 1'),
        'repetition: the slider requests and shows another layer',
      );
    }
    await finish(`stories/${theme}`, ctx);
  }

  // ---- interactions, export, persistence (dark) -------------------------------------------
  {
    const ctx = await open('theme=dark&payload=stories');
    const { page } = ctx;
    await page.waitForSelector('.lc');
    await painted(page);
    await page.locator('.tok[data-pos="4"]').click();
    check((await page.evaluate(() => window.__TD_RECORD__.selects.at(-1))) === 4, 'clicking a token posts selectPosition');
    await page.keyboard.press('ArrowRight');
    check((await page.locator('.tok.sel').getAttribute('data-pos')) === '5', '→ moves the selection');
    await page.evaluate(() => window.__TD_HOST__.post({ type: 'selectPosition', runId: window.__TD_HOST__.payload.runId, pos: 9 }));
    await settle(page, 100);
    check((await page.locator('.tok.sel').getAttribute('data-pos')) === '9', 'selectPosition from the host selects the token');
    check((await page.locator('.lh.sel').getAttribute('data-p')) === '9', 'the lens table highlights the selected column');
    await page.evaluate(() => window.__TD_HOST__.post({ type: 'analysis', payload: { runId: 1 } }));
    await settle(page, 100);
    check(
      (await page.evaluate(() => window.__TD_RECORD__.logs.some((l) => l.startsWith('warn: Dropped a malformed message')))) === true,
      'a malformed message is dropped and logged',
    );
    await page.locator('.lens-view .tool-btn', { hasText: 'SVG' }).click();
    await page.waitForFunction(() => window.__TD_RECORD__.saved.length >= 1);
    await page.locator('.lens-view .tool-btn', { hasText: 'PNG' }).click();
    await page.waitForFunction(() => window.__TD_RECORD__.saved.length >= 2);
    await tab(page, 'Trajectories');
    await page.waitForSelector('.traj-main .main-svg');
    await page.locator('.traj-main .tool-btn', { hasText: 'PNG' }).click();
    await page.waitForFunction(() => window.__TD_RECORD__.saved.length >= 3);
    await page.locator('.traj-main .tool-btn', { hasText: 'SVG' }).click();
    await page.waitForFunction(() => window.__TD_RECORD__.saved.length >= 4);
    const saved = await page.evaluate(() => window.__TD_RECORD__.saved);
    check(saved[0].format === 'svg' && saved[0].head.startsWith('<svg'), `lens table exports SVG markup (${saved[0].length} chars)`);
    check(
      saved[1].format === 'png' && saved[1].head.startsWith('data:image/png;base64,'),
      `lens table exports PNG (${saved[1].length} chars)`,
    );
    check(saved[2].head.startsWith('data:image/png;base64,'), `chart exports PNG (${saved[2].length} chars)`);
    check(saved[3].head.startsWith('<svg'), `chart exports SVG (${saved[3].length} chars)`);
    await page.locator('.tool-btn', { hasText: 'JSON' }).click();
    await page.waitForFunction(() => document.querySelector('.export-status')?.textContent?.includes('analysis.json'));
    await page.locator('.tool-btn', { hasText: 'CSV' }).click();
    await page
      .waitForFunction(() => document.querySelector('.export-status')?.textContent?.includes('analysis.csv'), null, { timeout: 5000 })
      .catch(() => undefined);
    check(
      (await page.locator('.export-status').textContent()).includes('analysis.csv'),
      'export buttons request exportAnalysis and show the result',
    );
    // live theme switch: the plots recolour
    const bgBefore = await page.evaluate(() => document.querySelector('.traj-main .main-svg')?.style.background);
    await page.evaluate(() => {
      document.getElementById('td-dev-theme').href = document.getElementById('td-dev-theme').href.replace('theme=dark', 'theme=light');
      document.body.className = 'vscode-light';
    });
    await settle(page, 1200);
    const bgAfter = await page.evaluate(() => document.querySelector('.traj-main .main-svg')?.style.background);
    check(bgBefore !== bgAfter, `plots re-render on theme change (${bgBefore} → ${bgAfter})`);
    await shot(page, 'theme-switch-to-light');
    // persistence: reload restores tab and selection
    await tab(page, 'Repetition');
    await page.reload();
    await painted(page);
    await settle(page, 300);
    const restored = await page.evaluate(() => ({
      tab: document.querySelector('vscode-tab-header[active]')?.textContent,
      pos: document.querySelector('.tok.sel')?.dataset.pos,
    }));
    check(restored.tab === 'Repetition' && restored.pos === '9', `state restored after reload (${JSON.stringify(restored)})`);
    await finish('interactions', ctx);
  }

  // ---- a narrow panel (editor split, side column) -----------------------------------------
  {
    const ctx = await open('theme=dark&payload=stories', { width: 620, height: 760 });
    const { page } = ctx;
    await page.waitForSelector('.lc');
    await painted(page);
    await settle(page);
    await shot(page, 'narrow-lens');
    for (const t of ['Trajectories', 'Repetition']) {
      await tab(page, t);
      await settle(page, 1200);
      await shot(page, `narrow-${t.toLowerCase()}`);
    }
    // a side column beside two editors: no section title is cut short
    await page.setViewportSize({ width: 380, height: 760 });
    await tab(page, 'Logit lens');
    await settle(page, 600);
    await shot(page, 'narrow-380-lens');
    const cut = await page.evaluate(() =>
      [...document.querySelectorAll('.strip-bar h3')].filter((h) => h.scrollWidth > h.clientWidth + 1).map((h) => h.textContent),
    );
    check(cut.length === 0, `section titles whole at 380 px (${JSON.stringify(cut)})`);
    await finish('narrow', ctx);
  }

  // ---- run states and empty state ---------------------------------------------------------
  for (const [q, name] of [
    ['payload=none', 'empty'],
    ['payload=none&run=error', 'error'],
    ['payload=stories&run=running', 'running'],
  ]) {
    const ctx = await open(`theme=dark&${q}`);
    await settle(ctx.page, 1200);
    await shot(ctx.page, `dark-state-${name}`);
    if (name === 'empty') {
      check(
        await ctx.page.locator('.td-header .tool-btn', { hasText: 'JSON' }).isHidden(),
        'empty state: no export buttons (nothing to export)',
      );
      // the empty panel's buttons run the extension's commands (the host runs only PANEL_COMMANDS)
      for (const [label, command] of [
        ['Open Sample Document', 'openSample'],
        ['Select Model…', 'selectModel'],
      ]) {
        await ctx.page.locator('.empty-actions .tool-btn', { hasText: label }).click();
        await settle(ctx.page, 100);
        const ran = await ctx.page.evaluate(() => window.__TD_RECORD__.commands.at(-1));
        check(ran === command, `empty state: "${label}" runs ${command} (${ran})`);
      }
    }
    await finish(`state ${name}`, ctx);
  }

  // ---- hostile token text -----------------------------------------------------------------
  {
    const ctx = await open('theme=dark&payload=xss');
    const { page } = ctx;
    await page.waitForSelector('.lc');
    await painted(page);
    await page.locator('.tok[data-pos="3"]').click();
    await settle(page, 200);
    await page.locator('.lc[data-r="2"][data-p="3"]').hover();
    await settle(page, 200);
    await shot(page, 'xss-lens');
    await tab(page, 'Trajectories');
    await page.waitForSelector('.traj-main .main-svg');
    await settle(page, 800);
    await page.locator('.traj-main .scatterlayer .trace').last().locator('.point').nth(2).hover({ force: true });
    await settle(page, 300);
    check((await page.locator('.traj-main .hoverlayer .hovertext').count()) > 0, 'hostile text: a trajectory hover label is shown');
    await shot(page, 'xss-trajectories');
    await tab(page, 'Repetition');
    await page.waitForSelector('.rep-heat .main-svg');
    await settle(page, 800);
    const box = await page.locator('.rep-heat .nsewdrag').first().boundingBox();
    await page.mouse.move(box.x + box.width * 0.3, box.y + box.height * 0.6);
    await settle(page, 300);
    check(await page.locator('.td-tooltip:not([hidden])').isVisible(), 'hostile text: the heatmap hover card is shown');
    await shot(page, 'xss-repetition');
    const probe = await page.evaluate(() => ({
      pwned: window.__pwned,
      imgs: document.querySelectorAll('img').length,
      scripts: document.querySelectorAll('script').length,
      anchors: document.querySelectorAll('a').length,
      stripHasLiteral: document.querySelector('.strip-tokens')?.textContent?.includes('<script>'),
      bidiVisible: document.querySelector('.strip-tokens')?.textContent?.includes('\\u202E'),
      rawBidi: /[\u202a-\u202e\u2066-\u2069]/.test(document.body.innerText),
      svgAnchors: document.querySelectorAll('svg a').length,
    }));
    check(probe.pwned === undefined, 'hostile text: nothing executed');
    check(
      probe.imgs === 0 && probe.anchors === 0 && probe.svgAnchors === 0,
      `hostile text: no <img>/<a> elements created (${JSON.stringify(probe)})`,
    );
    check(probe.stripHasLiteral && probe.bidiVisible && !probe.rawBidi, 'hostile text shown literally, bidi controls as visible escapes');
    await finish('hostile', ctx);
  }

  // ---- 1024 tokens × 33 rows --------------------------------------------------------------
  {
    const ctx = await open('theme=dark&payload=big');
    const { page } = ctx;
    await page.waitForSelector('.lc', { timeout: 60000 });
    await painted(page);
    report.timings['big-lens'] = await dataToPaint(page);
    const cells0 = await page.locator('.lc').count();
    const scroll = await page.evaluate(async () => {
      const sc = document.querySelector('.lens-scroller');
      const frames = [];
      const idle = [];
      let last = performance.now();
      for (let i = 0; i < 60; i++) {
        await new Promise((r) => requestAnimationFrame(r));
        const now = performance.now();
        idle.push(now - last);
        last = now;
      }
      idle.sort((a, b) => a - b);
      for (let i = 0; i < 120; i++) {
        sc.scrollLeft += 450;
        sc.scrollTop = (i % 10) * 12;
        await new Promise((r) => requestAnimationFrame(r));
        const now = performance.now();
        frames.push(now - last);
        last = now;
      }
      frames.sort((a, b) => a - b);
      return {
        left: sc.scrollLeft,
        max: sc.scrollWidth - sc.clientWidth,
        p50: frames[60],
        p95: frames[114],
        idleP50: idle[30],
        cells: document.querySelectorAll('.lc:not([hidden])').length,
        lastCol: Math.max(...[...document.querySelectorAll('.lc:not([hidden])')].map((e) => Number(e.dataset.p))),
      };
    });
    report.timings['big-scroll-frame-p50'] = scroll.p50;
    report.timings['big-scroll-frame-p95'] = scroll.p95;
    report.timings['idle-frame-p50'] = scroll.idleP50;
    check(
      cells0 < 1500 && scroll.cells < 1500,
      `1024 tokens: only a window of cells exists (${cells0} at start, ${scroll.cells} after scrolling; full table = ${1024 * 33})`,
    );
    check(scroll.lastCol === 1023, `1024 tokens: scrolled to the end, last column rendered (${scroll.lastCol})`);
    // Headless software rendering on shared CPUs: judge against the idle frame interval.
    check(
      scroll.p50 < Math.max(34, 2.5 * scroll.idleP50),
      `1024 tokens: scroll frames p50 ${scroll.p50.toFixed(1)} ms, p95 ${scroll.p95.toFixed(1)} ms (idle frames ${scroll.idleP50.toFixed(1)} ms)`,
    );
    await settle(page, 200);
    await shot(page, 'big-lens-scrolled');
    for (const [t, sel] of [
      ['Trajectories', '.traj-main .main-svg'],
      ['Repetition', '.rep-heat .main-svg'],
    ]) {
      const t0 = Date.now();
      await tab(page, t);
      await page.waitForSelector(sel, { timeout: 60000 });
      await settle(page, 500);
      report.timings[`big-${t.toLowerCase()}-tab-ms`] = Date.now() - t0;
      await shot(page, `big-${t.toLowerCase()}`);
    }
    await tab(page, 'Trajectories');
    await page.locator('button.seg', { hasText: '3D' }).click();
    await settle(page, 2500);
    await shot(page, 'big-trajectories-3d');
    await finish('big', ctx);
  }

  // ---- Completions tab (completions.mjs: a real model streams through the engine) ---------
  await runCompletions({ browser, origin: server.origin, only, check, report });

  // ---- Dynamics tabs and the HTML report (dynamics.mjs: engine answers precomputed) --------
  if (flag('--fresh') || !payloadCurrent('dynamics')) await makeDynamicsPayloads();
  if (flag('--fresh') || !payloadCurrent('dynamics-big')) makeBigDynamicsPayload();
  await runDynamics({ browser, origin: server.origin, only, check, report, reportFile: path.join(OUT_DIR, 'report.html') });
} finally {
  await browser.close();
  await server.close();
}

fs.writeFileSync(path.join(OUT_DIR, 'report.json'), JSON.stringify(report, null, 2));
console.log('\nTimings (ms):', Object.fromEntries(Object.entries(report.timings).map(([k, v]) => [k, Math.round(v * 10) / 10])));
console.log(`Screenshots: ${report.screenshots.length} in ${path.relative(ROOT, OUT_DIR)}/`);
console.log(failures.length ? `WEBVIEW DEV: FAIL (${failures.length})` : 'WEBVIEW DEV: PASS');
process.exit(failures.length ? 1 : 0);
