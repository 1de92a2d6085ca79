// The scaling bench's "where our time goes" table (bench/scaling.ts): the onnxruntime / JavaScript
// split of each phase and onnxruntime's speed-up against the fewest threads of the same model and
// size. The README quotes these figures, so the arithmetic is checked here on made-up rows.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { scalingRow, whereTimeGoes, type OursResult, type ScalingRow } from '../../bench/scaling';

function row(tokens: number, threads: number, ours: Partial<OursResult> | null): ScalingRow {
  const r = scalingRow('m', tokens, threads, 100, 1);
  r.ours = ours && {
    bestMs: 0,
    processMs: [],
    processRssMb: [],
    tokenizeMs: 0,
    peakRssMb: 0,
    medianMs: 0,
    forwardMs: 0,
    lensMs: 0,
    metricsMs: 0,
    runtimeMs: { total: 0, forward: 0, lens: 0, metrics: 0 },
    ...ours,
  };
  return r;
}

test('where the time goes: each phase split into onnxruntime / JavaScript, speed-up against the fewest threads', () => {
  const one = {
    medianMs: 2000,
    forwardMs: 400,
    lensMs: 1500,
    metricsMs: 100,
    runtimeMs: { total: 1900, forward: 380, lens: 1450, metrics: 70 },
  };
  const two = {
    medianMs: 1050,
    forwardMs: 210,
    lensMs: 780,
    metricsMs: 60,
    runtimeMs: { total: 950, forward: 190, lens: 730, metrics: 30 },
  };
  const lines = whereTimeGoes([row(512, 2, two), row(512, 1, one), row(1024, 4, two), row(128, 2, null)]);
  const body = lines.filter((l) => l.startsWith('| m |'));
  assert.equal(body.length, 3, 'a row without our run is left out');
  const cells = (l: string) => l.split('|').map((c) => c.trim());
  const [, , tokens, threads, whole, forward, lens, metrics, share, speedup] = cells(body[0]!);
  assert.deepEqual([tokens, threads], ['512', '2']);
  assert.equal(whole, '950 / 100');
  assert.equal(forward, '190 / 20');
  assert.equal(lens, '730 / 50');
  assert.equal(metrics, '30 / 30');
  assert.equal(share, '10%'); // 100 of 1050 ms
  assert.equal(speedup, '2.00× (2× the threads of 1)'); // 1900 / 950
  assert.equal(cells(body[1]!)[9], '—', 'the fewest threads is its own baseline');
  assert.equal(cells(body[2]!)[9], '—', 'another size has its own baseline');
  assert.deepEqual(whereTimeGoes([row(512, 2, null)]), [], 'no table without our runs');
});

test('where the time goes: onnxruntime time above the phase (clock granularity) counts as no JavaScript', () => {
  const r = row(512, 2, {
    medianMs: 100,
    forwardMs: 10,
    lensMs: 80,
    metricsMs: 10,
    runtimeMs: { total: 100.4, forward: 10.2, lens: 80, metrics: 10 },
  });
  const line = whereTimeGoes([r]).find((l) => l.startsWith('| m |'))!;
  assert.match(line, /\| 100 \/ 0 \| 10 \/ 0 \| 80 \/ 0 \| 10 \/ 0 \| 0% \|/);
});
