// Completions: up to six decoding strategies side by side on the same prompt. Tokens stream in
// tinted by their probability; each column's settings are editable and "Generate" runs them
// again; finished completions show their metrics and repeated 4-grams; the decoding walk of a
// completion lists the alternatives at every step, and clicking one forks a new completion
// from there (shown as a branch under its parent). Every string from the model goes in through
// textContent.
import type { GenStep, Strategy, StrategyKind } from '../../src/shared/generation';
import '@vscode-elements/elements/dist/vscode-progress-ring/index.js';
import { clear, el, icon, rafThrottle, toolButton } from '../dom';
import { mix, readableOn, toCss, type Rgba } from '../shapeColor';
import {
  withAblatedCopies,
  FIELDS,
  MAX_COLUMNS,
  MAX_NEW_TOKENS,
  PRESETS,
  activeBatch,
  addColumn,
  analyzeTextOf,
  assembled,
  batchProgress,
  bitsOf,
  forkLabel,
  forkRequest,
  formValues,
  generateRequest,
  isEdited,
  markStopped,
  metricItems,
  promptNote,
  removeColumn,
  removeFork,
  repeatedMask,
  setColumnStrategy,
  settingsLine,
  strategyFromForm,
  tintLevel,
  tokenPieces,
  walkRows,
  type Column,
  type CompletionsState,
  type Entry,
  type FormField,
  type FormValues,
  type WalkRow,
} from '../shapeCompletions';
import { characterNames, clip, fmt, pct, tokenDisplay, visibleText } from '../shapeText';
import { splitCharacters } from '../../src/shared/bytes';
import type { Palette } from '../theme';
import type { TabFactory, ViewContext } from './context';
import { commandButton } from './commandButton';

const LEVELS = 24;

interface Ramp {
  fills: string[];
  inks: string[];
}

/** Token tints: the editor background (certain) → the theme's red (≥ 8 bits of surprisal). */
function makeRamp(pal: Palette): Ramp {
  const fills: string[] = [];
  const inks: string[] = [];
  for (let i = 0; i < LEVELS; i++) {
    const f: Rgba = mix(pal.bg, pal.red, (0.8 * i) / (LEVELS - 1), pal.bg);
    fills.push(i === 0 ? '' : toCss(f));
    inks.push(i === 0 ? '' : toCss(readableOn(f, [pal.fg, pal.bg])));
  }
  return { fills, inks };
}

/** What the column and entry views call back into. */
interface Api {
  ctx: ViewContext;
  state(): CompletionsState;
  ramp(): Ramp;
  set(next: CompletionsState): void;
  openWalk(key: string, step: number | null): void;
  walkSel(): { key: string; step: number } | null;
  register(key: string, v: EntryView | null): void;
  setInvalid(colId: number, bad: boolean): void;
  toast(text: string, error?: boolean): void;
}

// ---- one completion (and its forks, nested) ---------------------------------------------------

class EntryView {
  readonly el: HTMLElement;
  private readonly head = el('div', { class: 'fork-head' });
  private readonly text = el('div', { class: 'comp-text' });
  private readonly caret = el('span', { class: 'comp-caret', attrs: { 'aria-hidden': 'true' } });
  private readonly note = el('div', { class: 'comp-note', attrs: { 'aria-live': 'polite' } });
  private readonly metrics = el('div', { class: 'comp-metrics' });
  private readonly actions = el('div', { class: 'comp-actions' });
  private readonly forks = el('div', { class: 'comp-forks' });
  private readonly buttons: Record<'walk' | 'analyze' | 'insert' | 'copy', HTMLButtonElement>;
  private spans: HTMLElement[] = [];
  private shown: GenStep[] = [];
  private entry: Entry | null = null;
  private readonly children = new Map<string, EntryView>();
  private loopMark: HTMLElement | null = null;
  private selected: HTMLElement | null = null;

  constructor(
    private readonly api: Api,
    readonly key: string,
    depth: number,
  ) {
    this.el = el('div', { class: `comp-entry${depth > 0 ? ' fork' : ''}`, attrs: { 'data-key': key } });
    this.text.append(this.caret);
    const a = (label: string, iconName: string, title: string, fn: () => void) => {
      const b = toolButton(label, iconName, title, fn);
      b.setAttribute('aria-label', title);
      return b;
    };
    this.buttons = {
      walk: a('Walk', 'type-hierarchy-sub', 'Decoding walk: the alternatives at every step (click one to fork)', () =>
        this.api.openWalk(this.key, null),
      ),
      analyze: a(
        'Analyze',
        'pulse',
        'Analyze the prompt + this completion (replaces the Lens, Trajectories and Repetition data)',
        () => void this.analyze(),
      ),
      insert: a('Insert', 'insert', 'Insert this completion at the cursor of the prompt’s editor', () => void this.insert()),
      copy: a('Copy', 'copy', 'Copy the completion text', () => void this.copy()),
    };
    this.actions.append(this.buttons.walk, this.buttons.analyze, this.buttons.insert, this.buttons.copy);
    this.el.append(this.head, this.text, this.note, this.metrics, this.actions, this.forks);
    api.register(key, this);
  }

  dispose(): void {
    for (const c of this.children.values()) c.dispose();
    this.api.register(this.key, null);
    this.el.remove();
  }

  update(e: Entry, s: CompletionsState, ramp: Ramp, depth: number): void {
    if (e !== this.entry) this.render(e, s, ramp);
    this.syncChildren(e, s, ramp, depth);
  }

  private render(e: Entry, s: CompletionsState, ramp: Ramp): void {
    this.entry = e;
    // fork label
    clear(this.head);
    this.head.hidden = !e.forkOf;
    if (e.forkOf) {
      const label = forkLabel(s, e.key) ?? 'fork';
      const close = toolButton('', 'close', 'Remove this fork', () => {
        const next = removeFork(this.api.state(), this.key);
        if (next) this.api.set(next);
      });
      close.setAttribute('aria-label', 'Remove this fork');
      this.head.append(icon('git-branch'), el('span', { class: 'fork-label', text: label, title: label }), close);
    }
    // tokens: keep the spans of the steps already shown, append the new ones
    const { steps, pending } = assembled(e);
    let same = 0;
    while (same < this.shown.length && same < steps.length && sameStep(this.shown[same]!, steps[same]!)) {
      this.shown[same] = steps[same]!;
      same++;
    }
    for (let i = this.spans.length - 1; i >= same; i--) this.spans[i]!.remove();
    this.spans.length = same;
    this.shown.length = same;
    const frag = document.createDocumentFragment();
    for (let i = same; i < steps.length; i++) {
      const span = tokenSpan(steps[i]!, i);
      this.spans.push(span);
      this.shown.push(steps[i]!);
      frag.append(span);
    }
    this.text.insertBefore(frag, this.caret);
    this.paint(ramp, same);
    // fork prefix, repeated 4-grams, the loop marker
    const forkAt = e.forkOf?.step ?? -1;
    const mask = repeatedMask(steps.map((t) => t.id));
    this.spans.forEach((sp, i) => {
      sp.classList.toggle('forced', i < forkAt);
      sp.classList.toggle('forkpt', i === forkAt);
      sp.classList.toggle('rep', mask[i] === true);
    });
    this.loopMark?.remove();
    this.loopMark = null;
    const loop = e.completion?.metrics.loopStart;
    if (loop && this.spans[loop.step]) {
      this.loopMark = el('span', {
        class: 'loop-mark',
        text: `loop ×${loop.period}`,
        title: `From step ${loop.step} the completion repeats with period ${loop.period}`,
        attrs: { 'aria-label': `loop starts at step ${loop.step}, period ${loop.period}` },
      });
      this.text.insertBefore(this.loopMark, this.spans[loop.step]!);
    }
    this.markSelected();
    const live = e.status === 'running' || e.status === 'queued';
    this.caret.hidden = e.status !== 'running';
    this.text.classList.toggle('empty', steps.length === 0 && !live);
    // status line
    clear(this.note);
    this.note.className = 'comp-note';
    this.note.hidden = false;
    if (e.status === 'queued') this.note.append(icon('clock'), el('span', { text: 'Queued: runs after the columns to its left.' }));
    else if (e.status === 'running')
      this.note.append(
        el('span', {
          text: `${steps.length} / ${e.maxNewTokens} tokens${pending ? ` · ${pending} waiting for an earlier step` : ''}`,
        }),
      );
    else if (e.status === 'stopped')
      this.note.append(icon('circle-slash'), el('span', { text: steps.length ? 'Stopped.' : 'Not run (stopped).' }));
    else if (e.status === 'error') {
      this.note.classList.add('error');
      this.note.append(icon('error'), el('span', { text: e.error ?? 'The completion failed.' }));
    } else if (steps.length === 0) this.note.append(el('span', { text: 'No tokens (the model stopped at once).' }));
    else this.note.hidden = true;
    // metrics
    clear(this.metrics);
    this.metrics.hidden = !e.completion;
    if (e.completion) {
      for (const m of metricItems(e.completion)) {
        this.metrics.append(
          el('span', { class: 'm-label', text: m.label, title: m.title }),
          el('span', { class: `m-value${m.warn ? ' warn' : ''}`, text: m.value, title: m.title }),
        );
      }
    }
    const done = !!e.completion;
    this.actions.hidden = steps.length === 0 && !done;
    this.buttons.walk.disabled = steps.length === 0;
    this.buttons.analyze.disabled = this.buttons.insert.disabled = this.buttons.copy.disabled = !done;
  }

  private syncChildren(e: Entry, s: CompletionsState, ramp: Ramp, depth: number): void {
    const keep = new Set(e.children.filter((k) => s.entries[k]));
    for (const [k, v] of this.children) {
      if (!keep.has(k)) {
        v.dispose();
        this.children.delete(k);
      }
    }
    for (const k of keep) {
      let v = this.children.get(k);
      if (!v) {
        v = new EntryView(this.api, k, depth + 1);
        this.children.set(k, v);
      }
      if (v.el.parentElement !== this.forks || this.forks.lastElementChild !== v.el) this.forks.append(v.el);
      v.update(s.entries[k]!, s, ramp, depth + 1);
    }
    this.forks.hidden = keep.size === 0;
  }

  /** Tints the spans from `from` on (all of them after a theme change). */
  paint(ramp: Ramp, from = 0): void {
    for (let i = from; i < this.spans.length; i++) {
      const k = tintLevel(this.shown[i]!.prob, LEVELS);
      this.spans[i]!.style.backgroundColor = ramp.fills[k]!;
      this.spans[i]!.style.color = ramp.inks[k]!;
    }
  }

  repaintAll(ramp: Ramp): void {
    this.paint(ramp);
    for (const c of this.children.values()) c.repaintAll(ramp);
  }

  markSelected(): void {
    this.selected?.classList.remove('sel');
    this.selected = null;
    const sel = this.api.walkSel();
    if (sel?.key === this.key) {
      this.selected = this.spans[sel.step] ?? null;
      this.selected?.classList.add('sel');
    }
  }

  stepAt(i: number): GenStep | undefined {
    return this.shown[i];
  }

  /** The shown steps' token texts. */
  stepTexts(): string[] {
    return this.shown.map((s) => s.text);
  }

  scrollToStep(i: number): void {
    this.spans[i]?.scrollIntoView({ block: 'nearest', inline: 'nearest' });
  }

  private async analyze(): Promise<void> {
    const e = this.entry;
    const text = e && analyzeTextOf(e);
    if (!text) return;
    try {
      await this.api.ctx.host.request('analyzeText', { text });
      this.api.ctx.store.set({ tab: 'lens' });
    } catch (err) {
      this.api.toast(`Analyze failed: ${(err as Error).message}`, true);
    }
  }

  private async insert(): Promise<void> {
    const text = this.entry?.completion?.text;
    if (text === undefined) return;
    try {
      const ok = await this.api.ctx.host.request('insertText', { text });
      this.api.toast(ok ? 'Inserted into the editor.' : 'Not inserted (no editor).', !ok);
    } catch (err) {
      this.api.toast(`Insert failed: ${(err as Error).message}`, true);
    }
  }

  private async copy(): Promise<void> {
    const text = this.entry?.completion?.text;
    if (text === undefined) return;
    const ok = await copyText(text);
    this.api.toast(ok ? 'Copied.' : 'Could not copy to the clipboard.', !ok);
  }
}

function sameStep(a: GenStep, b: GenStep): boolean {
  return a === b || (a.id === b.id && a.prob === b.prob && a.text === b.text);
}

function tokenSpan(step: GenStep, i: number): HTMLElement {
  const d = tokenDisplay({ text: step.text });
  const span = el('span', { class: `ctok ${d.kind}`, attrs: { 'data-step': i } });
  for (const p of tokenPieces(step.text)) {
    if (p.kind === 'br') span.append(el('br'));
    else if (p.kind === 'ws') span.append(el('span', { class: 'ws', text: p.text }));
    else span.append(p.text);
  }
  return span;
}

async function copyText(text: string): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // older webviews: a hidden textarea and the copy command
    const ta = el('textarea', { class: 'offscreen', attrs: { 'aria-hidden': 'true' } });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    let ok = false;
    try {
      ok = document.execCommand('copy');
    } catch {
      ok = false;
    }
    ta.remove();
    return ok;
  }
}

// ---- the settings form of a column -----------------------------------------------------------

class FormView {
  readonly el = el('div', { class: 'comp-form' });
  private readonly kind = el('select', { class: 'comp-input', attrs: { 'aria-label': 'Decoding kind' } });
  private readonly inputs = new Map<FormField, { row: HTMLElement[]; input: HTMLInputElement }>();
  private readonly error = el('div', { class: 'form-error', attrs: { 'aria-live': 'polite' } });
  private synced: Strategy | null = null;
  private base: Strategy = PRESETS[0]!;

  constructor(
    private readonly colId: number,
    private readonly onValid: (s: Strategy) => void,
    private readonly onInvalid: (bad: boolean) => void,
  ) {
    for (const k of ['greedy', 'sample', 'beam'] as StrategyKind[]) this.kind.append(el('option', { text: k, attrs: { value: k } }));
    const kindId = `cf-${colId}-kind`;
    this.kind.id = kindId;
    this.el.append(el('label', { class: 'f-label', text: 'Kind', attrs: { for: kindId } }), this.kind);
    for (const f of FIELDS) {
      const id = `cf-${colId}-${f.key}`;
      const input = el('input', {
        class: 'comp-input',
        title: f.title,
        attrs: { id, type: 'text', inputmode: 'decimal', spellcheck: 'false', autocomplete: 'off', placeholder: f.placeholder },
      });
      const label = el('label', { class: 'f-label', text: f.label, title: f.title, attrs: { for: id } });
      this.el.append(label, input);
      this.inputs.set(f.key, { row: [label, input], input });
      input.addEventListener('input', () => this.apply());
    }
    this.kind.addEventListener('change', () => {
      this.showFields();
      this.apply();
    });
    this.el.append(this.error);
  }

  /** Shows a strategy, unless it is the one this form produced (so typing is not reformatted). */
  sync(s: Strategy): void {
    if (s === this.synced) return;
    this.synced = s;
    this.base = s;
    this.kind.value = s.kind;
    const v = formValues(s);
    for (const [k, { input }] of this.inputs) {
      input.value = v[k] ?? '';
      input.classList.remove('invalid');
    }
    this.error.textContent = '';
    this.onInvalid(false);
    this.showFields();
  }

  private showFields(): void {
    const kind = this.kind.value as StrategyKind;
    for (const f of FIELDS) for (const n of this.inputs.get(f.key)!.row) n.hidden = !f.kinds.includes(kind);
  }

  private apply(): void {
    const values: FormValues = {};
    for (const [k, { input }] of this.inputs) values[k] = input.value;
    const r = strategyFromForm(this.kind.value as StrategyKind, values, this.base);
    for (const [k, { input }] of this.inputs) {
      const bad = r.errors[k] !== undefined;
      input.classList.toggle('invalid', bad);
      input.setAttribute('aria-invalid', String(bad));
    }
    const first = Object.values(r.errors)[0];
    this.error.textContent = first ?? '';
    this.onInvalid(!r.strategy);
    if (r.strategy) {
      this.synced = r.strategy;
      this.onValid(r.strategy);
    }
  }
}

// ---- a column ------------------------------------------------------------------------------

class ColumnView {
  readonly el = el('section', { class: 'comp-col' });
  private readonly status = el('span', { class: 'col-status' });
  private readonly title = el('h3', { class: 'col-title' });
  private readonly edited = el('span', {
    class: 'col-edited',
    text: 'edited',
    title: 'The settings changed since this completion was generated: Generate to run them',
  });
  private readonly sub = el('div', { class: 'col-sub' });
  private readonly gear: HTMLButtonElement;
  private readonly remove: HTMLButtonElement;
  private readonly form: FormView;
  private readonly body = el('div', { class: 'col-body' });
  private readonly placeholder = el('div', { class: 'comp-note', text: 'Not generated yet: press Generate.' });
  private entryView: EntryView | null = null;
  private lastStatus = '';

  constructor(
    private readonly api: Api,
    readonly id: number,
  ) {
    this.gear = toolButton('', 'settings-gear', 'Edit the decoding settings of this column', () => this.toggleForm());
    this.gear.setAttribute('aria-label', 'Edit settings');
    this.gear.setAttribute('aria-expanded', 'false');
    this.remove = toolButton('', 'close', 'Remove this column', () => {
      const next = removeColumn(this.api.state(), this.id);
      if (next) this.api.set(next);
    });
    this.remove.setAttribute('aria-label', 'Remove column');
    this.form = new FormView(
      id,
      (s) => this.api.set(setColumnStrategy(this.api.state(), this.id, s)),
      (bad) => this.api.setInvalid(this.id, bad),
    );
    this.form.el.hidden = true;
    this.el.append(
      el('header', { class: 'col-head' }, [this.status, this.title, this.edited, el('span', { class: 'spacer' }), this.gear, this.remove]),
      this.sub,
      this.form.el,
      this.body,
    );
  }

  private toggleForm(): void {
    this.form.el.hidden = !this.form.el.hidden;
    this.gear.classList.toggle('on', !this.form.el.hidden);
    this.gear.setAttribute('aria-expanded', String(!this.form.el.hidden));
  }

  update(col: Column, s: CompletionsState, ramp: Ramp): void {
    this.title.textContent = col.strategy.label;
    this.title.title = col.strategy.label;
    const line = settingsLine(col.strategy);
    this.sub.textContent = line;
    this.sub.title = line;
    this.edited.hidden = !isEdited(s, col);
    this.remove.disabled = s.columns.length <= 1;
    this.form.sync(col.strategy);
    const e = col.entry ? s.entries[col.entry] : undefined;
    if (!e) {
      this.entryView?.dispose();
      this.entryView = null;
      if (this.placeholder.parentElement !== this.body) this.body.append(this.placeholder);
    } else {
      this.placeholder.remove();
      if (this.entryView && this.entryView.key !== e.key) {
        this.entryView.dispose();
        this.entryView = null;
      }
      if (!this.entryView) {
        this.entryView = new EntryView(this.api, e.key, 0);
        this.body.append(this.entryView.el);
      }
      this.entryView.update(e, s, ramp, 0);
    }
    const st = e?.status ?? 'none';
    if (st !== this.lastStatus) {
      this.lastStatus = st;
      clear(this.status);
      if (st === 'running') this.status.append(el('vscode-progress-ring', { class: 'ring', attrs: { 'aria-label': 'Generating' } }));
      else if (st === 'queued') this.status.append(icon('clock'));
      else if (st === 'error') this.status.append(icon('error'));
      else if (st === 'stopped') this.status.append(icon('circle-slash'));
      else if (st === 'done') this.status.append(icon('check'));
      else this.status.append(icon('circle-large-outline'));
      this.status.className = `col-status ${st}`;
      this.status.title = st === 'none' ? 'not generated' : st;
    }
  }

  repaint(ramp: Ramp): void {
    this.entryView?.repaintAll(ramp);
  }

  dispose(): void {
    this.entryView?.dispose();
    this.el.remove();
  }
}

// ---- the tab ---------------------------------------------------------------------------------

export const completionsTab: TabFactory = (ctx: ViewContext) => {
  const promptEl = el('span', { class: 'comp-prompt mono' });
  // the prompt's length in tokens, and the start the context window dropped (after a completion)
  const promptInfo = el('span', { class: 'comp-prompt-note muted' });
  const maxNew = el('input', {
    class: 'comp-input comp-num',
    title: `New tokens per completion (1 to ${MAX_NEW_TOKENS})`,
    attrs: { type: 'number', min: 1, max: MAX_NEW_TOKENS, step: 1, 'aria-label': 'New tokens per completion' },
  });
  const generate = el('button', { class: 'comp-btn primary', title: 'Generate every column on the prompt', attrs: { type: 'button' } }, [
    icon('play'),
    el('span', { text: 'Generate' }),
  ]);
  const stop = toolButton('Stop', 'debug-stop', 'Stop generating', () => void onStop());
  const add = el('select', { class: 'comp-input comp-add', attrs: { 'aria-label': 'Add a column', title: 'Add a column from a preset' } });
  // what-if: a copy of each column generating with the heads chosen in the Attention tab ablated
  const ablated = toolButton('Ablated copies', 'beaker', '', () => {
    const next = withAblatedCopies(ctx.store.state.completions, ctx.store.state.ablation);
    if (next) api.set(next);
    else toast(`No room: at most ${MAX_COLUMNS} columns, and each column has its ablated copy already.`, true);
  });
  const paintAblated = () => {
    const a = ctx.store.state.ablation;
    ablated.disabled = a.heads.length === 0;
    ablated.title = a.heads.length
      ? `Add a copy of each column that generates with ${a.heads.map((h) => `L${h.layer}H${h.head}`).join(', ')} ${a.mode}-ablated`
      : 'Pick heads to ablate in the Attention tab first';
  };
  const status = el('span', { class: 'comp-status', attrs: { 'aria-live': 'polite' } });
  const legendBar = el('span', { class: 'comp-legend-bar' });
  const legend = el('span', { class: 'comp-legend', title: 'Token tint: the model’s probability of the token (surprisal, 0 to 8+ bits)' }, [
    el('span', { class: 'muted', text: 'p' }),
    el('span', { class: 'muted', text: 'high' }),
    legendBar,
    el('span', { class: 'muted', text: 'low' }),
    el('span', { class: 'comp-legend-rep', text: 'repeat', title: 'Underlined: inside a 4-gram that occurs at least twice' }),
  ]);
  const bar = el('div', { class: 'view-bar comp-bar' }, [
    el('span', { class: 'bar-label', text: 'Prompt' }),
    promptEl,
    promptInfo,
    el('span', { class: 'sep' }),
    el('label', { class: 'bar-label', text: 'New tokens' }),
    maxNew,
    generate,
    stop,
    el('span', { class: 'sep' }),
    add,
    ablated,
    status,
    el('span', { class: 'spacer' }),
    legend,
  ]);
  const cols = el('div', { class: 'comp-cols' });
  const empty = el('div', { class: 'td-empty comp-empty' }, [
    el('span', { class: 'codicon codicon-list-flat empty-icon', attrs: { 'aria-hidden': 'true' } }),
    el('h2', { text: 'No completions yet' }),
    el('p', { text: 'Select a prompt in the editor and run Transformer Dynamics: Compare Completions…' }),
    el('div', { class: 'empty-actions' }, [
      commandButton(
        ctx.host,
        'Compare Completions…',
        'list-flat',
        'Complete the selection (or the text before the cursor) in the editor beside the panel',
        'compareCompletions',
      ),
    ]),
  ]);
  // the decoding walk
  const walkTitle = el('span', { class: 'walk-title' });
  const walkUp = toolButton('Parent', 'arrow-up', 'Show the walk of the completion this one was forked from', () => {
    const k = walkKey && ctx.store.state.completions.entries[walkKey]?.forkOf?.completionKey;
    if (k) openWalk(k, null);
  });
  const walkList = el('div', { class: 'walk-list', attrs: { role: 'list' } });
  const walkClose = toolButton('', 'close', 'Close the decoding walk', () => openWalk(null, null));
  walkClose.setAttribute('aria-label', 'Close the decoding walk');
  const walk = el('section', { class: 'comp-walk', attrs: { 'aria-label': 'Decoding walk' } }, [
    el('header', { class: 'chart-head walk-head' }, [
      el('h3', { text: 'Decoding walk' }),
      walkTitle,
      walkUp,
      el('span', { class: 'spacer' }),
      el('span', { class: 'hint', text: 'top alternatives per step · click one to fork from there' }),
      walkClose,
    ]),
    walkList,
  ]);
  walk.hidden = true;
  const root = el('div', { class: 'view comp-view' }, [bar, el('div', { class: 'comp-body' }, [cols, empty, walk])]);

  const columns = new Map<number, ColumnView>();
  const entryViews = new Map<string, EntryView>();
  const invalid = new Set<number>();
  let ramp: Ramp = makeRamp(ctx.palette());
  let active = false;
  let dirty = true;
  let walkKey: string | null = null;
  let walkStep = -1;
  let toastTimer = 0;
  let maxNewSynced = -1;
  /** A fork just requested: scrolled into view once it shows. */
  let revealKey: string | null = null;

  const api: Api = {
    ctx,
    state: () => ctx.store.state.completions,
    ramp: () => ramp,
    set: (next) => ctx.store.set({ completions: next }),
    openWalk: (k, step) => openWalk(k, step),
    walkSel: () => (walkKey && walkStep >= 0 ? { key: walkKey, step: walkStep } : null),
    register: (k, v) => (v ? entryViews.set(k, v) : entryViews.delete(k)),
    setInvalid: (id, bad) => {
      if (bad) invalid.add(id);
      else invalid.delete(id);
    },
    toast,
  };

  function toast(text: string, error = false): void {
    window.clearTimeout(toastTimer);
    status.textContent = text;
    status.classList.toggle('error', error);
    status.title = text;
    toastTimer = window.setTimeout(() => {
      status.classList.remove('error');
      renderStatus(ctx.store.state.completions, true);
    }, 4000);
  }

  // ---- toolbar ----
  const fillAdd = (s: CompletionsState) => {
    clear(add);
    add.append(
      el('option', { text: s.columns.length >= MAX_COLUMNS ? `${MAX_COLUMNS} columns (max)` : '+ Add column…', attrs: { value: '' } }),
    );
    PRESETS.forEach((p, i) => add.append(el('option', { text: p.label, attrs: { value: i } })));
    add.value = '';
    add.disabled = s.columns.length >= MAX_COLUMNS;
  };
  add.addEventListener('change', () => {
    const preset = add.value === '' ? undefined : PRESETS[Number(add.value)];
    add.value = '';
    if (!preset) return;
    const next = addColumn(ctx.store.state.completions, preset);
    if (next) api.set(next);
  });

  generate.addEventListener('click', () => void onGenerate());
  maxNew.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter') void onGenerate();
  });

  async function onGenerate(): Promise<void> {
    const s = ctx.store.state.completions;
    if (invalid.size > 0) return toast('Fix the highlighted settings first.', true);
    const r = generateRequest(s, maxNew.value);
    if ('error' in r) return toast(r.error, true);
    generate.disabled = true;
    try {
      await ctx.host.request('generate', r.params);
    } catch (e) {
      toast(`Generate failed: ${(e as Error).message}`, true);
    } finally {
      generate.disabled = false;
    }
  }

  async function onStop(): Promise<void> {
    const s = ctx.store.state.completions;
    const b = activeBatch(s);
    if (b === null) return;
    try {
      await ctx.host.request('stopGeneration', { batchId: b });
      api.set(markStopped(ctx.store.state.completions, b));
    } catch (e) {
      toast(`Stop failed: ${(e as Error).message}`, true);
    }
  }

  function renderStatus(s: CompletionsState, force = false): void {
    if (!force && status.classList.contains('error')) return; // a message is showing
    clear(status);
    status.classList.remove('error');
    const b = activeBatch(s);
    if (b === null) return;
    const p = batchProgress(s, b);
    const r = p.running;
    const fork = r?.forkOf ? 'Forking' : 'Generating';
    const tokens = r ? ` · ${r.strategy.label}: ${assembled(r).steps.length}/${r.maxNewTokens}` : '';
    status.append(
      el('vscode-progress-ring', { class: 'ring', attrs: { 'aria-label': 'Generating' } }),
      el('span', { text: `${fork} ${Math.min(p.finished + 1, p.total)}/${p.total}${tokens}` }),
    );
  }

  // ---- the decoding walk ----
  let walkRendered: { key: string; entry: Entry | null; rows: number; forks: string } | null = null;

  function openWalk(k: string | null, step: number | null): void {
    walkKey = k;
    walkStep = step ?? -1;
    walkRendered = null;
    for (const v of entryViews.values()) v.markSelected();
    renderWalk(ctx.store.state.completions);
    if (k !== null && step !== null) {
      walkList.querySelector(`.walk-row[data-step="${step}"]`)?.scrollIntoView({ block: 'nearest' });
    }
  }

  function renderWalk(s: CompletionsState): void {
    const e = walkKey ? s.entries[walkKey] : undefined;
    if (!e) {
      walk.hidden = true;
      walkKey = null;
      walkRendered = null;
      return;
    }
    walk.hidden = false;
    const forkSig = e.children.map((c) => `${c}:${s.entries[c] ? 1 : 0}`).join(',');
    const rows = walkRows(s, e.key);
    const r = walkRendered;
    const append = r && r.key === e.key && r.forks === forkSig && !e.completion && !r.entry?.completion && rows.length >= r.rows;
    if (!append) {
      clear(walkList);
      walkTitle.textContent = '';
      walkTitle.append(
        el('span', { class: 'walk-strategy', text: e.strategy.label }),
        el('span', { class: 'muted', text: e.forkOf ? `  ${forkLabel(s, e.key) ?? ''}` : '' }),
      );
      walkUp.hidden = !e.forkOf;
    }
    const from = append ? r!.rows : 0;
    const frag = document.createDocumentFragment();
    for (let i = from; i < rows.length; i++) frag.append(walkRow(rows[i]!));
    walkList.append(frag);
    walkRendered = { key: e.key, entry: e, rows: rows.length, forks: forkSig };
    walkList.querySelectorAll('.walk-row.sel').forEach((n) => n.classList.remove('sel'));
    if (walkStep >= 0) walkList.querySelector(`.walk-row[data-step="${walkStep}"]`)?.classList.add('sel');
  }

  function walkRow(r: WalkRow): HTMLElement {
    const row = el('div', { class: `walk-row${r.forced ? ' forced' : ''}`, attrs: { role: 'listitem', 'data-step': r.step } });
    row.append(
      el('span', {
        class: 'walk-step',
        text: String(r.step),
        title: `step ${r.step}: entropy ${fmt(r.entropy)} nats${r.forced ? ' (forced: the fork’s prefix)' : ''}`,
      }),
    );
    const alts = el('div', { class: 'walk-alts' });
    const chip = (a: { id: number; text: string; prob: number }, chosen: boolean, fork: string | null, outside = false) => {
      const d = tokenDisplay({ text: a.text });
      const title = chosen
        ? `${d.title}: chosen, p ${pct(a.prob)}${outside ? ' (not among the top alternatives)' : ''}`
        : fork
          ? `${d.title}: p ${pct(a.prob)}, already forked: show that fork`
          : r.forced
            ? `${d.title}: p ${pct(a.prob)} (inside the fork’s forced prefix)`
            : `${d.title}: p ${pct(a.prob)}, click to fork here with this token`;
      const b = el(
        'button',
        {
          class: `walk-alt${chosen ? ' chosen' : ''}${fork ? ' forked' : ''}${outside ? ' outside' : ''}`,
          title,
          attrs: { type: 'button', 'data-id': a.id, 'data-step': r.step, 'data-fork': fork ?? undefined },
        },
        [
          chosen ? icon('check') : fork ? icon('git-branch') : null,
          el('span', { class: `mono alt-text ${d.kind}`, text: clip(d.text, 14) }),
          el('span', { class: 'num', text: pct(a.prob) }),
        ],
      );
      const barEl = el('span', { class: 'walk-bar' });
      barEl.style.width = `${Math.max(1, Math.round(Math.min(1, a.prob) * 100))}%`;
      b.append(barEl);
      b.disabled = (chosen || r.forced) && !fork;
      if (b.disabled) b.setAttribute('aria-disabled', 'true');
      return b;
    };
    for (const a of r.alts) alts.append(chip(a, a.chosen, a.fork));
    if (r.chosenRank === null) alts.append(chip(r.chosen, true, null, true));
    const info = `entropy ${fmt(r.entropy)} nats · chosen ${r.chosenRank === null ? 'outside the top' : `#${r.chosenRank}`}${r.forced ? ' · forced' : ''}`;
    row.append(alts, el('span', { class: 'walk-info', text: info }));
    return row;
  }

  walkList.addEventListener('click', (ev) => {
    const b = (ev.target as HTMLElement).closest<HTMLButtonElement>('.walk-alt');
    if (!b || b.disabled || !walkKey) return;
    if (b.dataset.fork) {
      openWalk(b.dataset.fork, null);
      entryViews.get(b.dataset.fork)?.el.scrollIntoView({ block: 'nearest' });
      return;
    }
    void fork(walkKey, Number(b.dataset.step), Number(b.dataset.id));
  });
  walkList.addEventListener('mouseover', (ev) => {
    const row = (ev.target as HTMLElement).closest<HTMLElement>('.walk-row');
    if (!row || !walkKey) return;
    const step = Number(row.dataset.step);
    const v = entryViews.get(walkKey);
    if (v && step !== walkStep) {
      walkStep = step;
      v.markSelected();
      walkList.querySelectorAll('.walk-row.sel').forEach((n) => n.classList.remove('sel'));
      row.classList.add('sel');
    }
  });

  async function fork(key: string, step: number, altId: number): Promise<void> {
    const s = ctx.store.state.completions;
    const r = forkRequest(s, key, step, altId);
    if ('error' in r) return toast(r.error, true);
    try {
      const { batchId } = await ctx.host.request('generate', r.params);
      revealKey = `${batchId}.0`;
      schedule();
    } catch (e) {
      toast(`Fork failed: ${(e as Error).message}`, true);
    }
  }

  // ---- token hover and click ----
  cols.addEventListener('mouseover', (ev) => {
    const t = (ev.target as HTMLElement).closest<HTMLElement>('.ctok');
    const entryEl = t?.closest<HTMLElement>('.comp-entry');
    if (!t || !entryEl?.dataset.key) return;
    const v = entryViews.get(entryEl.dataset.key);
    const i = Number(t.dataset.step);
    const step = v?.stepAt(i);
    if (!step) return;
    const e = ctx.store.state.completions.entries[entryEl.dataset.key];
    const d = tokenDisplay({ text: step.text });
    const rows: Node[] = [
      el('div', { class: 'tt-title' }, [
        el('span', { class: 'mono', text: d.text }),
        el('span', { class: 'muted', text: `  step ${i} · id ${step.id}` }),
      ]),
      el('div', {
        text: `p ${pct(step.prob)} · surprisal ${fmt(bitsOf(step.prob))} bits · entropy ${fmt(step.entropy)} nats`,
      }),
    ];
    const chars = v ? splitCharacters(v.stepTexts(), i) : '';
    if (chars) rows.push(el('div', { text: `with its neighbours: ${characterNames(chars)}` }));
    if (e?.forkOf && i <= e.forkOf.step)
      rows.push(el('div', { class: 'muted', text: i === e.forkOf.step ? 'forced: the fork’s alternative' : 'forced: the parent’s token' }));
    const table = el('div', { class: 'tt-top' });
    for (const a of step.top) {
      const barEl = el('span', { class: 'tt-bar' });
      barEl.style.width = `${Math.max(1, Math.round(a.prob * 60))}px`;
      table.append(
        el('span', { class: `mono${a.id === step.id ? ' hit' : ''}`, text: clip(tokenDisplay({ text: a.text }).text, 24) }),
        el('span', { class: 'num', text: pct(a.prob) }),
        el('span', {}, [barEl]),
      );
    }
    rows.push(table, el('div', { class: 'tt-stats', text: 'click: show this step in the decoding walk' }));
    const rect = t.getBoundingClientRect();
    ctx.tooltip.show(rect.left, rect.bottom, rows);
  });
  cols.addEventListener('mouseleave', () => ctx.tooltip.hide());
  cols.addEventListener('click', (ev) => {
    const t = (ev.target as HTMLElement).closest<HTMLElement>('.ctok');
    const key = t?.closest<HTMLElement>('.comp-entry')?.dataset.key;
    if (!t || !key) return;
    openWalk(key, Number(t.dataset.step));
  });

  // ---- render ----
  function render(): void {
    if (!active) {
      dirty = true;
      return;
    }
    dirty = false;
    const s = ctx.store.state.completions;
    if (s.maxNewTokens !== maxNewSynced) {
      maxNewSynced = s.maxNewTokens;
      maxNew.value = String(s.maxNewTokens);
    }
    // a prompt whose start the context window dropped shows from where the model saw it
    const note = promptNote(s);
    const shown = note?.seen ?? s.prompt;
    promptEl.textContent =
      shown === null ? '(the selection of the next Compare Completions…)' : `${note?.seen ? '…' : ''}${clip(visibleText(shown), 160)}`;
    promptEl.title = shown === null ? '' : `${note?.seen ? 'What the model saw: …' : ''}${clip(shown, 2000)}`;
    promptEl.classList.toggle('muted', s.prompt === null);
    promptInfo.hidden = note === null;
    promptInfo.textContent = note?.text ?? '';
    promptInfo.title = note?.title ?? '';
    promptInfo.classList.toggle('muted', !note?.cut);
    promptInfo.classList.toggle('warn', note?.cut === true);
    fillAddIfChanged(s);
    empty.hidden = s.columns.length > 0;
    cols.hidden = s.columns.length === 0;
    generate.disabled = s.columns.length === 0;
    const ids = new Set(s.columns.map((c) => c.id));
    for (const [id, v] of columns) {
      if (!ids.has(id)) {
        v.dispose();
        columns.delete(id);
        invalid.delete(id);
      }
    }
    s.columns.forEach((c, i) => {
      let v = columns.get(c.id);
      if (!v) {
        v = new ColumnView(api, c.id);
        columns.set(c.id, v);
      }
      if (cols.children[i] !== v.el) cols.insertBefore(v.el, cols.children[i] ?? null);
      v.update(c, s, ramp);
    });
    cols.style.setProperty('--comp-cols', String(Math.max(1, s.columns.length)));
    stop.disabled = activeBatch(s) === null;
    renderStatus(s);
    renderWalk(s);
    const reveal = revealKey ? entryViews.get(revealKey) : undefined;
    if (reveal) {
      revealKey = null;
      reveal.el.scrollIntoView({ block: 'nearest' });
    }
  }

  let addFor = -1;
  function fillAddIfChanged(s: CompletionsState): void {
    if (addFor === s.columns.length) return;
    addFor = s.columns.length;
    fillAdd(s);
  }

  const paintLegend = () => {
    const stops = ramp.fills.map((f, i) => `${f || toCss(ctx.palette().bg)} ${Math.round((i / (LEVELS - 1)) * 100)}%`);
    legendBar.style.background = `linear-gradient(to right, ${stops.join(', ')})`;
  };
  paintLegend();

  const schedule = rafThrottle(render);
  ctx.store.subscribe((s, changed) => {
    if (changed.has('themeVersion')) {
      ramp = makeRamp(ctx.palette());
      paintLegend();
      for (const v of columns.values()) v.repaint(ramp);
    }
    if (changed.has('completions')) schedule();
    if (changed.has('ablation')) paintAblated();
  });
  paintAblated();

  return {
    id: 'completions',
    title: 'Completions',
    el: root,
    setActive(a: boolean) {
      active = a;
      if (a && dirty) render();
    },
  };
};
