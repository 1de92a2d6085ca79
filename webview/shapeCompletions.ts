// The Completions tab's data, without the DOM: the state of a batch of completions as its
// messages stream in (steps may arrive out of order, or after the completion is done), the
// editable columns (one decoding strategy each), validation of the settings form, the
// decoding-walk tree and its forks, and what the view paints (tints, repeated 4-grams).
import { DEFAULT_STRATEGIES, type Completion, type GenStep, type Strategy, type StrategyKind } from '../src/shared/generation';
import { isStrategy, type GenerateParams, type HostToWebview } from '../src/shared/protocol';
import type { HeadAblation } from '../src/shared/interventions';
import { clip, fmt, pct, visibleText } from './shapeText';

/** At most this many columns (strategies) side by side; the host takes at most 6 per batch. */
export const MAX_COLUMNS = 6;
/** The largest maxNewTokens the protocol accepts. */
export const MAX_NEW_TOKENS = 1024;
/** Repetition is measured on 4-grams (METRICS.md "Decoding walk"). */
export const REPEAT_N = 4;
/** Surprisal (bits) at which the token tint is at full strength. */
export const TINT_MAX_BITS = 8;

export type CompletionMessage = Extract<
  HostToWebview,
  { type: 'completionBatch' | 'completionStep' | 'completionDone' | 'completionError' }
>;

export type EntryStatus = 'queued' | 'running' | 'done' | 'error' | 'stopped';

/** One completion: a strategy of a batch, streaming or done. */
export interface Entry {
  /** `${batchId}.${index}`: the completionKey of forks. */
  key: string;
  batchId: number;
  index: number;
  /** The strategy the host ran (not the column's edited draft). */
  strategy: Strategy;
  prompt: string;
  maxNewTokens: number;
  forkOf: { completionKey: string; step: number } | null;
  forcedIds: number[];
  /** Streamed steps by step index (holes while steps arrive out of order). */
  steps: (GenStep | undefined)[];
  completion: Completion | null;
  error: string | null;
  status: EntryStatus;
  /** Keys of the completions forked from this one, oldest first. */
  children: string[];
}

export interface Column {
  id: number;
  /** The settings shown in the column's form (sent by the next Generate). */
  strategy: Strategy;
  /** The completion shown in the column (its root), or null before one is generated. */
  entry: string | null;
}

export interface CompletionsState {
  prompt: string | null;
  maxNewTokens: number;
  columns: Column[];
  entries: Readonly<Record<string, Entry>>;
  /** The newest batch from the host (Stop applies to it while it runs). */
  lastBatch: number | null;
  nextColumnId: number;
}

export const EMPTY_COMPLETIONS: CompletionsState = {
  prompt: null,
  maxNewTokens: 40,
  columns: [],
  entries: {},
  lastBatch: null,
  nextColumnId: 1,
};

export const entryKey = (batchId: number, index: number): string => `${batchId}.${index}`;

// ---- messages → state ----------------------------------------------------------------------

/** The state after one completion message from the host. Messages that do not fit are ignored. */
export function reduceCompletions(s: CompletionsState, m: CompletionMessage): CompletionsState {
  switch (m.type) {
    case 'completionBatch': {
      const b = m.batch;
      if (s.lastBatch !== null && b.batchId <= s.lastBatch) return s; // stale or repeated
      // the host cancels the previous batch when it starts a new one
      const entries: Record<string, Entry> = {};
      for (const [k, e] of Object.entries(s.entries)) entries[k] = e.status === 'queued' ? { ...e, status: 'stopped' } : e;
      // the guard checked only the outline of the batch
      const maxNewTokens = Number.isInteger(b.maxNewTokens) && b.maxNewTokens > 0 ? b.maxNewTokens : MAX_NEW_TOKENS;
      const forcedIds = Array.isArray(b.forcedIds) ? b.forcedIds.filter((id) => Number.isInteger(id) && id >= 0) : [];
      const forkOf = b.forkOf && typeof b.forkOf.completionKey === 'string' && Number.isInteger(b.forkOf.step) ? { ...b.forkOf } : null;
      const fresh = b.strategies.slice(0, MAX_COLUMNS).map((strategy, index): Entry => ({
        key: entryKey(b.batchId, index),
        batchId: b.batchId,
        index,
        strategy: isStrategy(strategy) ? strategy : { label: `strategy ${index + 1}`, kind: 'greedy' },
        prompt: b.prompt,
        maxNewTokens,
        forkOf,
        forcedIds,
        steps: [],
        completion: null,
        error: null,
        status: 'queued',
        children: [],
      }));
      if (forkOf) {
        const parent = entries[forkOf.completionKey];
        if (!parent) return { ...s, entries, lastBatch: b.batchId }; // its parent was removed: nowhere to show it
        for (const e of fresh) entries[e.key] = e;
        entries[parent.key] = { ...parent, children: [...parent.children, ...fresh.map((e) => e.key)] };
        return { ...s, entries, lastBatch: b.batchId, prompt: b.prompt };
      }
      // a new comparison: its strategies become the columns, earlier completions go
      return {
        prompt: b.prompt,
        maxNewTokens,
        columns: fresh.map((e, i) => ({ id: s.nextColumnId + i, strategy: e.strategy, entry: e.key })),
        entries: Object.fromEntries(fresh.map((e) => [e.key, e])),
        lastBatch: b.batchId,
        nextColumnId: s.nextColumnId + fresh.length,
      };
    }
    case 'completionStep': {
      const e = s.entries[entryKey(m.batchId, m.index)];
      if (!e || e.status === 'done' || e.status === 'error' || !isStep(m.step)) return s; // after done: the completion is the truth
      if (m.stepIndex >= Math.max(e.maxNewTokens, e.forcedIds.length + 1)) return s; // beyond the length asked for
      const steps = e.steps.slice();
      steps[m.stepIndex] = m.step;
      return withEntry(s, { ...e, steps, status: e.status === 'queued' ? 'running' : e.status });
    }
    case 'completionDone': {
      const e = s.entries[entryKey(m.batchId, m.index)];
      if (!e || e.status === 'done' || !isCompletion(m.completion)) return s;
      const c = m.completion;
      return withEntry(s, { ...e, steps: c.steps, completion: c, error: null, status: 'done' });
    }
    case 'completionError': {
      const e = s.entries[entryKey(m.batchId, m.index)];
      if (!e || e.status === 'done') return s;
      return withEntry(s, { ...e, error: m.error, status: 'error' });
    }
  }
}

export function isStep(t: unknown): t is GenStep {
  const o = t as Partial<GenStep> | null;
  return (
    !!o &&
    Number.isInteger(o.id) &&
    typeof o.text === 'string' &&
    typeof o.prob === 'number' &&
    typeof o.entropy === 'number' &&
    Array.isArray(o.top) &&
    o.top.every((a) => !!a && Number.isInteger(a.id) && typeof a.text === 'string' && typeof a.prob === 'number')
  );
}

/** Enough of a Completion for the view to draw it (the message guard checks only `steps`). */
export function isCompletion(c: unknown): c is Completion {
  const o = c as Partial<Completion> | null;
  return (
    !!o &&
    typeof o.text === 'string' &&
    Array.isArray(o.steps) &&
    o.steps.every(isStep) &&
    !!o.metrics &&
    Array.isArray(o.metrics.distinct) &&
    !!o.timings &&
    typeof o.stopReason === 'string' &&
    (o.promptCut === undefined ||
      (!!o.promptCut &&
        Number.isInteger(o.promptCut.total) &&
        Number.isInteger(o.promptCut.contextLength) &&
        typeof o.promptCut.text === 'string'))
  );
}

function withEntry(s: CompletionsState, e: Entry): CompletionsState {
  return { ...s, entries: { ...s.entries, [e.key]: e } };
}

/** The steps to show: the completion's when done, else the streamed ones up to the first gap. */
export function assembled(e: Entry): { steps: GenStep[]; pending: number } {
  if (e.completion) return { steps: e.completion.steps, pending: 0 };
  const steps: GenStep[] = [];
  let i = 0;
  for (; i < e.steps.length && e.steps[i]; i++) steps.push(e.steps[i]!);
  let pending = 0;
  for (; i < e.steps.length; i++) if (e.steps[i]) pending++;
  return { steps, pending };
}

/** The batch still producing completions (Stop applies to it), or null. */
export function activeBatch(s: CompletionsState): number | null {
  if (s.lastBatch === null) return null;
  return Object.values(s.entries).some((e) => e.batchId === s.lastBatch && (e.status === 'queued' || e.status === 'running'))
    ? s.lastBatch
    : null;
}

/** Progress of a batch: completions finished of total, and the tokens of the one running. */
export function batchProgress(s: CompletionsState, batchId: number): { finished: number; total: number; running: Entry | null } {
  const es = Object.values(s.entries)
    .filter((e) => e.batchId === batchId)
    .sort((a, b) => a.index - b.index);
  return {
    finished: es.filter((e) => e.status === 'done' || e.status === 'error' || e.status === 'stopped').length,
    total: es.length,
    running: es.find((e) => e.status === 'running') ?? es.find((e) => e.status === 'queued') ?? null,
  };
}

/** After Stop: the batch's completions that have not started will not run. */
export function markStopped(s: CompletionsState, batchId: number): CompletionsState {
  let changed = false;
  const entries: Record<string, Entry> = {};
  for (const [k, e] of Object.entries(s.entries)) {
    if (e.batchId === batchId && e.status === 'queued') {
      entries[k] = { ...e, status: 'stopped' };
      changed = true;
    } else entries[k] = e;
  }
  return changed ? { ...s, entries } : s;
}

// ---- columns -------------------------------------------------------------------------------

/** Adds a column with a preset's settings; null when there are already MAX_COLUMNS. */
export function addColumn(s: CompletionsState, preset: Strategy): CompletionsState | null {
  if (s.columns.length >= MAX_COLUMNS) return null;
  return {
    ...s,
    columns: [...s.columns, { id: s.nextColumnId, strategy: { ...preset }, entry: null }],
    nextColumnId: s.nextColumnId + 1,
  };
}

/** Removes a column and its completions; null when it is the last column or unknown. */
export function removeColumn(s: CompletionsState, id: number): CompletionsState | null {
  const col = s.columns.find((c) => c.id === id);
  if (!col || s.columns.length <= 1) return null;
  const entries = { ...s.entries };
  if (col.entry) dropSubtree(entries, col.entry);
  return { ...s, columns: s.columns.filter((c) => c.id !== id), entries };
}

/** Replaces a column's settings (the form's result). */
export function setColumnStrategy(s: CompletionsState, id: number, strategy: Strategy): CompletionsState {
  return { ...s, columns: s.columns.map((c) => (c.id === id ? { ...c, strategy } : c)) };
}

/** Removes a fork (and the forks made from it); roots are removed with their column. */
export function removeFork(s: CompletionsState, key: string): CompletionsState | null {
  const e = s.entries[key];
  if (!e?.forkOf) return null;
  const entries = { ...s.entries };
  dropSubtree(entries, key);
  const parent = entries[e.forkOf.completionKey];
  if (parent) entries[parent.key] = { ...parent, children: parent.children.filter((k) => k !== key) };
  return { ...s, entries };
}

function dropSubtree(entries: Record<string, Entry>, key: string): void {
  const e = entries[key];
  if (!e) return;
  delete entries[key];
  for (const c of e.children) dropSubtree(entries, c);
}

/** Did the column's settings change since its completion was generated? */
export function isEdited(s: CompletionsState, col: Column): boolean {
  const e = col.entry ? s.entries[col.entry] : undefined;
  return !!e && !sameStrategy(e.strategy, col.strategy);
}

export function sameStrategy(a: Strategy, b: Strategy): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)] as (keyof Strategy)[]);
  for (const k of keys) {
    if (k === 'label') continue;
    if (k === 'ablation' ? JSON.stringify(a.ablation) !== JSON.stringify(b.ablation) : a[k] !== b[k]) return false;
  }
  return true;
}

/**
 * What-if: after each column without an ablation, a copy of it with `ablation` (same strategy
 * and seed), while there is room; null when nothing could be added.
 */
export function withAblatedCopies(s: CompletionsState, ablation: HeadAblation): CompletionsState | null {
  if (ablation.heads.length === 0) return null;
  const columns: Column[] = [];
  let next = s.nextColumnId;
  let added = 0;
  const room = MAX_COLUMNS - s.columns.length;
  for (const c of s.columns) {
    columns.push(c);
    const has = s.columns.some((o) => o.strategy.ablation && sameStrategy({ ...o.strategy, ablation }, { ...c.strategy, ablation }));
    if (c.strategy.ablation || has || added >= room) continue;
    const strategy: Strategy = { ...c.strategy, ablation };
    strategy.label = strategyLabel(strategy);
    columns.push({ id: next++, strategy, entry: null });
    added++;
  }
  return added ? { ...s, columns, nextColumnId: next } : null;
}

// ---- the settings form -----------------------------------------------------------------------

export type FormField =
  'temperature' | 'topK' | 'topP' | 'minP' | 'repetitionPenalty' | 'noRepeatNgram' | 'beams' | 'lengthPenalty' | 'seed';

export interface FieldSpec {
  key: FormField;
  label: string;
  /** The kinds the setting applies to (the engine ignores it for the others). */
  kinds: StrategyKind[];
  placeholder: string;
  title: string;
  /** An error message, or null when the value is allowed. */
  check: (v: number) => string | null;
}

const int = (v: number) => Number.isInteger(v);
export const FIELDS: FieldSpec[] = [
  {
    key: 'temperature',
    label: 'Temperature',
    kinds: ['sample'],
    placeholder: '1',
    title: 'Divide the logits by T before sampling (> 0; < 1 sharpens, > 1 flattens)',
    check: (v) => (v > 0 && v <= 100 ? null : 'temperature must be > 0 (at most 100)'),
  },
  {
    key: 'topK',
    label: 'Top-k',
    kinds: ['sample'],
    placeholder: 'off',
    title: 'Sample among the k most likely tokens only',
    check: (v) => (int(v) && v >= 1 ? null : 'top-k must be a whole number ≥ 1'),
  },
  {
    key: 'topP',
    label: 'Top-p',
    kinds: ['sample'],
    placeholder: 'off',
    title: 'Nucleus: sample from the smallest set of tokens whose probability reaches p',
    check: (v) => (v > 0 && v <= 1 ? null : 'top-p must be in (0, 1]'),
  },
  {
    key: 'minP',
    label: 'Min-p',
    kinds: ['sample'],
    placeholder: 'off',
    title: 'Drop tokens less likely than min-p × the most likely one',
    check: (v) => (v >= 0 && v <= 1 ? null : 'min-p must be in [0, 1]'),
  },
  {
    key: 'repetitionPenalty',
    label: 'Repetition',
    kinds: ['greedy', 'sample', 'beam'],
    placeholder: '1',
    title: 'CTRL repetition penalty: divide (multiply) the logits of tokens already seen (> 0; 1 = off)',
    check: (v) => (v > 0 && v <= 100 ? null : 'repetition penalty must be > 0 (at most 100)'),
  },
  {
    key: 'noRepeatNgram',
    label: 'No-repeat n',
    kinds: ['greedy', 'sample', 'beam'],
    placeholder: 'off',
    title: 'Never repeat an n-gram (0 or empty = off)',
    check: (v) => (int(v) && v >= 0 && v <= 64 ? null : 'no-repeat n-gram must be a whole number from 0 to 64'),
  },
  {
    key: 'beams',
    label: 'Beams',
    kinds: ['beam'],
    placeholder: '4',
    title: 'Beam width',
    check: (v) => (int(v) && v >= 1 && v <= 16 ? null : 'beams must be a whole number from 1 to 16'),
  },
  {
    key: 'lengthPenalty',
    label: 'Length pen.',
    kinds: ['beam'],
    placeholder: '1',
    title: 'Length penalty: a finished beam scores sum(log p) / length^penalty',
    check: (v) => (Math.abs(v) <= 10 ? null : 'length penalty must be from −10 to 10'),
  },
  {
    key: 'seed',
    label: 'Seed',
    kinds: ['sample'],
    placeholder: '0',
    title: 'Seed of the sampler (the same seed gives the same completion)',
    check: (v) => (int(v) && v >= 0 && v <= 0xffffffff ? null : 'seed must be a whole number from 0 to 4294967295'),
  },
];

export type FormValues = Partial<Record<FormField, string>>;

/** The form's text for a strategy (empty = unset). */
export function formValues(s: Strategy): FormValues {
  const out: FormValues = {};
  for (const f of FIELDS) {
    const v = s[f.key];
    out[f.key] = v === undefined ? '' : String(v);
  }
  return out;
}

/**
 * The strategy a form describes: settings that do not apply to the kind are dropped, empty
 * fields are unset, and every value is checked against the range the engine accepts.
 * Settings the form does not show (frequency/presence penalty, early stopping) come from `base`.
 */
export function strategyFromForm(
  kind: StrategyKind,
  values: FormValues,
  base: Strategy,
): { strategy: Strategy | null; errors: Partial<Record<FormField, string>> } {
  const errors: Partial<Record<FormField, string>> = {};
  const s: Strategy = { label: '', kind };
  if (base.ablation) s.ablation = base.ablation; // what-if: the column stays ablated
  if (base.frequencyPenalty !== undefined) s.frequencyPenalty = base.frequencyPenalty;
  if (base.presencePenalty !== undefined) s.presencePenalty = base.presencePenalty;
  for (const f of FIELDS) {
    if (!f.kinds.includes(kind)) continue;
    const text = (values[f.key] ?? '').trim();
    if (text === '') continue;
    const v = Number(text);
    const problem = Number.isFinite(v) ? f.check(v) : `${f.label.toLowerCase()} must be a number`;
    if (problem) errors[f.key] = problem;
    else if (!(f.key === 'noRepeatNgram' && v === 0)) s[f.key] = v;
  }
  if (kind === 'beam') {
    s.beams ??= 4;
    s.earlyStopping = base.earlyStopping ?? true;
  }
  if (Object.keys(errors).length > 0) return { strategy: null, errors };
  s.label = strategyLabel(s);
  return { strategy: s, errors };
}

/** A short label for a strategy, e.g. "top-p 0.9, T=0.8" or "greedy + rep ×1.3". */
export function strategyLabel(s: Strategy): string {
  const parts: string[] = [];
  if (s.kind === 'beam') parts.push(`beam ${s.beams ?? 4}`);
  else if (s.kind === 'greedy') parts.push('greedy');
  else {
    if (s.topK) parts.push(`top-k ${s.topK}`);
    if (s.topP !== undefined && s.topP < 1) parts.push(`top-p ${s.topP}`);
    if (s.minP) parts.push(`min-p ${s.minP}`);
    if (s.temperature !== undefined && s.temperature !== 1) parts.push(`T=${s.temperature}`);
    if (parts.length === 0) parts.push('sample');
  }
  const extra: string[] = [];
  if (s.repetitionPenalty !== undefined && s.repetitionPenalty !== 1) extra.push(`rep ×${s.repetitionPenalty}`);
  if (s.noRepeatNgram) extra.push(`no-repeat ${s.noRepeatNgram}`);
  const ablated = s.ablation && s.ablation.heads.length > 0 ? ' · ablated' : '';
  return parts.join(', ') + (extra.length ? ` + ${extra.join(', ')}` : '') + ablated;
}

/** Every setting of a strategy on one line, e.g. "sample · T=0.8 · top-p 0.9 · seed 1". */
export function settingsLine(s: Strategy): string {
  const parts: string[] = [s.kind];
  if (s.kind === 'beam') parts.push(`${s.beams ?? 4} beams`, `length pen. ${s.lengthPenalty ?? 1}`);
  if (s.kind === 'sample') {
    parts.push(`T=${s.temperature ?? 1}`);
    if (s.topK) parts.push(`top-k ${s.topK}`);
    if (s.topP !== undefined && s.topP < 1) parts.push(`top-p ${s.topP}`);
    if (s.minP) parts.push(`min-p ${s.minP}`);
  }
  if (s.repetitionPenalty !== undefined && s.repetitionPenalty !== 1) parts.push(`repetition ×${s.repetitionPenalty}`);
  if (s.noRepeatNgram) parts.push(`no-repeat ${s.noRepeatNgram}-gram`);
  if (s.frequencyPenalty) parts.push(`frequency ${s.frequencyPenalty}`);
  if (s.presencePenalty) parts.push(`presence ${s.presencePenalty}`);
  if (s.kind === 'sample') parts.push(`seed ${s.seed ?? 0}`);
  if (s.ablation && s.ablation.heads.length > 0)
    parts.push(`${s.ablation.mode}-ablated ${s.ablation.heads.map((h) => `L${h.layer}H${h.head}`).join(', ')}`);
  return parts.join(' · ');
}

/** maxNewTokens from the toolbar field, or an error. */
export function parseMaxNewTokens(text: string): { value: number } | { error: string } {
  const v = Number(text.trim());
  if (text.trim() === '' || !Number.isInteger(v) || v < 1 || v > MAX_NEW_TOKENS)
    return { error: `New tokens must be a whole number from 1 to ${MAX_NEW_TOKENS}.` };
  return { value: v };
}

/** The `generate` request for the columns' settings, on the last prompt. */
export function generateRequest(s: CompletionsState, maxNewTokensText: string): { params: GenerateParams } | { error: string } {
  if (s.columns.length === 0) return { error: 'Add a column (a decoding strategy) first.' };
  if (s.columns.length > MAX_COLUMNS) return { error: `At most ${MAX_COLUMNS} columns.` };
  const n = parseMaxNewTokens(maxNewTokensText);
  if ('error' in n) return n;
  return { params: { prompt: null, strategies: s.columns.map((c) => ({ ...c.strategy })), maxNewTokens: n.value } };
}

/** Presets offered by "Add column" (the defaults of Compare Completions…). */
export const PRESETS: readonly Strategy[] = DEFAULT_STRATEGIES;

// ---- the decoding walk and forks ---------------------------------------------------------------

/**
 * The `generate` request that forks completion `key` at `step`: the same strategy (and seed),
 * the tokens it chose before `step` forced, then `altId` instead of its choice.
 */
export function forkRequest(s: CompletionsState, key: string, step: number, altId: number): { params: GenerateParams } | { error: string } {
  const e = s.entries[key];
  if (!e) return { error: 'That completion is gone.' };
  const { steps } = assembled(e);
  if (!Number.isInteger(step) || step < 0 || step >= steps.length) return { error: `Step ${step} has not been generated.` };
  if (!Number.isInteger(altId) || altId < 0) return { error: 'Not a token id.' };
  if (steps[step]!.id === altId) return { error: 'That is the token the completion chose.' };
  const forcedIds = [...steps.slice(0, step).map((t) => t.id), altId];
  if (forcedIds.length >= MAX_NEW_TOKENS) return { error: 'The fork would leave no room to generate.' };
  return {
    params: {
      prompt: e.prompt,
      strategies: [{ ...e.strategy }],
      maxNewTokens: Math.min(MAX_NEW_TOKENS, Math.max(e.maxNewTokens, forcedIds.length + 1)),
      forcedIds,
      forkOf: { completionKey: key, step },
    },
  };
}

export interface WalkAlt {
  id: number;
  text: string;
  prob: number;
  /** The token the completion chose here. */
  chosen: boolean;
  /** Key of the fork already made with this alternative here, or null. */
  fork: string | null;
}

export interface WalkRow {
  step: number;
  chosen: { id: number; text: string; prob: number };
  entropy: number;
  alts: WalkAlt[];
  /** 1-based rank of the chosen token among the alternatives, or null when it is not among them. */
  chosenRank: number | null;
  /** A fork's forced prefix (not decoded at this step). */
  forced: boolean;
}

/** The decoding-walk tree of completion `key`: at each step the alternatives, the choice and the forks. */
export function walkRows(s: CompletionsState, key: string): WalkRow[] {
  const e = s.entries[key];
  if (!e) return [];
  const forks = new Map<string, string>(); // "step:id" → fork key
  for (const c of e.children) {
    const f = s.entries[c];
    if (!f?.forkOf) continue;
    const id = f.forcedIds[f.forkOf.step];
    if (id !== undefined) forks.set(`${f.forkOf.step}:${id}`, c);
  }
  return assembled(e).steps.map((st, step) => {
    const alts = st.top.map((t) => ({ ...t, chosen: t.id === st.id, fork: forks.get(`${step}:${t.id}`) ?? null }));
    const rank = alts.findIndex((a) => a.chosen);
    return {
      step,
      chosen: { id: st.id, text: st.text, prob: st.prob },
      entropy: st.entropy,
      alts,
      chosenRank: rank < 0 ? null : rank + 1,
      forced: step < e.forcedIds.length,
    };
  });
}

/** "forked at step 5: ' dog' → ' cat'" for a fork, else null. */
export function forkLabel(s: CompletionsState, key: string): string | null {
  const e = s.entries[key];
  if (!e?.forkOf) return null;
  const { step } = e.forkOf;
  const parent = s.entries[e.forkOf.completionKey];
  const was = parent ? assembled(parent).steps[step] : undefined;
  const id = e.forcedIds[step];
  const now = e.steps[step] ?? was?.top.find((t) => t.id === id);
  const show = (t: { text: string } | undefined, fallback: string) => (t ? `'${clip(visibleText(t.text), 16)}'` : fallback);
  return `forked at step ${step}: ${show(was, '?')} → ${show(now, `#${id ?? '?'}`)}`;
}

/** The root completion of a fork chain (the one shown at the top of its column). */
export function rootOf(s: CompletionsState, key: string): string {
  let k = key;
  for (let guard = 0; guard < 1000; guard++) {
    const p = s.entries[k]?.forkOf?.completionKey;
    if (!p || !s.entries[p]) return k;
    k = p;
  }
  return k;
}

// ---- painting --------------------------------------------------------------------------------

/** Index into a ramp of `levels` tints for a token of probability `prob`: 0 = certain, levels−1 = ≥ TINT_MAX_BITS of surprisal. */
export function tintLevel(prob: number, levels: number): number {
  if (levels <= 1 || !(prob >= 0) || prob > 1 + 1e-6) return 0; // NaN, negative, > 1: no tint
  const bits = prob <= 0 ? Infinity : Math.max(0, -Math.log2(Math.min(1, prob)));
  const t = Math.min(1, bits / TINT_MAX_BITS);
  return Math.round(t * (levels - 1));
}

/** true for each token inside an n-gram that occurs at least twice (the tokens counted by the repetition rate). */
export function repeatedMask(ids: readonly number[], n = REPEAT_N): boolean[] {
  const mask = new Array<boolean>(ids.length).fill(false);
  if (n < 1) return mask;
  const groups = new Map<string, number[]>();
  for (let i = 0; i + n <= ids.length; i++) {
    const k = ids.slice(i, i + n).join(',');
    const g = groups.get(k);
    if (g) g.push(i);
    else groups.set(k, [i]);
  }
  for (const starts of groups.values()) {
    if (starts.length < 2) continue;
    for (const st of starts) for (let j = st; j < st + n; j++) mask[j] = true;
  }
  return mask;
}

export type Piece = { kind: 'text' | 'ws'; text: string } | { kind: 'br' };

const WS: Record<string, string> = { ' ': '·', '\t': '→', '\n': '↵', '\r': '␍', '\u00a0': '⍽' };

/**
 * A token's text as pieces to render: whitespace as visible markers (· ↵ → ␍ ⍽, "\r\n" as one ↵)
 * set apart so they can be dimmed, a line break after each newline, and everything else through
 * visibleText (control, bidi and zero-width characters as escapes). Empty text is "∅".
 */
export function tokenPieces(text: string): Piece[] {
  if (text.length === 0) return [{ kind: 'text', text: '∅' }];
  const out: Piece[] = [];
  let run = '';
  const flush = () => {
    if (run) out.push({ kind: 'text', text: visibleText(run) });
    run = '';
  };
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    const crlf = ch === '\r' && text[i + 1] === '\n';
    const mark = crlf ? '↵' : WS[ch];
    if (mark === undefined) {
      run += ch;
      continue;
    }
    flush();
    const last = out[out.length - 1];
    if (last?.kind === 'ws') last.text += mark;
    else out.push({ kind: 'ws', text: mark });
    if (crlf) i++;
    if (ch === '\n' || crlf) out.push({ kind: 'br' });
  }
  flush();
  return out;
}

export interface MetricItem {
  label: string;
  value: string;
  title: string;
  /** Worth a second look (a loop, a high repetition rate, an error stop). */
  warn?: boolean;
}

const STOP_TEXT: Record<Completion['stopReason'], string> = {
  max_new_tokens: 'length',
  eos: 'end of text',
  stop_string: 'stop string',
  cancelled: 'stopped',
  context_full: 'context full',
};

/** The per-completion metrics as label/value pairs. */
export function metricItems(c: Completion): MetricItem[] {
  const m = c.metrics;
  const d = m.distinct.map((v) => fmt(v, 2)).join(' · ');
  const items: MetricItem[] = [
    { label: 'distinct-1…4', value: d, title: 'unique n-grams / total n-grams for n = 1, 2, 3, 4' },
    {
      label: 'repetition',
      value: percent(m.repetitionRate),
      title: 'fraction of tokens inside a 4-gram that occurs at least twice',
      warn: m.repetitionRate >= 0.3,
    },
    { label: 'surprisal', value: `${fmt(m.meanSurprisalBits, 3)} bits`, title: 'mean −log2 p of the generated tokens' },
    {
      label: 'loop',
      value: m.loopStart ? `from step ${m.loopStart.step} (period ${m.loopStart.period})` : 'none',
      title: 'first step from which the completion repeats with a fixed period (at least two periods)',
      warn: m.loopStart !== null,
    },
    {
      label: 'stop',
      value: `${STOP_TEXT[c.stopReason] ?? c.stopReason} · ${c.steps.length} tok`,
      title: `stop reason: ${c.stopReason}`,
    },
    {
      label: 'speed',
      value: `${fmt(c.timings.perTokenMs, 3)} ms/token`,
      title: `first step (prompt) ${fmt(c.timings.firstStepMs, 3)} ms, total ${fmt(c.timings.totalMs, 4)} ms`,
    },
  ];
  if (c.score !== null) items.push({ label: 'beam score', value: fmt(c.score, 4), title: 'sum of log-probs / length^length penalty' });
  return items;
}

/** A fraction as a percentage; exactly 0 and 1 as "0%" and "100%". */
export function percent(p: number): string {
  return p === 0 ? '0%' : p === 1 ? '100%' : pct(p);
}

/**
 * The text "Analyze" sends: the prompt and the completion — of the prompt, what the model saw
 * (its end, when the context window cut its start).
 */
export function analyzeTextOf(e: Entry): string | null {
  if (!e.completion) return null;
  return (e.completion.promptCut?.text ?? e.prompt) + e.completion.text;
}

/**
 * What the bar says about the prompt the model continued, from the columns' newest completion
 * of it: its length in tokens and, when the context window could not hold all of it with the
 * new tokens, how much of its start was dropped and the text it continued (`seen`). Null until
 * a completion of it is done.
 */
export function promptNote(s: CompletionsState): { text: string; title: string; cut: boolean; seen: string | null } | null {
  if (s.prompt === null) return null;
  let newest: Entry | null = null;
  for (const col of s.columns) {
    const e = col.entry ? s.entries[col.entry] : undefined;
    if (e?.completion && e.prompt === s.prompt && (!newest || e.batchId > newest.batchId)) newest = e;
  }
  const c = newest?.completion;
  if (!c) return null;
  const kept = c.promptIds.length;
  const n = (x: number) => x.toLocaleString('en-US');
  if (!c.promptCut) {
    const tokens = `${n(kept)} token${kept === 1 ? '' : 's'}`;
    return { text: tokens, title: `The prompt is ${tokens} long; the model saw all of it.`, cut: false, seen: null };
  }
  const { total, contextLength } = c.promptCut;
  return {
    text: `last ${n(kept)} of ${n(total)} tokens`,
    title:
      `The model's context window holds ${n(contextLength)} tokens: the prompt's first ${n(total - kept)} tokens were dropped ` +
      `so that its last ${n(kept)} and ${n(contextLength - kept)} new ones fit. The completions continue from the end of the ` +
      'prompt; Analyze sends what the model saw. Select a shorter prompt to choose what it sees.',
    cut: true,
    seen: c.promptCut.text,
  };
}

/** Surprisal in bits of a probability. */
export function bitsOf(prob: number): number {
  return prob > 0 ? Math.max(0, -Math.log2(prob)) : Infinity;
}
