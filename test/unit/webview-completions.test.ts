// The Completions tab's pure data shaping (webview/shapeCompletions.ts): stream assembly,
// columns and the settings form, forks, the decoding walk, tints and repeated 4-grams.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import type { Completion, GenStep, Strategy } from '../../src/shared/generation';
import { DEFAULT_STRATEGIES } from '../../src/shared/generation';
import type { CompletionBatch } from '../../src/shared/protocol';
import { repetitionRate } from '../../src/engine/analysis/repetition';
import {
  EMPTY_COMPLETIONS,
  MAX_COLUMNS,
  TINT_MAX_BITS,
  activeBatch,
  addColumn,
  analyzeTextOf,
  assembled,
  batchProgress,
  forkLabel,
  forkRequest,
  formValues,
  generateRequest,
  isEdited,
  markStopped,
  metricItems,
  parseMaxNewTokens,
  percent,
  promptNote,
  reduceCompletions,
  removeColumn,
  removeFork,
  repeatedMask,
  setColumnStrategy,
  strategyFromForm,
  strategyLabel,
  tintLevel,
  tokenPieces,
  walkRows,
  type CompletionsState,
} from '../../webview/shapeCompletions';

const greedy: Strategy = { label: 'greedy', kind: 'greedy' };
const topK: Strategy = { label: 'top-k 40', kind: 'sample', topK: 40, seed: 1 };

function step(id: number, prob = 0.5, top: number[] = [id, id + 1, id + 2]): GenStep {
  return { id, text: `t${id}`, prob, entropy: 1, top: top.map((t, i) => ({ id: t, text: `t${t}`, prob: 0.5 / (i + 1) })) };
}

function batch(batchId: number, strategies: Strategy[], extra: Partial<CompletionBatch> = {}): CompletionBatch {
  return { batchId, prompt: 'Once upon', strategies, maxNewTokens: 8, forkOf: null, forcedIds: [], ...extra };
}

function completion(strategy: Strategy, ids: number[]): Completion {
  return {
    strategy,
    promptIds: [1, 2],
    steps: ids.map((id) => step(id)),
    text: ids.map((id) => `t${id}`).join(''),
    stopReason: 'max_new_tokens',
    metrics: { distinct: [1, 1, 1, 1], repetitionRate: 0, meanSurprisalBits: 1, loopStart: null },
    score: null,
    timings: { totalMs: 10, firstStepMs: 2, perTokenMs: 1 },
  };
}

/** A state with batch 1 (greedy, top-k) done: greedy chose 10 11 12 13, top-k 20 21 22. */
function doneState(): CompletionsState {
  let s = reduceCompletions(EMPTY_COMPLETIONS, { type: 'completionBatch', batch: batch(1, [greedy, topK]) });
  s = reduceCompletions(s, { type: 'completionDone', batchId: 1, index: 0, completion: completion(greedy, [10, 11, 12, 13]) });
  s = reduceCompletions(s, { type: 'completionDone', batchId: 1, index: 1, completion: completion(topK, [20, 21, 22]) });
  return s;
}

describe('stream assembly', () => {
  test('a batch makes one column per strategy, queued', () => {
    const s = reduceCompletions(EMPTY_COMPLETIONS, { type: 'completionBatch', batch: batch(1, [greedy, topK]) });
    assert.equal(s.columns.length, 2);
    assert.deepEqual(
      s.columns.map((c) => [c.strategy.label, c.entry]),
      [
        ['greedy', '1.0'],
        ['top-k 40', '1.1'],
      ],
    );
    assert.equal(s.entries['1.0']!.status, 'queued');
    assert.equal(s.prompt, 'Once upon');
    assert.equal(s.maxNewTokens, 8);
    assert.equal(activeBatch(s), 1);
  });

  test('steps arriving out of order show up to the first gap, then fill in', () => {
    let s = reduceCompletions(EMPTY_COMPLETIONS, { type: 'completionBatch', batch: batch(1, [greedy]) });
    const post = (i: number, id: number) =>
      (s = reduceCompletions(s, { type: 'completionStep', batchId: 1, index: 0, stepIndex: i, step: step(id) }));
    post(0, 10);
    post(2, 12);
    post(3, 13);
    let a = assembled(s.entries['1.0']!);
    assert.deepEqual(
      a.steps.map((t) => t.id),
      [10],
    );
    assert.equal(a.pending, 2);
    assert.equal(s.entries['1.0']!.status, 'running');
    post(1, 11);
    a = assembled(s.entries['1.0']!);
    assert.deepEqual(
      a.steps.map((t) => t.id),
      [10, 11, 12, 13],
    );
    assert.equal(a.pending, 0);
  });

  test('a step replaces the one at its index (beam search re-ranks)', () => {
    let s = reduceCompletions(EMPTY_COMPLETIONS, { type: 'completionBatch', batch: batch(1, [greedy]) });
    s = reduceCompletions(s, { type: 'completionStep', batchId: 1, index: 0, stepIndex: 0, step: step(10) });
    s = reduceCompletions(s, { type: 'completionStep', batchId: 1, index: 0, stepIndex: 0, step: step(99) });
    assert.deepEqual(
      assembled(s.entries['1.0']!).steps.map((t) => t.id),
      [99],
    );
  });

  test('the completion is the truth: steps and errors after done are ignored', () => {
    let s = doneState();
    const before = s;
    s = reduceCompletions(s, { type: 'completionStep', batchId: 1, index: 0, stepIndex: 1, step: step(77) });
    s = reduceCompletions(s, { type: 'completionError', batchId: 1, index: 0, error: 'late' });
    s = reduceCompletions(s, { type: 'completionDone', batchId: 1, index: 0, completion: completion(greedy, [1]) });
    assert.equal(s, before);
    assert.deepEqual(
      assembled(s.entries['1.0']!).steps.map((t) => t.id),
      [10, 11, 12, 13],
    );
    assert.equal(activeBatch(s), null);
  });

  test('done replaces the streamed steps (beam search streams its best beam so far)', () => {
    let s = reduceCompletions(EMPTY_COMPLETIONS, { type: 'completionBatch', batch: batch(1, [greedy]) });
    s = reduceCompletions(s, { type: 'completionStep', batchId: 1, index: 0, stepIndex: 0, step: step(5) });
    s = reduceCompletions(s, { type: 'completionStep', batchId: 1, index: 0, stepIndex: 2, step: step(7) });
    s = reduceCompletions(s, { type: 'completionDone', batchId: 1, index: 0, completion: completion(greedy, [1, 2]) });
    const e = s.entries['1.0']!;
    assert.equal(e.status, 'done');
    assert.deepEqual(
      assembled(e).steps.map((t) => t.id),
      [1, 2],
    );
  });

  test('unknown, stale, malformed and out-of-range messages are ignored', () => {
    const s = doneState();
    assert.equal(reduceCompletions(s, { type: 'completionStep', batchId: 9, index: 0, stepIndex: 0, step: step(1) }), s);
    assert.equal(reduceCompletions(s, { type: 'completionBatch', batch: batch(1, [greedy]) }), s, 'a batch id seen before');
    let r = reduceCompletions(EMPTY_COMPLETIONS, { type: 'completionBatch', batch: batch(1, [greedy]) });
    const q = r;
    r = reduceCompletions(r, { type: 'completionStep', batchId: 1, index: 0, stepIndex: 8, step: step(1) }); // maxNewTokens 8
    assert.equal(r, q);
    r = reduceCompletions(r, { type: 'completionStep', batchId: 1, index: 0, stepIndex: 0, step: { id: 1 } as unknown as GenStep });
    assert.equal(r, q);
    r = reduceCompletions(r, {
      type: 'completionDone',
      batchId: 1,
      index: 0,
      completion: { steps: [] } as unknown as Completion,
    });
    assert.equal(r, q);
  });

  test('an error lands in its column', () => {
    let s = reduceCompletions(EMPTY_COMPLETIONS, { type: 'completionBatch', batch: batch(1, [greedy, topK]) });
    s = reduceCompletions(s, { type: 'completionError', batchId: 1, index: 1, error: 'top-p must be in (0, 1]' });
    assert.equal(s.entries['1.1']!.status, 'error');
    assert.equal(s.entries['1.1']!.error, 'top-p must be in (0, 1]');
    assert.deepEqual(batchProgress(s, 1), { finished: 1, total: 2, running: s.entries['1.0']! });
  });

  test('Stop: the columns not started are marked stopped; a new batch stops the old one', () => {
    let s = reduceCompletions(EMPTY_COMPLETIONS, { type: 'completionBatch', batch: batch(1, [greedy, topK]) });
    s = reduceCompletions(s, { type: 'completionStep', batchId: 1, index: 0, stepIndex: 0, step: step(3) });
    const stopped = markStopped(s, 1);
    assert.equal(stopped.entries['1.0']!.status, 'running'); // it gets its (cancelled) completion from the host
    assert.equal(stopped.entries['1.1']!.status, 'stopped');
    assert.equal(markStopped(stopped, 1), stopped);
    const done = reduceCompletions(stopped, { type: 'completionDone', batchId: 1, index: 1, completion: completion(topK, [1]) });
    assert.equal(done.entries['1.1']!.status, 'done', 'a late completion is still shown');
    // a fork batch while batch 1 runs: batch 1's queued column will not run
    const f = reduceCompletions(s, {
      type: 'completionBatch',
      batch: batch(2, [greedy], { forkOf: { completionKey: '1.0', step: 0 }, forcedIds: [4] }),
    });
    assert.equal(f.entries['1.1']!.status, 'stopped');
    assert.equal(activeBatch(f), 2);
  });

  test('a new comparison replaces the columns and drops the old completions', () => {
    let s = doneState();
    s = reduceCompletions(s, { type: 'completionBatch', batch: batch(5, [topK], { prompt: 'Another', maxNewTokens: 12 }) });
    assert.deepEqual(Object.keys(s.entries), ['5.0']);
    assert.equal(s.columns.length, 1);
    assert.equal(s.prompt, 'Another');
    assert.equal(s.maxNewTokens, 12);
    assert.ok(s.columns[0]!.id > 2, 'fresh column ids');
  });
});

describe('columns and the settings form', () => {
  test('add up to six, remove down to one', () => {
    let s: CompletionsState = EMPTY_COMPLETIONS;
    for (let i = 0; i < MAX_COLUMNS; i++) s = addColumn(s, DEFAULT_STRATEGIES[i]!)!;
    assert.equal(s.columns.length, 6);
    assert.equal(addColumn(s, greedy), null);
    assert.equal(new Set(s.columns.map((c) => c.id)).size, 6);
    for (let i = 0; i < 5; i++) s = removeColumn(s, s.columns[0]!.id)!;
    assert.equal(s.columns.length, 1);
    assert.equal(removeColumn(s, s.columns[0]!.id), null);
    assert.equal(removeColumn(s, 999), null);
  });

  test('removing a column drops its completion and forks', () => {
    let s = doneState();
    s = reduceCompletions(s, {
      type: 'completionBatch',
      batch: batch(2, [greedy], { forkOf: { completionKey: '1.0', step: 1 }, forcedIds: [10, 12] }),
    });
    assert.deepEqual(s.entries['1.0']!.children, ['2.0']);
    const r = removeColumn(s, s.columns[0]!.id)!;
    assert.deepEqual(Object.keys(r.entries).sort(), ['1.1']);
  });

  test('an added preset is a copy; editing marks the column edited', () => {
    const s = doneState();
    const col = s.columns[1]!;
    assert.equal(isEdited(s, col), false);
    const e = setColumnStrategy(s, col.id, { ...topK, topK: 20, label: 'top-k 20' });
    assert.equal(isEdited(e, e.columns[1]!), true);
    assert.equal(isEdited(e, e.columns[0]!), false);
    const relabelled = setColumnStrategy(s, col.id, { ...topK, label: 'renamed' });
    assert.equal(isEdited(relabelled, relabelled.columns[1]!), false, 'the label alone is not a setting');
    const a = addColumn(EMPTY_COMPLETIONS, DEFAULT_STRATEGIES[1]!)!;
    assert.notEqual(a.columns[0]!.strategy, DEFAULT_STRATEGIES[1]);
  });

  test('the form round-trips a strategy', () => {
    for (const s of DEFAULT_STRATEGIES) {
      const r = strategyFromForm(s.kind, formValues(s), s);
      assert.ok(r.strategy, s.label);
      const { label: _a, ...got } = r.strategy!;
      const { label: _b, ...want } = s;
      assert.deepEqual(got, want, s.label);
    }
  });

  test('form values are checked against what the engine accepts', () => {
    const bad = (kind: Strategy['kind'], values: Record<string, string>) => strategyFromForm(kind, values, greedy);
    assert.ok(bad('sample', { topK: 'abc' }).errors.topK);
    assert.ok(bad('sample', { topK: '0' }).errors.topK);
    assert.ok(bad('sample', { topK: '2.5' }).errors.topK);
    assert.ok(bad('sample', { topP: '0' }).errors.topP);
    assert.ok(bad('sample', { topP: '1.5' }).errors.topP);
    assert.ok(bad('sample', { minP: '-0.1' }).errors.minP);
    assert.ok(bad('sample', { temperature: '0' }).errors.temperature);
    assert.ok(bad('sample', { temperature: 'Infinity' }).errors.temperature);
    assert.ok(bad('sample', { seed: '-1' }).errors.seed);
    assert.ok(bad('greedy', { repetitionPenalty: '0' }).errors.repetitionPenalty);
    assert.ok(bad('beam', { beams: '17' }).errors.beams);
    assert.ok(bad('beam', { beams: '0' }).errors.beams);
    assert.equal(bad('sample', { topK: 'abc' }).strategy, null);
    // fine values
    const ok = strategyFromForm('sample', { temperature: ' 0.8 ', topP: '0.9', seed: '7', noRepeatNgram: '0' }, greedy);
    assert.deepEqual(ok.errors, {});
    assert.deepEqual(ok.strategy, { label: 'top-p 0.9, T=0.8', kind: 'sample', temperature: 0.8, topP: 0.9, seed: 7 });
  });

  test('settings of other kinds are dropped; beam gets its defaults', () => {
    const g = strategyFromForm('greedy', { temperature: '0.5', topK: 'abc', repetitionPenalty: '1.3' }, topK);
    assert.deepEqual(g.errors, {}, 'a field the kind ignores is not checked');
    assert.deepEqual(g.strategy, { label: 'greedy + rep ×1.3', kind: 'greedy', repetitionPenalty: 1.3 });
    const b = strategyFromForm('beam', { beams: '', lengthPenalty: '0.6' }, greedy);
    assert.deepEqual(b.strategy, { label: 'beam 4', kind: 'beam', beams: 4, lengthPenalty: 0.6, earlyStopping: true });
  });

  test('labels', () => {
    assert.equal(strategyLabel({ label: '', kind: 'sample' }), 'sample');
    assert.equal(strategyLabel({ label: '', kind: 'sample', topK: 40, temperature: 1.2 }), 'top-k 40, T=1.2');
    assert.equal(strategyLabel({ label: '', kind: 'beam', beams: 3, noRepeatNgram: 3 }), 'beam 3 + no-repeat 3');
  });

  test('Generate: the columns on the last prompt, with a checked length', () => {
    const s = doneState();
    const r = generateRequest(s, '24');
    assert.ok('params' in r);
    assert.deepEqual(r.params, { prompt: null, strategies: [greedy, topK], maxNewTokens: 24 });
    for (const bad of ['', '0', '1025', '12.5', 'x']) assert.ok('error' in generateRequest(s, bad), `maxNewTokens ${JSON.stringify(bad)}`);
    assert.ok('error' in generateRequest(EMPTY_COMPLETIONS, '10'));
    assert.deepEqual(parseMaxNewTokens(' 1024 '), { value: 1024 });
  });
});

describe('forks and the decoding walk', () => {
  test('forcedIds = the chosen ids before the step + the alternative; same strategy and seed', () => {
    const s = doneState();
    const r = forkRequest(s, '1.1', 2, 99);
    assert.ok('params' in r);
    assert.deepEqual(r.params, {
      prompt: 'Once upon',
      strategies: [topK],
      maxNewTokens: 8,
      forcedIds: [20, 21, 99],
      forkOf: { completionKey: '1.1', step: 2 },
    });
    assert.notEqual(r.params.strategies[0], s.entries['1.1']!.strategy, 'a copy');
    const first = forkRequest(s, '1.0', 0, 5);
    assert.ok('params' in first);
    assert.deepEqual(first.params.forcedIds, [5]);
  });

  test('fork requests that make no sense are refused', () => {
    const s = doneState();
    assert.ok('error' in forkRequest(s, '1.0', 1, 11), 'the chosen token');
    assert.ok('error' in forkRequest(s, '1.0', 4, 1), 'past the end');
    assert.ok('error' in forkRequest(s, '1.0', -1, 1));
    assert.ok('error' in forkRequest(s, '9.9', 0, 1), 'unknown completion');
    assert.ok('error' in forkRequest(s, '1.0', 0, -3), 'not a token id');
  });

  test('a fork at the last step still has room to generate', () => {
    let s = reduceCompletions(EMPTY_COMPLETIONS, { type: 'completionBatch', batch: batch(1, [greedy], { maxNewTokens: 3 }) });
    s = reduceCompletions(s, { type: 'completionDone', batchId: 1, index: 0, completion: completion(greedy, [1, 2, 3]) });
    const r = forkRequest(s, '1.0', 2, 9);
    assert.ok('params' in r);
    assert.deepEqual(r.params.forcedIds, [1, 2, 9]);
    assert.equal(r.params.maxNewTokens, 4);
  });

  test('a fork becomes a branch of its parent, with a label; the walk marks it', () => {
    let s = doneState();
    const fork = forkRequest(s, '1.0', 1, 12);
    assert.ok('params' in fork);
    s = reduceCompletions(s, {
      type: 'completionBatch',
      batch: batch(2, fork.params.strategies, { forkOf: fork.params.forkOf, forcedIds: fork.params.forcedIds }),
    });
    assert.deepEqual(s.entries['1.0']!.children, ['2.0']);
    assert.equal(s.columns.length, 2, 'a fork adds no column');
    assert.equal(forkLabel(s, '2.0'), "forked at step 1: 't11' → 't12'");
    assert.equal(forkLabel(s, '1.0'), null);
    s = reduceCompletions(s, { type: 'completionDone', batchId: 2, index: 0, completion: completion(greedy, [10, 12, 30]) });
    const rows = walkRows(s, '1.0');
    assert.equal(rows.length, 4);
    assert.deepEqual(
      rows[1]!.alts.map((a) => [a.id, a.chosen, a.fork]),
      [
        [11, true, null],
        [12, false, '2.0'],
        [13, false, null],
      ],
    );
    assert.equal(rows[1]!.chosenRank, 1);
    const forkRows = walkRows(s, '2.0');
    assert.deepEqual(
      forkRows.map((r) => r.forced),
      [true, true, false],
    );
    // removing the fork unlinks it
    const r = removeFork(s, '2.0')!;
    assert.deepEqual(r.entries['1.0']!.children, []);
    assert.equal(r.entries['2.0'], undefined);
    assert.equal(removeFork(s, '1.0'), null, 'a root goes with its column');
  });

  test('a fork whose parent is gone is dropped', () => {
    const s = reduceCompletions(doneState(), {
      type: 'completionBatch',
      batch: batch(2, [greedy], { forkOf: { completionKey: '7.0', step: 0 }, forcedIds: [1] }),
    });
    assert.equal(s.entries['2.0'], undefined);
    assert.equal(s.lastBatch, 2);
  });

  test('a chosen token outside the top alternatives has no rank', () => {
    let s = reduceCompletions(EMPTY_COMPLETIONS, { type: 'completionBatch', batch: batch(1, [topK]) });
    s = reduceCompletions(s, { type: 'completionStep', batchId: 1, index: 0, stepIndex: 0, step: step(50, 0.001, [1, 2, 3]) });
    const [row] = walkRows(s, '1.0');
    assert.equal(row!.chosenRank, null);
    assert.deepEqual(row!.chosen, { id: 50, text: 't50', prob: 0.001 });
    assert.ok(row!.alts.every((a) => !a.chosen));
  });
});

describe('painting', () => {
  test('tint: certain tokens untinted, ≥ TINT_MAX_BITS of surprisal at full strength, monotone', () => {
    const L = 24;
    assert.equal(tintLevel(1, L), 0);
    assert.equal(tintLevel(2 ** -TINT_MAX_BITS, L), L - 1);
    assert.equal(tintLevel(1e-12, L), L - 1);
    assert.equal(tintLevel(0, L), L - 1);
    assert.equal(tintLevel(0.5, L), Math.round((1 / TINT_MAX_BITS) * (L - 1)));
    assert.equal(tintLevel(Number.NaN, L), 0);
    assert.equal(tintLevel(-0.1, L), 0);
    assert.equal(tintLevel(1.5, L), 0);
    assert.equal(tintLevel(0.3, 1), 0);
    let prev = -1;
    for (let p = 1; p > 1e-4; p /= 1.3) {
      const k = tintLevel(p, L);
      assert.ok(k >= prev && k < L, `p ${p}`);
      prev = k;
    }
  });

  test('repeated 4-grams: the tokens the repetition rate counts', () => {
    assert.deepEqual(repeatedMask([1, 2, 3, 4, 9, 1, 2, 3, 4]), [true, true, true, true, false, true, true, true, true]);
    assert.deepEqual(repeatedMask([1, 2, 3, 1, 2, 3]), [false, false, false, false, false, false], 'a 3-gram is not enough');
    assert.deepEqual(repeatedMask([5, 5, 5, 5, 5]), [true, true, true, true, true], 'overlapping occurrences');
    assert.deepEqual(repeatedMask([]), []);
    // the same definition as the engine's repetition rate
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let t = 0; t < 50; t++) {
      const ids = Array.from({ length: 5 + Math.floor(rnd() * 60) }, () => Math.floor(rnd() * 4));
      const mask = repeatedMask(ids);
      assert.equal(mask.filter(Boolean).length / ids.length, repetitionRate(ids, 4));
    }
  });

  test('token pieces: visible whitespace apart, a break after newlines, escapes', () => {
    assert.deepEqual(tokenPieces(' the'), [
      { kind: 'ws', text: '·' },
      { kind: 'text', text: 'the' },
    ]);
    assert.deepEqual(tokenPieces('a\r\n\tb'), [
      { kind: 'text', text: 'a' },
      { kind: 'ws', text: '↵' },
      { kind: 'br' },
      { kind: 'ws', text: '→' },
      { kind: 'text', text: 'b' },
    ]);
    assert.deepEqual(tokenPieces('\n\n'), [{ kind: 'ws', text: '↵' }, { kind: 'br' }, { kind: 'ws', text: '↵' }, { kind: 'br' }]);
    assert.deepEqual(tokenPieces(''), [{ kind: 'text', text: '∅' }]);
    assert.deepEqual(tokenPieces('\u202Eabc\u0000'), [{ kind: 'text', text: '\\u202Eabc\\x00' }]);
    assert.deepEqual(tokenPieces('<img src=x>'), [
      { kind: 'text', text: '<img' },
      { kind: 'ws', text: '·' },
      { kind: 'text', text: 'src=x>' },
    ]);
  });

  test('metrics as label/value pairs', () => {
    const c = completion(greedy, [1, 2, 3]);
    c.metrics = { distinct: [0.5, 0.75, 1, 1], repetitionRate: 0, meanSurprisalBits: 2.3456, loopStart: { step: 4, period: 2 } };
    c.stopReason = 'eos';
    const m = Object.fromEntries(metricItems(c).map((x) => [x.label, x]));
    assert.equal(m['distinct-1…4']!.value, '0.5 · 0.75 · 1 · 1');
    assert.equal(m.repetition!.value, '0%');
    assert.equal(m.surprisal!.value, '2.35 bits');
    assert.equal(m.loop!.value, 'from step 4 (period 2)');
    assert.equal(m.loop!.warn, true);
    assert.equal(m.stop!.value, 'end of text · 3 tok');
    assert.equal(m['beam score'], undefined);
    c.score = -0.5;
    assert.equal(metricItems(c).at(-1)!.label, 'beam score');
    assert.equal(percent(1), '100%');
    assert.equal(percent(0.123), '12%');
  });
});

describe('the prompt the model saw', () => {
  test('the bar gives its tokens after a completion, and what the context window dropped', () => {
    let s = reduceCompletions(EMPTY_COMPLETIONS, { type: 'completionBatch', batch: batch(1, [greedy, topK]) });
    assert.equal(promptNote(s), null, 'nothing is known before a completion is done');
    s = reduceCompletions(s, { type: 'completionDone', batchId: 1, index: 1, completion: completion(topK, [20]) });
    assert.deepEqual(promptNote(s), {
      text: '2 tokens',
      title: 'The prompt is 2 tokens long; the model saw all of it.',
      cut: false,
      seen: null,
    });
    assert.equal(analyzeTextOf(s.entries['1.1']!), 'Once upont20');
    // a long prompt: 1,300 tokens, the last 472 kept in a 512-token window
    const long = 'x'.repeat(5000);
    const cut: Completion = {
      ...completion(greedy, [10, 11]),
      promptIds: Array.from({ length: 472 }, (_, i) => i),
      promptCut: { total: 1300, contextLength: 512, text: 'the end of it' },
    };
    s = reduceCompletions(s, { type: 'completionBatch', batch: batch(2, [greedy], { prompt: long, maxNewTokens: 40 }) });
    assert.equal(promptNote(s), null, 'the earlier prompt’s completions are not this one’s');
    s = reduceCompletions(s, { type: 'completionDone', batchId: 2, index: 0, completion: cut });
    const note = promptNote(s)!;
    assert.equal(note.text, 'last 472 of 1,300 tokens');
    assert.equal(note.cut, true);
    assert.equal(note.seen, 'the end of it');
    assert.match(
      note.title,
      /context window holds 512 tokens: the prompt's first 828 tokens were dropped so that its last 472 and 40 new ones fit/,
    );
    // Analyze sends what the model saw, not the 5,000 characters whose end it never reached
    assert.equal(analyzeTextOf(s.entries['2.0']!), 'the end of itt10t11');
  });

  test('a completion whose promptCut is malformed is not taken', () => {
    let s = reduceCompletions(EMPTY_COMPLETIONS, { type: 'completionBatch', batch: batch(1, [greedy]) });
    const bad = { ...completion(greedy, [1]), promptCut: { total: '9', contextLength: 8, text: 'x' } } as unknown as Completion;
    s = reduceCompletions(s, { type: 'completionDone', batchId: 1, index: 0, completion: bad });
    assert.equal(s.entries['1.0']!.status, 'queued');
  });
});
