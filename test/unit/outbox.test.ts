// The host → webview handshake (src/shared/outbox.ts): nothing posted before the webview is
// ready, while it reloads or after it was closed is lost; replaying what the outbox kept leaves
// a fresh webview in the same state as one that heard every message live (checked with the
// webview's own completions reducer, on the scenario and on random sequences).
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { Outbox } from '../../src/shared/outbox';
import type { AnalysisPayload, CompletionBatch, HostToWebview } from '../../src/shared/protocol';
import { DEFAULT_STRATEGIES, type Completion, type GenStep, type Strategy } from '../../src/shared/generation';
import { EMPTY_COMPLETIONS, reduceCompletions, type CompletionMessage, type CompletionsState } from '../../webview/shapeCompletions';
import { Prng } from '../../tools/fuzz/mutate';
import { tabForAnalysis } from '../../webview/shapeState';

// ---- what a webview document makes of the messages it hears (as webview/main.ts does) ----

interface View {
  completions: CompletionsState;
  /** The newest message of each kind that replaces a whole value. */
  latest: Partial<Record<HostToWebview['type'], HostToWebview>>;
  /** The position selected in the shown analysis. */
  selected: number | null;
  /** The tab a batch or a prompt diff brought forward (an analysis takes Diff and Completions to the lens). */
  tab: string | null;
  responses: number[];
}

const freshView = (): View => ({ completions: EMPTY_COMPLETIONS, latest: {}, selected: null, tab: null, responses: [] });

function hear(v: View, m: HostToWebview): void {
  switch (m.type) {
    case 'completionBatch':
    case 'completionStep':
    case 'completionDone':
    case 'completionError':
      v.completions = reduceCompletions(v.completions, m as CompletionMessage);
      if (m.type === 'completionBatch') v.tab = 'completions';
      return;
    case 'promptDiff':
      v.latest.promptDiff = m;
      v.tab = 'diff';
      return;
    case 'analysis':
      v.latest.analysis = m;
      v.selected = null;
      if (v.tab !== null) v.tab = tabForAnalysis(v.tab);
      return;
    case 'selectPosition': {
      const a = v.latest.analysis;
      if (a?.type === 'analysis' && a.payload.runId === m.runId) v.selected = m.pos;
      return;
    }
    case 'response':
      v.responses.push(m.id);
      return;
    default:
      v.latest[m.type] = m;
  }
}

/** What the user sees of the completions: each column's completion, its status and text. */
function shownCompletions(s: CompletionsState): unknown {
  return {
    prompt: s.prompt,
    lastBatch: s.lastBatch,
    columns: s.columns.map((c) => c.entry),
    entries: Object.values(s.entries)
      .sort((a, b) => a.key.localeCompare(b.key))
      .map((e) => ({
        key: e.key,
        status: e.status,
        ids: e.steps.map((x) => x?.id ?? null),
        text: e.completion?.text ?? null,
        children: e.children,
      })),
  };
}

function shown(v: View): unknown {
  return { completions: shownCompletions(v.completions), latest: v.latest, selected: v.selected, tab: v.tab };
}

// ---- messages ----

function step(id: number): GenStep {
  return { id, text: `t${id}`, prob: 0.5, entropy: 1, top: [{ id, text: `t${id}`, prob: 0.5 }] };
}

function completion(strategy: Strategy, ids: number[]): Completion {
  return {
    strategy,
    promptIds: [1],
    steps: ids.map(step),
    text: ids.map((id) => `t${id}`).join(''),
    stopReason: 'max_new_tokens',
    metrics: { distinct: [1, 1, 1, 1], repetitionRate: 0, meanSurprisalBits: 1, loopStart: null },
    score: null,
    timings: { totalMs: 1, firstStepMs: 1, perTokenMs: 1 },
  };
}

function batch(batchId: number, strategies: Strategy[], forkOf: CompletionBatch['forkOf'] = null): HostToWebview {
  return {
    type: 'completionBatch',
    batch: { batchId, prompt: 'Once upon', strategies, maxNewTokens: 40, forkOf, forcedIds: forkOf ? [7] : [] },
  };
}

const analysis = (runId: number): HostToWebview => ({
  type: 'analysis',
  payload: { runId, text: `run ${runId}` } as unknown as AnalysisPayload,
});

/** The host's messages for one whole Compare Completions batch, as src/extension/completions.ts posts them. */
function wholeBatch(batchId: number, strategies: Strategy[], tokens: number): HostToWebview[] {
  const out: HostToWebview[] = [batch(batchId, strategies)];
  strategies.forEach((s, index) => {
    const ids = Array.from({ length: tokens }, (_, i) => 100 * index + i);
    ids.forEach((id, stepIndex) => out.push({ type: 'completionStep', batchId, index, stepIndex, step: step(id) }));
    out.push({ type: 'completionDone', batchId, index, completion: completion(s, ids) });
  });
  return out;
}

/** An outbox whose deliveries go to the current webview document. */
function harness() {
  const docs: View[] = [];
  const outbox = new Outbox((m) => hear(docs[docs.length - 1]!, m));
  return {
    outbox,
    /** A new webview document loads (panel created, revived or reloaded). */
    open() {
      docs.push(freshView());
      outbox.loading();
    },
    doc: () => docs[docs.length - 1]!,
  };
}

function live(messages: HostToWebview[]): View {
  const v = freshView();
  for (const m of messages) hear(v, m);
  return v;
}

describe('host → webview outbox', () => {
  test('Compare Completions as the first command: a whole batch posted before the webview is ready reaches it', () => {
    // the issue: six columns stayed "Queued" because only the newest message of each type survived
    const h = harness();
    h.open();
    const messages: HostToWebview[] = [{ type: 'runState', state: { kind: 'idle' } }, ...wholeBatch(1, DEFAULT_STRATEGIES, 40)];
    for (const m of messages) h.outbox.post(m);
    assert.equal(h.doc().completions.columns.length, 0, 'nothing is delivered before ready');
    h.outbox.ready();
    const entries = Object.values(h.doc().completions.entries);
    assert.equal(entries.length, 6);
    for (const e of entries) {
      assert.equal(e.status, 'done', `column ${e.index} is done`);
      assert.equal(e.completion?.steps.length, 40);
    }
    assert.deepEqual(shown(h.doc()), shown(live(messages)));
    // a finished completion carries its steps: the streamed ones are not kept
    assert.equal(h.outbox.size, 1 + 1 + 6, 'run state, batch, six completions');
  });

  test('the batch half done when the webview becomes ready: the rest streams in, in order', () => {
    const h = harness();
    h.open();
    const messages = wholeBatch(3, DEFAULT_STRATEGIES.slice(0, 3), 5);
    const cut = 9; // inside the second completion's stream
    messages.slice(0, cut).forEach((m) => h.outbox.post(m));
    h.outbox.ready();
    const e1 = h.doc().completions.entries['3.1']!;
    assert.equal(e1.status, 'running');
    assert.deepEqual(
      e1.steps.map((s) => s?.id),
      [100, 101],
    );
    messages.slice(cut).forEach((m) => h.outbox.post(m));
    assert.deepEqual(shown(h.doc()), shown(live(messages)));
  });

  test('a ready webview hears each message once, as it is posted', () => {
    const delivered: HostToWebview[] = [];
    const outbox = new Outbox((m) => delivered.push(m));
    outbox.loading();
    outbox.ready();
    const ms: HostToWebview[] = [
      { type: 'runState', state: { kind: 'running', message: 'x' } },
      analysis(1),
      { type: 'selectPosition', runId: 1, pos: 2 },
    ];
    ms.forEach((m) => outbox.post(m));
    assert.deepEqual(delivered, ms);
  });

  test('a reloaded webview (ready again) gets the panel back; a reopened panel too', () => {
    const h = harness();
    h.open();
    h.outbox.ready();
    const messages: HostToWebview[] = [
      { type: 'settings', settings: { lensTopK: 5, overlayEnabled: true } },
      analysis(1),
      { type: 'selectPosition', runId: 1, pos: 4 },
      ...wholeBatch(1, DEFAULT_STRATEGIES.slice(0, 2), 3),
    ];
    messages.forEach((m) => h.outbox.post(m));
    // the webview reloads: messages posted meanwhile are held, then everything is replayed
    h.open();
    const more: HostToWebview[] = [{ type: 'runState', state: { kind: 'idle' } }, analysis(2)];
    more.forEach((m) => h.outbox.post(m));
    assert.deepEqual(shown(h.doc()), shown(freshView()));
    h.outbox.ready();
    assert.deepEqual(shown(h.doc()), shown(live([...messages, ...more])));
    // the user closes the panel and opens it again
    h.outbox.closed();
    h.outbox.post({ type: 'modelChanged', model: null, modelName: 'gpt2' });
    h.open();
    h.outbox.ready();
    assert.deepEqual(shown(h.doc()), shown(live([...messages, ...more, { type: 'modelChanged', model: null, modelName: 'gpt2' }])));
  });

  test('a response goes only to the document that asked, and is never replayed', () => {
    const h = harness();
    h.open();
    h.outbox.post({ type: 'response', id: 1, ok: true, result: null });
    h.outbox.ready();
    assert.deepEqual(h.doc().responses, [], 'no document asked before ready');
    h.outbox.post({ type: 'response', id: 2, ok: false, error: 'no' });
    assert.deepEqual(h.doc().responses, [2]);
    h.open();
    h.outbox.ready();
    assert.deepEqual(h.doc().responses, []);
  });

  test('a new comparison replaces the previous one and its forks; a fork adds to its parent', () => {
    const h = harness();
    h.open();
    const messages = [
      ...wholeBatch(1, DEFAULT_STRATEGIES.slice(0, 2), 3),
      batch(2, [DEFAULT_STRATEGIES[0]!], { completionKey: '1.0', step: 1 }),
      { type: 'completionStep', batchId: 2, index: 0, stepIndex: 0, step: step(7) } as HostToWebview,
    ];
    messages.forEach((m) => h.outbox.post(m));
    h.outbox.ready();
    assert.deepEqual(h.doc().completions.entries['1.0']?.children, ['2.0']);
    assert.deepEqual(shown(h.doc()), shown(live(messages)));
    const next = wholeBatch(3, DEFAULT_STRATEGIES.slice(2, 3), 2);
    next.forEach((m) => h.outbox.post(m));
    assert.equal(h.outbox.size, next.length - 2, 'the older batches are gone, and the finished stream');
    h.open();
    h.outbox.ready();
    assert.deepEqual(shown(h.doc()), shown(live([...messages, ...next])));
  });

  test('random sequences: the last document to say ready shows what a webview that heard everything live shows', () => {
    const r = new Prng(18);
    for (let round = 0; round < 300; round++) {
      const h = harness();
      const all: HostToWebview[] = [];
      let batchId = 0;
      let runId = 0;
      const open: { batchId: number; index: number; step: number; strategy: Strategy; done: boolean }[] = [];
      const post = (m: HostToWebview) => {
        all.push(m);
        h.outbox.post(m);
      };
      h.open();
      for (let i = 0; i < 60; i++) {
        const k = r.int(12);
        if (k === 0) h.open();
        else if (k === 1) h.outbox.ready();
        else if (k === 2) h.outbox.closed();
        else if (k === 3) post(analysis(++runId));
        else if (k === 4) post({ type: 'selectPosition', runId: Math.max(1, runId - r.int(2)), pos: r.int(5) });
        else if (k === 5)
          post(
            r.pick<HostToWebview>([
              { type: 'runState', state: { kind: 'idle' } },
              { type: 'runState', state: { kind: 'cancelled' } },
            ]),
          );
        else if (k === 6) {
          const strategies = DEFAULT_STRATEGIES.slice(0, 1 + r.int(3));
          const parent = open.find((o) => o.done);
          const forkOf = r.int(3) === 0 && parent ? { completionKey: `${parent.batchId}.${parent.index}`, step: 0 } : null;
          post(batch(++batchId, strategies, forkOf));
          strategies.forEach((strategy, index) => open.push({ batchId, index, step: 0, strategy, done: false }));
        } else if (open.length > 0) {
          const o = r.pick(open);
          if (k < 10) post({ type: 'completionStep', batchId: o.batchId, index: o.index, stepIndex: o.step++, step: step(o.step) });
          else if (k === 10) {
            post({ type: 'completionDone', batchId: o.batchId, index: o.index, completion: completion(o.strategy, [1, 2, 3]) });
            o.done = true;
          } else post({ type: 'completionError', batchId: o.batchId, index: o.index, error: 'failed' });
        }
      }
      h.open();
      h.outbox.ready();
      assert.deepEqual(shown(h.doc()), shown(live(all)), `round ${round}`);
    }
  });
});
