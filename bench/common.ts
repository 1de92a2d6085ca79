// What the benchmark scripts share: paths, the engine-process child runner, corpus inputs.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { withHugePages } from '../src/engine/client';
import { TextTokenizer } from '../src/engine/tokenizer';
import { GraphBuilder } from '../src/engine/onnx/builder';
import { createSession } from '../src/engine/runtime/ort';

export const ROOT = path.resolve(__dirname, '..', '..');
/** The corpora and GPT-2's BPE files (../shared/data; TD_SHARED_DATA where they were carried elsewhere). */
export const SHARED = process.env.TD_SHARED_DATA || path.resolve(ROOT, '..', 'shared', 'data');
export const CACHE = path.join(ROOT, '.cache', 'bench');
export const THREADS = Math.min(os.availableParallelism(), 8);

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

/** The first `n` token ids of a fixed Moby-Dick passage under the model's tokenizer. */
export function corpusIds(dir: string, n: number): number[] {
  const tk = new TextTokenizer(
    JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')),
    JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')),
  );
  const text = fs.readFileSync(path.join(SHARED, 'moby-dick', 'moby-dick.txt'), 'utf8').slice(200000, 200000 + n * 8);
  const ids = tk.encodeIds(text, false);
  if (ids.length < n) throw new Error(`only ${ids.length} tokens of text`);
  return ids.slice(0, n);
}

/** GEMM rate (GFLOP/s) of onnxruntime MatMul [M,K]×[K,N] after warm-up. */
export async function gemmRate(M: number, K: number, N: number): Promise<number> {
  const g = new GraphBuilder('gemm');
  const a = g.input('a', 'float32', [M, K]);
  const w = new Float32Array(K * N);
  for (let i = 0; i < w.length; i++) w[i] = ((i * 2654435761) % 1000) / 1000 - 0.5;
  g.output('y', g.op('MatMul', [a, g.initializer('w', w, [K, N])]), 'float32', [M, N]);
  const s = await createSession(g.encode(), { threads: THREADS, executionProvider: 'cpu' });
  const x = new Float32Array(M * K).map((_, i) => (i % 7) / 7);
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    await s.run({ a: { data: x, dims: [M, K] } }, ['y']);
    times.push(performance.now() - t);
  }
  await s.release();
  const best = Math.min(...times.slice(2));
  return (2 * M * K * N) / (best / 1000) / 1e9;
}
