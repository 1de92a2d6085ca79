// transformer-dynamics: the same engine and analyses as the extension, from a terminal.
//   transformer-dynamics analyze --model <dir> (--text <s> | --text-file <f|->) [--top-k 5]
//                                [--max-tokens N] [--threads N] [--no-patterns]
//                                [--json <out.json|->] [--csv <out.csv>] [--html <report.html>]
//                                [--ablate L.H,… [--ablation zero|mean]] [--patch-from FILE [--patch-cells …]]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { physicalCores } from '../engine/cores';
import { Engine } from '../engine/engine';
import { EngineError } from '../engine/errors';
import { analysisToCsv, analysisToJson } from '../shared/export';
import { runtimeMs, truncationText, type Analysis } from '../shared/analysis';
import { PROVIDERS, type ProviderRequest } from '../engine/runtime/ort';
import { runsOn } from '../shared/runs-on';
import { WEIGHT_PRECISIONS, type WeightPrecisionRequest } from '../engine/runtime/providers';
import type { ClustersResult, HeadStatsResult, ProximityResult } from '../shared/analysis';
import { writeReport } from './report';
import { runWhatIf } from './whatifRun';

export const BUNDLED_MODEL_DIR = path.resolve(__dirname, '..', 'media', 'models', 'td-mini');

const USAGE = `Usage: transformer-dynamics analyze [options]

Runs a causal language model on a text and writes every layer's logit lens,
residual-stream norms, trajectories and repetition measures.

Options:
  --model <dir>        Hugging Face model folder (config.json, model.safetensors,
                       tokenizer.json). Default: the bundled model (td-mini).
  --text <string>      The text to analyse.
  --text-file <file>   Read the text from a file ("-" for stdin).
  --top-k <n>          Top tokens per lens cell (default 5).
  --max-tokens <n>     Analyse at most n tokens (default: the model's context).
  --threads <n>        onnxruntime intra-op threads (default: one per physical
                       core this process may use).
  --no-patterns        Skip attention patterns (less memory on long inputs).
  --execution-provider auto | cpu | webgpu | cuda | dml | coreml (default auto:
                       WebGPU on a hardware GPU adapter, else CUDA when installed,
                       else CPU; a failing provider falls back to CPU with a note).
  --weights auto | float32 | float16  Precision of the weight matrices (default auto:
                       float16 for half-precision checkpoints on a GPU provider).
  --cache-dir <dir>    Where built graphs are kept and reused by the next run (default:
                       $TD_CACHE_DIR, else $XDG_CACHE_HOME/transformer-dynamics/graphs,
                       else ~/.cache/transformer-dynamics/graphs).
  --no-cache           Build the graph in memory every time; write nothing to disk.
  --json <file|->      Write the analysis as JSON ("-" for stdout).
  --csv <file>         Write the lens table as CSV (one row per layer × position).
  --html <file>        Write a standalone HTML report: the extension's panel with this
                       analysis inlined (lens, trajectories, repetition, attention,
                       proximity, the ball, clusters). One file, no network access
                       needed; attention patterns of single heads are included when
                       n_layers·n_heads·pos² ≤ 8e6, similarity matrices for every
                       layer up to 512 tokens (else the last layer).

What-if (interventions; README "Metrics"):
  --ablate L.H[,L.H…]  Ablate these attention heads (layer.head, 0-based) and analyse
                       the text with them ablated. The report shows the clean run beside it.
  --ablation zero|mean How (default zero): zero sets each head's output z to 0; mean sets it
                       to the head's mean z over the analysed text's positions.
  --patch-from FILE    Another prompt: a JSON export of a run of this model (--json; its
                       tokens; the name ends in .json) or a text file. Without --patch-cells:
                       the activation-patching heatmap (every layer × position) with this text
                       as the clean prompt and FILE as the corrupted one (into the JSON's
                       "patching" and the report's Diff tab). Prompts of different lengths are
                       aligned from the end.
  --patch-cells CELLS  Instead, analyse this text with the site (--patch-site) replaced by
                       FILE's values at these cells: L:P, L:A-B or L:* (every position),
                       comma-separated; for site z, heads L.H[,L.H…] (each at every position).
  --patch-direction denoise|noise  Heatmap (default denoise): patch the clean run's values
                       into the corrupted run (how much does a cell restore?) or the reverse.
  --patch-site resid_pre|attn_out|mlp_out|z  What is patched (default resid_pre): the residual
                       stream entering each layer, or each layer's attention or MLP output
                       (layer × position); z: each attention head's output at every position
                       at once (layer × head).
  --target TOKEN       Heatmap target token (id, or text that is one token); default the clean
                       run's top prediction at its last position.
  --contrast TOKEN|none  Contrast token: LD = logit(target) − logit(contrast); default the
                       corrupted run's top prediction when it differs from the target; none:
                       LD = log p(target).
  -h, --help           Show this help.
`;

/**
 * The graph cache the CLI uses unless told otherwise (a second run then loads about as fast as
 * reading the weight files); undefined — build in memory — when it cannot be written.
 */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const base =
    env.TD_CACHE_DIR ??
    path.join(
      env.XDG_CACHE_HOME ?? (process.platform === 'win32' && env.LOCALAPPDATA ? env.LOCALAPPDATA : path.join(os.homedir(), '.cache')),
      'transformer-dynamics',
      'graphs',
    );
  try {
    fs.mkdirSync(base, { recursive: true });
    fs.accessSync(base, fs.constants.W_OK);
    return base;
  } catch {
    return undefined;
  }
}

function positiveInt(name: string, v: string | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new EngineError('BAD_REQUEST', `--${name} must be a positive integer, got "${v}".`);
  return n;
}

function provider(v: string | undefined): ProviderRequest {
  if (v === undefined) return 'auto';
  if (!(PROVIDERS as readonly string[]).includes(v))
    throw new EngineError('BAD_REQUEST', `--execution-provider must be one of ${PROVIDERS.join(', ')}.`);
  return v as ProviderRequest;
}

function weightPrecision(v: string | undefined): WeightPrecisionRequest {
  if (v === undefined) return 'auto';
  if (!(WEIGHT_PRECISIONS as readonly string[]).includes(v))
    throw new EngineError('BAD_REQUEST', `--weights must be one of ${WEIGHT_PRECISIONS.join(', ')}.`);
  return v as WeightPrecisionRequest;
}

function readText(values: { text?: string; 'text-file'?: string }): string {
  if (values.text !== undefined && values['text-file'] !== undefined)
    throw new EngineError('BAD_REQUEST', 'Give either --text or --text-file, not both.');
  if (values.text !== undefined) return values.text;
  const file = values['text-file'];
  if (file === undefined) throw new EngineError('BAD_REQUEST', 'Give the text with --text "<string>" or --text-file <file>.');
  try {
    return fs.readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (e) {
    throw new EngineError('NOT_FOUND', `Cannot read ${file}: ${(e as Error).message}`);
  }
}

function summary(a: Analysis): string {
  const T = a.lens.pos;
  const last = a.lens.rows - 1;
  const inRuntime = runtimeMs(a.timings);
  const lines = [
    `${a.model.name} (${a.model.architecture}, ${a.model.n_layers} layers, d_model ${a.model.d_model}, d_vocab ${a.model.d_vocab}) on ${runsOn(a.model)}`,
    `${T} tokens${a.truncation ? ` (${truncationText(a.truncation)})` : ''} in ${a.timings.totalMs.toFixed(0)} ms ` +
      `(forward ${a.timings.forwardMs.toFixed(0)} ms, lens ${a.timings.lensMs.toFixed(0)} ms, metrics ${a.timings.metricsMs.toFixed(0)} ms` +
      (inRuntime === null ? ')' : `; ${inRuntime.toFixed(0)} ms of it inside onnxruntime)`),
  ];
  let bits = 0;
  for (let p = 0; p < T - 1; p++) bits += -a.lens.nextLogprob[last * T + p]! / Math.LN2;
  if (T > 1) lines.push(`mean surprisal ${(bits / (T - 1)).toFixed(3)} bits/token`);
  const next = a.lastLogitsTop.slice(0, 5).map((t) => `${JSON.stringify(a.vocab[t.id] ?? '')} ${(t.prob * 100).toFixed(1)}%`);
  lines.push(`next token: ${next.join(', ')}`);
  return lines.join('\n');
}

/** The JSON's on-demand quantities, from the engine (attention only when patterns were computed). */
async function jsonExtras(engine: Engine, a: Analysis, runId: number) {
  const last = a.lens.pos - 1;
  return {
    headStats: a.cache.patterns || a.cache.headStats ? ((await engine.query({ type: 'headStats', runId })) as HeadStatsResult) : null,
    proximityLast: last >= 0 ? ((await engine.query({ type: 'proximity', runId, pos: last })) as ProximityResult) : null,
    clustersLast: last >= 0 ? ((await engine.query({ type: 'clusters', runId, row: a.lens.rows - 1 })) as ClustersResult) : null,
  };
}

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      model: { type: 'string' },
      text: { type: 'string' },
      'text-file': { type: 'string' },
      'top-k': { type: 'string' },
      'max-tokens': { type: 'string' },
      threads: { type: 'string' },
      'no-patterns': { type: 'boolean' },
      'execution-provider': { type: 'string' },
      weights: { type: 'string' },
      'cache-dir': { type: 'string' },
      'no-cache': { type: 'boolean' },
      json: { type: 'string' },
      csv: { type: 'string' },
      html: { type: 'string' },
      ablate: { type: 'string' },
      ablation: { type: 'string' },
      'patch-from': { type: 'string' },
      'patch-cells': { type: 'string' },
      'patch-direction': { type: 'string' },
      'patch-site': { type: 'string' },
      target: { type: 'string' },
      contrast: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || positionals.length === 0) {
    process.stdout.write(USAGE);
    return values.help ? 0 : 2;
  }
  if (positionals[0] !== 'analyze') throw new EngineError('BAD_REQUEST', `Unknown command "${positionals[0]}". Try --help.`);
  const text = readText(values);
  const engine = new Engine();
  // a first load of a big model converts for a while: say what it is doing, on a terminal
  const tty = process.stderr.isTTY === true;
  let shown = false;
  const onProgress = (message: string) => {
    if (!tty) return;
    process.stderr.write(`\r\x1b[K${message}…`);
    shown = true;
  };
  try {
    const info = await engine.load(
      {
        dir: values.model ?? BUNDLED_MODEL_DIR,
        threads: positiveInt('threads', values.threads, physicalCores()),
        executionProvider: provider(values['execution-provider']),
        weightPrecision: weightPrecision(values.weights),
        patterns: !values['no-patterns'],
        cacheDir: values['no-cache'] ? undefined : (values['cache-dir'] ?? defaultCacheDir()),
      },
      { onProgress },
    );
    if (shown) process.stderr.write('\r\x1b[K');
    if (info.provider_note) process.stderr.write(`note: ${info.provider_note}\n`);
    const request = {
      text,
      topK: positiveInt('top-k', values['top-k'], 5),
      maxTokens: positiveInt('max-tokens', values['max-tokens'], info.max_positions),
      // the head statistics come from the forward graph; full patterns only while they are small
      patterns: values['no-patterns'] ? false : ('auto' as const),
    };
    const whatIf = await runWhatIf(engine, values, request);
    const { analysis, runId } = whatIf;
    if (values.json !== undefined) {
      const json = JSON.stringify(analysisToJson(analysis, { ...(await jsonExtras(engine, analysis, runId)), patching: whatIf.patching }));
      if (values.json === '-') process.stdout.write(json + '\n');
      else fs.writeFileSync(values.json, json);
    }
    if (values.csv !== undefined) fs.writeFileSync(values.csv, analysisToCsv(analysis));
    if (values.html !== undefined) {
      const bytes = await writeReport(values.html, engine, analysis, runId, {}, whatIf.report);
      if (values.json !== '-') process.stderr.write(`report: ${values.html} (${(bytes / 1e6).toFixed(1)} MB)\n`);
    }
    if (values.json !== '-') process.stderr.write(summary(analysis) + '\n' + whatIf.summary);
    return 0;
  } finally {
    await engine.dispose();
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      const msg = e instanceof EngineError ? e.message : e instanceof Error ? `${e.message}` : String(e);
      process.stderr.write(`transformer-dynamics: ${msg}\n`);
      process.exit(1);
    },
  );
}
