// The panel's webview app: wires the host bridge, the state store and the views.
// Handshake: post `ready` once listening; the host then sends everything the panel shows
// (run state, settings, model, analysis, completions, prompt diff), in order (protocol.ts).
import type { PersistedState } from '../src/shared/protocol';
import { el, isEditableTarget } from './dom';
import { commandButton } from './views/commandButton';
import { Host, type HostMessage } from './host';
import { EMPTY_COMPLETIONS, reduceCompletions } from './shapeCompletions';
import { payloadProblems } from './shapePayload';
import { initialPosition, initialSimilarityRow, readPersisted, stepPosition, tabForAnalysis, tabShowsAnalysis } from './shapeState';
import { Store, type AppState } from './store';
import { onThemeChange, readPalette, type Palette } from './theme';
import type { ViewContext } from './views/context';
import { createHeader } from './views/header';
import { createTabs } from './views/tabs';
import { createTokenStrip } from './views/tokenStrip';
import { Tooltip } from './views/tooltip';
import { createWhatIfBar, pairPatch } from './views/whatIfBar';
import { EMPTY_ABLATION, isPairRun } from './shapeWhatIf';

const host = new Host();
const restored = readPersisted(host.getState());
const store = new Store({
  payload: null,
  runState: { kind: 'idle' },
  settings: { lensTopK: 10, overlayEnabled: true },
  modelName: null,
  tab: restored.tab,
  selectedPos: restored.selectedPos,
  highlightPos: null,
  lensColor: restored.lensColor,
  trajectoryDims: restored.trajectoryDims,
  similarityRow: restored.similarityRow,
  surprisalTint: true,
  themeVersion: 0,
  completions: EMPTY_COMPLETIONS,
  promptDiff: null,
  whatIf: null,
  ablation: EMPTY_ABLATION,
  whatIfStatus: { kind: 'idle' },
});

let palette: Palette = readPalette();
let persistedText = restored.text;
/**
 * The host answers `ready` with the run state first. Until then whether a run is in progress
 * is unknown (a panel opened by Analyze Selection loads while the model does): no empty state.
 */
let hostAnswered = false;
let dataMark: number | null = null;

const ctx: ViewContext = {
  store,
  host,
  palette: () => palette,
  tooltip: new Tooltip(),
  select(pos, highlight = null) {
    const p = store.state.payload;
    if (!p || pos < 0 || pos >= p.tokens.length) return;
    store.set({ selectedPos: pos, highlightPos: highlight });
    host.post({ type: 'selectPosition', runId: p.runId, pos });
  },
  painted(view) {
    if (dataMark === null) return;
    dataMark = null;
    // two frames: the first runs before the browser paints the new content
    requestAnimationFrame(() =>
      requestAnimationFrame(() => {
        performance.mark('td:painted');
        // read by `npm run bench:ui` (Playwright): one measure per analysis, named by the view drawn
        const m = performance.measure(`td:data→painted:${view}`, 'td:analysis', 'td:painted');
        host.log('info', `Panel: ${view} drawn ${Math.round(m.duration)} ms after the analysis arrived.`);
      }),
    );
  },
};

function onMessage(m: HostMessage): void {
  switch (m.type) {
    case 'analysis': {
      const p = m.payload;
      const problems = payloadProblems(p);
      if (problems.length > 0) {
        host.log('error', `Dropped a malformed analysis: ${problems.slice(0, 5).join('; ')}`);
        store.set({
          runState: { kind: 'error', message: 'The analysis could not be shown: its data is inconsistent (see the output log).' },
        });
        break;
      }
      performance.mark('td:analysis');
      dataMark = performance.now();
      const sameText = p.text === persistedText;
      persistedText = p.text;
      store.set({
        payload: p,
        modelName: p.model.name,
        selectedPos: initialPosition(sameText ? store.state.selectedPos : -1, p.tokens.length),
        highlightPos: null,
        similarityRow: initialSimilarityRow(sameText ? store.state.similarityRow : -1, p),
        whatIf: null, // a new run: its intervened twin, if any, comes as `whatIf`
        tab: tabForAnalysis(store.state.tab),
      });
      break;
    }
    case 'whatIf': {
      const problems = m.pair ? [...payloadProblems(m.pair.clean), ...payloadProblems(m.pair.intervened)] : [];
      if (problems.length > 0) {
        host.log('error', `Dropped a malformed what-if pair: ${problems.slice(0, 5).join('; ')}`);
        store.set({
          whatIfStatus: { kind: 'error', message: 'The ablated run could not be shown: its data is inconsistent (see the output log).' },
        });
        break;
      }
      store.set(pairPatch(store.state, m.pair));
      break;
    }
    case 'runState':
      hostAnswered = true;
      store.set({ runState: m.state });
      break;
    case 'settings':
      store.set({ settings: m.settings });
      break;
    case 'selectPosition': {
      const p = store.state.payload;
      if (p && (m.runId === p.runId || isPairRun(store.state.whatIf, m.runId)) && m.pos < p.tokens.length)
        store.set({ selectedPos: m.pos, highlightPos: null });
      break;
    }
    case 'modelChanged':
      store.set({ modelName: m.modelName });
      break;
    // Completions tab: a new batch brings the tab forward; steps stream into it
    case 'completionBatch':
    case 'completionStep':
    case 'completionDone':
    case 'completionError': {
      const completions = reduceCompletions(store.state.completions, m);
      store.set(m.type === 'completionBatch' ? { completions, tab: 'completions' } : { completions });
      break;
    }
    // Diff tab: a prompt comparison brings the tab forward
    case 'promptDiff':
      store.set({
        promptDiff: { a: m.a, b: m.b, diff: m.diff, labels: m.labels, ...(m.patching ? { patching: m.patching } : {}) },
        tab: 'diff',
      });
      break;
  }
}

let persistTimer = 0;
/** Saves the state shortly after the last change (arrow keys change the selection quickly). */
function persistSoon(): void {
  window.clearTimeout(persistTimer);
  persistTimer = window.setTimeout(() => persist(store.state), 250);
}

function persist(s: Readonly<AppState>): void {
  const state: PersistedState = {
    version: 1,
    text: s.payload?.text ?? persistedText,
    source: s.payload?.source ?? restored.source,
    tab: s.tab,
    selectedPos: s.selectedPos,
    similarityRow: s.similarityRow,
    lensColor: s.lensColor,
    trajectoryDims: s.trajectoryDims,
  };
  host.setState(state);
}

/** Completions can be shown before any analysis (Compare Completions… on a fresh panel). */
function hasCompletions(s: Readonly<AppState>): boolean {
  return s.completions.columns.length > 0;
}

function emptyState(): HTMLElement {
  const key = /Mac/.test(navigator.userAgent) ? 'Cmd+Alt+D' : 'Ctrl+Alt+D';
  // the first steps of a newcomer: a text to analyse, and another model
  const box = el('div', { class: 'td-empty' }, [
    el('span', { class: 'codicon codicon-pulse empty-icon', attrs: { 'aria-hidden': 'true' } }),
    el('h2', { text: 'No analysis yet' }),
    el('p', { text: `Select text and run Transformer Dynamics: Analyze Selection (${key}).` }),
    el('div', { class: 'empty-actions' }, [
      commandButton(host, 'Open Sample Document', 'book', 'Open a sample text to analyse', 'openSample'),
      commandButton(
        host,
        'Select Model…',
        'server-process',
        'The bundled model, a model folder or a download from the Hugging Face Hub',
        'selectModel',
      ),
    ]),
  ]);
  const render = (s: Readonly<AppState>) => {
    box.hidden = !hostAnswered || !!s.payload || s.runState.kind === 'running' || hasCompletions(s) || s.promptDiff !== null;
  };
  store.subscribe(
    (s, changed) =>
      (changed.has('payload') || changed.has('runState') || changed.has('completions') || changed.has('promptDiff')) && render(s),
  );
  render(store.state);
  return box;
}

function mount(): void {
  const app = document.getElementById('app') ?? document.body.appendChild(el('div', { attrs: { id: 'app' } }));
  const tabs = createTabs(ctx);
  const main = el('main', { class: 'td-main' }, [createWhatIfBar(ctx), createTokenStrip(ctx), tabs]);
  app.append(createHeader(ctx), emptyState(), main);
  const showMain = (s: Readonly<AppState>) => (main.hidden = !s.payload && !hasCompletions(s) && !s.promptDiff);
  showMain(store.state);
  store.subscribe((s, changed) => {
    if (changed.has('payload') || changed.has('completions') || changed.has('promptDiff')) showMain(s);
    if (['payload', 'tab', 'selectedPos', 'similarityRow', 'lensColor', 'trajectoryDims'].some((k) => changed.has(k as keyof AppState)))
      persistSoon();
  });

  document.addEventListener('keydown', (ev) => {
    if (ev.key !== 'ArrowLeft' && ev.key !== 'ArrowRight') return;
    if (ev.altKey || ev.ctrlKey || ev.metaKey || isEditableTarget(ev.target)) return;
    const p = store.state.payload;
    if (!p || !tabShowsAnalysis(store.state.tab)) return; // (Diff and Completions do not show its tokens)
    ev.preventDefault();
    ctx.select(stepPosition(store.state.selectedPos, ev.key === 'ArrowLeft' ? -1 : 1, p.tokens.length));
  });
  onThemeChange(() => {
    palette = readPalette();
    store.set({ themeVersion: store.state.themeVersion + 1 });
  });
  window.addEventListener('pagehide', () => persist(store.state));
  window.addEventListener('error', (ev) => host.log('error', `Webview error: ${ev.message}`));
  window.addEventListener('unhandledrejection', (ev) =>
    host.log('error', `Webview error: ${String((ev as PromiseRejectionEvent).reason)}`),
  );
}

mount();
host.listen(onMessage);
host.post({ type: 'ready' });
