// `npm run bench`: every figure is a ratio measured in this run, on this machine.
//  1. full analysis vs the FLOP bound (GEMM rate measured here with onnxruntime) and vs two
//     PyTorch eager references at the same thread count (bench/scaling.ts: the time baseline
//     and a lean one for memory), at 2 threads and at all cores, 128 / 512 / 1024 tokens;
//  2. scaling exponents of time and memory; 3. model load vs reading the weight files;
//  4. generation: KV-cache step vs full recompute.
// Writes bench/results/<date>.json and .md (<date>b, c … for later runs the same day). Options: --quick (fewer sizes/repeats),
// --no-torch (skip the PyTorch columns), --models gpt2,bundled,stories,large,
// --threads 2,16 (default: 2 and one per physical core).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { specFromConfig } from '../src/engine/arch/spec';
import { physicalCores } from '../src/engine/cores';
import { convertLlama2c } from '../tools/convert/llama2c';
import { LLAMA_1B, makeRandomGpt2, makeRandomLlama } from './checkpoints';
import { CACHE, child, corpusIds, cpuIdentity, log, resultsName, ROOT, SHARED, THREADS } from './common';
import { gemmRate, stepFlops } from './rates';
import { measureScaling, scalingMarkdown, type ScalingRow } from './scaling';

const args = new Set(process.argv.slice(2));
const quick = args.has('--quick');

interface ModelCase {
  key: string;
  label: string;
  dir: string;
  sizes: number[];
}

/** Fits y = c·x^e by least squares on logs; returns e. */
function exponent(xs: number[], ys: number[]): number {
  const lx = xs.map(Math.log);
  const ly = ys.map(Math.log);
  const mx = lx.reduce((a, b) => a + b) / lx.length;
  const my = ly.reduce((a, b) => a + b) / ly.length;
  let num = 0;
  let den = 0;
  for (let i = 0; i < lx.length; i++) {
    num += (lx[i]! - mx) * (ly[i]! - my);
    den += (lx[i]! - mx) ** 2;
  }
  return num / den;
}

async function main(): Promise<void> {
  fs.mkdirSync(CACHE, { recursive: true });
  const wanted = new Set((process.argv.find((a) => a.startsWith('--models='))?.slice(9) ?? 'gpt2,bundled,stories,large').split(','));
  const cases: ModelCase[] = [];
  if (wanted.has('gpt2')) {
    log('preparing the GPT-2-small-shaped random checkpoint…');
    cases.push({
      key: 'gpt2-small-random',
      label: 'GPT-2 small shape (124 M, random weights)',
      dir: makeRandomGpt2(path.join(CACHE, 'gpt2-small-random'), path.join(SHARED, 'gpt2-bpe')),
      sizes: quick ? [128, 512] : [128, 512, 1024],
    });
  }
  const bundled = path.join(ROOT, 'media', 'models', 'td-mini');
  if (wanted.has('bundled') && fs.existsSync(path.join(bundled, 'model.safetensors')))
    cases.push({ key: 'td-mini', label: 'td-mini (bundled)', dir: bundled, sizes: quick ? [128, 512] : [128, 256, 512] });
  if (wanted.has('stories')) {
    const dir = path.join(CACHE, 'stories260K');
    convertLlama2c(path.join(SHARED, 'stories260K', 'stories260K.bin'), path.join(SHARED, 'stories260K', 'tok512.bin'), dir);
    cases.push({ key: 'stories260K', label: 'stories260K (llama2.c)', dir, sizes: quick ? [128, 512] : [128, 256, 512] });
  }

  const threadsArg = process.argv.find((a) => a.startsWith('--threads='))?.slice(10);
  const threadCounts = threadsArg ? threadsArg.split(',').map(Number) : [...new Set([2, physicalCores()])];
  log(`measuring onnxruntime GEMM peak with ${THREADS} threads…`);
  const gemm = {
    '512x768x3072': await gemmRate(512, 768, 3072, THREADS),
    '512x3072x768': await gemmRate(512, 3072, 768, THREADS),
    '512x768x8192': await gemmRate(512, 768, 8192, THREADS),
  };
  const peak = Math.max(...Object.values(gemm));
  log(`GEMM peak ${peak.toFixed(0)} GFLOP/s`);

  const results: Record<string, unknown>[] = [];
  for (const c of cases) {
    const spec = specFromConfig(JSON.parse(fs.readFileSync(path.join(c.dir, 'config.json'), 'utf8')));
    const maxT = Math.max(...c.sizes);
    const allIds = corpusIds(c.dir, Math.min(maxT + 32, spec.maxPositions));
    // each side at its best of 3 processes (bench/scaling.ts: PyTorch's full run is bimodal here)
    const scaling = await measureScaling(c, {
      threads: threadCounts,
      repeats: 2,
      processes: quick ? 1 : 3,
      torch: !args.has('--no-torch'),
    });
    // the scaling exponents at the default thread count (the extension's)
    const rows = scaling.filter((r) => r.threads === (threadCounts.includes(THREADS) ? THREADS : threadCounts[0]) && r.ours);
    const ts = rows.map((r) => r.tokens);
    const weightFile = path.join(c.dir, 'model.safetensors');
    const t0 = performance.now();
    fs.readFileSync(weightFile);
    const readMs = performance.now() - t0;
    // model load: first time (builds the graph into an empty cache) and again (reuses it)
    const graphCache = fs.mkdtempSync(path.join(os.tmpdir(), 'td-bench-graphs-'));
    const idsForLoad = path.join(CACHE, `${c.key}-${rows[0]?.tokens ?? 128}.json`);
    const noCache = child('load', c.dir, idsForLoad, 1);
    const cold = child('load', c.dir, idsForLoad, 1, [], { TD_BENCH_CACHE: graphCache });
    const warm = child('load', c.dir, idsForLoad, 1, [], { TD_BENCH_CACHE: graphCache });
    fs.rmSync(graphCache, { recursive: true, force: true });
    const genIds = path.join(CACHE, `${c.key}-gen.json`);
    fs.writeFileSync(genIds, JSON.stringify(allIds));
    log(`${c.key}: generation steps…`);
    const gen = child('generation', c.dir, genIds, 3, [[64, 256, 512].filter((x) => x + 17 <= spec.maxPositions).join(',')]);
    // A step multiplies one row by every weight matrix: memory-bound, so its bound uses the
    // rate onnxruntime reaches for a single row times this model's unembedding matrix.
    const gemv = await gemmRate(1, spec.dModel, spec.dVocab, THREADS);
    for (const g of gen.generation as Record<string, number>[]) {
      g.gemvGflops = gemv;
      g.boundMs = (stepFlops(spec, g.context!) / (gemv * 1e9)) * 1000;
    }
    results.push({
      model: c.key,
      label: c.label,
      params: spec.nLayers,
      analysis: scaling,
      scaling: {
        timeExponent:
          ts.length > 1
            ? exponent(
                ts,
                rows.map((r) => r.ours!.bestMs),
              )
            : null,
        rssExponent:
          ts.length > 1
            ? exponent(
                ts,
                rows.map((r) => r.ours!.peakRssMb),
              )
            : null,
      },
      load: {
        firstResultMs: noCache.firstResultMs,
        readWeightsMs: readMs,
        ratio: (noCache.firstResultMs as number) / readMs,
        coldCacheMs: cold.firstResultMs,
        warmCacheMs: warm.firstResultMs,
        warmRatio: (warm.firstResultMs as number) / readMs,
        secondLoadSpeedup: (cold.firstResultMs as number) / (warm.firstResultMs as number),
        // the load alone (graph built into the cache vs read from it), without the first analysis
        coldLoadMs: cold.loadMs,
        warmLoadMs: warm.loadMs,
        loadOnlySpeedup: (cold.loadMs as number) / (warm.loadMs as number),
      },
      generation: gen.generation,
      completions: gen.completions,
    });
  }
  const largeLoad = wanted.has('large') ? measureLargeLoad() : null;
  const date = new Date().toISOString().slice(0, 10);
  const out = {
    date,
    machine: {
      cpus: os.cpus().length,
      model: os.cpus()[0]?.model,
      cpu: cpuIdentity(),
      memGb: Math.round(os.totalmem() / 2 ** 30),
      node: process.version,
      physicalCores: physicalCores(),
      threads: THREADS,
    },
    gemm: { ...gemm, peak },
    results,
    largeLoad,
  };
  const dir = path.join(ROOT, 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const name = resultsName(dir, date);
  fs.writeFileSync(path.join(dir, `${name}.json`), JSON.stringify(out, null, 1));
  const md = markdown(out);
  fs.writeFileSync(path.join(dir, `${name}.md`), md);
  log(`written: bench/results/${name}.json and .md`);
  process.stdout.write(md);
}

/** Milliseconds to read a file sequentially in 64 MB pieces. */
function readMs(file: string): number {
  const buf = Buffer.alloc(64 << 20);
  const fd = fs.openSync(file, 'r');
  const t0 = performance.now();
  while (fs.readSync(fd, buf, 0, buf.length, null) > 0);
  const ms = performance.now() - t0;
  fs.closeSync(fd);
  return ms;
}

/**
 * The graph cache at the size it is for: a 1.2 B Llama-shaped checkpoint in bfloat16 (as such
 * models are published). First load: bfloat16 read, widened to float32 (onnxruntime has no
 * bfloat16 GEMM on CPU), written to the cache (4.7 GB, beyond protobuf's 2 GB: external data)
 * and fsynced; second load: the cached graph, its weights memory-mapped.
 */
function measureLargeLoad(): Record<string, unknown> {
  log('preparing the 1.2 B bfloat16 Llama-shaped checkpoint (once: ~1 min, 2.4 GB)…');
  const dir = makeRandomLlama(path.join(CACHE, 'llama-1b-bf16'), path.join(SHARED, 'gpt2-bpe'));
  const ids = path.join(CACHE, 'llama-1b-bf16-16.json');
  fs.writeFileSync(ids, JSON.stringify(corpusIds(dir, 16)));
  const weightFile = path.join(dir, 'model.safetensors');
  readMs(weightFile); // into the page cache, as for the other models
  const read = readMs(weightFile);
  const graphCache = fs.mkdtempSync(path.join(os.tmpdir(), 'td-bench-large-'));
  try {
    log('large model: first load (converts into the graph cache)…');
    const first = child('load', dir, ids, 1, [], { TD_BENCH_CACHE: graphCache });
    log('large model: second load (from the cache)…');
    const second = child('load', dir, ids, 1, [], { TD_BENCH_CACHE: graphCache });
    const entry = fs.readdirSync(graphCache).find((e) => fs.existsSync(path.join(graphCache, e, 'weights.bin')));
    const cachedBytes = entry ? fs.statSync(path.join(graphCache, entry, 'weights.bin')).size : null;
    const s = LLAMA_1B;
    const params =
      s.vocab * s.hidden * 2 +
      s.layers * (s.hidden * (2 * s.hidden + (2 * s.hidden * s.kvHeads) / s.heads) + 3 * s.hidden * s.intermediate);
    return {
      shape: s,
      params,
      checkpointBytes: fs.statSync(weightFile).size,
      cachedWeightBytes: cachedBytes,
      readCheckpointMs: read,
      first,
      second,
      loadOnlySpeedup: (first.loadMs as number) / (second.loadMs as number),
      firstResultSpeedup: (first.firstResultMs as number) / (second.firstResultMs as number),
    };
  } finally {
    fs.rmSync(graphCache, { recursive: true, force: true });
  }
}

function f(x: unknown, digits = 2): string {
  return typeof x === 'number' && Number.isFinite(x) ? x.toFixed(digits) : '—';
}

function markdown(o: {
  date: string;
  machine: Record<string, unknown>;
  gemm: Record<string, number>;
  results: Record<string, unknown>[];
  largeLoad: Record<string, unknown> | null;
}): string {
  const lines = [
    `## Benchmarks (${o.date})`,
    '',
    `Machine: ${o.machine.cpus} × ${o.machine.cpu ?? o.machine.model} (${o.machine.physicalCores} physical cores), ${o.machine.memGb} GiB, Node ${o.machine.node}. ` +
      `GEMM peak measured here with onnxruntime at ${o.machine.threads} threads: ${f(o.gemm.peak, 0)} GFLOP/s.`,
  ];
  lines.push('', scalingMarkdown(o.results.flatMap((r) => r.analysis as ScalingRow[])));
  lines.push(
    '',
    '| model | time exponent (128→max) | RSS exponent | read weights (ms) | first result, no cache (ms) | ratio | first result, load into the graph cache (ms) | second load (ms) | second / read | second-load speed-up | load alone: first / second (ms) | load-alone speed-up |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  );
  for (const r of o.results) {
    const s = r.scaling as Record<string, number>;
    const l = r.load as Record<string, number>;
    lines.push(
      `| ${r.model} | ${f(s.timeExponent)} | ${f(s.rssExponent)} | ${f(l.readWeightsMs, 0)} | ${f(l.firstResultMs, 0)} | ${f(l.ratio)}× | ${f(l.coldCacheMs, 0)} | ${f(l.warmCacheMs, 0)} | ${f(l.warmRatio)}× | ${f(l.secondLoadSpeedup)}× | ${f(l.coldLoadMs, 0)} / ${f(l.warmLoadMs, 0)} | ${f(l.loadOnlySpeedup)}× |`,
    );
  }
  lines.push(
    '',
    '| model | context | KV-cache step (ms) | step bound (ms) | step / bound | full recompute (ms) | speed-up |',
    '|---|---:|---:|---:|---:|---:|---:|',
  );
  for (const r of o.results) {
    for (const g of (r.generation as Record<string, number>[]) ?? [])
      lines.push(
        `| ${r.model} | ${g.context} | ${f(g.kvStepMs)} | ${f(g.boundMs)} | ${f(g.kvStepMs! / g.boundMs!, 1)}× | ${f(g.recomputeStepMs)} | ${f(g.recomputeStepMs! / g.kvStepMs!, 1)}× |`,
      );
  }
  const batches = o.results.filter((r) => r.completions);
  if (batches.length > 0) {
    lines.push(
      '',
      'Compare Completions as the extension runs it (greedy, top-p, top-k and a beam of 3, one column after another on one prompt):',
      '',
      '| model | prompt | new tokens per column | whole batch (ms) | inside onnxruntime (ms) | JavaScript (ms) | JavaScript share | columns (ms) | prompt runs |',
      '|---|---:|---:|---:|---:|---:|---:|---|---:|',
    );
    for (const r of batches) {
      const c = r.completions as {
        prompt: number;
        newTokens: number;
        totalMs: number;
        runtimeMs: number;
        jsMs: number;
        perColumnMs: number[];
        promptRuns: number;
        columns: number;
      };
      lines.push(
        `| ${r.model} | ${c.prompt} | ${c.newTokens} | ${f(c.totalMs, 0)} | ${f(c.runtimeMs, 0)} | ${f(c.jsMs, 0)} | ${f((100 * c.jsMs) / c.totalMs, 0)}% | ${c.perColumnMs.map((x) => f(x, 0)).join(' / ')} | ${c.promptRuns} of ${c.columns} |`,
      );
    }
  }
  const big = o.largeLoad;
  if (big) {
    const a = big.first as Record<string, number>;
    const b = big.second as Record<string, number>;
    const gb = (x: unknown) => f((x as number) / 1e9, 2);
    const weights = big.cachedWeightBytes as number;
    lines.push(
      '',
      `Loading a ${f((big.params as number) / 1e9, 2)} B-parameter Llama-shaped checkpoint (random weights) stored in bfloat16 (${gb(big.checkpointBytes)} GB; read from the page cache in ${f(big.readCheckpointMs, 0)} ms) into a float32 graph cache (${gb(weights)} GB of weights):`,
      '',
      '| load | load (ms) | peak RSS during the load (MB) | first result (ms) | peak RSS with the first analysis (MB) | peak RSS / float32 weights |',
      '|---|---:|---:|---:|---:|---:|',
      `| first (convert into the cache) | ${f(a.loadMs, 0)} | ${f(a.loadPeakRssMb, 0)} | ${f(a.firstResultMs, 0)} | ${f(a.peakRssMb, 0)} | ${f((a.peakRssMb! * 2 ** 20) / weights)} |`,
      `| second (from the cache) | ${f(b.loadMs, 0)} | ${f(b.loadPeakRssMb, 0)} | ${f(b.firstResultMs, 0)} | ${f(b.peakRssMb, 0)} | ${f((b.peakRssMb! * 2 ** 20) / weights)} |`,
      `| second-load speed-up | ${f(big.loadOnlySpeedup, 1)}× | | ${f(big.firstResultSpeedup, 1)}× | | |`,
    );
  }
  return lines.join('\n') + '\n';
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
