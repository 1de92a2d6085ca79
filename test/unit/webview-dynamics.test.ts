// The dynamics tabs' pure data shaping (webview/shapeDynamics*.ts): attention heads, angular
// proximity, the ball, encoding-walk clusters, prompt diff and the static report's data.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import type { ClustersResult, DiffResult, HeadStatsResult, LensTable, ProximityResult } from '../../src/shared/analysis';
import { headStats } from '../../src/engine/analysis/attention';
import { averageLinkage, cosineDistance, cutTree as engineCutTree } from '../../src/engine/analysis/clusters';
import {
  divergingT,
  headLabel,
  headRows,
  inductionText,
  isHeadStats,
  isPattern,
  kernelOf,
  kernelScale,
  scaleT,
  selfBiasRange,
  signedText,
  sortHeads,
  sparkPoints,
  topKeys,
} from '../../webview/shapeDynamicsAttention';
import {
  KIND_BOTH,
  KIND_COS,
  KIND_LOGIT,
  KIND_REST,
  buildGrid,
  decimate,
  extentOf,
  isProximity,
  lensCosSeries,
  nearestPoint,
  niceTicks,
  placeLabels,
  pointKinds,
  proximitySvg,
  rankOf,
  topList,
  vocabLabel,
} from '../../webview/shapeDynamicsProximity';
import { ballSummary, boxStats, positionSeries, quantile, rowBoxes } from '../../webview/shapeDynamicsBall';
import {
  clusterBands,
  clusterCount,
  cohesion,
  cutTree,
  defaultThreshold,
  dendrogramLines,
  isClusters,
  maxHeight,
  reorderMatrix,
  similarityRange,
} from '../../webview/shapeDynamicsClusters';
import { component, diffRows, diffTableSvg, divergeSentence, isDiffResult, lensTop1, sideSummary } from '../../webview/shapeDynamicsDiff';
import {
  STATIC_DATA_VERSION,
  StaticAnswerError,
  decodeTypedJson,
  encodeTypedJson,
  staticAnswer,
  staticDataProblems,
  type StaticData,
} from '../../webview/shapeDynamicsStatic';

/** mulberry32 */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Causal softmax patterns [L, H, T, T] with a few distinctive heads. */
function patterns(L: number, H: number, T: number, seed = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(L * H * T * T);
  for (let l = 0; l < L; l++)
    for (let h = 0; h < H; h++)
      for (let q = 0; q < T; q++) {
        const base = ((l * H + h) * T + q) * T;
        let s = 0;
        for (let k = 0; k <= q; k++) {
          // head 0: previous token; head 1: avoids itself; others random
          const w = h === 0 ? (k === q - 1 || q === 0 ? 50 : 1) : h === 1 ? (k === q && q > 0 ? 0.01 : 1) : r() + 0.1;
          out[base + k] = w;
          s += w;
        }
        for (let k = 0; k <= q; k++) out[base + k]! /= s;
      }
  return out;
}

function stats(L = 2, H = 3, T = 12): HeadStatsResult {
  const ids = Array.from({ length: T }, (_, i) => [1, 2, 3, 4][i % 4]!);
  return { n_layers: L, n_heads: H, ...headStats(patterns(L, H, T), L, H, T, ids, 8) };
}

describe('attention heads', () => {
  test('rows, labels and the shape check', () => {
    const s = stats();
    assert.ok(isHeadStats(s, 2, 3));
    assert.ok(!isHeadStats(s as unknown, 3, 3));
    assert.ok(!isHeadStats({ ...s, selfBias: new Float32Array(2) }));
    assert.ok(!isHeadStats(null));
    const rows = headRows(s);
    assert.equal(rows.length, 6);
    assert.deepEqual(
      rows.map((r) => [r.layer, r.head, r.index]),
      [
        [0, 0, 0],
        [0, 1, 1],
        [0, 2, 2],
        [1, 0, 3],
        [1, 1, 4],
        [1, 2, 5],
      ],
    );
    assert.equal(headLabel(1, 2), 'L1.H2');
    // the previous-token head peaks at d = 1; the self-avoiding head has negative self-bias
    assert.equal(rows[0]!.peak, 1);
    assert.ok(rows[0]!.k1 > 0.5);
    assert.ok(rows[1]!.selfBias < 0);
    assert.equal(kernelOf(s, 2, 'raw').length, s.maxOffset + 1);
    assert.equal(kernelOf(s, 2, 'raw')[0], s.kernel[2 * (s.maxOffset + 1)]);
  });

  test('sorting: self-bias ascending, induction descending, NaN last, reverse', () => {
    const rows = headRows(stats());
    const bySelf = sortHeads(rows, 'selfBias');
    for (let i = 1; i < bySelf.length; i++) assert.ok(bySelf[i - 1]!.selfBias <= bySelf[i]!.selfBias);
    assert.equal(bySelf[0]!.head, 1, 'a self-avoiding head first');
    const rev = sortHeads(rows, 'selfBias', true);
    for (let i = 1; i < rev.length; i++) assert.ok(rev[i - 1]!.selfBias >= rev[i]!.selfBias);
    // ties keep layer order in both directions
    for (let i = 1; i < rev.length; i++) if (rev[i - 1]!.selfBias === rev[i]!.selfBias) assert.ok(rev[i - 1]!.index < rev[i]!.index);
    const withNaN = rows.map((r, i) => ({ ...r, induction: i === 0 ? NaN : i / 10 }));
    const byInd = sortHeads(withNaN, 'induction');
    assert.deepEqual(
      byInd.map((r) => r.index),
      [5, 4, 3, 2, 1, 0],
    );
    assert.equal(sortHeads(withNaN, 'induction', true).at(-1)!.index, 0, 'NaN stays last reversed');
    assert.deepEqual(
      sortHeads(bySelf, 'layer').map((r) => r.index),
      [0, 1, 2, 3, 4, 5],
    );
  });

  test('sparkline scales: linear raw kernels, log normalised kernels with 1 in between', () => {
    const s = stats();
    const raw = kernelScale(s, 'raw');
    assert.equal(raw.log, false);
    assert.equal(raw.lo, 0);
    assert.equal(raw.hi, Math.max(...s.kernel));
    const norm = kernelScale(s, 'norm');
    assert.ok(norm.log && norm.hi >= 2 && norm.lo === 1 / 16);
    const one = scaleT(1, norm);
    assert.ok(one > 0.2 && one < 0.9, `1 sits inside the scale (${one})`);
    assert.equal(scaleT(0, norm), 0);
    assert.equal(scaleT(NaN, raw), 0);
    assert.equal(scaleT(1e9, raw), 1);
    const pts = sparkPoints([0, raw.hi / 2, raw.hi], 100, 20, raw).split(' ');
    assert.deepEqual(pts, ['0.0,20.0', '50.0,10.0', '100.0,0.0']);
    assert.equal(sparkPoints([], 10, 10, raw), '');
  });

  test('self-bias colours, top keys and text', () => {
    const s = stats();
    const range = selfBiasRange(s);
    assert.ok(range > 0);
    assert.equal(divergingT(-range, range), -1);
    assert.equal(divergingT(range * 3, range), 1);
    assert.equal(divergingT(NaN, range), 0);
    const T = 4;
    const m = new Float32Array([1, 0, 0, 0, 0.3, 0.7, 0, 0, 0.2, 0.2, 0.6, 0, 0.1, 0.5, 0.1, 0.3]);
    assert.ok(isPattern(m, 4));
    assert.ok(!isPattern(m as unknown, 5));
    assert.deepEqual(topKeys(m, T, 3, 2), [
      { key: 1, p: m[13] },
      { key: 3, p: m[15] },
    ]);
    assert.deepEqual(topKeys(m, T, 9), []);
    assert.equal(signedText(0.123), '+0.12');
    assert.equal(signedText(-0.5), '−0.50');
    assert.equal(inductionText(NaN), 'n/a');
    assert.equal(inductionText(0.256), '0.26');
  });
});

function proximityResult(): ProximityResult {
  const V = 50;
  const cos = new Float32Array(V);
  const logits = new Float32Array(V);
  const norms = new Float32Array(V);
  for (let t = 0; t < V; t++) {
    cos[t] = Math.cos(t * 0.37);
    norms[t] = 1 + (t % 5) * 0.3;
    logits[t] = 4 * norms[t]! * cos[t]!;
  }
  const top = (v: Float32Array, k: number) =>
    Array.from(v.keys())
      .sort((a, b) => v[b]! - v[a]! || a - b)
      .slice(0, k);
  const byLogit = top(logits, 5);
  const byCos = top(cos, 5);
  const labels: Record<number, string> = {};
  for (const t of [...byLogit, ...byCos]) labels[t] = t % 2 ? '<img src=x onerror=alert(1)>' : `tok${t}`;
  return {
    pos: 3,
    logits,
    cos,
    unembedNorms: norms,
    xNorm: 4,
    spearman: 0.9,
    k: 5,
    topByLogit: byLogit,
    topByCos: byCos,
    topkOverlap: byLogit.filter((t) => byCos.includes(t)).length / 5,
    labels,
  };
}

describe('angular proximity', () => {
  test('point kinds, lists and ranks', () => {
    const r = proximityResult();
    assert.ok(isProximity(r, 50));
    assert.ok(!isProximity(r as unknown, 51));
    assert.ok(!isProximity({ ...r, topByCos: [99] }));
    const k = pointKinds(r);
    for (const t of r.topByLogit) assert.ok(k[t] === KIND_LOGIT || k[t] === KIND_BOTH);
    for (const t of r.topByCos) assert.ok(k[t] === KIND_COS || k[t] === KIND_BOTH);
    const both = r.topByLogit.filter((t) => r.topByCos.includes(t));
    assert.equal(Array.from(k).filter((x) => x === KIND_BOTH).length, both.length);
    assert.equal(Array.from(k).filter((x) => x === KIND_REST).length, 50 - new Set([...r.topByLogit, ...r.topByCos]).size);
    const list = topList(r, 'logit');
    assert.deepEqual(
      list.map((t) => t.id),
      r.topByLogit,
    );
    assert.ok(list.every((t) => t.shared === r.topByCos.includes(t.id) && t.logit === r.logits[t.id]));
    assert.equal(rankOf(r.logits, r.topByLogit[0]!), 0);
    assert.equal(rankOf(r.logits, r.topByLogit[2]!), 2);
  });

  test('extent, ticks and the nearest point', () => {
    const e = extentOf([0, 1, NaN], [10, 20, 5], 0.1);
    assert.deepEqual(e, { x0: -0.1, x1: 1.1, y0: 9, y1: 21 });
    assert.deepEqual(extentOf([2], [3], 0), { x0: 1.5, x1: 2.5, y0: 2.5, y1: 3.5 });
    assert.deepEqual(niceTicks(0, 1, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]);
    assert.deepEqual(niceTicks(-13, 27, 4), [-10, 0, 10, 20]);
    assert.deepEqual(niceTicks(1, 1), []);
    const px = new Float32Array([10, 50, 52, 200]);
    const py = new Float32Array([10, 50, 50, 100]);
    const g = buildGrid(px, py, 300, 200, 12);
    assert.equal(nearestPoint(g, 11, 11), 0);
    assert.equal(nearestPoint(g, 51, 50, 8, [0, 0, 1, 0]), 2, 'a tie goes to the higher priority');
    assert.equal(nearestPoint(g, 120, 120), -1);
    assert.equal(nearestPoint(g, 199, 101, 8), 3);
  });

  test('labels never overlap and stay inside; decimation keeps the highlighted points', () => {
    const items = Array.from({ length: 30 }, (_, i) => ({ id: i, x: 100 + (i % 3) * 3, y: 100 + (i % 2) * 4, w: 40, h: 14 }));
    const bounds = { x: 0, y: 0, w: 300, h: 300 };
    const placed = placeLabels(items, bounds);
    assert.ok(placed.length >= 4 && placed.length < 30, `${placed.length} placed`);
    for (const a of placed) {
      assert.ok(a.x >= 0 && a.y >= 0 && a.x + a.w <= 300 && a.y + a.h <= 300);
      for (const b of placed)
        if (a !== b) assert.ok(!(a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h), 'overlap');
    }
    assert.equal(placed[0]!.id, 0, 'the first label (the prediction) always gets a place');
    const px = new Float32Array([1, 1.5, 1.2, 9, NaN]);
    const py = new Float32Array([1, 1.2, 1.1, 9, 0]);
    const kinds = new Uint8Array([KIND_REST, KIND_REST, KIND_LOGIT, KIND_REST, KIND_REST]);
    assert.deepEqual(decimate(px, py, kinds, 2), [0, 2, 3]);
  });

  test('lens cosines per layer; the export SVG escapes token text', () => {
    const rows = 3;
    const T = 2;
    const lens = {
      rows,
      pos: T,
      cosNext: new Float32Array([0.1, NaN, 0.2, NaN, 0.3, NaN]),
      cosPred: new Float32Array([0.4, 0.5, 0.6, 0.7, 0.8, 0.9]),
    } as LensTable;
    assert.deepEqual(
      lensCosSeries(lens, 0).next.map((v) => v && Number(v.toFixed(2))),
      [0.1, 0.2, 0.3],
    );
    assert.deepEqual(lensCosSeries(lens, 1).next, [null, null, null], 'no next token at the last position');
    assert.equal(lensCosSeries(lens, 1).pred.length, 3);
    const r = proximityResult();
    const svg = proximitySvg(
      r,
      (id) => vocabLabel(r.labels[id], id),
      { width: 400, height: 300 },
      {
        background: '#fff',
        foreground: '#000',
        muted: '#666',
        grid: '#eee',
        rest: '#999',
        logit: 'orange',
        cos: 'blue',
        both: 'purple',
        next: 'green',
        fontFamily: 'a "quoted" <font>',
      },
      7,
    );
    assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg" width="400" height="300"'));
    assert.ok(!svg.includes('<img'), 'labels are escaped');
    assert.ok(!svg.includes('"quoted"'));
    assert.ok(svg.includes('&lt;img'));
    assert.equal(vocabLabel(undefined, 12), '#12');
    assert.equal(vocabLabel(' a\n', 1), '·a↵');
  });
});

describe('the ball', () => {
  test('quantiles like numpy, Tukey whiskers and outliers', () => {
    assert.equal(quantile([1, 2, 3, 4], 0.5), 2.5);
    assert.equal(quantile([1, 2, 3, 4], 0.25), 1.75);
    assert.ok(Number.isNaN(quantile([], 0.5)));
    const v = [1, 2, 3, 4, 5, 6, 7, 8, 100, NaN];
    const b = boxStats(v);
    assert.equal(b.n, 9);
    assert.equal(b.median, 5);
    assert.equal(b.q1, 3);
    assert.equal(b.q3, 7);
    assert.equal(b.lower, 1);
    assert.equal(b.upper, 8);
    assert.deepEqual(b.outliers, [8], 'the index of 100');
    assert.equal(b.max, 100);
    assert.ok(Math.abs(b.mean - 136 / 9) < 1e-9);
    assert.equal(boxStats([]).n, 0);
  });

  test('rows, one position, summary', () => {
    const rows = 3;
    const T = 4;
    const before = new Float32Array([1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 40]);
    const after = new Float32Array(12).fill(5);
    after[0] = 5.5;
    const boxes = rowBoxes(before, rows, T);
    assert.equal(boxes.length, 3);
    assert.deepEqual(
      boxes.map((x) => x.median),
      [1, 2, 4],
    );
    assert.deepEqual(boxes[2]!.outliers, [3]);
    assert.deepEqual(rowBoxes(before, 2, T), [], 'wrong size → nothing');
    assert.deepEqual(positionSeries(before, rows, T, 3), [1, 2, 40]);
    assert.deepEqual(positionSeries(before, rows, T, 9), []);
    const s = ballSummary(before, after, rows, T);
    assert.ok(Math.abs(s.radius - 60.5 / 12) < 1e-6);
    assert.ok(s.cvAfter < 0.05 && s.cvBefore > 1);
    assert.equal(s.growth, 4);
  });
});

/** Similarity of random points with three groups. */
function similarity(T: number, seed = 3): Float32Array {
  const r = rng(seed);
  const d = 6;
  const pts = Array.from({ length: T }, (_, i) => Array.from({ length: d }, (_, j) => (j === i % 3 ? 3 : 0) + r() - 0.5));
  const sim = new Float32Array(T * T);
  for (let i = 0; i < T; i++)
    for (let j = 0; j < T; j++) {
      let dot = 0;
      let na = 0;
      let nb = 0;
      for (let k = 0; k < d; k++) {
        dot += pts[i]![k]! * pts[j]![k]!;
        na += pts[i]![k]! ** 2;
        nb += pts[j]![k]! ** 2;
      }
      sim[i * T + j] = dot / Math.sqrt(na * nb);
    }
  return sim;
}

function clusters(T: number, seed = 3): ClustersResult {
  const sim = similarity(T, seed);
  const d = averageLinkage(cosineDistance(sim, T), T);
  return { row: 1, similarity: sim, order: d.order, merges: d.merges };
}

describe('encoding-walk clusters', () => {
  test('cutTree is the engine’s cutTree at every threshold', () => {
    for (const seed of [1, 2, 3]) {
      const T = 17;
      const c = clusters(T, seed);
      const dend = { order: c.order, merges: c.merges, n: T };
      for (const th of [0, ...c.merges.map((m) => m.height), 0.05, 0.5, 2]) {
        assert.deepEqual(cutTree(c.merges, T, c.order, th), engineCutTree(dend, th), `seed ${seed}, threshold ${th}`);
        assert.equal(new Set(cutTree(c.merges, T, c.order, th)).size, clusterCount(c.merges, T, th));
      }
    }
  });

  test('bands are contiguous runs of the leaf order; three planted groups are found', () => {
    const T = 18;
    const c = clusters(T);
    assert.ok(isClusters(c, T));
    assert.ok(!isClusters(c as unknown, T + 1));
    assert.ok(!isClusters({ ...c, order: [...c.order.slice(1), c.order[1]!] }, T), 'not a permutation');
    const th = defaultThreshold(c.merges, T);
    const k = clusterCount(c.merges, T, th);
    assert.ok(k >= 2 && k <= 8, `default cut gives ${k} clusters`);
    const labels = cutTree(c.merges, T, c.order, th);
    const bands = clusterBands(labels, c.order);
    assert.equal(bands.length, new Set(labels).size, 'each cluster is one run');
    let at = 0;
    for (const [i, b] of bands.entries()) {
      assert.equal(b.label, i, 'labels are numbered in leaf order');
      assert.equal(b.start, at);
      at = b.end;
      assert.equal(b.members.length, b.end - b.start);
    }
    // a cut just above the within-group merges separates the planted groups (i mod 3)
    const three = cutTree(c.merges, T, c.order, (c.merges[T - 3]!.height + c.merges[T - 4]!.height) / 2);
    for (let i = 0; i < T; i++) assert.equal(three[i], three[i % 3], `position ${i} with its group`);
    assert.ok(cohesion(c.similarity, T, [0, 3, 6]) > cohesion(c.similarity, T, [0, 1, 2]));
    assert.equal(cohesion(c.similarity, T, [4]), 1);
    assert.equal(maxHeight(c.merges), Math.max(...c.merges.map((m) => m.height)));
    assert.equal(defaultThreshold([], 1), 0);
  });

  test('reordered matrix, dendrogram links and range', () => {
    const T = 5;
    const c = clusters(T);
    const z = reorderMatrix(c.similarity, T, c.order);
    for (let i = 0; i < T; i++) for (let j = 0; j < T; j++) assert.equal(z[i]![j], c.similarity[c.order[i]! * T + c.order[j]!]);
    const d = dendrogramLines(c.merges, T, c.order);
    assert.equal(d.x.length, 5 * (T - 1));
    const top = c.merges[T - 2]!;
    assert.equal(Math.max(...d.y.filter((v) => !Number.isNaN(v))), top.height);
    assert.ok(d.x.filter((v) => !Number.isNaN(v)).every((v) => v >= 0 && v <= T - 1));
    const [lo, hi] = similarityRange(c.similarity, T);
    assert.ok(lo < hi && hi <= 1);
  });
});

function lensFor(rows: number, T: number, k: number, ids: number[], probs: number[]): LensTable {
  const topIds = new Int32Array(rows * T * k);
  const topProbs = new Float32Array(rows * T * k);
  for (let r = 0; r < rows; r++) {
    topIds[(r * T + T - 1) * k] = ids[r]!;
    topProbs[(r * T + T - 1) * k] = probs[r]!;
  }
  return { rows, pos: T, k, topIds, topProbs } as LensTable;
}

describe('prompt diff', () => {
  test("each side's tokens, and a prompt the window cut says its walk is not the end's", () => {
    const tokens = [{ text: 'It' }, { text: ' was' }, { text: ' late' }];
    assert.deepEqual(sideSummary({ tokens, truncation: null }, 'a.md'), {
      count: '3 tokens',
      title: 'a.md: 3 tokens, last " late"',
      cut: false,
    });
    const counted = sideSummary({ tokens, truncation: { kept: 3, total: 1300, chars: 5000 } }, 'b.md (selection)');
    assert.equal(counted.count, 'first 3 of 1,300 tokens');
    assert.equal(counted.cut, true);
    assert.equal(
      counted.title,
      'b.md (selection): analysed the first 3 of 1,300 tokens (context window or token limit). The walk compared is the one after ' +
        'token 3 (" late"), not after the prompt\'s end: select a shorter prompt to compare its end.',
    );
    const uncounted = sideSummary({ tokens, truncation: { kept: 3, total: null, chars: 400_000 } }, 'clipboard');
    assert.equal(uncounted.count, 'first 3 tokens');
    assert.match(uncounted.title, /^clipboard: analysed the first 3 tokens of a 400,000-character text/);
  });

  test('top-1 per row side by side, the shape check and the sentence', () => {
    const rows = 3;
    const a = { lens: lensFor(rows, 2, 2, [5, 6, 7], [0.5, 0.6, 0.7]), vocab: { 5: ' the', 6: ' cat', 7: '<b>x' } };
    const b = { lens: lensFor(rows, 4, 2, [5, 8, 9], [0.4, 0.3, 0.2]), vocab: { 5: ' the', 8: ' dog', 9: 'y' } };
    const diff: DiffResult = {
      rows,
      cosine: new Float32Array([0.99, 0.8, 0.5]),
      coordsA: new Float32Array(rows * 3),
      coordsB: new Float32Array(rows * 3).fill(1),
      k: 3,
      explained: [0.5, 0.3, 0.1],
      divergeRow: 1,
    };
    assert.ok(isDiffResult(diff, 3));
    assert.ok(!isDiffResult(diff as unknown, 4));
    assert.ok(!isDiffResult({ ...diff, divergeRow: 7 }));
    assert.ok(!isDiffResult({ ...diff, coordsA: new Float32Array(2) }));
    assert.deepEqual(
      lensTop1(a.lens, a.vocab).map((t) => t.text),
      [' the', ' cat', '<b>x'],
    );
    const r = diffRows(a, b, diff);
    assert.deepEqual(
      r.map((x) => x.same),
      [true, false, false],
    );
    assert.equal(r[2]!.cos, diff.cosine[2]);
    assert.deepEqual(component(diff.coordsB, rows, 3, 1), [1, 1, 1]);
    assert.ok(component(diff.coordsB, rows, 1, 2).every(Number.isNaN));
    assert.match(
      divergeSentence(diff, (x) => `row ${x}`),
      /part at row 1/,
    );
    assert.match(divergeSentence({ ...diff, divergeRow: null }, String), /end close together/);
    const svg = diffTableSvg(r, ['<script>a</script>', '\u202eb'], 1, (x) => `L${x}`, {
      background: '#fff',
      foreground: '#000',
      muted: '#666',
      border: '#ccc',
      changed: '#fee',
      diverge: 'red',
      fontFamily: 'x',
      monoFamily: 'y',
    });
    assert.ok(!svg.includes('<script') && !svg.includes('<b>') && !svg.includes('\u202e'));
    assert.ok(svg.includes('&lt;b&gt;x'));
  });
});

function staticData(T = 6): StaticData {
  const rows = 3;
  const sim = similarity(T);
  const c = clusters(T);
  return {
    version: STATIC_DATA_VERSION,
    generated: '2024-01-01T00:00:00.000Z',
    generator: 'test',
    payload: {
      runId: 4,
      tokens: Array.from({ length: T }, () => ({})),
      dims: { n_layers: rows - 1, pos: T, d_model: 6, n_heads: 2 },
    } as unknown as StaticData['payload'],
    settings: { lensTopK: 5, overlayEnabled: false },
    similarity: { 1: sim, 2: sim },
    headStats: null,
    attentionNote: 'no patterns here',
    patterns: { '0.1': new Float32Array(T * T) },
    patternsNote: null,
    proximity: { [T - 1]: { pos: T - 1 } as ProximityResult },
    clusters: { 2: { ...c, row: 2 } },
  };
}

describe('static report data', () => {
  test('typed-array JSON round trip, NaN kept, safe inside <script>', () => {
    const v = {
      a: new Float32Array([1.5, NaN, -Infinity]),
      b: new Int32Array([-3, 7]),
      c: new Float64Array([Math.PI]),
      u: new Uint8Array([0, 255]).subarray(1),
      s: '</script><script>alert(1)</script><!-- & \u2028',
      nested: [{ x: new Float32Array(0) }],
    };
    const text = encodeTypedJson(v);
    assert.ok(!/[<>&\u2028]/.test(text), 'no characters that could end the script element');
    const back = decodeTypedJson(text) as typeof v;
    assert.ok(back.a instanceof Float32Array && back.a[0] === 1.5 && Number.isNaN(back.a[1]) && back.a[2] === -Infinity);
    assert.deepEqual(Array.from(back.b), [-3, 7]);
    assert.equal(back.c[0], Math.PI);
    assert.deepEqual(Array.from(back.u), [255], 'a subarray keeps only its own bytes');
    assert.equal(back.s, v.s);
    assert.equal(back.nested[0]!.x.length, 0);
    assert.throws(() => decodeTypedJson('{"$typed":"Float32Array","b64":"AAA="}'), /partial element/);
    assert.throws(() => decodeTypedJson('{"$typed":"Evil","b64":""}'), /Bad typed array/);
  });

  test('answers requests from the data, with messages for what is missing', () => {
    const d = staticData();
    const T = 6;
    assert.deepEqual(staticDataProblems(d), []);
    assert.ok(staticDataProblems({ version: 9 }).length > 0);
    assert.equal(staticAnswer(d, 'similarity', { runId: 4, row: 1 }), d.similarity[1]);
    assert.throws(() => staticAnswer(d, 'similarity', { runId: 4, row: 0 }), /last layer only/);
    assert.throws(() => staticAnswer(d, 'similarity', { runId: 5, row: 1 }), /one analysis only/);
    assert.throws(
      () => staticAnswer(d, 'headStats', { runId: 4 }),
      (e: Error) => e instanceof StaticAnswerError && e.message === 'no patterns here',
    );
    assert.equal(staticAnswer(d, 'pattern', { runId: 4, layer: 0, head: 1 }), d.patterns!['0.1']);
    assert.throws(() => staticAnswer(d, 'pattern', { runId: 4, layer: 1, head: 1 }), /no attention patterns/);
    assert.equal(staticAnswer(d, 'proximity', { runId: 4, pos: T - 1 }).pos, T - 1);
    assert.throws(() => staticAnswer(d, 'proximity', { runId: 4, pos: 0 }), /position 5 \(the last token\) only/);
    assert.equal(staticAnswer(d, 'clusters', { runId: 4, row: 2 }), d.clusters[2]);
    // a row without precomputed clusters is clustered from its similarity matrix, like the engine does
    const c1 = staticAnswer(d, 'clusters', { runId: 4, row: 1 });
    const want = averageLinkage(cosineDistance(d.similarity[1]!, T), T);
    assert.deepEqual(c1.order, want.order);
    assert.deepEqual(c1.merges, want.merges);
    assert.throws(() => staticAnswer(d, 'clusters', { runId: 4, row: 0 }), /last layer only/);
    assert.equal(staticAnswer(d, 'showClusters', { runId: 4, labels: [0] }), null);
    assert.throws(() => staticAnswer(d, 'generate', { prompt: 'x', strategies: [], maxNewTokens: 1 }), /static report/);
    // a heatmap cell opened in a report: the CLI command that makes that patched run's report
    const cells = [
      { layer: 1, col: 2 },
      { layer: 0, col: 3 },
    ];
    const open = (site: 'mlp_out' | 'z') => () =>
      staticAnswer(d, 'openPatched', { cleanRunId: 1, corruptedRunId: 2, direction: 'denoise', site, cells });
    assert.throws(
      open('mlp_out'),
      /cannot run the model.*corrupted text with --patch-from <the other text> --patch-site mlp_out --patch-cells 1:2,0:3\./,
    );
    assert.throws(open('z'), /--patch-site z --patch-cells 1\.2,0\.3\./);
  });
});
