// `npm run bench:gpu`: the same full analysis (forward keeping every residual stream and attention
// pattern, the logit lens reduced to top-k/entropy/…, the walk metrics) on WebGPU and on the CPU
// with all cores, in one run, reported as ratios:
//   - GPT-2-small shape (124 M, random weights) at 128 / 512 / 1024 tokens, from the graph cache;
//   - a 1.2 B Llama-shaped bfloat16 checkpoint (float16 weights on WebGPU where the adapter has
//     shader-f16);
//   - the numbers of both providers side by side (float32 within 1e-4; float16 within the
//     half-precision tolerances of test/unit/half-weights.test.ts);
//   - PyTorch on CUDA for the same analysis when torch.cuda is available
//     (bench/reference/pytorch_analysis.py --device cuda);
//   - where onnxruntime placed the nodes, and an onnxruntime profile of one WebGPU analysis.
// Never in CI. Options: --sizes 128,512,1024 --repeats 3 --llama-tokens 128 (0: skip)
// --profile 512 (0: skip) --out <folder> (results also there) --shape tiny (2-layer models with
// the real vocabulary: a smoke test on SwiftShader). Writes bench/results/gpu-<date>.md and .json.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { GPT2_SMALL, LLAMA_1B, makeRandomGpt2, makeRandomLlama, type Gpt2Shape, type LlamaShape } from './checkpoints';
import { CACHE, child, corpusIds, cpuIdentity, log, ROOT, SHARED } from './common';
import { agreement, type Agreement } from './gpu-agreement';
import { providerEnvironmentFor } from '../src/engine/runtime/ort';
import { adapterLabel } from '../src/engine/runtime/providers';

const TINY_GPT2: Gpt2Shape = { ...GPT2_SMALL, nLayer: 2, nEmbd: 64, nHead: 2 };
const TINY_LLAMA: LlamaShape = { ...LLAMA_1B, layers: 2, hidden: 64, intermediate: 128, heads: 2, kvHeads: 1 };

interface Timing {
  provider: string;
  weights?: string;
  note?: string | null;
  medianMs?: number;
  forwardMs?: number;
  lensMs?: number;
  metricsMs?: number;
  loadMs?: number;
  error?: string;
}

interface Row {
  model: string;
  tokens: number;
  cpu: Timing;
  webgpu: Timing;
  pytorch?: { float32?: number; bfloat16?: number; error?: string };
}

interface Results {
  date: string;
  machine: string;
  adapter: string | null;
  adapterError: string | null;
  threads: number;
  rows: Row[];
  agreement: Agreement[];
  placement: string;
  profile: string;
  log: string[];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)] ?? NaN;

/** One timing child (bench/child.ts) for a provider; failures are recorded, not thrown. */
function time(dir: string, ids: string, provider: string, repeats: number, env: NodeJS.ProcessEnv): Timing {
  try {
    const r = child('analysis', dir, ids, repeats, [], { ...env, TD_BENCH_PROVIDER: provider });
    const runs = (r.runs as { forwardMs: number; lensMs: number; metricsMs: number }[] | undefined) ?? [];
    return {
      provider: String(r.provider),
      weights: String(r.weights),
      note: r.providerNote as string | null,
      loadMs: r.loadMs as number,
      medianMs: r.medianMs as number | undefined,
      forwardMs: median(runs.map((x) => x.forwardMs)),
      lensMs: median(runs.map((x) => x.lensMs)),
      metricsMs: median(runs.map((x) => x.metricsMs)),
    };
  } catch (e) {
    return { provider, error: (e as Error).message.slice(-600) };
  }
}

/** PyTorch's time for the same analysis on CUDA (median of 5), or why there is none. */
function pytorch(dir: string, ids: string, dtype: 'float32' | 'bfloat16'): number | string {
  const script = path.join(ROOT, 'bench', 'reference', 'pytorch_analysis.py');
  const r = spawnSync(
    'python3',
    [script, dir, ids, '--device', 'cuda', '--dtype', dtype, '--repeats', '5', '--threads', String(os.availableParallelism())],
    {
      encoding: 'utf8',
      timeout: 120_000,
    },
  );
  if (r.status !== 0) return (r.stderr || r.error?.message || 'python3 failed').trim().split('\n').pop() ?? 'failed';
  const out = JSON.parse(r.stdout) as { runs: { total_ms: number }[] };
  return median(out.runs.map((x) => x.total_ms));
}

function cudaAvailable(): string | null {
  const r = spawnSync('python3', ['-c', 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 3)'], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (r.status === 0) return null;
  return r.status === 3
    ? 'torch.cuda.is_available() is False'
    : (r.stderr || r.error?.message || 'no python3 with torch').trim().split('\n').pop()!;
}

const fmt = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(0));
const ratio = (a: number | undefined, b: number | undefined) => (a && b && Number.isFinite(a / b) ? `${(a / b).toFixed(2)}×` : '—');

export function markdown(r: Results): string {
  const lines = [
    `## WebGPU vs CPU (${r.date})`,
    '',
    `Machine: ${r.machine}. WebGPU adapter: ${r.adapter ?? `none (${r.adapterError})`}. CPU: ${r.threads} threads.`,
    'Full analysis (forward with every residual stream and attention pattern, logit lens, walk metrics), median of the runs, ms.',
    '',
    '| model | tokens | CPU total (fwd / lens / metrics) | WebGPU total (fwd / lens / metrics) | CPU ÷ WebGPU | PyTorch CUDA fp32 (bf16) | WebGPU ÷ PyTorch fp32 |',
    '|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const row of r.rows) {
    const c = row.cpu;
    const g = row.webgpu;
    const cell = (t: Timing) =>
      t.error
        ? `failed: ${t.error.split('\n').pop()}`
        : t.medianMs === undefined
          ? `did not run: ${t.note ?? '?'}`
          : `${fmt(t.medianMs)} (${fmt(t.forwardMs)} / ${fmt(t.lensMs)} / ${fmt(t.metricsMs)})${t.weights === 'float16' ? ' fp16' : ''}`;
    const pt = row.pytorch;
    const ptCell = pt?.error ? `— (${pt.error})` : pt?.float32 ? `${fmt(pt.float32)}${pt.bfloat16 ? ` (${fmt(pt.bfloat16)})` : ''}` : '—';
    lines.push(
      `| ${row.model} | ${row.tokens} | ${cell(c)} | ${cell(g)} | ${ratio(c.medianMs, g.medianMs)} | ${ptCell} | ${ratio(g.medianMs, pt?.float32)} |`,
    );
  }
  lines.push('', '### Numbers: WebGPU against the CPU', '');
  for (const a of r.agreement) lines.push(`- ${a.what}: ${a.verdict} — ${a.detail}`);
  if (r.placement) lines.push('', '### Node placement on WebGPU', '', r.placement);
  if (r.profile) lines.push('', '### onnxruntime profile of one WebGPU analysis', '', r.profile);
  return lines.join('\n') + '\n';
}

function placement(dir: string): string {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'out', 'tools', 'gpu-placement.js'), dir], { encoding: 'utf8', timeout: 300_000 });
  return r.status === 0 ? r.stdout : `placement failed: ${(r.stderr || '').slice(-400)}`;
}

function profile(dir: string, ids: string, folder: string, env: NodeJS.ProcessEnv): string {
  fs.rmSync(folder, { recursive: true, force: true });
  fs.mkdirSync(folder, { recursive: true });
  const t = time(dir, ids, 'webgpu', 1, { ...env, TD_ORT_PROFILE: folder });
  if (t.error) return `profiled run failed: ${t.error}`;
  const r = spawnSync(process.execPath, [path.join(ROOT, 'out', 'tools', 'gpu-profile.js'), folder, '--top', '12'], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  // the runs of the forward and lens sessions on WebGPU (the linalg sessions are the CPU's)
  return r.stdout
    .split(/(?=^## )/m)
    .filter((s) => s.startsWith('## webgpu'))
    .join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      sizes: { type: 'string', default: '128,512,1024' },
      repeats: { type: 'string', default: '3' },
      'llama-tokens': { type: 'string', default: '128' },
      profile: { type: 'string', default: '512' },
      out: { type: 'string' },
      shape: { type: 'string', default: 'real' },
    },
  });
  const sizes = values.sizes.split(',').map(Number);
  const repeats = Number(values.repeats);
  const llamaTokens = Number(values['llama-tokens']);
  const profileTokens = Number(values.profile);
  const tiny = values.shape === 'tiny';
  const out = values.out ? path.resolve(values.out) : null;
  const threads = os.availableParallelism();
  const env: NodeJS.ProcessEnv = { TD_BENCH_THREADS: String(threads) };
  fs.mkdirSync(CACHE, { recursive: true });
  const graphCache = fs.mkdtempSync(path.join(os.tmpdir(), 'td-bench-gpu-'));
  env.TD_BENCH_CACHE = graphCache;
  const t0 = performance.now();
  const results: Results = {
    date: new Date().toISOString().slice(0, 10),
    machine: `${os.cpus().length} × ${cpuIdentity()}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB`,
    adapter: null,
    adapterError: null,
    threads,
    rows: [],
    agreement: [],
    placement: '',
    profile: '',
    log: [],
  };
  const step = (s: string) => {
    const line = `[+${((performance.now() - t0) / 1000).toFixed(0)} s] ${s}`;
    results.log.push(line);
    log(line);
  };
  const save = () => {
    const md = markdown(results);
    const files: [string, string][] = [
      [`gpu-${results.date}.md`, md],
      [`gpu-${results.date}.json`, JSON.stringify(results, null, 1)],
    ];
    for (const dir of [path.join(ROOT, 'bench', 'results'), ...(out ? [out] : [])]) {
      fs.mkdirSync(dir, { recursive: true });
      for (const [name, text] of files) fs.writeFileSync(path.join(dir, name), text);
    }
    return md;
  };
  try {
    const probe = (await providerEnvironmentFor('webgpu')).webgpu;
    results.adapter = probe?.adapter ? `${adapterLabel(probe.adapter)}${probe.adapter.f16 ? ' (shader-f16)' : ' (no shader-f16)'}` : null;
    results.adapterError = probe?.error ?? (probe ? null : 'this onnxruntime-node has no WebGPU provider');
    step(`WebGPU adapter: ${results.adapter ?? results.adapterError}`);
    const bpe = path.join(SHARED, 'gpt2-bpe');
    const gpt2 = makeRandomGpt2(path.join(CACHE, tiny ? 'gpt2-tiny-random' : 'gpt2-small-random'), bpe, tiny ? TINY_GPT2 : GPT2_SMALL);
    const gpt2Name = tiny ? 'GPT-2 shape, 2 layers × 64' : 'GPT-2-small (124 M)';
    step(`checkpoint ready: ${gpt2}`);
    if (results.adapter) {
      results.placement = placement(gpt2);
      step('node placement read');
      results.agreement.push(...(await agreement(gpt2, corpusIds(gpt2, Math.min(128, ...sizes)), probe?.adapter?.f16 === true)));
      step(`numbers compared: ${results.agreement.map((a) => a.verdict).join(', ')}`);
      save();
    }
    const cudaMissing = cudaAvailable();
    for (const T of sizes) {
      const ids = path.join(CACHE, `gpu-${tiny ? 'tiny-' : ''}${T}.json`);
      fs.writeFileSync(ids, JSON.stringify(corpusIds(gpt2, T)));
      const row: Row = {
        model: gpt2Name,
        tokens: T,
        cpu: time(gpt2, ids, 'cpu', repeats, env),
        webgpu: { provider: 'webgpu', note: 'no adapter' },
      };
      step(`${T} tokens, CPU: ${fmt(row.cpu.medianMs)} ms ${row.cpu.error ?? ''}`);
      if (results.adapter) {
        row.webgpu = time(gpt2, ids, 'webgpu', repeats, env);
        step(`${T} tokens, WebGPU: ${fmt(row.webgpu.medianMs)} ms ${row.webgpu.error ?? row.webgpu.note ?? ''}`);
      }
      if (!cudaMissing) {
        const f32 = pytorch(gpt2, ids, 'float32');
        const bf16 = T >= 512 ? pytorch(gpt2, ids, 'bfloat16') : undefined;
        row.pytorch = typeof f32 === 'string' ? { error: f32 } : { float32: f32, bfloat16: typeof bf16 === 'number' ? bf16 : undefined };
        step(`${T} tokens, PyTorch CUDA: ${typeof f32 === 'number' ? f32.toFixed(1) : f32} ms`);
      } else row.pytorch = { error: cudaMissing };
      results.rows.push(row);
      save();
    }
    if (results.adapter && profileTokens > 0) {
      const ids = path.join(CACHE, `gpu-${tiny ? 'tiny-' : ''}${profileTokens}.json`);
      fs.writeFileSync(ids, JSON.stringify(corpusIds(gpt2, profileTokens)));
      results.profile = profile(gpt2, ids, path.join(graphCache, 'profile'), env);
      step('profile summed up');
      save();
    }
    if (llamaTokens > 0) {
      const llama = makeRandomLlama(path.join(CACHE, tiny ? 'llama-tiny-random' : 'llama-1b-random'), bpe, tiny ? TINY_LLAMA : LLAMA_1B);
      step(`checkpoint ready: ${llama}`);
      const ids = path.join(CACHE, `gpu-llama-${tiny ? 'tiny-' : ''}${llamaTokens}.json`);
      fs.writeFileSync(ids, JSON.stringify(corpusIds(llama, llamaTokens)));
      const name = tiny ? 'Llama shape, 2 layers × 64, bf16' : 'Llama 1.2 B, bf16 checkpoint';
      const row: Row = {
        model: name,
        tokens: llamaTokens,
        cpu: time(llama, ids, 'cpu', 1, env),
        webgpu: { provider: 'webgpu', note: 'no adapter' },
      };
      step(`Llama ${llamaTokens} tokens, CPU: ${fmt(row.cpu.medianMs)} ms ${row.cpu.error ?? ''}`);
      if (results.adapter) {
        row.webgpu = time(llama, ids, 'webgpu', 1, env);
        step(`Llama ${llamaTokens} tokens, WebGPU: ${fmt(row.webgpu.medianMs)} ms ${row.webgpu.error ?? row.webgpu.note ?? ''}`);
      }
      results.rows.push(row);
      save();
    }
  } finally {
    process.stdout.write(save());
    fs.rmSync(graphCache, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  log(String((e as Error).stack ?? e));
  process.exit(1);
});
