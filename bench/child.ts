// One benchmark configuration in its own process (so peak RSS is its own):
//   node out/bench/child.js <mode> <model_dir> <ids.json> <threads> <repeats> [contexts]
// mode "analysis": load, time to first result, then `repeats` full analyses.
// mode "generation": per-token step time with KV cache vs full recompute at given contexts.
import * as fs from 'node:fs';
import { Engine } from '../src/engine/engine';
import type { AnalyzeRequest } from '../src/engine/analyze';
import { forgetPromptState, KvStepModel, RecomputeStepModel } from '../src/engine/generate/generator';
import { median } from './stats';
import { runtimeClock } from '../src/engine/runtime/ort';
import type { Strategy } from '../src/shared/generation';
import type { ProviderRequest } from '../src/engine/runtime/providers';
import type { WeightPrecisionRequest } from '../src/engine/model';

/** The ids' text (<ids>.txt, written by the bench) cut at their count, or the ids themselves. */
function analysisRequest(idsFile: string, ids: number[]): AnalyzeRequest {
  const textFile = idsFile.replace(/\.json$/, '.txt');
  // as the extension's worker runs it (returnCache false): resid_mid not kept with the analysis;
  // attention 'auto' (patterns kept within their budget) unless TD_BENCH_PATTERNS=1 keeps them all
  const patterns = process.env.TD_BENCH_PATTERNS === '1' ? true : ('auto' as const);
  const base = { topK: 5, maxTokens: ids.length, patterns, keepResidMid: false };
  return fs.existsSync(textFile) ? { ...base, text: fs.readFileSync(textFile, 'utf8') } : { ...base, ids };
}

async function main(): Promise<void> {
  const [mode, dir, idsFile, threadsArg, repeatsArg, ctxArg] = process.argv.slice(2);
  const ids = JSON.parse(fs.readFileSync(idsFile!, 'utf8')) as number[];
  const threads = Number(threadsArg);
  const repeats = Number(repeatsArg);
  const t0 = performance.now();
  const cacheDir = process.env.TD_BENCH_CACHE || undefined;
  // The engine as the extension runs it (buffers of finished analyses recycled, as in the worker).
  const engine = new Engine({ recycleBuffers: true });
  // CPU unless bench/gpu.ts asks for a provider (and a weight precision)
  const executionProvider = (process.env.TD_BENCH_PROVIDER || 'cpu') as ProviderRequest;
  const weightPrecision = (process.env.TD_BENCH_WEIGHTS || 'auto') as WeightPrecisionRequest;
  await engine.load({ dir: dir!, threads, executionProvider, weightPrecision, patterns: mode === 'analysis', cacheDir });
  const model = engine.requireModel();
  const loadMs = performance.now() - t0;
  // peak resident memory of the load itself (mapped weight pages count once touched)
  const out: Record<string, unknown> = {
    loadMs,
    graphSource: model.graphSource,
    loadPeakRssMb: process.resourceUsage().maxRSS / 1024,
    provider: model.info.provider,
    providerNote: model.info.provider_note,
    weights: model.info.weights,
  };
  if (executionProvider !== 'cpu' && model.info.provider !== executionProvider) {
    // the asked-for provider did not start: say so without measuring the CPU under its name
    process.stdout.write(JSON.stringify(out));
    await engine.dispose();
    return;
  }
  if (mode === 'load') {
    await engine.analyze({ ids: ids.slice(0, 16), topK: 5, maxTokens: 1 << 20, patterns: true });
    out.firstResultMs = performance.now() - t0;
  } else if (mode === 'analysis') {
    await engine.analyze({ ids: ids.slice(0, 16), topK: 5, maxTokens: 1 << 20, patterns: 'auto' });
    out.firstResultMs = performance.now() - t0;
    // as the extension runs it: the text tokenized (when the bench wrote it next to the ids), attention 'auto'
    const request = analysisRequest(idsFile!, ids);
    await engine.analyze(request, undefined, 1); // warm-up at full size
    const runs = [];
    for (let i = 0; i < repeats; i++) {
      // as the extension does: a new run id per run, then the engine frees all but the shown run
      const a = await engine.analyze(request, undefined, 2 + i);
      engine.retain([2 + i]);
      if (a.tokens.length !== ids.length || a.tokens.some((t, j) => t.id !== ids[j])) throw new Error('the text did not give the ids');
      const { totalMs, tokenizeMs, forwardMs, lensMs, metricsMs, runtime } = a.timings;
      // runtime: of each phase, the part inside onnxruntime's runs (the rest is JavaScript)
      runs.push({ totalMs, tokenizeMs, forwardMs, lensMs, metricsMs, runtime });
    }
    out.runs = runs;
    out.medianMs = median(runs.map((r) => r.totalMs));
  } else {
    const contexts = (ctxArg ?? '64,256,512').split(',').map(Number);
    const rows = [];
    for (const C of contexts) {
      if (C + 17 > model.spec.maxPositions || C > ids.length) continue;
      const prompt = ids.slice(0, C);
      const kv = new KvStepModel(model);
      await kv.prefill(prompt);
      const steps: number[] = [];
      for (let i = 0; i < 16; i++) {
        const s = performance.now();
        await kv.step([ids[C + i] ?? 1]);
        steps.push(performance.now() - s);
      }
      const re = new RecomputeStepModel(model);
      await re.prefill(prompt);
      const full: number[] = [];
      for (let i = 0; i < Math.max(2, Math.min(repeats, 5)); i++) {
        const s = performance.now();
        await re.step([ids[C + i] ?? 1]);
        full.push(performance.now() - s);
      }
      rows.push({ context: C, kvStepMs: median(steps.slice(2)), recomputeStepMs: median(full) });
    }
    out.generation = rows;
    // Compare Completions as the extension runs it: one engine.generate per column, in turn, on
    // one prompt (the longest context above); where the time goes: inside onnxruntime or not
    const P = Math.max(...rows.map((r) => r.context), 0);
    if (P > 0) {
      const columns: Strategy[] = [
        { label: 'greedy', kind: 'greedy' },
        { label: 'top-p', kind: 'sample', topP: 0.9, temperature: 0.8, seed: 1 },
        { label: 'top-k', kind: 'sample', topK: 40, seed: 2 },
        { label: 'beam 3', kind: 'beam', beams: 3 },
      ];
      const newTokens = 24;
      forgetPromptState(model); // a new batch: its first column runs the prompt
      const t = performance.now();
      const r = runtimeClock();
      const perColumnMs: number[] = [];
      let promptRuns = 0;
      for (const strategy of columns) {
        const c = await engine.generate({ promptIds: ids.slice(0, P), strategy, maxNewTokens: newTokens });
        perColumnMs.push(c.timings.totalMs);
        if (!c.timings.promptReused) promptRuns++;
      }
      const totalMs = performance.now() - t;
      const runtimeMs = runtimeClock() - r;
      out.completions = {
        prompt: P,
        columns: columns.length,
        newTokens,
        totalMs,
        runtimeMs,
        jsMs: totalMs - runtimeMs,
        perColumnMs,
        promptRuns,
      };
    }
  }
  out.peakRssMb = process.resourceUsage().maxRSS / 1024;
  await engine.dispose();
  process.stdout.write(JSON.stringify(out));
}

main().catch((e: unknown) => {
  process.stderr.write(String((e as Error).stack ?? e));
  process.exit(1);
});
