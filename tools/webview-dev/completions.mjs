// The Completions tab in the dev harness: a real model (stories260K, or the tiny-llama fixture)
// streams completions into the panel through generate.mjs; screenshots of streaming, finished
// columns with metrics, the decoding walk and a fork in the light, dark and high-contrast
// themes, plus checks of the settings form, Stop, errors, Analyze/Insert/Copy and hostile text.
//   node tools/webview-dev/completions.mjs [--no-build] [--only light,dark,hc]
// run.mjs calls runCompletions() with its browser and server.
/* global window, document */ // used inside page.evaluate callbacks
import * as fs from 'node:fs';
import * as path from 'node:path';
import { chromium } from 'playwright-core';
import { createDevGenerator } from './generate.mjs';
import { ROOT, buildForDev, hostilePayload, realPayload, writeBundle } from './payloads.mjs';
import { OUT_DIR, PAYLOAD_DIR, markPayloadsCurrent, payloadCurrent, startServer } from './serve.mjs';

export const PROMPT = 'Once upon a time, there was a little girl named Lily. She loved to play with her ball in the park. One day,';

const HOSTILE_STEPS = [
  '<img src=x onerror="window.__pwned=1">',
  ' \u202Eevil',
  '\n',
  '',
  '\u0000\u200b',
  '<script>window.__pwned=2</script>',
  ' javascript:alert(1)',
  '\ufffd',
];

/** Runs the Completions scenarios on `browser` against the dev server at `origin`. */
export async function runCompletions({ browser, origin, only = ['light', 'dark', 'hc'], check, report }) {
  const gen = await createDevGenerator();
  console.log(`Completions: generating with ${gen.name}`);

  async function open(query, { width = 1280, height = 800 } = {}) {
    const context = await browser.newContext({ viewport: { width, height }, deviceScaleFactor: 1 });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin }).catch(() => undefined);
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
      if (!r.url().startsWith(origin) && !r.url().startsWith('data:') && !r.url().startsWith('blob:'))
        errors.push(`external request: ${r.url()}`);
    });
    await page.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (e) => console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`));
    });
    await page.goto(`${origin}/?${query}`);
    const g = await gen.attach(page);
    return { page, context, errors, g };
  }
  const shot = async (page, name) => {
    const file = path.join(OUT_DIR, `${name}.png`);
    await page.screenshot({ path: file });
    report.screenshots.push(path.relative(ROOT, file));
  };
  const settle = (page, ms = 300) => page.waitForTimeout(ms);
  const finish = async (name, ctx) => {
    check(
      ctx.errors.length === 0,
      `${name}: no console errors, CSP violations or dialogs${ctx.errors.length ? ' — ' + ctx.errors.slice(0, 5).join(' | ') : ''}`,
    );
    await ctx.context.close();
  };
  const allDone = (page, n) =>
    page.waitForFunction((k) => document.querySelectorAll('.comp-col .col-status.done, .comp-col .col-status.error').length >= k, n, {
      timeout: 120000,
    });
  const activeTab = (page) => page.evaluate(() => document.querySelector('vscode-tab-header[active]')?.textContent);
  const tab = async (page, title) => {
    await page.locator('vscode-tab-header', { hasText: title }).click();
    await settle(page, 150);
  };

  for (const theme of only) {
    const ctx = await open(`theme=${theme}&payload=stories`);
    const { page, g } = ctx;
    await page.waitForSelector('.lc');
    g.setPace(45);
    await g.start({ prompt: PROMPT, strategies: gen.defaults, maxNewTokens: 40 });
    await page.waitForFunction(() => (document.querySelectorAll('.comp-col')[1]?.querySelectorAll('.ctok').length ?? 0) >= 14, null, {
      timeout: 120000,
    });
    if (theme === 'dark') check((await activeTab(page)) === 'Completions', 'a completion batch brings the Completions tab forward');
    check((await page.locator('.comp-col').count()) === 6, `${theme}: six columns, one per strategy`);
    check(await page.locator('.comp-status vscode-progress-ring').isVisible(), `${theme}: a progress indicator while generating`);
    await shot(page, `${theme}-completions-streaming`);
    g.setPace(0);
    await g.idle();
    await allDone(page, 6);
    await settle(page, 400);
    const metrics = await page.locator('.comp-col .comp-metrics:not([hidden])').count();
    check(metrics === 6, `${theme}: metrics under every finished completion (${metrics})`);
    await shot(page, `${theme}-completions-done`);

    // the decoding walk of the greedy column, from a token click
    await page.locator('.comp-col').nth(0).locator('.ctok[data-step="6"]').click();
    await page.waitForSelector('.comp-walk:not([hidden]) .walk-row');
    check(await page.locator('.walk-row[data-step="6"].sel').isVisible(), `${theme}: clicking a token opens the walk at its step`);
    await shot(page, `${theme}-completions-walk`);

    // fork from an alternative at step 6
    const before = await page.evaluate(() => window.__TD_RECORD__.generate.length);
    await page.locator('.walk-row[data-step="6"] .walk-alt:not(.chosen):not([disabled])').first().click();
    await page.waitForFunction((n) => window.__TD_RECORD__.generate.length > n, before);
    await g.idle();
    await page.waitForSelector('.comp-col .comp-entry.fork .comp-metrics:not([hidden])', { timeout: 60000 });
    await settle(page, 300);
    const req = await page.evaluate(() => window.__TD_RECORD__.generate.at(-1));
    check(
      req.forcedIds.length === 7 && req.forkOf?.step === 6 && req.strategies.length === 1 && req.strategies[0].label === 'greedy',
      `${theme}: a fork sends the chosen ids up to the step + the alternative, same strategy (${JSON.stringify({ ...req, prompt: '…' })})`,
    );
    check(await page.locator('.walk-row[data-step="6"] .walk-alt.forked').isVisible(), `${theme}: the walk marks the forked alternative`);
    check(
      ((await page.locator('.comp-entry.fork .fork-label').first().textContent()) ?? '').startsWith('forked at step 6:'),
      `${theme}: the fork is a branch under its parent with its label`,
    );
    await shot(page, `${theme}-completions-fork`);

    if (theme === 'dark') await darkExtras(ctx);
    await finish(`completions/${theme}`, ctx);
  }

  async function darkExtras({ page, g }) {
    // hover card of a token
    await page.locator('.comp-col').nth(3).locator('.ctok[data-step="4"]').hover();
    await settle(page, 200);
    check(await page.locator('.td-tooltip:not([hidden]) .tt-top').isVisible(), 'hovering a token shows p, entropy and the alternatives');
    await shot(page, 'dark-completions-hover');
    await page.mouse.move(5, 5);

    // a fork of the fork
    await page.locator('.walk-alt.forked').first().click();
    await settle(page, 200);
    await page.locator('.walk-row[data-step="12"] .walk-alt:not(.chosen):not([disabled])').first().click();
    await page.waitForFunction(() => document.querySelectorAll('.comp-entry.fork .comp-entry.fork').length > 0, null, { timeout: 60000 });
    await g.idle();
    await settle(page, 400);
    await shot(page, 'dark-completions-fork-nested');

    // settings form: an invalid value, then a valid edit, then Generate
    const col = page.locator('.comp-col').nth(2);
    await col.locator('.col-head .tool-btn').first().click();
    const topK = col.locator('input[id$="-topK"]');
    await topK.fill('abc');
    await settle(page, 100);
    check(
      (await topK.getAttribute('class')).includes('invalid') && ((await col.locator('.form-error').textContent()) ?? '').length > 0,
      'form: an invalid top-k is flagged',
    );
    await shot(page, 'dark-completions-form-invalid');
    await topK.fill('20');
    await settle(page, 150);
    check(
      (await col.locator('.col-title').textContent()) === 'top-k 20' && (await col.locator('.col-edited').isVisible()),
      'form: a valid edit relabels the column and marks it edited',
    );
    await shot(page, 'dark-completions-form');
    await page.locator('.comp-num').fill('24');
    g.setPace(0);
    await page.locator('.comp-btn.primary').click();
    await page.waitForFunction(() => window.__TD_RECORD__.generate.at(-1)?.maxNewTokens === 24);
    const gen2 = await page.evaluate(() => window.__TD_RECORD__.generate.at(-1));
    check(
      gen2.prompt === null && gen2.strategies.length === 6 && gen2.strategies[2].topK === 20 && gen2.strategies[2].kind === 'sample',
      'Generate sends the edited strategies on the last prompt',
    );
    await g.idle();
    await allDone(page, 6);
    check(!(await col.locator('.col-edited').isVisible()), 'after Generate the column is no longer marked edited');

    // remove and add columns
    await page.locator('.comp-col').nth(5).locator('.col-head .tool-btn').nth(1).click();
    await settle(page, 150);
    check((await page.locator('.comp-col').count()) === 5, 'a column can be removed');
    await page.locator('select.comp-add').selectOption({ label: 'beam 4' });
    await settle(page, 150);
    check(
      (await page.locator('.comp-col').count()) === 6 && (await page.locator('select.comp-add').isDisabled()),
      'a preset column can be added, up to six',
    );

    // Stop
    g.setPace(60);
    await page.locator('.comp-num').fill('120');
    await page.locator('.comp-btn.primary').click();
    await page.waitForFunction(() => (document.querySelectorAll('.comp-col')[0]?.querySelectorAll('.ctok').length ?? 0) >= 5, null, {
      timeout: 60000,
    });
    await page.locator('.comp-bar .tool-btn', { hasText: 'Stop' }).click();
    await g.idle();
    await settle(page, 400);
    const stopped = await page.evaluate(() => ({
      stops: window.__TD_RECORD__.stops.length,
      notRun: document.querySelectorAll('.col-status.stopped').length,
      cancelled: [...document.querySelectorAll('.m-value')].some((n) => n.textContent.startsWith('stopped')),
      ring: !!document.querySelector('.comp-status vscode-progress-ring'),
    }));
    check(
      stopped.stops === 1 && stopped.notRun === 5 && stopped.cancelled && !stopped.ring,
      `Stop cancels the batch (${JSON.stringify(stopped)})`,
    );
    await shot(page, 'dark-completions-stopped');
    g.setPace(0);

    // an engine error in one column
    await g.start({
      prompt: null,
      strategies: [{ label: 'top-p 0 (invalid)', kind: 'sample', topP: 0 }, gen.defaults[0]],
      maxNewTokens: 16,
    });
    await g.idle();
    await settle(page, 300);
    check(
      ((await page.locator('.comp-col').nth(0).locator('.comp-note.error').textContent()) ?? '').includes('top-p'),
      'an engine error shows in its column',
    );
    await shot(page, 'dark-completions-error');

    // Analyze, Insert, Copy
    const entry = page.locator('.comp-col').nth(1).locator('.comp-entry').first();
    await entry.locator('.comp-actions .tool-btn').nth(3).click();
    await settle(page, 200);
    check(((await page.locator('.comp-status').textContent()) ?? '').startsWith('Copied'), 'Copy copies the completion');
    await entry.locator('.comp-actions .tool-btn').nth(2).click();
    await page.waitForFunction(() => window.__TD_RECORD__.inserts.length === 1);
    await entry.locator('.comp-actions .tool-btn').nth(1).click();
    await page.waitForFunction(() => window.__TD_RECORD__.analyses.length === 1);
    const sent = await page.evaluate(() => ({ a: window.__TD_RECORD__.analyses[0], i: window.__TD_RECORD__.inserts[0] }));
    check(
      sent.a.startsWith(PROMPT) && sent.a === PROMPT + sent.i && sent.i.length > 0,
      'Analyze sends prompt + completion; Insert the completion',
    );
    await settle(page, 200);
    check((await activeTab(page)) === 'Logit lens', 'Analyze switches to the Logit lens tab');
    await tab(page, 'Completions');

    // hostile token text, steps out of order and after done
    await page.evaluate(
      ({ texts }) => {
        const post = window.__TD_HOST__.post;
        const step = (i) => ({
          id: 100 + i,
          text: texts[i % texts.length],
          prob: [0.9, 0.3, 0.05, 0.002][i % 4],
          entropy: 1.5,
          top: [
            { id: 100 + i, text: texts[i % texts.length], prob: 0.5 },
            { id: 7, text: '<b>bold</b>', prob: 0.2 },
            { id: 8, text: '\u202Eabc', prob: 0.1 },
          ],
        });
        const label = '<img src=x onerror="window.__pwned=3">';
        post({
          type: 'completionBatch',
          batch: {
            batchId: 1000,
            prompt: '<script>window.__pwned=4</script>\u202E',
            strategies: [{ label, kind: 'greedy' }],
            maxNewTokens: 40,
            forkOf: null,
            forcedIds: [],
          },
        });
        const n = texts.length * 2;
        const order = [...Array(n).keys()].reverse(); // last step first
        for (const i of order) post({ type: 'completionStep', batchId: 1000, index: 0, stepIndex: i, step: step(i) });
        const steps = [...Array(n).keys()].map(step);
        post({
          type: 'completionDone',
          batchId: 1000,
          index: 0,
          completion: {
            strategy: { label, kind: 'greedy' },
            promptIds: [1],
            steps,
            text: steps.map((s) => s.text).join(''),
            stopReason: 'eos',
            metrics: { distinct: [0.5, 0.6, 0.7, 0.8], repetitionRate: 1, meanSurprisalBits: 3.2, loopStart: { step: 0, period: 8 } },
            score: null,
            timings: { totalMs: 10, firstStepMs: 2, perTokenMs: 0.5 },
          },
        });
        post({ type: 'completionStep', batchId: 1000, index: 0, stepIndex: 3, step: step(5) }); // after done: ignored
      },
      { texts: HOSTILE_STEPS },
    );
    await settle(page, 500);
    await page.locator('.comp-col .ctok[data-step="0"]').first().click();
    await settle(page, 200);
    await page.locator('.comp-col .ctok[data-step="1"]').first().hover();
    await settle(page, 200);
    await shot(page, 'dark-completions-hostile');
    const probe = await page.evaluate(() => ({
      pwned: window.__pwned,
      imgs: document.querySelectorAll('img').length,
      bolds: document.querySelectorAll('.comp-view b').length,
      tokens: document.querySelectorAll('.comp-col .ctok').length,
      literal: document.querySelector('.comp-col .comp-text')?.textContent?.includes('<img·src=x'),
      title: document.querySelector('.comp-col .col-title')?.textContent?.startsWith('<img'),
      step3: document.querySelector('.comp-col .ctok[data-step="3"]')?.textContent,
      rawBidi: /[\u202a-\u202e\u2066-\u2069]/.test(document.querySelector('.comp-view').innerText),
    }));
    check(
      probe.pwned === undefined && probe.imgs === 0 && probe.bolds === 0 && probe.literal && probe.title && !probe.rawBidi,
      `hostile completion text is shown literally, nothing runs (${JSON.stringify(probe)})`,
    );
    check(probe.tokens === HOSTILE_STEPS.length * 2 && probe.step3 === '∅', 'steps out of order and after done assemble correctly');
  }

  // Completions before any analysis, in a narrow panel
  {
    const ctx = await open('theme=dark&payload=none', { width: 620, height: 760 });
    const { page, g } = ctx;
    await settle(page, 300);
    await g.start({ prompt: PROMPT, strategies: gen.defaults.slice(0, 3), maxNewTokens: 30 });
    await g.idle();
    await allDone(page, 3);
    await settle(page, 300);
    check(await page.locator('.comp-col').first().isVisible(), 'completions show without an analysis');
    await page.locator('.comp-col').nth(1).locator('.comp-actions .tool-btn').first().click();
    await settle(page, 300);
    await shot(page, 'narrow-completions');
    await finish('completions/narrow', ctx);
  }
}

// ---- standalone ---------------------------------------------------------------------------
if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const only = args.includes('--only') ? args[args.indexOf('--only') + 1].split(',') : ['light', 'dark', 'hc'];
  if (!args.includes('--no-build')) {
    buildForDev();
  }
  fs.mkdirSync(PAYLOAD_DIR, { recursive: true });
  // Remade when the engine in out/ (or its maker) changed since it was made.
  if (args.includes('--fresh') || !payloadCurrent('stories') || !payloadCurrent('xss')) {
    const real = await realPayload();
    writeBundle(path.join(PAYLOAD_DIR, 'stories.json'), real);
    writeBundle(path.join(PAYLOAD_DIR, 'xss.json'), hostilePayload(real));
    markPayloadsCurrent(['stories', 'xss']);
  }
  const failures = [];
  const report = { screenshots: [], checks: [] };
  const check = (ok, what) => {
    report.checks.push({ ok, what });
    console.log(`${ok ? '  ok  ' : '  FAIL'} ${what}`);
    if (!ok) failures.push(what);
  };
  const server = await startServer();
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--no-first-run'],
  });
  try {
    await runCompletions({ browser, origin: server.origin, only, check, report });
  } catch (e) {
    check(false, `completions run threw: ${e.stack ?? e}`);
  } finally {
    await browser.close();
    await server.close();
  }
  fs.writeFileSync(path.join(OUT_DIR, 'report-completions.json'), JSON.stringify(report, null, 2));
  console.log(`Screenshots: ${report.screenshots.length} in ${path.relative(ROOT, OUT_DIR)}/`);
  console.log(failures.length ? `COMPLETIONS DEV: FAIL (${failures.length})` : 'COMPLETIONS DEV: PASS');
  process.exit(failures.length ? 1 : 0);
}
