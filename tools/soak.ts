// `npm run soak`: many consecutive analyses in one engine worker — mixed lengths, a
// cancellation every 7th run, a model switch every 50th, each 50-run phase repeating the same
// inputs, the engine told after each run which analysis is shown — measuring the worker's RSS,
// live onnxruntime sessions and open file handles. Passes when RSS after warm-up is flat
// (slope < 1 MB per 100 runs), the session count stays constant and file handles do not grow.
//   node out/tools/soak.js [--runs 1500] [--models dirA,dirB] [--json out.json] [--no-cache]
// Models load through a graph cache in a temporary folder, as the extension loads them (the
// blocked lens, W_E and W_U read from the cache's weights file); --no-cache builds in memory.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EngineClient } from '../src/engine/client';

export interface SoakResult {
  runs: number;
  completed: number;
  cancelled: number;
  switches: number;
  rssMb: number[];
  /** Which model was loaded at each RSS sample. */
  sampleModel: number[];
  /** Per model: [run, RSS] at the end of each of its phases after its first. */
  phaseEnds: Array<Array<[number, number]>>;
  slopeMbPer100: number;
  sessions: number[];
  fds: number[];
  seconds: number;
  pass: boolean;
}

function openFds(pid: number): number {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return -1;
  }
}

/** Least-squares slope of y over x. */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den > 0 ? num / den : 0;
}

const TEXT = fs.existsSync(path.resolve(__dirname, '..', '..', '..', 'shared', 'data', 'austen', 'emma.txt'))
  ? fs.readFileSync(path.resolve(__dirname, '..', '..', '..', 'shared', 'data', 'austen', 'emma.txt'), 'utf8').slice(10000, 60000)
  : 'The quick brown fox jumps over the lazy dog. '.repeat(400);

/**
 * RSS growth in MB per 100 runs. Each model switch replaces the sessions, so samples of different
 * models are not comparable: with several models, the RSS at the end of each phase (the last
 * sample before a switch) is compared with the same model's other phase ends, its first phase
 * being warm-up; the worst model counts. With one model: every sample after the first fifth.
 */
function rssSlope(r: SoakResult, skip: number): number {
  const runOf = (k: number) => (k + 1) * 10;
  const models = [...new Set(r.sampleModel)];
  if (models.length < 2) {
    const xs = r.rssMb.map((_, k) => runOf(k)).slice(skip);
    return xs.length > 2 ? slope(xs, r.rssMb.slice(skip)) * 100 : 0;
  }
  const ends: Array<Array<[number, number]>> = models.map(() => []);
  // the final phase may have just begun: left out
  for (let k = 0; k < r.rssMb.length - 1; k++) {
    const last = r.sampleModel[k + 1] !== r.sampleModel[k];
    if (last) ends[models.indexOf(r.sampleModel[k]!)]!.push([runOf(k), r.rssMb[k]!]);
  }
  r.phaseEnds = ends.map((e) => e.slice(1));
  const slopes = r.phaseEnds
    .filter((e) => e.length > 2)
    .map(
      (e) =>
        slope(
          e.map((p) => p[0]),
          e.map((p) => p[1]),
        ) * 100,
    );
  return slopes.length ? Math.max(...slopes) : 0;
}

export async function soak(
  workerPath: string,
  models: string[],
  runs: number,
  log: (s: string) => void = () => undefined,
  cacheDir?: string,
): Promise<SoakResult> {
  const client = new EngineClient({ workerPath });
  const r: SoakResult = {
    runs,
    completed: 0,
    cancelled: 0,
    switches: 0,
    rssMb: [],
    sampleModel: [],
    phaseEnds: [],
    slopeMbPer100: 0,
    sessions: [],
    fds: [],
    seconds: 0,
    pass: false,
  };
  const t0 = performance.now();
  let model = 0;
  try {
    await client.load({ dir: models[0]!, threads: 2, executionProvider: 'cpu', cacheDir });
    for (let i = 1; i <= runs; i++) {
      if (i % 50 === 0 && models.length > 1) {
        model = (model + 1) % models.length;
        await client.load({ dir: models[model]!, threads: 2, executionProvider: 'cpu', cacheDir });
        r.switches++;
      }
      // Every phase (50 runs on one model) does the same work, so its end is comparable with the
      // same model's other phase ends: j is the run's index within its phase.
      const j = models.length > 1 ? i % 50 : i;
      const start = (j * 7919) % (TEXT.length - 4000);
      // The first run on each model is the longest, with attention patterns: the process's heap
      // reaches its working size at once, so later RSS differences are growth, not warm-up.
      const probe = i === 1 || j === 0;
      const len = probe ? 1540 : 40 + ((j * 104729) % 1500); // mixed lengths, 40..1540 characters
      const text = TEXT.slice(start, start + len);
      const ctl = new AbortController();
      // as the extension does: a new run id per run, and the engine told which run is shown
      const p = client.analyze({ text, topK: 5, maxTokens: 512, patterns: probe || j % 3 !== 0 }, ctl.signal, false, i);
      if (j % 7 === 0 && !probe) setTimeout(() => ctl.abort(), 1 + (j % 5));
      try {
        await p;
        await client.retain([i]);
        r.completed++;
      } catch (e) {
        if ((e as { code?: string }).code === 'CANCELLED') r.cancelled++;
        else throw e;
      }
      if (i % 10 === 0) {
        const s = await client.stats();
        r.rssMb.push(s.rssBytes / 2 ** 20);
        r.sampleModel.push(model);
        r.sessions.push(s.liveSessions);
        r.fds.push(openFds(client.pid ?? -1));
        log(
          `run ${i}: rss ${(s.rssBytes / 2 ** 20).toFixed(1)} MB, js heap ${(s.heapUsedBytes / 2 ** 20).toFixed(1)} MB, sessions ${s.liveSessions}, fds ${r.fds[r.fds.length - 1]}`,
        );
      }
    }
  } finally {
    await client.dispose();
  }
  r.seconds = (performance.now() - t0) / 1000;
  const skip = Math.max(1, Math.floor(r.rssMb.length / 5));
  r.slopeMbPer100 = rssSlope(r, skip);
  const fdsAfter = r.fds.slice(skip);
  r.pass = r.slopeMbPer100 < 1 && r.sessions.every((s) => s === r.sessions[0]) && Math.max(...fdsAfter) - Math.min(...fdsAfter) <= 2;
  return r;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const opt = (n: string) => {
    const i = argv.indexOf(`--${n}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const root = path.resolve(__dirname, '..', '..');
  const models = (
    opt('models') ?? [path.join(root, 'media', 'models', 'td-mini'), path.join(root, 'test', 'fixtures', 'models', 'tiny-llama')].join(',')
  )
    .split(',')
    .filter((d) => fs.existsSync(d));
  const cacheDir = argv.includes('--no-cache') ? undefined : fs.mkdtempSync(path.join(os.tmpdir(), 'td-soak-cache-'));
  let res: SoakResult;
  try {
    res = await soak(
      path.join(root, 'dist', 'engine-worker.js'),
      models,
      Number(opt('runs') ?? 1500),
      (s) => process.stderr.write(s + '\n'),
      cacheDir,
    );
  } finally {
    if (cacheDir) fs.rmSync(cacheDir, { recursive: true, force: true });
  }
  const out = opt('json') ?? path.join(root, 'bench', 'results', `soak-${new Date().toISOString().slice(0, 10)}.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(
    out,
    JSON.stringify({ models: models.map((m) => path.basename(m)), graphCache: cacheDir !== undefined, ...res }, null, 1),
  );
  process.stdout.write(
    `soak: ${res.runs} runs (${res.completed} completed, ${res.cancelled} cancelled, ${res.switches} model switches) in ${res.seconds.toFixed(0)} s; ` +
      `RSS slope ${res.slopeMbPer100.toFixed(2)} MB/100 runs (${res.rssMb[0]?.toFixed(0)} → ${res.rssMb[res.rssMb.length - 1]?.toFixed(0)} MB); ` +
      `sessions ${[...new Set(res.sessions)].join('/')}; fds ${Math.min(...res.fds)}..${Math.max(...res.fds)} → ${res.pass ? 'PASS' : 'FAIL'}\n`,
  );
  process.exit(res.pass ? 0 : 1);
}

if (require.main === module) void main();
