// Where onnxruntime places each node of a model's graphs on a GPU provider, from its verbose
// session log: the nodes left to the CPU (and why, where it says), and the copies between host
// and device it inserted. A copy *to* the host in the middle of a graph makes the GPU wait.
//   node out/tools/gpu-placement.js <model_dir> [--provider webgpu] [--weights auto|float32|float16]
// It loads the model (forward, lens and generation sessions) in a child process with
// TD_ORT_LOG=0, because onnxruntime writes that log to the native stderr.
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { loadModel } from '../src/engine/model';
import type { ProviderRequest, WeightPrecisionRequest } from '../src/engine/runtime/providers';

export interface Placement {
  /** op type → node count, per provider ("CPUExecutionProvider" …) */
  providers: Record<string, Record<string, number>>;
  /** "MemcpyToHost before top_ids", … */
  copies: string[];
  /** onnxruntime's reasons for putting a node on the CPU */
  fallbacks: string[];
}

/** onnxruntime colours its warnings on a terminal. */
const ANSI_COLOUR = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g');

/** One Placement per session, in the order the sessions were created. */
export function parsePlacementLog(log: string): Placement[] {
  const sessions: Placement[] = [];
  let copies: string[] = [];
  let fallbacks: string[] = [];
  let current: Placement | null = null;
  let provider = '';
  for (const raw of log.split('\n')) {
    const line = raw.replace(ANSI_COLOUR, '');
    const copy = /AddCopyNode\] Add (Memcpy\w+ (?:after|before) \S+)/.exec(line);
    if (copy) copies.push(copy[1]!);
    const why = /Force fallback to CPU execution for node: (.*)$/.exec(line);
    if (why) fallbacks.push(why[1]!.trim());
    if (/VerifyEachNodeIsAssignedToAnEp\] Node placements/.test(line)) {
      current = { providers: {}, copies, fallbacks };
      sessions.push(current);
      copies = [];
      fallbacks = [];
      continue;
    }
    if (!current) continue;
    const all = /All nodes placed on \[(\w+)\]\. Number of nodes: (\d+)/.exec(line);
    if (all) {
      current.providers[all[1]!] = { all: Number(all[2]) };
      current = null;
      continue;
    }
    const on = /Node\(s\) placed on \[(\w+)\]/.exec(line);
    if (on) {
      provider = on[1]!;
      current.providers[provider] = {};
      continue;
    }
    const node = /VerifyEachNodeIsAssignedToAnEp\]\s{3}(\w+) \(/.exec(line);
    if (node && provider) {
      const ops = current.providers[provider]!;
      ops[node[1]!] = (ops[node[1]!] ?? 0) + 1;
    } else if (!/VerifyEachNodeIsAssignedToAnEp/.test(line)) current = null;
  }
  return sessions;
}

export function placementMarkdown(names: readonly string[], sessions: readonly Placement[]): string {
  const out: string[] = [];
  sessions.forEach((s, i) => {
    out.push(`#### ${names[i] ?? `session ${i + 1}`}`);
    for (const [p, ops] of Object.entries(s.providers)) {
      const n = Object.values(ops).reduce((a, b) => a + b, 0);
      const list = Object.entries(ops)
        .sort((a, b) => b[1] - a[1])
        .map(([op, c]) => `${op} ×${c}`)
        .join(', ');
      out.push(`- ${p.replace('ExecutionProvider', '')}: ${n} nodes${ops.all === undefined ? ` (${list})` : ''}`);
    }
    if (s.copies.length) out.push(`- copies: ${s.copies.join('; ')}`);
    for (const f of s.fallbacks) out.push(`- to the CPU: ${f}`);
    out.push('');
  });
  return out.join('\n');
}

/** The child: load (which creates the forward and lens sessions), make the generation session. */
async function child(dir: string, provider: ProviderRequest, weights: WeightPrecisionRequest): Promise<void> {
  const model = await loadModel(dir, { threads: 1, executionProvider: provider, weightPrecision: weights });
  await model.generation();
  process.stdout.write(JSON.stringify({ provider: model.info.provider, adapter: model.info.adapter, weights: model.info.weights }));
  await model.release();
}

function main(): void {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { provider: { type: 'string', default: 'webgpu' }, weights: { type: 'string', default: 'auto' }, child: { type: 'boolean' } },
  });
  const dir = positionals[0];
  if (!dir) throw new Error('usage: gpu-placement.js <model_dir> [--provider webgpu] [--weights auto|float32|float16]');
  if (values.child) {
    void child(dir, values.provider as ProviderRequest, values.weights as WeightPrecisionRequest);
    return;
  }
  const r = spawnSync(process.execPath, [__filename, dir, '--child', '--provider', values.provider, '--weights', values.weights], {
    encoding: 'utf8',
    maxBuffer: 1 << 30,
    env: { ...process.env, TD_ORT_LOG: '0' },
  });
  if (r.status !== 0) throw new Error(`the placement child failed: ${r.stderr.slice(-2000)}`);
  const loaded = JSON.parse(r.stdout) as { provider: string; adapter: string | null; weights: string };
  const sessions = parsePlacementLog(r.stderr);
  // creation order in loadModel: forward, lens, the linear-algebra helpers (CPU), then generation
  const names = ['forward', 'lens', 'linalg: covariance', 'linalg: cosine', 'linalg: product', 'generation (KV cache on the device)'];
  process.stdout.write(`### ${dir} on ${loaded.provider}${loaded.adapter ? ` (${loaded.adapter})` : ''}, ${loaded.weights} weights\n\n`);
  process.stdout.write(placementMarkdown(names, sessions));
}

if (require.main === module) main();
