// Position kernels, self-bias, induction scores and encoding-walk clusters on hand-built inputs.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { headStats } from '../../src/engine/analysis/attention';
import { averageLinkage, cosineDistance, cutTree } from '../../src/engine/analysis/clusters';
import { assertClose } from '../helpers';

/** One head's pattern [T, T] from a rule giving each query's distribution. */
function pattern(T: number, row: (q: number) => number[]): Float32Array {
  const p = new Float32Array(T * T);
  for (let q = 0; q < T; q++) row(q).forEach((v, k) => (p[q * T + k] = v));
  return p;
}

describe('attention head statistics', () => {
  const T = 8;
  const ids = [1, 2, 3, 4, 5, 6, 7, 8];
  const meanUniform = Array.from({ length: T }, (_, q) => 1 / (q + 1)).reduce((a, b) => a + b) / T;

  test('a head that always attends to offset 1', () => {
    const p = pattern(T, (q) => Array.from({ length: q + 1 }, (_, k) => (q === 0 ? 1 : k === q - 1 ? 1 : 0)));
    const s = headStats(p, 1, 1, T, ids, 4);
    assertClose([s.kernel[1]!], [1], 1e-7, 'K(1)');
    assertClose([s.kernel[2]!, s.kernel[3]!], [0, 0], 1e-7, 'K(2), K(3)');
    // the only self-attention is the forced q = 0; its 1 − 1/(0+1) cancels
    assertClose([s.selfBias[0]!], [1 / T - meanUniform], 1e-7, 'self-bias');
    assert.ok(s.selfBias[0]! < 0, 'negative self-bias');
  });

  test('a uniform head has a flat normalised kernel and zero self-bias', () => {
    const p = pattern(T, (q) => Array.from({ length: q + 1 }, () => 1 / (q + 1)));
    const s = headStats(p, 1, 1, T, ids, T - 1);
    assertClose(s.kernelNorm, new Array(T).fill(1), 1e-6, 'normalised kernel');
    assertClose([s.selfBias[0]!], [0], 1e-7, 'self-bias');
  });

  test('induction score: attention to the successor of the previous occurrence', () => {
    const rep = [10, 11, 12, 10, 11, 12];
    const n = rep.length;
    // queries 3,4,5 attend to 1,2,3 (successors of 0,1,2); others attend to themselves
    const p = pattern(n, (q) => Array.from({ length: q + 1 }, (_, k) => (q >= 3 ? (k === q - 2 ? 1 : 0) : k === q ? 1 : 0)));
    const s = headStats(p, 1, 1, n, rep, 3);
    assertClose([s.induction[0]!], [1], 1e-7, 'induction score');
    const self = pattern(n, (q) => Array.from({ length: q + 1 }, (_, k) => (k === q ? 1 : 0)));
    assertClose([headStats(self, 1, 1, n, rep, 3).induction[0]!], [0], 1e-7, 'self-attending head');
    assert.ok(Number.isNaN(headStats(self, 1, 1, n, [1, 2, 3, 4, 5, 6], 3).induction[0]!), 'no repeats → NaN');
  });

  test('several layers and heads are laid out [layer, head]', () => {
    const a = pattern(T, (q) => Array.from({ length: q + 1 }, (_, k) => (k === q ? 1 : 0)));
    const b = pattern(T, (q) => Array.from({ length: q + 1 }, () => 1 / (q + 1)));
    const both = new Float32Array(2 * T * T);
    both.set(a, 0);
    both.set(b, T * T);
    const s = headStats(both, 1, 2, T, ids, 2);
    assertClose([s.selfBias[0]!], [1 - meanUniform], 1e-6, 'head 0: always self');
    assertClose([s.selfBias[1]!], [0], 1e-7, 'head 1: uniform');
  });
});

describe('encoding-walk clusters', () => {
  test('average linkage separates two groups and orders leaves by cluster', () => {
    // points 0,2,4 near each other; 1,3 near each other
    const pts = [0, 10, 0.5, 10.4, 1.1];
    const n = pts.length;
    const dist = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) dist[i * n + j] = Math.abs(pts[i]! - pts[j]!);
    const d = averageLinkage(dist, n);
    assert.equal(d.merges.length, n - 1);
    for (let k = 1; k < d.merges.length; k++) assert.ok(d.merges[k]!.height >= d.merges[k - 1]!.height);
    const labels = cutTree(d, 2);
    assert.equal(labels[0], labels[2]);
    assert.equal(labels[0], labels[4]);
    assert.equal(labels[1], labels[3]);
    assert.notEqual(labels[0], labels[1]);
    const pos = (i: number) => d.order.indexOf(i);
    assert.equal(Math.abs(pos(1) - pos(3)), 1, 'cluster members are adjacent in the leaf order');
    // average linkage height of the last merge = mean distance between the groups
    const between = [0, 2, 4].flatMap((i) => [1, 3].map((j) => Math.abs(pts[i]! - pts[j]!)));
    assertClose([d.merges[d.merges.length - 1]!.height], [between.reduce((a, b) => a + b) / between.length], 1e-12, 'last merge height');
    assert.deepEqual(
      cutTree(d, -1),
      [0, 1, 2, 3, 4].map((i) => d.order.indexOf(i)),
    );
  });

  test('cosine distance from similarity', () => {
    assert.deepEqual(Array.from(cosineDistance(Float32Array.of(1, 0.5, 0.5, 1), 2)), [0, 0.5, 0.5, 0]);
  });
});
