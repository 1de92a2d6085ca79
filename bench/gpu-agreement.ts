// The numbers of one analysis on WebGPU against the CPU's (npm run bench:gpu): float32 within
// 1e-4 as the golden tests hold every provider, and float16 weights against float32 within the
// half-precision tolerances of test/unit/half-weights.test.ts (products' inputs rounded to
// float16: ~1e-3 relative per product, so residual streams within 1% of their scale, lens
// entropies within 0.02 nats, cosines within 0.01).
import { loadModel } from '../src/engine/model';
import { analyze } from '../src/engine/analyze';
import type { Analysis } from '../src/shared/analysis';
import type { ProviderRequest, WeightPrecisionRequest } from '../src/engine/runtime/providers';

export interface Agreement {
  what: string;
  verdict: 'PASS' | 'FAIL';
  detail: string;
}

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (Number.isNaN(x) && Number.isNaN(y)) continue;
    m = Math.max(m, Math.abs(x - y));
  }
  return m;
}

function scale(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

async function run(dir: string, ids: number[], provider: ProviderRequest, weights: WeightPrecisionRequest): Promise<Analysis> {
  const model = await loadModel(dir, { threads: 8, executionProvider: provider, weightPrecision: weights });
  try {
    if (model.info.provider !== provider) throw new Error(`${provider} did not start: ${model.info.provider_note ?? ''}`);
    return await analyze(model, { ids, topK: 5, maxTokens: 1 << 20, patterns: true });
  } finally {
    await model.release();
  }
}

/** Differences of b from a: [name, max |Δ|, tolerance] rows. */
function diffs(a: Analysis, b: Analysis, half: boolean): [string, number, number][] {
  const residScale = scale(a.cache.resid);
  const rows: [string, number, number][] = [
    ['resid (relative to its largest value)', maxAbs(a.cache.resid, b.cache.resid) / residScale, half ? 0.01 : 1e-4],
    ['resid_mid (relative)', maxAbs(a.cache.residMid, b.cache.residMid) / scale(a.cache.residMid), half ? 0.01 : 1e-4],
    ['lens entropy (nats)', maxAbs(a.lens.entropy, b.lens.entropy), half ? 0.02 : 1e-4],
    ['lens cos_pred', maxAbs(a.lens.cosPred, b.lens.cosPred), half ? 0.01 : 1e-4],
  ];
  if (!half) {
    rows.push(
      ['attention patterns', maxAbs(a.cache.patterns ?? [], b.cache.patterns ?? []), 1e-4],
      ['lens top-k probabilities', maxAbs(a.lens.topProbs, b.lens.topProbs), 1e-4],
      ['lens next-token log-prob', maxAbs(a.lens.nextLogprob, b.lens.nextLogprob), 1e-4],
      ['lens KL to final', maxAbs(a.lens.klToFinal, b.lens.klToFinal), 1e-4],
      ['lens copy mass', maxAbs(a.lens.copyMass, b.lens.copyMass), 1e-4],
    );
  }
  return rows;
}

function verdict(what: string, rows: [string, number, number][], extra = ''): Agreement {
  const bad = rows.filter(([, d, tol]) => !(d <= tol));
  return {
    what,
    verdict: bad.length === 0 ? 'PASS' : 'FAIL',
    detail: rows.map(([n, d, tol]) => `${n} ${d.toExponential(2)}${d <= tol ? '' : ` > ${tol}`}`).join('; ') + extra,
  };
}

/** The same tokens on the CPU and on WebGPU (float32), and float16 weights on WebGPU if it can. */
export async function agreement(dir: string, ids: number[], f16: boolean): Promise<Agreement[]> {
  const cpu = await run(dir, ids, 'cpu', 'float32');
  const gpu = await run(dir, ids, 'webgpu', 'float32');
  // top-1 ids: equal wherever the CPU's top two differ by more than the tolerance (else a tie)
  const k = cpu.lens.k;
  let top1 = 0;
  let cells = 0;
  for (let i = 0; i < cpu.lens.entropy.length; i++) {
    if (cpu.lens.topProbs[i * k]! - cpu.lens.topProbs[i * k + 1]! <= 1e-4) continue;
    cells++;
    if (cpu.lens.topIds[i * k] !== gpu.lens.topIds[i * k]) top1++;
  }
  const out = [
    verdict(`float32, ${ids.length} tokens`, [...diffs(cpu, gpu, false), ['lens top-1 ids that differ', top1, 0]], ` (of ${cells} cells)`),
  ];
  if (f16) {
    const half = await run(dir, ids, 'webgpu', 'float16');
    out.push(verdict(`float16 weights on WebGPU vs float32, ${ids.length} tokens`, diffs(gpu, half, true)));
  }
  return out;
}
