// What the benchmark scripts share: paths, the engine-process child runner, corpus inputs.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SEMI_SPACE_FLAG, withHugePages } from '../src/engine/client';
import { TextTokenizer } from '../src/engine/tokenizer';
import { physicalCores } from '../src/engine/cores';

export const ROOT = path.resolve(__dirname, '..', '..');
/** The corpora and GPT-2's BPE files (../shared/data; TD_SHARED_DATA where they were carried elsewhere). */
export const SHARED = process.env.TD_SHARED_DATA || path.resolve(ROOT, '..', 'shared', 'data');
export const CACHE = path.join(ROOT, '.cache', 'bench');
/** Threads of a bench child unless TD_BENCH_THREADS says (the engine's default: one per physical core). */
export const THREADS = physicalCores();

/**
 * The CPU as /proc/cpuinfo names it, with its family and model and the vector extensions the
 * matrix products can use: the VMs these benchmarks run on all call themselves "AMD EPYC" or
 * "Intel Xeon", and MLAS's rate differed by 1.7× between two "AMD EPYC" VMs (one a Zen 5).
 */
export function cpuIdentity(): string {
  let info = '';
  try {
    info = fs.readFileSync('/proc/cpuinfo', 'utf8').split('\n\n')[0] ?? '';
  } catch {
    return os.cpus()[0]?.model ?? 'unknown CPU';
  }
  const field = (k: string) => new RegExp(`^${k}\\s*:\\s*(.*)$`, 'm').exec(info)?.[1]?.trim();
  const flags = new Set((field('flags') ?? '').split(/\s+/));
  const vector = ['avx2', 'avx512f', 'avx512_bf16', 'avx512_vnni', 'amx_tile'].filter((f) => flags.has(f));
  return `${field('model name') ?? os.cpus()[0]?.model ?? '?'} (${field('vendor_id') ?? '?'} family ${field('cpu family') ?? '?'} model ${field('model') ?? '?'}; ${vector.join(', ') || 'no AVX2'})`;
}

/**
 * The name of a new results file in `dir`: `<date><suffix>` for the day's first run, then
 * `<date>b<suffix>`, `<date>c<suffix>` … (the README cites each run's file by name, so a later
 * run the same day does not overwrite it).
 */
export function resultsName(dir: string, date: string, suffix = ''): string {
  const names = ['', ...'bcdefghijklmnopqrstuvwxyz'].map((l) => `${date}${l}${suffix}`);
  return names.find((n) => !fs.existsSync(path.join(dir, `${n}.json`))) ?? `${date}-${Date.now()}${suffix}`;
}

export function log(s: string): void {
  process.stderr.write(`${s}\n`);
}

/**
 * One configuration in its own process (out/bench/child.js), with the engine process's
 * environment (src/engine/client.ts), so its peak RSS is its own.
 */
export function child(
  mode: string,
  dir: string,
  idsFile: string,
  repeats: number,
  extra: string[] = [],
  env: NodeJS.ProcessEnv = {},
): Record<string, unknown> {
  const r = spawnSync(
    process.execPath,
    [
      '--max-old-space-size=16384',
      '--expose-gc', // as the engine worker runs (client.ts): analyze.ts collects onnxruntime's output copies
      SEMI_SPACE_FLAG, // and with its young-generation size
      path.join(__dirname, 'child.js'),
      mode,
      dir,
      idsFile,
      env.TD_BENCH_THREADS ?? String(THREADS),
      String(repeats),
      ...extra,
    ],
    {
      encoding: 'utf8',
      maxBuffer: 64 << 20,
      env: { ...process.env, GLIBC_TUNABLES: withHugePages(process.env.GLIBC_TUNABLES), ...env },
    },
  );
  if (r.status !== 0) throw new Error(`bench child failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

/** A fixed Moby-Dick passage long enough for `n` tokens of any of the bench tokenizers. */
export function corpusText(n: number): string {
  return fs.readFileSync(path.join(SHARED, 'moby-dick', 'moby-dick.txt'), 'utf8').slice(200000, 200000 + n * 8);
}

/** The first `n` token ids of corpusText(n) under the model's tokenizer. */
export function corpusIds(dir: string, n: number): number[] {
  const tk = new TextTokenizer(
    JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')),
    JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')),
  );
  // with the tokenizer's special tokens, as the engine encodes a selection (stories260K's BOS):
  // the bench children analyse the text and check that it gives these ids
  const ids = tk.encodeIds(corpusText(n), true);
  if (ids.length < n) throw new Error(`only ${ids.length} tokens of text`);
  return ids.slice(0, n);
}
