// `npm run bench:gpu`: the same full analysis (GPT-2-small shape, 512 tokens, from the graph
// cache) on the CPU and on CUDA in one run, and the time ratio. For a machine with an NVIDIA
// GPU and onnxruntime-node's CUDA binaries (`npx onnxruntime-node-install cuda12`); never in CI.
// Exits 1 with the engine's reason when CUDA does not start. Writes bench/results/gpu-<date>.md.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { makeRandomGpt2 } from './checkpoints';
import { CACHE, child, corpusIds, log, ROOT, SHARED } from './common';

const TOKENS = 512;
const REPEATS = 5;

function main(): void {
  fs.mkdirSync(CACHE, { recursive: true });
  const dir = makeRandomGpt2(path.join(CACHE, 'gpt2-small-random'), path.join(SHARED, 'gpt2-bpe'));
  const ids = path.join(CACHE, `gpu-${TOKENS}.json`);
  fs.writeFileSync(ids, JSON.stringify(corpusIds(dir, TOKENS)));
  const graphCache = fs.mkdtempSync(path.join(os.tmpdir(), 'td-bench-gpu-'));
  const run = (provider: string, weights = 'auto') => {
    log(`${provider} (${weights} weights): ${TOKENS} tokens × ${REPEATS}…`);
    return child('analysis', dir, ids, REPEATS, [], { TD_BENCH_CACHE: graphCache, TD_BENCH_PROVIDER: provider, TD_BENCH_WEIGHTS: weights });
  };
  try {
    const cuda = run('cuda');
    if (cuda.provider !== 'cuda') {
      log(`CUDA did not run: ${String(cuda.providerNote ?? 'onnxruntime chose the CPU')}`);
      process.exitCode = 1;
      return;
    }
    const cpu = run('cpu');
    const cuda16 = run('cuda', 'float16');
    const ms = (r: Record<string, unknown>) => r.medianMs as number;
    const date = new Date().toISOString().slice(0, 10);
    const md = [
      `## GPU vs CPU (${date})`,
      '',
      `GPT-2-small shape (124 M, random weights), full analysis of ${TOKENS} tokens from the graph cache, median of ${REPEATS}. CPU: ${os.cpus().length} × ${os.cpus()[0]?.model}.`,
      '',
      '| provider | weights | analysis (ms) | CPU / this |',
      '|---|---|---:|---:|',
      `| cpu | ${String(cpu.weights)} | ${ms(cpu).toFixed(0)} | 1.00× |`,
      `| cuda | ${String(cuda.weights)} | ${ms(cuda).toFixed(0)} | ${(ms(cpu) / ms(cuda)).toFixed(2)}× |`,
      `| cuda | ${String(cuda16.weights)} | ${ms(cuda16).toFixed(0)} | ${(ms(cpu) / ms(cuda16)).toFixed(2)}× |`,
      '',
    ].join('\n');
    fs.mkdirSync(path.join(ROOT, 'bench', 'results'), { recursive: true });
    fs.writeFileSync(path.join(ROOT, 'bench', 'results', `gpu-${date}.md`), md);
    process.stdout.write(md);
  } finally {
    fs.rmSync(graphCache, { recursive: true, force: true });
  }
}

main();
