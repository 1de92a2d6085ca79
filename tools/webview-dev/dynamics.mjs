// The dynamics tabs in the dev harness (Attention, Proximity, The Ball, Clusters, Diff) and the
// CLI's standalone HTML report. A real stories260K analysis (or the tiny-llama fixture) with
// attention patterns; the engine's answers to the tabs' requests are precomputed with
// Engine.query (the same code as src/cli/report.ts) and served by the mock host. Screenshots
// of every tab in light, dark and high contrast; checks of interactions, exports, selection
// sync, hostile text, the notes shown without data, and the report opened from file:// offline.
//   node tools/webview-dev/dynamics.mjs [--no-build] [--fresh] [--only light,dark,hc]
// run.mjs calls runDynamics() with its browser and server.
/* global window, document, structuredClone */ // window/document: inside page.evaluate callbacks
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { HOSTILE, ROOT, SAMPLE_TEXT, buildForDev, decodeTyped, modelDir, syntheticPayload, writeBundle } from './payloads.mjs';
import { OUT_DIR, PAYLOAD_DIR, markPayloadsCurrent, payloadCurrent, startServer } from './serve.mjs';

const require = createRequire(import.meta.url);

export const DIFF_TEXTS = [
  'Once upon a time, there was a little girl named Lily. She loved to play with her ball in the',
  'Once upon a time, there was a little boy named Tom. He wanted to eat a big red apple from the',
];

/**
 * Analyses the sample text with patterns and precomputes every answer the tabs ask for
 * (all positions' proximity, all rows' clusters), plus a prompt diff. Writes the payloads
 * `dynamics` (everything), `dynamics-nopat` (no attention patterns: the notes) and the report.
 */
export async function makeDynamicsPayloads({ maxTokens = 120 } = {}) {
  const { Engine } = require(path.join(ROOT, 'out/src/engine/engine.js'));
  const { analysisToPayload } = require(path.join(ROOT, 'out/src/shared/payload.js'));
  const { reportData, writeReport } = require(path.join(ROOT, 'out/src/cli/report.js'));
  const { dir, name } = modelDir();
  const engine = new Engine();
  try {
    await engine.load({ dir, name, threads: 2, executionProvider: 'cpu', patterns: true });
    const a = await engine.analyze({ text: SAMPLE_TEXT, topK: 10, maxTokens, patterns: true }, undefined, 1);
    const payload = analysisToPayload(a, 1, { uri: 'untitled:story.txt', fileName: 'story.txt', offset: 0 });
    const data = await reportData(engine, a, 1, { allProximity: true, allClusters: true });
    const reportFile = path.join(OUT_DIR, 'report.html');
    fs.mkdirSync(OUT_DIR, { recursive: true });
    const bytes = await writeReport(reportFile, engine, a, 1);
    const [ta, tb] = DIFF_TEXTS;
    const da = await engine.analyze({ text: ta, topK: 10, maxTokens, patterns: false }, undefined, 2);
    const db = await engine.analyze({ text: tb, topK: 10, maxTokens, patterns: false }, undefined, 3);
    const diff = await engine.query({ type: 'diff', runId: 2, otherRunId: 3 });
    // the Diff tab's activation patching: A clean, every site and direction
    const patching = {};
    for (const site of ['resid_pre', 'attn_out', 'mlp_out', 'z'])
      for (const direction of ['denoise', 'noise'])
        patching[`${site}.${direction}`] = {
          cleanRunId: 2,
          result: await engine.query({ type: 'patching', cleanRunId: 2, corruptedRunId: 3, direction, site }),
        };
    // the strongest cell of each site's denoising heatmap as a whole run (Open strongest cell):
    // B (corrupted) analysed unpatched and patched there from A, as the host's openPatched does
    const { strongestCell } = require(path.join(ROOT, 'out/src/shared/interventions.js'));
    const opened = {};
    let nextId = 10;
    // (and two cells of mlp_out picked together: the strongest one and the same position a layer below)
    const cases = ['resid_pre', 'attn_out', 'mlp_out', 'z'].flatMap((site) => {
      const best = strongestCell(patching[`${site}.denoise`].result);
      if (!best) return [];
      const one = [{ layer: best.layer, col: best.col }];
      return site === 'mlp_out' && best.layer > 0
        ? [
            [site, one],
            [site, [...one, { layer: best.layer - 1, col: best.col }]],
          ]
        : [[site, one]];
    });
    for (const [site, cells] of cases) {
      const sourceIds = da.tokens.map((t) => t.id);
      const patch =
        site === 'z'
          ? { sourceIds, site, cells: [], heads: cells.map((c) => ({ layer: c.layer, head: c.col })) }
          : { sourceIds, site, cells: cells.map((c) => ({ layer: c.layer, pos: c.col })) };
      const req = { text: tb, topK: 10, maxTokens, patterns: true };
      const [cleanId, patchedId] = [nextId++, nextId++];
      const unpatched = await engine.analyze(req, undefined, cleanId);
      const patched = await engine.analyze({ ...req, interventions: { patch }, pcaAxesOf: cleanId }, undefined, patchedId);
      opened[`${site}.denoise.${cells.map((c) => `${c.layer}.${c.col}`).join('+')}`] = {
        clean: analysisToPayload(unpatched, cleanId, null),
        patched: analysisToPayload(patched, patchedId, null),
      };
    }
    const promptDiff = {
      type: 'promptDiff',
      a: analysisToPayload(da, 2, null),
      b: analysisToPayload(db, 3, null),
      diff,
      labels: ['story.txt (selection)', 'clipboard'],
    };
    const dynamics = {
      headStats: data.headStats,
      attentionNote: data.attentionNote,
      patterns: data.patterns,
      patternsNote: data.patternsNote,
      proximity: data.proximity,
      clusters: data.clusters,
      promptDiff,
      patching,
      opened,
    };
    writeBundle(path.join(PAYLOAD_DIR, 'dynamics.json'), { payload, similarity: data.similarity, dynamics });
    writeBundle(path.join(PAYLOAD_DIR, 'dynamics-nopat.json'), {
      payload,
      similarity: data.similarity,
      dynamics: {
        ...dynamics,
        headStats: null,
        patterns: null,
        attentionNote: 'Attention patterns were not computed for this run (setting transformerDynamics.attentionPatterns).',
      },
    });
    // hostile vocabulary and token text on every dynamics tab
    const hostile = structuredClone({ payload, dynamics });
    hostile.payload.model.name = '<img src=x onerror="window.__pwned=6">model';
    hostile.payload.tokens.forEach((t, i) => {
      if (i > 0 && i % 3 === 0) t.text = HOSTILE[(i / 3) % HOSTILE.length];
    });
    for (const id of Object.keys(hostile.payload.vocab)) hostile.payload.vocab[id] = HOSTILE[Number(id) % HOSTILE.length];
    for (const r of Object.values(hostile.dynamics.proximity))
      for (const id of Object.keys(r.labels)) r.labels[id] = HOSTILE[Number(id) % HOSTILE.length];
    for (const side of ['a', 'b'])
      for (const id of Object.keys(hostile.dynamics.promptDiff[side].vocab))
        hostile.dynamics.promptDiff[side].vocab[id] = HOSTILE[Number(id) % HOSTILE.length];
    hostile.dynamics.promptDiff.labels = [HOSTILE[0], HOSTILE[5]];
    writeBundle(path.join(PAYLOAD_DIR, 'dynamics-xss.json'), {
      payload: hostile.payload,
      similarity: data.similarity,
      dynamics: hostile.dynamics,
    });
    markPayloadsCurrent(['dynamics', 'dynamics-nopat', 'dynamics-xss']);
    return { model: name, reportFile, reportBytes: bytes, tokens: payload.tokens.length };
  } finally {
    await engine.dispose();
  }
}

/** mulberry32 */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * `dynamics-big`: the synthetic 1024-token, 32-layer payload with made-up answers at full
 * scale — 32 × 32 heads, a 32 000-token vocabulary, clusters of 1024 positions — to check
 * that the tabs stay responsive. Patterns for a few heads only (the rest answer with a note).
 */
export function makeBigDynamicsPayload() {
  const { averageLinkage, cosineDistance } = require(path.join(ROOT, 'out/src/engine/analysis/clusters.js'));
  const bigFile = path.join(PAYLOAD_DIR, 'big.json');
  const big = fs.existsSync(bigFile) ? decodeTyped(fs.readFileSync(bigFile, 'utf8')) : syntheticPayload();
  const p = big.payload;
  const { n_layers: L, n_heads: H, pos: T } = p.dims;
  const V = p.model.d_vocab;
  const rand = rng(11);
  const D = 64;
  const kernel = new Float32Array(L * H * (D + 1));
  const kernelNorm = new Float32Array(L * H * (D + 1));
  const selfBias = new Float32Array(L * H);
  const induction = new Float32Array(L * H);
  for (let h = 0; h < L * H; h++) {
    const peak = Math.floor(rand() * 4);
    const sharp = rand() * 3;
    for (let d = 0; d <= D; d++) {
      const v = Math.exp(-sharp * Math.abs(d - peak)) * 0.5 + 0.01 * rand();
      kernel[h * (D + 1) + d] = v;
      kernelNorm[h * (D + 1) + d] = v * (T / 2);
    }
    selfBias[h] = (rand() - 0.6) * 0.3;
    induction[h] = rand() ** 3;
  }
  const headStats = { n_layers: L, n_heads: H, maxOffset: D, kernel, kernelNorm, selfBias, induction };
  const patterns = {};
  for (const [l, h] of [
    [0, 0],
    [L - 1, H - 1],
  ]) {
    const m = new Float32Array(T * T);
    for (let q = 0; q < T; q++) {
      let s = 0;
      for (let k = 0; k <= q; k++) s += m[q * T + k] = k === q - 1 ? 20 : rand();
      for (let k = 0; k <= q; k++) m[q * T + k] /= s;
    }
    patterns[`${l}.${h}`] = m;
  }
  const cos = new Float32Array(V);
  const logits = new Float32Array(V);
  const norms = new Float32Array(V);
  for (let t = 0; t < V; t++) {
    cos[t] = (rand() + rand() + rand() - 1.5) * 0.25;
    norms[t] = 0.8 + rand() * 0.6;
    logits[t] = 18 * norms[t] * cos[t];
  }
  const top = (v) =>
    Array.from(v.keys())
      .sort((a, b) => v[b] - v[a])
      .slice(0, 10);
  const byLogit = top(logits);
  const byCos = top(cos);
  const labels = {};
  for (const t of [...byLogit, ...byCos]) labels[t] = p.vocab[t] ?? `tok${t}`;
  const proximity = {
    [T - 1]: {
      pos: T - 1,
      logits,
      cos,
      unembedNorms: norms,
      xNorm: 18,
      spearman: 0.93,
      k: 10,
      topByLogit: byLogit,
      topByCos: byCos,
      topkOverlap: byLogit.filter((t) => byCos.includes(t)).length / 10,
      labels,
    },
  };
  const sim = big.similarity[L];
  const d = averageLinkage(cosineDistance(sim, T), T);
  const clusters = { [L]: { row: L, similarity: sim, order: d.order, merges: d.merges } };
  writeBundle(path.join(PAYLOAD_DIR, 'dynamics-big.json'), {
    payload: p,
    similarity: { [L]: sim },
    dynamics: {
      headStats,
      attentionNote: null,
      patterns,
      patternsNote: 'Only two heads have patterns in this synthetic payload.',
      proximity,
      clusters,
    },
  });
  markPayloadsCurrent(['dynamics-big']);
}

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--use-angle=swiftshader',
  '--enable-unsafe-swiftshader',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Runs the dynamics scenarios on `browser` against the dev server at `origin`. */
export async function runDynamics({ browser, origin, only = ['light', 'dark', 'hc'], check, report, reportFile }) {
  async function open(url, { width = 1280, height = 800, colorScheme } = {}) {
    const context = await browser.newContext({ viewport: { width, height }, deviceScaleFactor: 1, acceptDownloads: true, colorScheme });
    const page = await context.newPage();
    const errors = [];
    const requests = [];
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    page.on('dialog', (d) => {
      errors.push(`dialog opened: ${d.message()}`);
      void d.dismiss();
    });
    page.on('request', (r) => requests.push(r.url()));
    page.on('requestfailed', (r) => errors.push(`request failed: ${r.url().slice(0, 120)} ${r.failure()?.errorText ?? ''}`));
    await page.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (e) => console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`));
    });
    await page.goto(url.startsWith('file:') ? url : `${origin}/?${url}`);
    return { page, context, errors, requests };
  }
  const shot = async (page, name) => {
    const file = path.join(OUT_DIR, `${name}.png`);
    await page.screenshot({ path: file });
    report.screenshots.push(path.relative(ROOT, file));
  };
  const settle = (page, ms = 300) => page.waitForTimeout(ms);
  const tab = async (page, title) => {
    await page.locator('vscode-tab-header', { hasText: title }).click();
    await settle(page, 200);
  };
  const finish = async (name, ctx) => {
    check(
      ctx.errors.length === 0,
      `${name}: no console errors, CSP violations, failed requests or dialogs${ctx.errors.length ? ' — ' + ctx.errors.slice(0, 5).join(' | ') : ''}`,
    );
    await ctx.context.close();
  };

  /** Visits every dynamics tab and waits until each has drawn. */
  async function allTabs(page, prefix, { diff = true } = {}) {
    await tab(page, 'Attention');
    await page.waitForSelector('.att-svg .att-cell', { timeout: 30000 });
    await page.waitForSelector('.att-heat .main-svg', { timeout: 30000 });
    await settle(page, 600);
    await shot(page, `${prefix}-attention`);
    await tab(page, 'Proximity');
    await page.waitForSelector('.prox-canvas:not([hidden])', { timeout: 30000 });
    await page.waitForSelector('.prox-layers .main-svg', { timeout: 30000 });
    await settle(page, 500);
    await shot(page, `${prefix}-proximity`);
    await tab(page, 'The Ball');
    await page.waitForSelector('.ball-after .main-svg', { timeout: 30000 });
    await settle(page, 600);
    await shot(page, `${prefix}-ball`);
    await tab(page, 'Clusters');
    await page.waitForSelector('.cl-heat .main-svg', { timeout: 30000 });
    await settle(page, 700);
    await shot(page, `${prefix}-clusters`);
    if (diff) {
      await page.evaluate(() => window.__TD_HOST__.post(window.__TD_HOST__.dynamics.promptDiff));
      await page.waitForSelector('.diff-cos .main-svg', { timeout: 30000 });
      await settle(page, 600);
      await shot(page, `${prefix}-diff`);
    }
  }

  for (const theme of only) {
    const ctx = await open(`theme=${theme}&payload=dynamics`);
    const { page } = ctx;
    await page.waitForSelector('.lc');
    await allTabs(page, `${theme}-dyn`);
    if (theme === 'dark') {
      check((await page.locator('vscode-tab-header[active]').textContent()) === 'Diff', 'a promptDiff message brings the Diff tab forward');
      check((await page.locator('.diff-table tbody tr').count()) > 2, 'diff: one table row per layer');
      check(await page.locator('.td-strip').isHidden(), "diff: the analysis's token strip is hidden (it shows other texts)");
      const meta = await page.locator('.td-header .meta').textContent();
      check(/^\d+ layers · d_model \d+$/.test(meta), `diff: the header names the model only ("${meta}")`);
      check(
        (await page.locator('.td-header .notice').isHidden()) &&
          (await page.locator('.td-header .tool-btn', { hasText: 'JSON' }).count()) === 1 &&
          (await page.locator('.td-header .tool-btn', { hasText: 'JSON' }).isHidden()),
        'diff: no truncation notice or export of the analysis',
      );
      const selBefore = await page.locator('.tok.sel').getAttribute('data-pos');
      await page.keyboard.press('ArrowLeft');
      check((await page.locator('.tok.sel').getAttribute('data-pos')) === selBefore, 'diff: ← does not move the hidden selection');
      // activation patching of each site: the request names it, the heatmap and its text say it
      for (const [button, site, what] of [
        ['residual', 'resid_pre', 'the residual stream entering each layer (resid_pre)'],
        ['MLP', 'mlp_out', 'each layer’s MLP output (mlp_out)'],
        ['attention', 'attn_out', 'each layer’s attention output (attn_out)'],
      ]) {
        await page.locator('.pat-bar [aria-label="Patched activation"] .seg', { hasText: button }).click();
        check(await page.locator('.pat-heat').isHidden(), `patching ${site}: no heatmap of another site on show`);
        await page.getByRole('button', { name: /Run patching/ }).click();
        await page.waitForSelector('.pat-heat:not([hidden]) .heatmaplayer', { timeout: 30000 });
        const sent = await page.evaluate(() => window.__TD_RECORD__.patching.at(-1));
        check(sent.site === site && sent.direction === 'denoise', `patching ${site}: the request names the site (${JSON.stringify(sent)})`);
        check(
          (await page.locator('.pat-summary').textContent()).includes(`Patching ${what} of B (corrupted)`),
          `patching ${site}: the summary`,
        );
        check((await page.locator('.pat-heat .ytitle').textContent()) === `layer (${site})`, `patching ${site}: the layer axis`);
        check(
          (await page.locator('.pat-bar [aria-label="Patched activation"] .seg.on').textContent()) === button,
          `patching ${site}: its button is on`,
        );
        if (site === 'mlp_out') {
          await page.locator('.pat-card').scrollIntoViewIfNeeded();
          await shot(page, 'dark-dyn-patching-mlp');
        }
      }
      // all three: one sweep per site, three heatmaps one above the other on one colour scale
      const before = await page.evaluate(() => window.__TD_RECORD__.patching.length);
      await page.locator('.pat-bar [aria-label="Patched activation"] .seg', { hasText: 'all three' }).click();
      await page.getByRole('button', { name: /Run patching/ }).click();
      await page.waitForFunction(() => /^3 heatmaps: /.test(document.querySelector('.pat-bar .chart-status')?.textContent ?? ''), null, {
        timeout: 30000,
      });
      const sent = await page.evaluate((n) => window.__TD_RECORD__.patching.slice(n), before);
      check(
        JSON.stringify(sent.map((p) => p.site)) === JSON.stringify(['resid_pre', 'attn_out', 'mlp_out']),
        `patching all three: one request per site (${JSON.stringify(sent.map((p) => p.site))})`,
      );
      check(
        sent.slice(1).every((p) => p.target === sent[1].target && p.contrast === sent[1].contrast && p.target !== undefined),
        'patching all three: the later sweeps take the first one’s target and contrast',
      );
      const fig = await page.locator('.pat-heat .js-plotly-plot').evaluate((p) => ({
        traces: p.data.map((t) => [t.yaxis, t.showscale]),
        titles: [...p.querySelectorAll('.ytitle, .y2title, .y3title')].map((t) => t.textContent),
      }));
      check(
        JSON.stringify(fig.traces) ===
          JSON.stringify([
            ['y', true],
            ['y2', false],
            ['y3', false],
          ]) && JSON.stringify(fig.titles) === JSON.stringify(['layer (resid_pre)', 'layer (attn_out)', 'layer (mlp_out)']),
        `patching all three: three heatmaps, one colour bar (${JSON.stringify(fig)})`,
      );
      const plotH = await page.locator('.pat-heat .chart-plot').evaluate((e) => e.getBoundingClientRect().height);
      check(plotH >= 700, `patching all three: the chart is ${Math.round(plotH)} px high (at least 700)`);
      await page.locator('.pat-heat').scrollIntoViewIfNeeded();
      await shot(page, 'dark-dyn-patching-all');
      // heads: a layer × head heatmap
      await page.locator('.pat-bar [aria-label="Patched activation"] .seg', { hasText: 'heads' }).click();
      await page.getByRole('button', { name: /Run patching/ }).click();
      await page.waitForSelector('.pat-heat:not([hidden]) .heatmaplayer', { timeout: 30000 });
      const zSent = await page.evaluate(() => window.__TD_RECORD__.patching.at(-1));
      const zFig = await page.locator('.pat-heat .js-plotly-plot').evaluate((p) => ({
        traces: p.data.length,
        cols: p.data[0].z[0].length,
        x: p.querySelector('.xtitle')?.textContent,
        y: p.querySelector('.ytitle')?.textContent,
      }));
      const nHeads = await page.evaluate(() => window.__TD_HOST__.dynamics.patching['z.denoise'].result.n_heads);
      check(
        zSent.site === 'z' && zFig.traces === 1 && zFig.cols === nHeads && zFig.x === 'head' && zFig.y === 'layer (z)',
        `patching heads: a layer × head heatmap (${JSON.stringify({ site: zSent.site, ...zFig, nHeads })})`,
      );
      check(
        (await page.locator('.pat-summary').textContent()).includes(
          "each attention head’s output z of B (corrupted) with A (clean)'s values, one head at a time, at all its positions at once",
        ),
        'patching heads: the summary',
      );
      await page.locator('.pat-heat').scrollIntoViewIfNeeded();
      await shot(page, 'dark-dyn-patching-heads');
      await page.locator('.pat-bar [aria-label="Patched activation"] .seg', { hasText: 'residual' }).click();
      check(await page.locator('.pat-heat').isHidden(), 'patching: back to one site, the three heatmaps are not on show');
      // a setting changed while a sweep runs: its heatmap does not answer it, so it is not shown
      await page.evaluate(() => {
        [...document.querySelectorAll('.pat-bar button')].find((b) => /Run patching/.test(b.textContent)).click();
        document.querySelector('.pat-bar [aria-label="Direction"] .seg[data-value="noise"]').click();
      });
      await page.waitForFunction(() => !document.querySelector('.pat-bar .tool-btn.primary')?.disabled, null, { timeout: 30000 });
      await page.waitForTimeout(300);
      check(
        (await page.locator('.pat-heat').isHidden()) && (await page.locator('.pat-bar .chart-status').textContent()) === '',
        'patching: a sweep whose direction changed while it ran is not shown',
      );
      await tab(page, 'Logit Lens');
      check(await page.locator('.td-strip').isVisible(), 'the token strip is back on the Logit Lens');
      check(/^\d+ tokens · /.test(await page.locator('.td-header .meta').textContent()), 'with the token count in the header');
      check(
        (await page.locator('.td-header .notice').isVisible()) &&
          (await page.locator('.td-header .tool-btn', { hasText: 'JSON' }).isVisible()),
        'and the truncation notice and the export buttons',
      );
      check(await page.locator('.tok.sel').isVisible(), 'with the selected token in view');
      // a heatmap cell as a whole run: Open strongest cell (MLP) → B patched there, in every view
      await tab(page, 'Diff');
      await page.locator('.pat-bar [aria-label="Direction"] .seg', { hasText: 'denoise' }).click();
      await page.locator('.pat-bar [aria-label="Patched activation"] .seg', { hasText: 'MLP' }).click();
      check(await page.getByRole('button', { name: /Open strongest cell/ }).isHidden(), 'open: no button before a heatmap');
      await page.getByRole('button', { name: /Run patching/ }).click();
      await page.waitForSelector('.pat-heat:not([hidden]) .heatmaplayer', { timeout: 30000 });
      check(
        /Click a cell to analyse that patched run/.test(await page.locator('.pat-summary').textContent()),
        'open: the summary says a click opens a cell',
      );
      await page.getByRole('button', { name: /Open strongest cell/ }).click();
      await page.waitForSelector('.td-whatif .wi-what', { timeout: 30000 }).catch(async (e) => {
        const why = await page.evaluate(() => ({
          asked: window.__TD_RECORD__.openPatched,
          note: document.querySelector('.pat-card .dyn-note')?.textContent,
          keys: Object.keys(window.__TD_HOST__.dynamics.opened ?? {}),
        }));
        throw new Error(`${e.message}\n${JSON.stringify(why)}`);
      });
      const asked = await page.evaluate(() => window.__TD_RECORD__.openPatched.at(-1));
      const best = await page.evaluate(() => {
        const r = window.__TD_HOST__.dynamics.patching['mlp_out.denoise'].result;
        let i = 0;
        for (let j = 0; j < r.normalized.length; j++) if (r.normalized[j] > r.normalized[i] || Number.isNaN(r.normalized[i])) i = j;
        return { layer: Math.floor(i / r.pos), col: i % r.pos };
      });
      check(
        asked.site === 'mlp_out' &&
          asked.direction === 'denoise' &&
          JSON.stringify(asked.cells) === JSON.stringify([{ layer: best.layer, col: best.col }]),
        `open: the request names the strongest cell (${JSON.stringify({ asked, best })})`,
      );
      const activeTab = await page.locator('vscode-tab-header[active]').textContent();
      check(activeTab === 'Logit lens', `open: the panel goes to the logit lens (${activeTab})`);
      const what = await page.locator('.td-whatif .wi-what').textContent();
      check(
        new RegExp(`^mlp_out L${best.layer} at pos ${best.col} “.+” patched · from “Once upon a time`).test(what),
        `open: the bar says what was patched ("${what}")`,
      );
      const want = await page.evaluate((key) => {
        const o = window.__TD_HOST__.dynamics.opened[key];
        const top = (p) => {
          const L = p.lens;
          const i = ((L.rows - 1) * L.pos + L.pos - 1) * L.k;
          return [L.topIds[i], L.topProbs[i]];
        };
        return [top(o.clean), top(o.patched)];
      }, `mlp_out.denoise.${best.layer}.${best.col}`);
      const next = await page.locator('.td-whatif .wi-next').textContent();
      const pctOf = (v) => (v >= 0.1 ? `${(v * 100).toFixed(0)}%` : v >= 0.01 ? `${(v * 100).toFixed(1)}%` : `${(v * 100).toFixed(2)}%`);
      check(
        next.includes(pctOf(want[0][1])) && next.includes(pctOf(want[1][1])) && /^next: .+ → .+/.test(next),
        `open: the bar gives the top prediction after the last token, both runs ("${next}", ${JSON.stringify(want)})`,
      );
      const segs = await page.locator('.td-whatif [aria-label="Show"] .seg').allTextContents();
      check(JSON.stringify(segs) === JSON.stringify(['Unpatched', 'Patched']), `open: the bar names the runs (${JSON.stringify(segs)})`);
      await page.locator('.td-whatif [aria-label="Compare"] .seg', { hasText: 'Difference' }).click();
      await settle(page, 400);
      const legend = await page.locator('.legend', { hasText: 'Δ log p(next)' }).first().getAttribute('title');
      check(/patched − unpatched/.test(legend ?? ''), `open: the lens difference is patched − unpatched ("${legend}")`);
      await shot(page, 'dark-dyn-patched-run');
      // Trajectories: the unpatched run's path of the selected token beside the patched one, in one picture
      await page.locator('.td-whatif [aria-label="Compare"] .seg', { hasText: 'Beside' }).click();
      await tab(page, 'Trajectories');
      await page.waitForSelector('.traj-main .js-plotly-plot .scatterlayer .trace:nth-child(3)', { timeout: 30000 });
      const traj = await page.locator('.traj-main .js-plotly-plot').evaluate((p) => ({
        names: p.data.map((t) => t.name),
        x: p.layout.xaxis.title.text,
      }));
      check(
        JSON.stringify(traj.names) === JSON.stringify(['other tokens', 'selected token, patched run', 'selected token, unpatched run']) &&
          /^PC1 of the unpatched run \(\d+\.\d%\)$/.test(traj.x),
        `open: Trajectories draws both runs' paths in the unpatched run's axes (${JSON.stringify(traj)})`,
      );
      const sideNames = await page
        .locator('.traj-side .js-plotly-plot')
        .first()
        .evaluate((p) => p.data.map((t) => t.name));
      check(
        sideNames.includes('‖x‖ unpatched') && sideNames.includes('‖x‖ patched'),
        `open: the norms of both runs (${JSON.stringify(sideNames)})`,
      );
      await settle(page, 600);
      await shot(page, 'dark-dyn-patched-trajectories');
      await page.locator('.td-whatif [aria-label="Compare"] .seg', { hasText: 'Off' }).click();
      await settle(page, 300);
      check(
        (await page.locator('.traj-main .js-plotly-plot').evaluate((p) => p.data.length)) === 2,
        'open: Compare off draws the shown run alone',
      );
      await tab(page, 'Diff');
      check(await page.locator('.pat-heat:not([hidden]) .heatmaplayer').isVisible(), 'open: the Diff tab keeps its heatmap');
      // Shift+click picks cells (outlined), Open opens them patched together, Unpick forgets them
      const shiftClick = (cell) =>
        page.locator('.pat-heat .js-plotly-plot').evaluate((p, c) => {
          p.emit('plotly_click', { points: [{ curveNumber: 0, x: c.col, y: c.layer }], event: { shiftKey: true } });
        }, cell);
      const two = [
        { layer: best.layer, col: best.col },
        { layer: best.layer - 1, col: best.col },
      ];
      for (const cell of two) await shiftClick(cell);
      await settle(page, 400);
      await page.locator('.pat-heat').scrollIntoViewIfNeeded();
      await shot(page, 'dark-dyn-patching-picked');
      const outlines = await page.locator('.pat-heat .js-plotly-plot').evaluate((p) => (p.layout.shapes ?? []).length);
      const pickLabel = await page.getByRole('button', { name: /^Open 2 cells of mlp_out/ }).textContent();
      check(
        outlines === 2 && /Open 2 cells of mlp_out/.test(pickLabel),
        `pick: two cells outlined, one button opens them (${outlines}, "${pickLabel}")`,
      );
      await page.getByRole('button', { name: /^Open 2 cells of mlp_out/ }).click();
      await page.waitForFunction(() => /2 cells patched/.test(document.querySelector('.td-whatif .wi-what')?.textContent ?? ''), null, {
        timeout: 30000,
      });
      const askedTwo = await page.evaluate(() => window.__TD_RECORD__.openPatched.at(-1).cells);
      check(JSON.stringify(askedTwo) === JSON.stringify(two), `pick: the request names both cells (${JSON.stringify(askedTwo)})`);
      await tab(page, 'Diff');
      await shiftClick(two[0]); // picked again: out
      await settle(page, 300);
      check(
        (await page.getByRole('button', { name: /^Open .* cells? of mlp_out|^Open L\d+ mlp_out/ }).isVisible()) &&
          (await page.locator('.pat-heat .js-plotly-plot').evaluate((p) => (p.layout.shapes ?? []).length)) === 1,
        'pick: Shift+click on a picked cell takes it out',
      );
      await page.getByRole('button', { name: 'Unpick' }).click();
      await settle(page, 300);
      check(
        (await page.getByRole('button', { name: 'Unpick' }).isHidden()) &&
          (await page.locator('.pat-heat .js-plotly-plot').evaluate((p) => (p.layout.shapes ?? []).length)) === 0,
        'pick: Unpick forgets them',
      );
      // the keyboard: focus the heatmap, arrows move the cell, Space picks, Enter opens
      await page.locator('.pat-heat .chart-plot').focus();
      await settle(page, 300);
      const said = () => page.locator('.pat-bar .chart-status').textContent();
      check(/^L3 mlp_out · pos 33: normalised /.test(await said()), `keys: focus starts at the strongest cell ("${await said()}")`);
      await page.keyboard.press('ArrowLeft');
      await page.keyboard.press('ArrowDown');
      await settle(page, 300);
      check(/^L2 mlp_out · pos 32: /.test(await said()), `keys: ← and ↓ move a position left and a layer down ("${await said()}")`);
      const dashed = await page
        .locator('.pat-heat .js-plotly-plot')
        .evaluate((p) => (p.layout.shapes ?? []).filter((x) => x.line.dash === 'dot').length);
      check(dashed === 1, 'keys: the cell is outlined, dotted');
      await page.keyboard.press(' ');
      await settle(page, 300);
      check(await page.getByRole('button', { name: /^Open L2 mlp_out · pos 32/ }).isVisible(), 'keys: Space picks the cell');
      await page.getByRole('button', { name: 'Unpick' }).click();
      await page.locator('.pat-heat .chart-plot').focus();
      await page.keyboard.press('ArrowRight');
      await page.keyboard.press('ArrowUp');
      await page.keyboard.press('Enter');
      await page.waitForFunction(() => window.__TD_RECORD__.openPatched.length >= 3, null, { timeout: 10000 });
      const byKey = await page.evaluate(() => window.__TD_RECORD__.openPatched.at(-1).cells);
      check(JSON.stringify(byKey) === JSON.stringify([{ layer: 3, col: 33 }]), `keys: Enter opens the cell (${JSON.stringify(byKey)})`);
      await page.waitForFunction(
        () => /mlp_out L3 at pos 33/.test(document.querySelector('.td-whatif .wi-what')?.textContent ?? ''),
        null,
        {
          timeout: 30000,
        },
      );
    }
    await finish(`dynamics/${theme}`, ctx);
  }

  // ---- interactions (dark) ----------------------------------------------------------------
  {
    const ctx = await open('theme=dark&payload=dynamics');
    const { page } = ctx;
    await page.waitForSelector('.lc');
    await tab(page, 'Attention');
    await page.waitForSelector('.att-svg .att-cell');
    const cells = await page.locator('.att-svg .att-cell').count();
    const dims = await page.evaluate(() => window.__TD_HOST__.payload.dims);
    check(cells === dims.n_layers * dims.n_heads, `attention: one small multiple per head (${cells})`);
    await page.locator('.att-svg .att-cell[data-head="3"]').click();
    await page.waitForFunction(() => document.querySelector('.att-heat h3')?.textContent?.includes('L0.H3'), null, { timeout: 10000 });
    await settle(page, 500);
    check(true, 'attention: clicking a head shows its pattern');
    await page.locator('.att-svg .att-cell[data-head="3"]').hover();
    await settle(page, 150);
    check(await page.locator('.td-tooltip:not([hidden])').isVisible(), 'attention: hovering a head shows its numbers');
    await page.mouse.move(5, 5);
    await page.locator('button.seg', { hasText: 'raw' }).click();
    await page.locator('button.seg', { hasText: 'Self-bias' }).click();
    await settle(page, 400);
    await shot(page, 'dark-dyn-attention-sorted-raw');
    const firstLabel = await page.locator('.att-svg .att-cell text').first().textContent();
    check(/^L\d+\.H\d+$/.test(firstLabel ?? ''), `attention: sorted grid starts with a head label (${firstLabel})`);
    await page.locator('button.seg', { hasText: 'Table' }).click();
    await settle(page, 300);
    const rows = await page.locator('.att-table tbody tr').count();
    check(rows === dims.n_layers * dims.n_heads, `attention: the table has one row per head (${rows})`);
    await page.locator('.att-table th', { hasText: 'Induction' }).click();
    await settle(page, 300);
    check(
      (await page.locator('.att-table th[aria-sort="ascending"]').textContent()) === 'Induction',
      'attention: a column header sorts the table',
    );
    await shot(page, 'dark-dyn-attention-table');
    // the selected token follows the panel; export of the pattern and of the grid
    await page.evaluate(() => window.__TD_HOST__.post({ type: 'selectPosition', runId: window.__TD_HOST__.payload.runId, pos: 70 }));
    await settle(page, 400);
    check((await page.locator('.att-keys').textContent()).includes('pos 70'), 'attention: the selected token row follows selectPosition');
    await page.locator('.att-heat .tool-btn', { hasText: 'PNG' }).click();
    await page.waitForFunction(() => window.__TD_RECORD__.saved.length >= 1);
    await page.locator('button.seg', { hasText: 'Grid' }).click();
    await settle(page, 300);
    await page.locator('.att-grid-card .tool-btn', { hasText: 'SVG' }).click();
    await page.waitForFunction(() => window.__TD_RECORD__.saved.length >= 2);
    await page.locator('.att-grid-card .tool-btn', { hasText: 'PNG' }).click();
    await page.waitForFunction(() => window.__TD_RECORD__.saved.length >= 3);
    let saved = await page.evaluate(() => window.__TD_RECORD__.saved);
    check(saved[0].head.startsWith('data:image/png;base64,'), 'attention: the pattern exports PNG');
    check(
      saved[1].format === 'svg' && saved[1].head.startsWith('<svg'),
      `attention: the kernel grid exports SVG (${saved[1].length} chars)`,
    );
    check(saved[2].head.startsWith('data:image/png;base64,'), `attention: the kernel grid exports PNG (${saved[2].length} chars)`);

    await tab(page, 'Proximity');
    await page.waitForSelector('.prox-canvas:not([hidden])');
    await settle(page, 400);
    const box = await page.locator('.prox-canvas').boundingBox();
    // hover the first labelled top token: find it by scanning a few points near the top right
    let shown = false;
    for (let i = 0; i < 40 && !shown; i++) {
      await page.mouse.move(box.x + box.width * (0.55 + (i % 8) * 0.05), box.y + box.height * (0.08 + Math.floor(i / 8) * 0.06));
      await settle(page, 40);
      shown = await page.locator('.td-tooltip:not([hidden])').isVisible();
    }
    check(shown, 'proximity: hovering a point shows its token, logit and cosine');
    await shot(page, 'dark-dyn-proximity-hover');
    await page.mouse.move(5, 5);
    await page.keyboard.press('ArrowLeft');
    await page.waitForFunction(
      () => (window.__TD_RECORD__.dynamics ?? []).some((d) => d.method === 'proximity' && d.params.pos === 69),
      null,
      { timeout: 10000 },
    );
    check(true, '← asks for the proximity of the previous position');
    await settle(page, 500);
    await page.locator('.prox-main .tool-btn', { hasText: 'SVG' }).click();
    await page.waitForFunction(() => window.__TD_RECORD__.saved.length >= 4);
    await page.locator('.prox-main .tool-btn', { hasText: 'PNG' }).click();
    await page.waitForFunction(() => window.__TD_RECORD__.saved.length >= 5);
    saved = await page.evaluate(() => window.__TD_RECORD__.saved);
    check(saved[3].head.startsWith('<svg'), `proximity: the scatter exports SVG (${saved[3].length} chars)`);
    check(saved[4].head.startsWith('data:image/png;base64,'), `proximity: the scatter exports PNG (${saved[4].length} chars)`);

    await tab(page, 'The Ball');
    await page.waitForSelector('.ball-after .main-svg');
    await page.locator('button.seg', { hasText: 'log' }).click();
    await settle(page, 500);
    await shot(page, 'dark-dyn-ball-log');

    await tab(page, 'Clusters');
    await page.waitForSelector('.cl-heat .main-svg');
    await settle(page, 400);
    const sent = await page.evaluate(() => (window.__TD_RECORD__.dynamics ?? []).filter((d) => d.method === 'showClusters'));
    const last = sent.at(-1);
    check(
      !!last && Array.isArray(last.params.labels) && last.params.labels.length === dims.pos,
      `clusters: the soft clusters go to the editor, one label per position (${last?.params.labels?.length})`,
    );
    await page.locator('.cut-slider').fill('200');
    await settle(page, 500);
    const n1 = await page.locator('.cl-item').count();
    await page.locator('.cut-slider').fill('700');
    await settle(page, 500);
    const n2 = await page.locator('.cl-item').count();
    check(n1 !== n2 || n1 > 0, `clusters: the cut slider changes the clusters (${n1} → ${n2} groups)`);
    await shot(page, 'dark-dyn-clusters-cut');
    await page.locator('.cl-layer-slider').fill('1');
    await page.waitForFunction(() => document.querySelector('.cl-layer-name')?.textContent?.includes('layer 0'), null, { timeout: 10000 });
    await settle(page, 700);
    await shot(page, 'dark-dyn-clusters-layer0');
    await page.locator('.cl-item').first().click();
    await settle(page, 200);
    await tab(page, 'Proximity');
    await settle(page, 400);
    const cleared = await page.evaluate(() => (window.__TD_RECORD__.dynamics ?? []).filter((d) => d.method === 'showClusters').at(-1));
    check(cleared?.params.labels === null, 'clusters: leaving the tab clears the editor colours');
    await finish('dynamics interactions', ctx);
  }

  // ---- 1024 tokens, 32 × 32 heads, 32 000 tokens of vocabulary ---------------------------
  if (fs.existsSync(path.join(PAYLOAD_DIR, 'dynamics-big.json'))) {
    const ctx = await open('theme=dark&payload=dynamics-big');
    const { page } = ctx;
    await page.waitForSelector('.lc', { timeout: 60000 });
    const timed = async (title, selector, name) => {
      const t0 = Date.now();
      await tab(page, title);
      await page.waitForSelector(selector, { timeout: 60000 });
      await settle(page, 500);
      const ms = Date.now() - t0 - 500;
      report.timings ??= {};
      report.timings[`big-${name}-tab-ms`] = ms;
      await shot(page, `big-dyn-${name}`);
      return ms;
    };
    const att = await timed('Attention', '.att-svg .att-cell', 'attention');
    check((await page.locator('.att-svg .att-cell').count()) === 1024, `1024 heads: one cell each (${att} ms to draw the tab)`);
    // moving the selection must not rebuild the 1024-cell grid
    const t0 = Date.now();
    for (let i = 0; i < 10; i++) await page.keyboard.press('ArrowLeft');
    await settle(page, 200);
    const cellsKept = await page.evaluate(() => document.querySelector('.att-svg')?.isConnected === true);
    check(cellsKept, `1024 heads: ten ← presses in ${Date.now() - t0 - 200} ms, grid kept`);
    await page.evaluate(() => window.__TD_HOST__.post({ type: 'selectPosition', runId: window.__TD_HOST__.payload.runId, pos: 1023 }));
    const prox = await timed('Proximity', '.prox-canvas:not([hidden])', 'proximity');
    check(prox < 15000, `32 000-token vocabulary drawn on the canvas (${prox} ms)`);
    const ball = await timed('The Ball', '.ball-after .main-svg', 'ball');
    check(ball < 15000, `the ball: 33 rows × 1024 positions (${ball} ms)`);
    const cl = await timed('Clusters', '.cl-heat .main-svg', 'clusters');
    check(cl < 20000, `clusters of 1024 positions (${cl} ms)`);
    await finish('dynamics big', ctx);
  }

  // ---- a narrow panel (editor split) -------------------------------------------------------
  {
    const ctx = await open('theme=dark&payload=dynamics', { width: 620, height: 760 });
    const { page } = ctx;
    await page.waitForSelector('.lc');
    for (const [t, sel] of [
      ['Attention', '.att-heat .main-svg'],
      ['Proximity', '.prox-canvas:not([hidden])'],
      ['Clusters', '.cl-heat .main-svg'],
    ]) {
      await tab(page, t);
      await page.waitForSelector(sel, { timeout: 30000 });
      await settle(page, 600);
      await shot(page, `narrow-dyn-${t.toLowerCase()}`);
    }
    // stacked, the Diff tab scrolls: each plot keeps a readable height
    await page.evaluate(() => window.__TD_HOST__.post(window.__TD_HOST__.dynamics.promptDiff));
    await page.waitForSelector('.diff-cos .main-svg', { timeout: 30000 });
    await settle(page, 600);
    for (const [sel, min] of [
      ['.diff-traj .chart-plot', 250],
      ['.diff-cos .chart-plot', 160],
    ]) {
      const h = await page.locator(sel).evaluate((e) => e.getBoundingClientRect().height);
      check(h >= min, `narrow diff: ${sel} is ${Math.round(h)} px high (at least ${min})`);
    }
    await shot(page, 'narrow-dyn-diff');
    await page.locator('.diff-cos').scrollIntoViewIfNeeded();
    await shot(page, 'narrow-dyn-diff-scrolled');
    await finish('dynamics narrow', ctx);
  }

  // ---- notes without data -----------------------------------------------------------------
  {
    const ctx = await open('theme=dark&payload=dynamics-nopat');
    const { page } = ctx;
    await page.waitForSelector('.lc');
    await tab(page, 'Attention');
    await page.waitForSelector('.att-grid-card .dyn-note:not([hidden])');
    const text = await page.locator('.att-grid-card .dyn-note').textContent();
    check(text.includes('transformerDynamics.attentionPatterns'), 'attention: without patterns the note names the setting');
    await shot(page, 'dark-dyn-attention-nopatterns');
    await tab(page, 'Diff');
    await settle(page, 300);
    check(
      (await page.locator('.diff-empty').textContent()).includes('Compare Prompts'),
      'diff: the empty state says how to compare prompts',
    );
    await shot(page, 'dark-dyn-diff-empty');
    // the empty Diff and Completions tabs run their command from a button
    for (const [title, box, label, command] of [
      ['Diff', '.diff-empty', 'Compare Prompts…', 'comparePrompts'],
      ['Completions', '.comp-empty', 'Compare Completions…', 'compareCompletions'],
    ]) {
      await tab(page, title);
      await page.locator(`${box} .tool-btn`, { hasText: label }).click();
      await settle(page, 100);
      check(
        (await page.evaluate(() => window.__TD_RECORD__.commands.at(-1))) === command,
        `${title.toLowerCase()}: its empty state runs ${label}`,
      );
    }
    await shot(page, 'dark-completions-empty');
    await finish('dynamics notes', ctx);
  }

  // ---- hostile text -------------------------------------------------------------------------
  {
    const ctx = await open('theme=dark&payload=dynamics-xss');
    const { page } = ctx;
    await page.waitForSelector('.lc');
    await allTabs(page, 'xss-dyn');
    const probe = await page.evaluate(() => ({
      pwned: window.__pwned,
      imgs: document.querySelectorAll('img').length,
      anchors: document.querySelectorAll('a').length,
      rawBidi: /[\u202a-\u202e\u2066-\u2069]/.test(document.body.innerText),
    }));
    check(
      probe.pwned === undefined && probe.imgs === 0 && probe.anchors === 0 && !probe.rawBidi,
      `hostile text on the dynamics tabs: nothing injected (${JSON.stringify(probe)})`,
    );
    await finish('dynamics hostile', ctx);
  }

  // ---- the standalone report, offline from file:// ----------------------------------------
  if (reportFile && fs.existsSync(reportFile)) {
    for (const scheme of ['light', 'dark']) {
      const ctx = await open(pathToFileURL(reportFile).href, { colorScheme: scheme });
      const { page } = ctx;
      await page.waitForSelector('.lc', { timeout: 60000 });
      await settle(page, 500);
      await shot(page, `report-${scheme}-lens`);
      await allTabs(page, `report-${scheme}`, { diff: false });
      if (scheme === 'light') {
        await tab(page, 'Proximity');
        await page.locator('.tok').nth(5).click();
        await settle(page, 600);
        check(
          await page.locator('.prox-main .dyn-note:not([hidden])').isVisible(),
          'report: proximity of another position says the report holds the last one',
        );
        await shot(page, 'report-light-proximity-other');
        const [download] = await Promise.all([
          page.waitForEvent('download', { timeout: 10000 }),
          page.locator('.tool-btn', { hasText: 'JSON' }).click(),
        ]);
        const jsonFile = path.join(OUT_DIR, 'report-export.json');
        await download.saveAs(jsonFile);
        const j = JSON.parse(fs.readFileSync(jsonFile, 'utf8'));
        const { JSON_SCHEMA_VERSION } = require(path.join(ROOT, 'out/src/shared/export.js'));
        check(
          j.version === JSON_SCHEMA_VERSION && j.attention && j.proximity_last && j.clusters_last,
          `report: the JSON button downloads the analysis (schema ${j.version}, current ${JSON_SCHEMA_VERSION}) through a blob URL`,
        );
        const [png] = await Promise.all([
          page.waitForEvent('download', { timeout: 10000 }),
          page.locator('.prox-layers .tool-btn', { hasText: 'PNG' }).click(),
        ]);
        check(png.suggestedFilename().endsWith('.png'), `report: chart PNG export downloads ${png.suggestedFilename()}`);
      }
      const external = ctx.requests.filter((u) => !u.startsWith('file:') && !u.startsWith('data:') && !u.startsWith('blob:'));
      check(external.length === 0, `report (${scheme}): no network requests (${external.slice(0, 3).join(', ')})`);
      await finish(`report ${scheme}`, ctx);
    }
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const only = args.includes('--only') ? args[args.indexOf('--only') + 1].split(',') : ['light', 'dark', 'hc'];
  if (!args.includes('--no-build')) {
    buildForDev();
  }
  let reportFile = path.join(OUT_DIR, 'report.html');
  // Cached payloads are remade when the engine in out/ (or their maker) changed since.
  if (args.includes('--fresh') || !payloadCurrent('dynamics') || !fs.existsSync(reportFile)) {
    console.log('Analysing the sample text with attention patterns…');
    const made = await makeDynamicsPayloads();
    reportFile = made.reportFile;
    console.log(`  ${made.model}, ${made.tokens} tokens; report ${(made.reportBytes / 1e6).toFixed(1)} MB`);
  }
  if (args.includes('--fresh') || !payloadCurrent('dynamics-big')) makeBigDynamicsPayload();
  const failures = [];
  const report = { screenshots: [], checks: [] };
  const check = (ok, what) => {
    report.checks.push({ ok, what });
    console.log(`${ok ? '  ok  ' : '  FAIL'} ${what}`);
    if (!ok) failures.push(what);
  };
  const server = await startServer();
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });
  try {
    await runDynamics({ browser, origin: server.origin, only, check, report, reportFile });
  } catch (e) {
    check(false, `dynamics run threw: ${e.stack ?? e}`);
  } finally {
    await browser.close();
    await server.close();
  }
  fs.writeFileSync(path.join(OUT_DIR, 'report-dynamics.json'), JSON.stringify(report, null, 2));
  console.log(`Screenshots: ${report.screenshots.length} in ${path.relative(ROOT, OUT_DIR)}/`);
  console.log(failures.length ? `DYNAMICS DEV: FAIL (${failures.length})` : 'DYNAMICS DEV: PASS');
  process.exit(failures.length ? 1 : 0);
}
