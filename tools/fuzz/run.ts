// `npm run fuzz`: mutated inputs for every parser of untrusted files, in a worker thread
// watched by a 5 s watchdog. Counts accepted inputs, clear rejections (EngineError),
// crashes (anything else thrown) and hangs; saves crashes, hangs and one example of each
// kind of rejection to the regression corpus (test/fixtures/fuzz/<target>/).
//   node out/tools/fuzz/run.js [--target safetensors|config|tokenizer|onnx] [--count 10000] [--seed 1] [--save-corpus]
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { TARGETS } from './targets';

const HANG_MS = 5000;

interface CaseResult {
  i: number;
  outcome: 'ok' | 'rejected' | 'crash';
  message?: string;
  ms: number;
}

type FromWorker = { kind: 'start'; i: number } | { kind: 'result'; r: CaseResult } | { kind: 'done' };

if (!isMainThread) {
  const { target, seed, from, to } = workerData as { target: string; seed: number; from: number; to: number };
  const t = TARGETS.find((x) => x.name === target)!;
  for (let i = from; i < to; i++) {
    parentPort!.postMessage({ kind: 'start', i } satisfies FromWorker);
    const input = t.generate(seed, i);
    const t0 = performance.now();
    let r: CaseResult;
    try {
      t.run(input);
      r = { i, outcome: 'ok', ms: performance.now() - t0 };
    } catch (e) {
      const err = e as { name?: string; code?: string; message?: string };
      r =
        err?.name === 'EngineError'
          ? { i, outcome: 'rejected', message: err.message, ms: performance.now() - t0 }
          : { i, outcome: 'crash', message: `${err?.name}: ${err?.message}`, ms: performance.now() - t0 };
    }
    parentPort!.postMessage({ kind: 'result', r } satisfies FromWorker);
  }
  parentPort!.postMessage({ kind: 'done' } satisfies FromWorker);
}

/** Rejection messages with numbers and quoted names blanked, to group them by kind. */
function kindOf(msg: string): string {
  return msg
    .replace(/"[^"]*"/g, '"…"')
    .replace(/\d+(\.\d+)?(e[+-]?\d+)?/gi, 'N')
    .slice(0, 160);
}

export interface FuzzSummary {
  target: string;
  count: number;
  ok: number;
  rejected: number;
  crashes: { i: number; message: string }[];
  hangs: number[];
  maxMs: number;
  seconds: number;
  rejectionKinds: Record<string, number>;
}

export async function fuzz(targetName: string, count: number, seed: number, corpusDir: string | null): Promise<FuzzSummary> {
  const target = TARGETS.find((t) => t.name === targetName);
  if (!target) throw new Error(`unknown target ${targetName}`);
  const summary: FuzzSummary = {
    target: targetName,
    count,
    ok: 0,
    rejected: 0,
    crashes: [],
    hangs: [],
    maxMs: 0,
    seconds: 0,
    rejectionKinds: {},
  };
  const t0 = performance.now();
  let savedRejections = 0;
  const save = (name: string, i: number) => {
    if (!corpusDir) return;
    const input = target.generate(seed, i);
    // Keep the committed corpus small: every crash and hang, a few kinds of rejection.
    if (name === 'rejected' && (input.length > 48 * 1024 || savedRejections++ >= 12)) return;
    const dir = path.join(corpusDir, targetName);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, `${name}-seed${seed}-${i}.bin`), input);
  };
  let next = 0;
  while (next < count) {
    await new Promise<void>((resolve) => {
      const w = new Worker(__filename, { workerData: { target: targetName, seed, from: next, to: count } });
      let current = next;
      let last = performance.now();
      const timer = setInterval(() => {
        if (performance.now() - last > HANG_MS) {
          summary.hangs.push(current);
          save('hang', current);
          next = current + 1;
          clearInterval(timer);
          void w.terminate().then(() => resolve());
        }
      }, 250);
      w.on('message', (m: FromWorker) => {
        last = performance.now();
        if (m.kind === 'start') current = m.i;
        else if (m.kind === 'result') {
          const r = m.r;
          next = r.i + 1;
          summary.maxMs = Math.max(summary.maxMs, r.ms);
          if (r.outcome === 'ok') summary.ok++;
          else if (r.outcome === 'rejected') {
            summary.rejected++;
            const k = kindOf(r.message ?? '');
            if (!(k in summary.rejectionKinds)) save('rejected', r.i);
            summary.rejectionKinds[k] = (summary.rejectionKinds[k] ?? 0) + 1;
          } else {
            summary.crashes.push({ i: r.i, message: r.message ?? '' });
            save('crash', r.i);
          }
        } else {
          clearInterval(timer);
          next = count;
          void w.terminate().then(() => resolve());
        }
      });
      w.on('error', (e) => {
        summary.crashes.push({ i: current, message: `worker died: ${e.message}` });
        save('crash', current);
        next = current + 1;
        clearInterval(timer);
        resolve();
      });
    });
  }
  summary.seconds = (performance.now() - t0) / 1000;
  return summary;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const opt = (name: string, def: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 && argv[i + 1] ? argv[i + 1]! : def;
  };
  const count = Number(opt('count', '10000'));
  const seed = Number(opt('seed', '1'));
  const only = opt('target', '');
  const corpus = argv.includes('--save-corpus') ? path.resolve(__dirname, '..', '..', '..', 'test', 'fixtures', 'fuzz') : null;
  const results: FuzzSummary[] = [];
  for (const t of TARGETS) {
    if (only && t.name !== only) continue;
    process.stderr.write(`fuzzing ${t.name}: ${count} inputs…\n`);
    const s = await fuzz(t.name, count, seed, corpus);
    results.push(s);
    process.stderr.write(
      `  ${s.ok} accepted, ${s.rejected} rejected with a clear error, ${s.crashes.length} crashes, ${s.hangs.length} hangs; ` +
        `slowest input ${s.maxMs.toFixed(0)} ms; ${s.seconds.toFixed(0)} s; ${Object.keys(s.rejectionKinds).length} kinds of rejection\n`,
    );
    for (const c of s.crashes.slice(0, 5)) process.stderr.write(`  crash #${c.i}: ${c.message}\n`);
  }
  const out = path.resolve(__dirname, '..', '..', '..', 'bench', 'results', `fuzz-${new Date().toISOString().slice(0, 10)}.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify(results, null, 1));
  process.stdout.write(JSON.stringify(results.map(({ rejectionKinds: _k, ...r }) => r)) + '\n');
  process.exit(results.some((r) => r.crashes.length || r.hangs.length) ? 1 : 0);
}

if (isMainThread && require.main === module) void main();
