// The Attention tab's what-if controls: which heads to ablate (picked in the grid or table, or
// "the k heads with the highest induction score"), zero or mean ablation, and the run.
import { el, toolButton } from '../dom';
import { EMPTY_ABLATION, hasHead, toggleHead, topInductionHeads, withMode } from '../shapeWhatIf';
import { headLabelOf, type AblationMode } from '../../src/shared/interventions';
import type { HeadStatsResult } from '../../src/shared/analysis';
import type { AppState } from '../store';
import type { ViewContext } from './context';
import { segmented } from './dynamicsCard';

const TOP_K = 3;

export interface AblateControls {
  el: HTMLElement;
  /** The statistics the "top induction" button picks from (the shown run's). */
  setStats(stats: HeadStatsResult | null): void;
  isAblated(layer: number, head: number): boolean;
  toggle(layer: number, head: number): void;
}

export function createAblateControls(ctx: ViewContext): AblateControls {
  let stats: HeadStatsResult | null = null;
  const set = (heads: AppState['ablation']['heads']) => ctx.store.set({ ablation: { ...ctx.store.state.ablation, heads } });
  const top = toolButton(
    `Top ${TOP_K} induction`,
    'target',
    `Select the ${TOP_K} heads with the highest induction score for ablation`,
    () => {
      if (stats) set(topInductionHeads(stats, TOP_K));
    },
  );
  const none = toolButton('', 'clear-all', 'Clear the heads selected for ablation', () => set([]));
  const modeCtl = segmented<AblationMode>(
    'Ablation',
    [
      { value: 'zero', text: 'zero', title: "The heads' output z is 0 at every position" },
      { value: 'mean', text: 'mean', title: "The heads' output z is their mean z over this text's positions" },
    ],
    (m) => ctx.store.set({ ablation: withMode(ctx.store.state.ablation, m) }),
  );
  const chosen = el('span', { class: 'abl-chosen muted' });
  const run = el('button', { class: 'tool-btn primary abl-run', attrs: { type: 'button' } });
  run.addEventListener('click', () => void ablate());
  const root = el('span', { class: 'abl-controls' }, [
    el('label', { class: 'bar-label', text: 'Ablate' }),
    chosen,
    top,
    none,
    modeCtl.el,
    run,
  ]);

  const cleanRunId = (s: Readonly<AppState>) => s.whatIf?.clean.runId ?? s.payload?.runId ?? null;

  const ablate = async () => {
    const s = ctx.store.state;
    const runId = cleanRunId(s);
    if (runId === null || s.ablation.heads.length === 0) return;
    ctx.store.set({ whatIfStatus: { kind: 'running' } });
    try {
      await ctx.host.request('ablate', { runId, ablation: s.ablation });
    } catch (e) {
      ctx.store.set({ whatIfStatus: { kind: 'error', message: `Ablation failed: ${(e as Error).message}` } });
    }
  };

  const render = (s: Readonly<AppState>) => {
    const a = s.ablation;
    modeCtl.set(a.mode);
    chosen.textContent = a.heads.length ? a.heads.map(headLabelOf).join(', ') : 'no heads (✕ in a head to pick)';
    run.textContent = a.heads.length ? `Re-run with ${a.heads.length} ablated` : 'Re-run ablated';
    const busy = s.whatIfStatus.kind === 'running';
    run.disabled = busy || a.heads.length === 0 || !s.payload || (!!s.payload.interventions && !s.whatIf);
    run.title =
      run.disabled && !busy && a.heads.length > 0 ? 'This run is already intervened.' : `${a.mode} ablation of the selected heads`;
    top.disabled = !stats;
    none.disabled = a.heads.length === 0;
  };
  ctx.store.subscribe((s, changed) => {
    if (changed.has('ablation') || changed.has('whatIfStatus') || changed.has('payload') || changed.has('whatIf')) render(s);
  });
  render(ctx.store.state);

  return {
    el: root,
    setStats(s) {
      stats = s;
      top.disabled = !s;
    },
    isAblated: (layer, head) => hasHead(ctx.store.state.ablation.heads, layer, head),
    toggle(layer, head) {
      const a = ctx.store.state.ablation ?? EMPTY_ABLATION;
      set(toggleHead(a.heads, { layer, head }));
    },
  };
}
