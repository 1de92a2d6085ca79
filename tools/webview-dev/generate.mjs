// The extension host's side of Compare Completions for the dev harness: a real model decodes
// through the engine (out/src/engine/generate) in this Node process and the steps stream into
// the page as completionBatch / completionStep / completionDone / completionError messages,
// one batch at a time (a new batch or Stop cancels the old one), as src/extension/completions.ts
// does. The page's mock host (mock-vscode.js) calls the exposed __TD_DEV_GENERATE__ and
// __TD_DEV_STOP__ bindings for the panel's `generate` and `stopGeneration` requests.
/* global window, AbortController */ // window: inside page.evaluate callbacks
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT, modelDir } from './payloads.mjs';

const require = createRequire(import.meta.url);

function engine() {
  for (const f of ['out/src/engine/model.js', 'out/src/engine/generate/index.js', 'out/tools/convert/llama2c.js']) {
    if (!fs.existsSync(path.join(ROOT, f))) throw new Error(`${f} is missing: run \`npx tsc -p tsconfig.test.json\` first.`);
  }
  return {
    loadModel: require(path.join(ROOT, 'out/src/engine/model.js')).loadModel,
    generate: require(path.join(ROOT, 'out/src/engine/generate/index.js')).generate,
    KvStepModel: require(path.join(ROOT, 'out/src/engine/generate/generator.js')).KvStepModel,
    DEFAULT_STRATEGIES: require(path.join(ROOT, 'out/src/shared/generation.js')).DEFAULT_STRATEGIES,
  };
}

/** The KV-cache step model with a pause before each step, so streaming can be watched. */
class PacedStepModel {
  constructor(inner, pace) {
    this.inner = inner;
    this.pace = pace;
  }
  get vocabSize() {
    return this.inner.vocabSize;
  }
  get length() {
    return this.inner.length;
  }
  prefill(ids) {
    return this.inner.prefill(ids);
  }
  expand(n) {
    this.inner.expand(n);
  }
  reorder(from) {
    this.inner.reorder(from);
  }
  async step(tokens) {
    const ms = this.pace();
    if (ms > 0) await new Promise((r) => setTimeout(r, ms));
    return this.inner.step(tokens);
  }
}

/** Loads the model once; `attach(page)` makes a page's mock host generate with it. */
export async function createDevGenerator() {
  const e = engine();
  const { dir, name } = modelDir();
  const model = await e.loadModel(dir, { threads: 2, executionProvider: 'cpu', name });
  return {
    name,
    defaults: e.DEFAULT_STRATEGIES,
    /**
     * Wires a page: returns { start(params), setPace(ms), idle(), batches } where start is what
     * the "Compare Completions…" command does (the panel's requests go through the same path).
     */
    async attach(page) {
      let seq = 0;
      let running = null; // { batchId, ctl, done: Promise }
      let lastPrompt = null;
      let paceMs = 0;
      const batches = [];
      const post = (m) => page.evaluate((msg) => window.__TD_HOST__.post(msg), m).catch(() => undefined);

      const run = async (batch, text, ctl) => {
        for (let index = 0; index < batch.strategies.length; index++) {
          if (ctl.signal.aborted) break;
          const strategy = batch.strategies[index];
          try {
            const completion = await e.generate(
              model,
              { text, strategy, maxNewTokens: batch.maxNewTokens, forcedIds: batch.forcedIds, topAlternatives: 5 },
              (step, stepIndex) => void post({ type: 'completionStep', batchId: batch.batchId, index, stepIndex, step }),
              ctl.signal,
              new PacedStepModel(new e.KvStepModel(model), () => paceMs),
            );
            await post({ type: 'completionDone', batchId: batch.batchId, index, completion });
          } catch (err) {
            await post({ type: 'completionError', batchId: batch.batchId, index, error: err.message });
          }
        }
      };

      const start = async (params) => {
        const text = params.prompt ?? lastPrompt;
        if (!text) throw new Error('There is no prompt yet: run "Compare Completions…" on a selection first.');
        lastPrompt = text;
        running?.ctl.abort();
        await running?.done; // the engine runs one generation at a time
        const batchId = ++seq;
        const ctl = new AbortController();
        const batch = {
          batchId,
          prompt: text,
          strategies: params.strategies,
          maxNewTokens: params.maxNewTokens,
          forkOf: params.forkOf ?? null,
          forcedIds: params.forcedIds ?? [],
        };
        batches.push(batch);
        await post({ type: 'completionBatch', batch });
        const done = run(batch, text, ctl).finally(() => {
          if (running?.batchId === batchId) running = null;
        });
        running = { batchId, ctl, done };
        return { batchId };
      };

      await page.exposeFunction('__TD_DEV_GENERATE__', (params) => start(params));
      await page.exposeFunction('__TD_DEV_STOP__', (batchId) => {
        if (running?.batchId === batchId) running.ctl.abort();
        return null;
      });
      return {
        start,
        batches,
        setPace(ms) {
          paceMs = ms;
        },
        /** Resolves when no batch is running. */
        async idle() {
          while (running) await running.done;
        },
      };
    },
  };
}
