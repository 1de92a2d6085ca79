// The comparison of an analysis with a numpy golden (tools/reference/numpy_ref.py): every
// residual stream, attention pattern and lens cell. Shared by the CPU golden tests and the
// WebGPU ones, which hold every provider to the same numbers.
import * as assert from 'node:assert/strict';
import type { Analysis } from '../src/shared/analysis';
import { assertClose, flat } from './helpers';

export interface LensGolden {
  top_ids: number[][];
  top_probs: number[][];
  entropy: number[];
  next_logprob: (number | null)[];
  next_rank: (number | null)[];
  kl_to_final: number[];
}

export interface Golden {
  model: string;
  ids: number[];
  n_layers: number;
  d_model: number;
  n_heads: number;
  d_vocab: number;
  resid_pre: number[][][];
  resid_mid: number[][][];
  resid_post: number[][][];
  pattern: number[][][][];
  logits: number[][];
  lens: { k: number; layers: LensGolden[] };
  greedy_ids?: number[];
  encode_once_upon_a_time?: number[];
  encode_cases?: { text: string; ids: number[] }[];
}

/** float32, any provider: residual streams, patterns and lens numbers. */
export const TOL = 1e-4;
export function compareToGolden(a: Analysis, g: Golden, tol = TOL): void {
  const T = g.ids.length;
  const d = g.d_model;
  const nL = g.n_layers;
  const { cache, lens } = a;
  assert.equal(cache.pos, T);
  assertClose(cache.resid.subarray(0, T * d), flat(g.resid_pre[0]), tol, 'resid_pre[0]');
  for (let L = 0; L < nL; L++) {
    assertClose(cache.residMid.subarray(L * T * d, (L + 1) * T * d), flat(g.resid_mid[L]), tol, `resid_mid[${L}]`);
    assertClose(cache.resid.subarray((L + 1) * T * d, (L + 2) * T * d), flat(g.resid_post[L]), tol, `resid_post[${L}]`);
    if (L + 1 < nL)
      assertClose(cache.resid.subarray((L + 1) * T * d, (L + 2) * T * d), flat(g.resid_pre[L + 1]), tol, `resid_pre[${L + 1}]`);
  }
  assert.ok(cache.patterns, 'patterns were computed');
  assertClose(cache.patterns, flat(g.pattern), tol, 'attention patterns');
  const k = lens.k;
  for (let L = 0; L < nL; L++) {
    const gl = g.lens.layers[L]!;
    const row = L + 1;
    for (let p = 0; p < T; p++) {
      const i = row * T + p;
      assert.equal(lens.topIds[i * k], gl.top_ids[p]![0], `lens top-1 at layer ${L}, pos ${p}`);
      assert.deepEqual(
        Array.from(lens.topIds.subarray(i * k, i * k + Math.min(k, g.lens.k))),
        gl.top_ids[p]!.slice(0, k),
        `lens top-k ids at ${L},${p}`,
      );
      assertClose(lens.topProbs.subarray(i * k, i * k + k), gl.top_probs[p]!.slice(0, k), tol, `lens top-k probs at ${L},${p}`);
      assertClose([lens.entropy[i]!], [gl.entropy[p]!], tol, `lens entropy at ${L},${p}`);
      assertClose([lens.klToFinal[i]!], [gl.kl_to_final[p]!], tol, `KL to final at ${L},${p}`);
      if (p < T - 1) {
        assertClose([lens.nextLogprob[i]!], [gl.next_logprob[p]!], tol, `next log-prob at ${L},${p}`);
        assert.equal(lens.nextRank[i], gl.next_rank[p], `next rank at ${L},${p}`);
      } else {
        assert.ok(Number.isNaN(lens.nextLogprob[i]!));
        assert.equal(lens.nextRank[i], -1);
      }
    }
  }
  // copy mass of the final row: Σ softmax(logits[p]) over the tokens at positions ≤ p
  const last = nL;
  for (let p = 0; p < T; p++) {
    const row = g.logits[p]!;
    const m = Math.max(...row);
    const z = row.reduce((acc, v) => acc + Math.exp(v - m), 0);
    const seen = new Set(g.ids.slice(0, p + 1));
    let mass = 0;
    for (const v of seen) mass += Math.exp(row[v]! - m) / z;
    assertClose([lens.copyMass[last * T + p]!], [mass], tol, `copy mass at the final row, pos ${p}`);
  }
}
