// Sums up onnxruntime profiles (TD_ORT_PROFILE=<folder>, see src/engine/runtime/ort.ts): where a
// run's time went, per operator and provider, and — on WebGPU — the GPU time of each kernel.
//   node out/tools/gpu-profile.js <folder> [--top 15]
// "node" time is the host's view of a node (for a WebGPU kernel: encoding and dispatch, or the
// wait when it reads results back); "gpu" time is the kernel's own, from WebGPU timestamp queries.
import * as fs from 'node:fs';
import * as path from 'node:path';

interface ProfileEvent {
  cat: string;
  name: string;
  dur: number;
  args?: { op_name?: string; provider?: string };
}

export interface ProfileRow {
  key: string;
  count: number;
  ms: number;
}

/** Per (op, provider) host time and per kernel GPU time of every profile in a folder. */
export function summarise(events: readonly ProfileEvent[]): { nodes: ProfileRow[]; gpu: ProfileRow[]; runs: number; runMs: number } {
  const nodes = new Map<string, ProfileRow>();
  const gpu = new Map<string, ProfileRow>();
  let runs = 0;
  let runMs = 0;
  const add = (m: Map<string, ProfileRow>, key: string, us: number) => {
    const r = m.get(key) ?? { key, count: 0, ms: 0 };
    r.count++;
    r.ms += us / 1000;
    m.set(key, r);
  };
  for (const e of events) {
    if (e.cat === 'Session' && e.name === 'model_run') {
      runs++;
      runMs += e.dur / 1000;
    } else if (e.cat === 'Node' && e.name.endsWith('_kernel_time')) {
      add(nodes, `${e.args?.op_name ?? '?'} @ ${(e.args?.provider ?? '?').replace('ExecutionProvider', '')}`, e.dur);
    } else if (e.cat === 'Api') {
      // "MatMul_12&MatMul&MatMul": node name & op & program
      const [, op, program] = e.name.split('&');
      add(gpu, `${op ?? e.name} (${program ?? '?'})`, e.dur);
    }
  }
  const sorted = (m: Map<string, ProfileRow>) => [...m.values()].sort((a, b) => b.ms - a.ms);
  return { nodes: sorted(nodes), gpu: sorted(gpu), runs, runMs };
}

function table(title: string, rows: readonly ProfileRow[], top: number): string {
  const total = rows.reduce((s, r) => s + r.ms, 0);
  const lines = [`### ${title} (${total.toFixed(1)} ms in all)`, '', '| what | count | ms | share |', '|---|---:|---:|---:|'];
  for (const r of rows.slice(0, top))
    lines.push(`| ${r.key} | ${r.count} | ${r.ms.toFixed(1)} | ${total > 0 ? ((100 * r.ms) / total).toFixed(1) : '0'}% |`);
  return lines.join('\n');
}

function main(): void {
  const [dir, ...rest] = process.argv.slice(2);
  if (!dir) throw new Error('usage: gpu-profile.js <folder of onnxruntime profiles> [--top N]');
  const top = rest[0] === '--top' ? Number(rest[1]) : 15;
  const out: string[] = [];
  for (const f of fs
    .readdirSync(dir)
    .filter((n) => n.endsWith('.json'))
    .sort()) {
    const events = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as ProfileEvent[];
    const s = summarise(events);
    if (s.runs === 0) continue;
    out.push(`## ${f}: ${s.runs} runs, ${s.runMs.toFixed(1)} ms`, '', table('host time per node', s.nodes, top), '');
    if (s.gpu.length > 0) out.push(table('GPU time per kernel', s.gpu, top), '');
  }
  process.stdout.write(out.join('\n') + '\n');
}

if (require.main === module) main();
