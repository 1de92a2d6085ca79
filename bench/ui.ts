// `npm run bench:ui` (also run by `npm run bench`): the editor side of performance, measured in a
// real VS Code (code-server + Chromium, the e2e harness) with the packaged extension:
//  5. extension-host event-loop lag (p50/p99/max) while a 1024-token analysis runs — read from
//     the extension's own log line for each run (perf_hooks.monitorEventLoopDelay);
//  6. webview: time from the analysis message arriving to the lens table / plots being painted,
//     for 1024 tokens × 24 layers — the panel's own performance.measure entries, read with
//     Playwright.
// The model is random (GPT-2 vocabulary and shapes, 24 layers × 256 wide, 1024 positions), built
// once under .cache/bench. Writes bench/results/<date>-ui.json and <date>-ui.md (<date>b-ui … for later runs the same day).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildVsix, e2eSkipReason, startVsCode, type VsCodeSession } from '../test/e2e/harness';
import { makeRandomGpt2 } from './checkpoints';
import { median } from './stats';
import { CACHE, log, resultsName, ROOT, SHARED } from './common';

const RUNS = 3;

interface PaintEntry {
  view: string;
  ms: number;
}

interface RunLine {
  tokens: number;
  totalMs: number;
  p50: number;
  p99: number;
  max: number;
}

async function paints(vs: VsCodeSession): Promise<PaintEntry[]> {
  return vs
    .webviewFrame()
    .locator('body')
    .evaluate(() =>
      performance
        .getEntriesByType('measure')
        .filter((e) => e.name.startsWith('td:data→painted:'))
        .map((e) => ({ view: e.name.slice('td:data→painted:'.length), ms: e.duration })),
    );
}

/** Runs Analyze Selection and waits until the panel has painted one more analysis. */
async function analyzeAndWait(vs: VsCodeSession): Promise<PaintEntry> {
  const before = (await paints(vs).catch(() => [])).length;
  await vs.runCommand('Transformer Dynamics: Analyze Selection');
  const deadline = Date.now() + 300_000;
  while (Date.now() < deadline) {
    const p = await paints(vs).catch(() => [] as PaintEntry[]);
    if (p.length > before) return p[p.length - 1]!;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error('the panel did not paint the analysis within 5 minutes');
}

/** The extension's "run N: T tokens in X ms; … lag p50 … p99 … max …" log lines. */
function runLines(dir: string): RunLine[] {
  const files: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/Transformer Dynamics\.log$/.test(e.name)) files.push(p);
    }
  };
  walk(dir);
  const re = /run \d+: (\d+) tokens in (\d+) ms; extension-host event-loop lag p50 ([\d.]+) ms, p99 ([\d.]+) ms, max ([\d.]+) ms/;
  return files
    .flatMap((f) => fs.readFileSync(f, 'utf8').split('\n'))
    .map((l) => re.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ tokens: +m[1]!, totalMs: +m[2]!, p50: +m[3]!, p99: +m[4]!, max: +m[5]! }));
}

async function main(): Promise<void> {
  const skip = e2eSkipReason();
  if (skip) {
    log(`bench:ui skipped: ${skip}`);
    return;
  }
  const model = makeRandomGpt2(path.join(CACHE, 'gpt2-24x256-random'), path.join(SHARED, 'gpt2-bpe'), {
    nLayer: 24,
    nEmbd: 256,
    nHead: 4,
    nPositions: 1024,
    vocab: 50257,
  });
  const text = fs.readFileSync(path.join(SHARED, 'moby-dick', 'moby-dick.txt'), 'utf8').slice(20_000, 27_000);
  log('packaging the extension…');
  const vsix = buildVsix();
  const vs = await startVsCode({
    name: 'bench-ui',
    vsix,
    files: { 'chapter.txt': text },
    machineSettings: { 'transformerDynamics.modelPath': model, 'transformerDynamics.maxTokens': 1024 },
    theme: 'dark',
    viewport: { width: 1680, height: 1000 },
  });
  const views: Record<string, number[]> = {};
  let logsDir = '';
  try {
    await vs.openFile('chapter.txt');
    await vs.selectAll();
    log('first run (loads the model)…');
    await analyzeAndWait(vs);
    const frame = vs.webviewFrame();
    for (const [tab, view] of [
      ['lens', 'lens'],
      ['trajectories', 'trajectories'],
      ['repetition', 'repetition'],
    ] as const) {
      await frame.locator(`vscode-tab-header[data-tab="${tab}"]`).click();
      await new Promise((r) => setTimeout(r, 1500)); // the tab draws the current result first
      for (let i = 0; i < RUNS; i++) {
        await vs.page.keyboard.press('Control+1'); // back to the text editor; the selection stays
        const p = await analyzeAndWait(vs);
        log(`  ${tab}: ${p.view} painted ${p.ms.toFixed(0)} ms after the data arrived`);
        if (p.view !== view) throw new Error(`expected the ${view} view to paint, got ${p.view}`);
        (views[view] ??= []).push(p.ms);
      }
    }
    logsDir = await vs.saveLogs(path.join(os.tmpdir(), `td-bench-ui-logs-${process.pid}`));
  } finally {
    await vs.dispose();
  }
  const runs = runLines(logsDir);
  const warm = runs.slice(1); // the first run includes loading the model
  if (warm.length === 0) throw new Error(`no run lines with event-loop lag in the extension log (${logsDir})`);
  fs.rmSync(logsDir, { recursive: true, force: true });
  const date = new Date().toISOString().slice(0, 10);
  const out = {
    date,
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, memGb: Math.round(os.totalmem() / 2 ** 30), node: process.version },
    model: { layers: 24, dModel: 256, vocab: 50257, tokens: warm[0]!.tokens },
    eventLoopLag: {
      firstRun: runs[0],
      runs: warm,
      p50Ms: median(warm.map((r) => r.p50)),
      p99Ms: Math.max(...warm.map((r) => r.p99)),
      maxMs: Math.max(...warm.map((r) => r.max)),
      analysisMs: median(warm.map((r) => r.totalMs)),
    },
    paint: Object.fromEntries(Object.entries(views).map(([v, xs]) => [v, { medianMs: median(xs), runsMs: xs }])),
  };
  const dir = path.join(ROOT, 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const name = resultsName(dir, date, '-ui');
  fs.writeFileSync(path.join(dir, `${name}.json`), JSON.stringify(out, null, 1));
  const l = out.eventLoopLag;
  const md = [
    `## Editor responsiveness (${date})`,
    '',
    `${out.model.tokens} tokens × ${out.model.layers} layers (random GPT-2-vocabulary model, d = ${out.model.dModel}); ` +
      `${warm.length} analyses of ${l.analysisMs.toFixed(0)} ms (median) in code-server + Chromium.`,
    '',
    '| measure | value | target |',
    '|---|---:|---:|',
    `| extension-host event-loop lag during a run, p50 | ${l.p50Ms.toFixed(1)} ms | |`,
    `| extension-host event-loop lag during a run, p99 (worst run) | ${l.p99Ms.toFixed(1)} ms | ≤ 50 ms |`,
    `| extension-host event-loop lag, max | ${l.maxMs.toFixed(1)} ms | |`,
    ...(l.firstRun
      ? [`| … first run, loading the model: p99 / max | ${l.firstRun.p99.toFixed(1)} / ${l.firstRun.max.toFixed(1)} ms | |`]
      : []),
    ...Object.entries(out.paint).map(
      ([v, p]) => `| webview: analysis arrives → ${v} painted (median of ${p.runsMs.length}) | ${p.medianMs.toFixed(0)} ms | |`,
    ),
    '',
  ].join('\n');
  fs.writeFileSync(path.join(dir, `${name}.md`), md);
  process.stdout.write(md);
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
