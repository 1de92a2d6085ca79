// The comparison of an analysis with a numpy golden (tools/reference/numpy_ref.py): every
// residual stream, attention pattern and lens cell. Shared by the CPU golden tests and the
// WebGPU ones, which hold every provider to the same numbers.
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import type { Analysis } from '../src/shared/analysis';
import { assertClose, FIXTURES, flat, tmpDir } from './helpers';
import { convertLlama2c } from '../tools/convert/llama2c';
import { assertStreamsClose } from './hfReference';

export interface LensGolden {
  top_ids: number[][];
  top_probs: number[][];
  entropy: number[];
  next_logprob: (number | null)[];
  next_rank: (number | null)[];
  kl_to_final: number[];
}

/** What every golden holds (hf/ goldens: only these). */
export interface LensAndMid {
  model: string;
  ids: number[];
  n_layers: number;
  d_model: number;
  n_heads: number;
  d_vocab: number;
  resid_mid: number[][][];
  lens: { k: number; layers: LensGolden[] };
}

export interface Golden extends LensAndMid {
  resid_pre: number[][][];
  resid_post: number[][][];
  pattern: number[][][][];
  logits: number[][];
  greedy_ids?: number[];
  encode_once_upon_a_time?: number[];
  encode_cases?: { text: string; ids: number[] }[];
}

/** float32, any provider: residual streams, patterns and lens numbers. */
export const TOL = 1e-4;

export function compareToGolden(a: Analysis, g: Golden): void {
  const T = g.ids.length;
  const d = g.d_model;
  const nL = g.n_layers;
  const { cache } = a;
  assert.equal(cache.pos, T);
  assertClose(cache.resid.subarray(0, T * d), flat(g.resid_pre[0]), TOL, 'resid_pre[0]');
  for (let L = 0; L < nL; L++) {
    assertClose(cache.resid.subarray((L + 1) * T * d, (L + 2) * T * d), flat(g.resid_post[L]), TOL, `resid_post[${L}]`);
    if (L + 1 < nL)
      assertClose(cache.resid.subarray((L + 1) * T * d, (L + 2) * T * d), flat(g.resid_pre[L + 1]), TOL, `resid_pre[${L + 1}]`);
  }
  assert.ok(cache.patterns, 'patterns were computed');
  assertClose(cache.patterns, flat(g.pattern), TOL, 'attention patterns');
  compareMidAndLens(a, g);
  // copy mass of the final row: Σ softmax(logits[p]) over the tokens at positions ≤ p
  const { lens } = a;
  for (let p = 0; p < T; p++) {
    const row = g.logits[p]!;
    const m = Math.max(...row);
    const z = row.reduce((acc, v) => acc + Math.exp(v - m), 0);
    let mass = 0;
    for (const v of new Set(g.ids.slice(0, p + 1))) mass += Math.exp(row[v]! - m) / z;
    assertClose([lens.copyMass[nL * T + p]!], [mass], TOL, `copy mass at the final row, pos ${p}`);
  }
}

/** resid_mid of every layer and the logit lens of every layer and position. */
export function compareMidAndLens(a: Analysis, g: LensAndMid): void {
  const T = g.ids.length;
  const nL = g.n_layers;
  const { cache, lens } = a;
  assertStreamsClose(cache.residMid, Float32Array.from(flat(g.resid_mid)), nL, 'resid_mid');
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
      assertClose(lens.topProbs.subarray(i * k, i * k + k), gl.top_probs[p]!.slice(0, k), TOL, `lens top-k probs at ${L},${p}`);
      assertClose([lens.entropy[i]!], [gl.entropy[p]!], TOL, `lens entropy at ${L},${p}`);
      assertClose([lens.klToFinal[i]!], [gl.kl_to_final[p]!], TOL, `KL to final at ${L},${p}`);
      if (p < T - 1) {
        assertClose([lens.nextLogprob[i]!], [gl.next_logprob[p]!], TOL, `next log-prob at ${L},${p}`);
        assert.equal(lens.nextRank[i], gl.next_rank[p], `next rank at ${L},${p}`);
      } else {
        assert.ok(Number.isNaN(lens.nextLogprob[i]!));
        assert.equal(lens.nextRank[i], -1);
      }
    }
  }
}

/** The folder of a golden's model: a committed fixture, or the vendored stories260K converted to HF layout. */
export function goldenModelDir(name: string): string {
  if (name !== 'stories260K') return path.join(FIXTURES, 'models', name);
  const stories = path.join(FIXTURES, 'stories260K');
  const out = path.join(tmpDir('td-stories-'), 'stories260K');
  convertLlama2c(path.join(stories, 'stories260K.bin'), path.join(stories, 'tok512.bin'), out);
  return out;
}
