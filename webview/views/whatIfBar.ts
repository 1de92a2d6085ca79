// The what-if bar: while the shown text also has an intervened twin (heads ablated from the
// Attention tab, or a cell patched from the Diff tab's heatmap), it says what was done and lets
// every view show the clean (unpatched) run, the intervened one, or compare them (beside each
// other, or as a difference); the editor's tint follows.
import { el, icon, toolButton } from '../dom';
import {
  ablationText,
  comparison,
  finalTop1,
  pairNames,
  patchText,
  shownPayload,
  whatIfFromPair,
  type WhatIfCompare,
  type WhatIfShow,
} from '../shapeWhatIf';
import type { AppState } from '../store';
import { pct, tokenDisplay } from '../shapeText';
import type { AnalysisPayload, WhatIfPair } from '../../src/shared/protocol';
import type { ViewContext } from './context';
import { segmented } from './dynamicsCard';
import { tabShowsAnalysis } from '../shapeState';

/** The store change a `whatIf` message makes: the pair shown (intervened first), or back to the clean run. */
export function pairPatch(s: Readonly<AppState>, pair: WhatIfPair | null): Partial<AppState> {
  const w = whatIfFromPair(pair);
  if (!w) return { whatIf: null, whatIfStatus: { kind: 'idle' }, ...(s.whatIf ? { payload: s.whatIf.clean } : {}) };
  return { whatIf: w, payload: shownPayload(w), whatIfStatus: { kind: 'idle' } };
}

export function createWhatIfBar(ctx: ViewContext): HTMLElement {
  const what = el('span', { class: 'wi-what' });
  const next = el('span', { class: 'wi-next' });
  const showCtl = segmented<WhatIfShow>(
    'Show',
    [
      { value: 'clean', text: 'Clean', title: 'Every view shows the clean (unpatched) run' },
      { value: 'intervened', text: 'Ablated', title: 'Every view shows the intervened run: heads ablated, or cells patched' },
    ],
    (v) => update({ show: v }),
  );
  const compareCtl = segmented<WhatIfCompare>(
    'Compare',
    [
      { value: 'off', text: 'Off', title: 'Only the shown run' },
      {
        value: 'beside',
        text: 'Beside',
        title:
          'Both runs where a view can draw two: the selected token’s walks, copy mass, repeats, lens and token hovers, changed lens cells outlined',
      },
      {
        value: 'difference',
        text: 'Difference',
        title:
          'Intervened − clean (ablated − clean, patched − unpatched): lens cells by the change of log p(next token), surprisal change in the tokens and the editor, copy mass change',
      },
    ],
    (v) => update({ compare: v }),
  );
  const clearBtn = toolButton('Clear', 'close', 'Back to the clean run alone', () => void clearPair());
  const status = el('span', { class: 'wi-status', attrs: { 'aria-live': 'polite' } });
  // each label stays with its buttons when a narrow panel wraps the controls
  const controls = el('span', { class: 'wi-controls' }, [
    el('span', { class: 'bar-group' }, [el('label', { class: 'bar-label', text: 'Show' }), showCtl.el]),
    el('span', { class: 'bar-group' }, [el('label', { class: 'bar-label', text: 'Compare' }), compareCtl.el]),
    clearBtn,
  ]);
  // narrow panels wrap the controls under what was done
  const root = el('section', { class: 'td-whatif', attrs: { 'aria-label': 'What-if' } }, [
    icon('beaker'),
    el('span', { class: 'wi-title', text: 'What-if' }),
    what,
    next,
    status,
    controls,
  ]);

  const update = (patch: Partial<{ show: WhatIfShow; compare: WhatIfCompare }>) => {
    const w = ctx.store.state.whatIf;
    if (!w) return;
    const next = { ...w, ...patch };
    ctx.store.set({ whatIf: next, payload: shownPayload(next) });
  };

  const clearPair = async () => {
    const w = ctx.store.state.whatIf;
    if (!w) return;
    try {
      await ctx.host.request('ablate', { runId: w.clean.runId, ablation: null });
    } catch (e) {
      ctx.store.set({ whatIfStatus: { kind: 'error', message: (e as Error).message } });
    }
  };

  /** The host's editor tint and Export Analysis follow the shown run. */
  let told = '';
  const tellHost = (s: Readonly<AppState>) => {
    const p: AnalysisPayload | null = s.payload;
    if (!s.whatIf || !p) return;
    const cmp = comparison(s.whatIf, p);
    const compareTo = cmp?.mode === 'difference' ? cmp.other.runId : null;
    const key = `${p.runId}:${compareTo}`;
    if (key === told) return;
    told = key;
    ctx.host
      .request('showRun', { runId: p.runId, compareTo })
      .catch((e: unknown) => ctx.host.log('warn', `showRun: ${(e as Error).message}`));
  };

  const render = (s: Readonly<AppState>) => {
    const w = s.whatIf;
    const st = s.whatIfStatus;
    // the analysis's what-if: not on the tabs that show other texts (Diff, Completions)
    root.hidden = (!w && st.kind === 'idle') || !tabShowsAnalysis(s.tab);
    status.textContent = st.kind === 'running' ? 'Re-running with the heads ablated…' : st.kind === 'error' ? st.message : '';
    status.classList.toggle('error', st.kind === 'error');
    controls.hidden = !w;
    next.hidden = !w;
    if (!w) {
      what.textContent = '';
      told = '';
      return;
    }
    const a = w.intervened.interventions?.ablation;
    const patch = w.intervened.interventions?.patch;
    what.textContent = patch ? patchText(patch, w.clean) : a ? ablationText(a) : 'intervened run';
    what.title = patch
      ? `Run ${w.intervened.runId}: the same ${w.clean.tokens.length} tokens as run ${w.clean.runId}, with ${patch.site === 'z' ? "these heads' outputs" : patch.cells.length > 1 ? 'these activations' : 'this activation'} replaced by the values of “${patch.sourceText}” (${patch.sourceTokens} tokens, aligned from the end).`
      : `Run ${w.intervened.runId}: the same ${w.clean.tokens.length} tokens as run ${w.clean.runId}, with these heads' outputs replaced.`;
    // the buttons name the pair's runs: clean and ablated, or unpatched and patched
    const names = pairNames(w);
    const [a0, b0] = [finalTop1(w.clean), finalTop1(w.intervened)];
    const tok = (p: AnalysisPayload, id: number) => tokenDisplay({ text: p.vocab[id] ?? String(id) }).text;
    next.textContent = `next: ${tok(w.clean, a0.id)} ${pct(a0.prob)} → ${tok(w.intervened, b0.id)} ${pct(b0.prob)}`;
    next.title = `The model's top prediction after the last token: ${names.base} ${tok(w.clean, a0.id)} (${pct(a0.prob)}), ${names.twin} ${tok(w.intervened, b0.id)} (${pct(b0.prob)}).`;
    showCtl.relabel({ clean: cap(names.base), intervened: cap(names.twin) });
    showCtl.set(w.show);
    compareCtl.set(w.compare);
    tellHost(s);
  };
  ctx.store.subscribe((s, changed) => {
    if (changed.has('whatIf') || changed.has('whatIfStatus') || changed.has('payload') || changed.has('tab')) render(s);
  });
  render(ctx.store.state);
  return root;
}

const cap = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);
