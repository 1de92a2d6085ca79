// `npm run bench:whatif`: interventions on a GPT-2-small-shaped checkpoint (124 M, random
// weights, GPT-2's tokenizer), every figure a ratio measured in this run on this machine:
//  1. a head-ablated re-analysis (zero and mean ablation of 3 heads) against the clean analysis
//     it follows, as the panel runs them (target ≤ 1.2×);
//  2. what the intervention inputs cost a clean forward pass: the forward graph with and without
//     them;
//  3. the activation-patching heatmap (every layer × position) of a 64-token prompt (target
//     ≤ 10 s on 2 cores) for a realistic pair (one word changed at 60 % of the prompt) and the
//     worst case (the first token changed), against the naive way (one full forward pass per
//     cell, timed here) and the FLOP bound of the work done at the GEMM peak measured here; and
//     the realistic pair's heatmap of each site (resid_pre, attn_out, mlp_out) against resid_pre's.
// Writes bench/results/whatif-<date>.json and .md. Options: --repeats N (default 5), --tokens 64,
// --only ablation,hooks,patching.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine } from '../src/engine/engine';
import { emptyPast, forwardFeeds } from '../src/engine/analyze';
import { withGateDefaults } from '../src/engine/graph/gates';
import { buildForwardGraph } from '../src/engine/graph/forward';
import { weightReader } from '../src/engine/arch/weights';
import { openCheckpoint } from '../src/engine/checkpoint/hf';
import { createSession } from '../src/engine/runtime/ort';
import { patchingHeatmap, PATCH_BATCHING } from '../src/engine/interventions/patching';
import { idsTensor } from '../src/engine/interventions/feeds';
import type { LoadedModel } from '../src/engine/model';
import { PATCH_SITES, type HeadAblation, type PatchingResult } from '../src/shared/interventions';
import { makeRandomGpt2 } from './checkpoints';
import { median } from './stats';
import { CACHE, corpusIds, cpuIdentity, log, ROOT, SHARED, THREADS } from './common';
import { gemmRate } from './rates';

const argv = process.argv.slice(2);
const opt = (name: string, fallback: number) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : fallback;
};
const REPEATS = opt('repeats', 5);
/** --only ablation,hooks,patching: a subset of the parts. */
const ONLY = new Set((argv[argv.indexOf('--only') + 1] ?? '').split(',').filter((x) => argv.includes('--only') && x));
const part = (name: string) => ONLY.size === 0 || ONLY.has(name);
const PATCH_T = opt('tokens', 64);
const HEADS: HeadAblation['heads'] = [
  { layer: 5, head: 1 },
  { layer: 6, head: 9 },
  { layer: 7, head: 10 },
];

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const r = await fn();
  return [r, performance.now() - t];
}

/** Clean analysis, then the same text ablated (zero, mean), alternating, as the panel runs them. */
async function ablationRatios(engine: Engine, ids: number[]) {
  const req = { ids, topK: 5, maxTokens: 1 << 20, patterns: 'auto' as const };
  await engine.analyze(req, undefined, 1);
  const clean: number[] = [];
  const zero: number[] = [];
  const mean: number[] = [];
  let run = 10;
  for (let i = 0; i < REPEATS; i++) {
    const id = run++;
    clean.push((await engine.analyze(req, undefined, id)).timings.totalMs);
    zero.push(
      (await engine.analyze({ ...req, interventions: { ablation: { heads: HEADS, mode: 'zero' } } }, undefined, run++)).timings.totalMs,
    );
    mean.push(
      (await engine.analyze({ ...req, interventions: { ablation: { heads: HEADS, mode: 'mean' } } }, undefined, run++)).timings.totalMs,
    );
    engine.retain([id]);
  }
  return {
    tokens: ids.length,
    cleanMs: median(clean),
    zeroMs: median(zero),
    meanMs: median(mean),
    zeroRatio: median(zero.map((z, i) => z / clean[i]!)),
    meanRatio: median(mean.map((m, i) => m / clean[i]!)),
  };
}

/** Forward pass (every hook output fetched as an analysis does) with and without the intervention inputs. */
async function hookCost(model: LoadedModel, dir: string, ids: number[]) {
  const ckpt = openCheckpoint(dir);
  const bare = buildForwardGraph(model.spec, weightReader(model.spec, ckpt.weights), { patterns: true, interventions: false }).encode();
  const plain = withGateDefaults(await createSession(bare, { threads: THREADS, executionProvider: 'cpu' }));
  const fetches = model.forward.outputNames.filter((n) => !n.startsWith('present.') && !n.includes('hook_z_mean'));
  // as an analysis feeds it: no pattern rows kept, no final logits (graph/gates.ts)
  const feeds = forwardFeeds(model, ids, false);
  const a: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < REPEATS + 2; i++) {
    const [, ta] = await timed(() => plain.run(feeds, fetches));
    const [, tb] = await timed(() => model.forward.run(feeds, fetches));
    if (i >= 2) {
      a.push(ta);
      b.push(tb);
    }
  }
  await plain.release();
  return { tokens: ids.length, withoutMs: median(a), withMs: median(b), ratio: median(b.map((x, i) => x / a[i]!)) };
}

/** FLOPs of one layer for one position recomputed by the suffix graph (dense parts; attention is small at 64 tokens). */
function layerPositionFlops(model: LoadedModel): number {
  const s = model.spec;
  const q = s.nHeads * s.headDim;
  const kv = s.nKvHeads * s.headDim;
  return 2 * (s.dModel * (q + 2 * kv) + q * s.dModel) + 2 * s.dModel * s.dMlp * (s.gatedMlp ? 3 : 2);
}

async function patching(model: LoadedModel, engine: Engine, ids: number[], peak: number) {
  const T = ids.length;
  // the naive way: one full forward pass per cell
  const fwd: number[] = [];
  for (let i = 0; i < REPEATS + 2; i++) {
    const [, t] = await timed(() => model.forward.run({ input_ids: idsTensor(ids), ...emptyPast(model) }, ['logits']));
    if (i >= 2) fwd.push(t);
  }
  const naiveMs = median(fwd) * model.spec.nLayers * T;
  const realistic = [...ids];
  const k = Math.floor(T * 0.6);
  realistic[k] =
    model.tokenizer.encodeIds(' whale', false)[0] === ids[k]
      ? model.tokenizer.encodeIds(' ship', false)[0]!
      : model.tokenizer.encodeIds(' whale', false)[0]!;
  const worst = [...ids];
  worst[0] =
    model.tokenizer.encodeIds(' The', false)[0] === ids[0]
      ? model.tokenizer.encodeIds(' A', false)[0]!
      : model.tokenizer.encodeIds(' The', false)[0]!;
  await model.suffix!(); // session made outside the timings (once per model)
  const cases: Record<string, unknown>[] = [];
  for (const [name, corrupted] of [
    [`realistic: token ${k} changed`, realistic],
    ['worst case: the first token changed', worst],
  ] as const) {
    const times: PatchingResult[] = [];
    for (let i = 0; i < Math.max(2, Math.ceil(REPEATS / 2)); i++)
      times.push(await patchingHeatmap(model, { cleanIds: ids, corruptedIds: corrupted, direction: 'denoise' }));
    const r = times.sort((x, y) => x.ms - y.ms)[Math.floor(times.length / 2)]!;
    const unbatched = await patchingHeatmap(model, { cleanIds: ids, corruptedIds: corrupted, direction: 'denoise' }, undefined, {
      rowBudget: 1,
      maxRuns: 1,
    });
    const sp = model.spec;
    const kvFlops = 2 * 2 * sp.dModel * sp.nKvHeads * sp.headDim; // the last layer's other rows: K and V projections
    const readOut = r.metric === 'logprob' ? r.runs * 2 * sp.dModel * sp.dVocab : 0; // a logit difference reads 2 rows of W_U
    const flops = r.layerPositions * layerPositionFlops(model) + r.kvOnlyRows * kvFlops + readOut;
    cases.push({
      name,
      ms: r.ms,
      runs: r.runs,
      skipped: r.skipped,
      calls: r.calls,
      layerPositions: r.layerPositions,
      kvOnlyRows: r.kvOnlyRows,
      metric: r.metric,
      boundMs: (flops / (peak * 1e9)) * 1000,
      vsBound: r.ms / ((flops / (peak * 1e9)) * 1000),
      unbatchedMs: unbatched.ms,
      naiveMs,
      speedupVsNaive: naiveMs / r.ms,
    });
    log(`${name}: ${r.ms.toFixed(0)} ms (${r.runs} runs in ${r.calls} calls, ${r.skipped} cells skipped), naive ${naiveMs.toFixed(0)} ms`);
  }
  // each site on the realistic pair: a sublayer patch runs from the next layer, after a call
  // that computes every patched row of a layer (attn_out: the rest of the block)
  const sites: Record<string, unknown>[] = [];
  for (const site of PATCH_SITES) {
    const times: PatchingResult[] = [];
    for (let i = 0; i < Math.max(2, Math.ceil(REPEATS / 2)); i++)
      times.push(await patchingHeatmap(model, { cleanIds: ids, corruptedIds: realistic, direction: 'denoise', site }));
    const r = times.sort((x, y) => x.ms - y.ms)[Math.floor(times.length / 2)]!;
    sites.push({ site, ms: r.ms, runs: r.runs, calls: r.calls, skipped: r.skipped });
    log(`site ${site}: ${r.ms.toFixed(0)} ms (${r.runs} runs in ${r.calls} calls, ${r.skipped} cells skipped)`);
  }
  const residMs = sites[0]!.ms as number;
  for (const s of sites) s.vsResidPre = (s.ms as number) / residMs;
  void engine;
  return { tokens: T, forwardMs: median(fwd), batching: PATCH_BATCHING, cases, sites };
}

function markdown(o: Record<string, unknown>): string {
  const f = (x: unknown, d = 2) => (typeof x === 'number' ? x.toFixed(d) : String(x));
  const abl = o.ablation as Record<string, number>[];
  const hooks = o.hooks as Record<string, number>[];
  const pat = o.patching as {
    tokens: number;
    forwardMs: number;
    cases: Record<string, number | string>[];
    sites: Record<string, number | string>[];
  };
  return [
    `# What-if benchmark ${o.date}`,
    '',
    `Machine: ${o.machine}. GEMM peak measured here: ${f(o.gemmPeak, 0)} GFLOP/s. Model: GPT-2-small shape, random weights.`,
    '',
    '| tokens | clean analysis (ms) | zero-ablated (ms) | ratio | mean-ablated (ms) | ratio |',
    '|---:|---:|---:|---:|---:|---:|',
    ...abl.map(
      (r) => `| ${r.tokens} | ${f(r.cleanMs, 0)} | ${f(r.zeroMs, 0)} | ${f(r.zeroRatio)}× | ${f(r.meanMs, 0)} | ${f(r.meanRatio)}× |`,
    ),
    '',
    '| tokens | forward without intervention inputs (ms) | with (ms) | ratio |',
    '|---:|---:|---:|---:|',
    ...hooks.map((r) => `| ${r.tokens} | ${f(r.withoutMs, 1)} | ${f(r.withMs, 1)} | ${f(r.ratio, 3)}× |`),
    '',
    `Activation-patching heatmap, ${pat.tokens} tokens × 12 layers (one full forward pass: ${f(pat.forwardMs, 1)} ms):`,
    '',
    '| pair | heatmap (ms) | patched runs | calls | cells skipped | FLOP bound (ms) | ÷ bound | unbatched (ms) | naive (ms) | speed-up vs naive |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...pat.cases.map(
      (c) =>
        `| ${c.name} | ${f(c.ms, 0)} | ${c.runs} | ${c.calls} | ${c.skipped} | ${f(c.boundMs, 0)} | ${f(c.vsBound)}× | ${f(c.unbatchedMs, 0)} | ${f(c.naiveMs, 0)} | ${f(c.speedupVsNaive, 1)}× |`,
    ),
    '',
    'The realistic pair, each site patched:',
    '',
    '| site | heatmap (ms) | patched runs | calls | cells skipped | ÷ resid_pre |',
    '|---|---:|---:|---:|---:|---:|',
    ...(pat.sites ?? []).map((c) => `| ${c.site} | ${f(c.ms, 0)} | ${c.runs} | ${c.calls} | ${c.skipped} | ${f(c.vsResidPre)}× |`),
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  fs.mkdirSync(CACHE, { recursive: true });
  log('preparing the GPT-2-small-shaped random checkpoint…');
  const dir = makeRandomGpt2(path.join(CACHE, 'gpt2-small-random'), path.join(SHARED, 'gpt2-bpe'));
  log(`measuring onnxruntime GEMM peak with ${THREADS} threads…`);
  const peak = Math.max(await gemmRate(512, 768, 3072, THREADS), await gemmRate(512, 3072, 768, THREADS));
  const engine = new Engine({ recycleBuffers: true });
  const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'td-bench-whatif-'));
  await engine.load({ dir, threads: THREADS, executionProvider: 'cpu', patterns: true, cacheDir });
  const model = engine.requireModel();
  const all = corpusIds(dir, 512);
  const ablation = [];
  for (const T of part('ablation') ? [128, 512] : []) {
    log(`head ablation at ${T} tokens…`);
    ablation.push(await ablationRatios(engine, all.slice(0, T)));
  }
  const hooks = [];
  for (const T of part('hooks') ? [128, 512] : []) {
    log(`intervention inputs on a clean forward pass at ${T} tokens…`);
    hooks.push(await hookCost(model, dir, all.slice(0, T)));
  }
  log(`activation patching at ${PATCH_T} tokens…`);
  const pat = part('patching')
    ? await patching(model, engine, all.slice(0, PATCH_T), peak)
    : { tokens: PATCH_T, forwardMs: NaN, cases: [] };
  await engine.dispose();
  fs.rmSync(cacheDir, { recursive: true, force: true });
  const date = new Date().toISOString().slice(0, 10);
  const out = {
    date,
    machine: `${os.cpus().length} × ${cpuIdentity()}, onnxruntime ${THREADS} threads, load average ${os.loadavg()[0]!.toFixed(1)} at the end`,
    gemmPeak: peak,
    ablation,
    hooks,
    patching: pat,
  };
  const base = path.join(ROOT, 'bench', 'results', `whatif-${date}`);
  fs.writeFileSync(`${base}.json`, JSON.stringify(out, null, 1));
  fs.writeFileSync(`${base}.md`, markdown(out));
  process.stdout.write(markdown(out));
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
