// The panel header: model, token count and run time, the truncation notice, run state
// (progress, error, cancelled) and exporting the analysis as JSON or CSV. On the tabs that show
// other texts (Diff, Completions) only the model: the analysis's figures are not on show there.
import '@vscode-elements/elements/dist/vscode-progress-ring/index.js';
import { clear, el, icon, toolButton } from '../dom';
import { runtimeMs, truncationText } from '../../src/shared/analysis';
import { duration } from '../shapeText';
import { tabShowsAnalysis } from '../shapeState';
import type { AppState, Key } from '../store';
import type { ViewContext } from './context';

export function createHeader(ctx: ViewContext): HTMLElement {
  const name = el('span', { class: 'model-name' });
  const arch = el('span', { class: 'badge' });
  const meta = el('span', { class: 'meta' });
  const state = el('span', { class: 'run-state', attrs: { 'aria-live': 'polite' } });
  const exportStatus = el('span', { class: 'export-status', attrs: { 'aria-live': 'polite' } });
  const exportAs = async (format: 'json' | 'csv') => {
    exportStatus.textContent = '';
    exportStatus.classList.remove('error');
    try {
      const path = await ctx.host.request('exportAnalysis', { format });
      exportStatus.textContent = path ? `Saved ${path.split(/[\\/]/).pop() ?? path}` : '';
      exportStatus.title = path ?? '';
    } catch (e) {
      exportStatus.textContent = `Export failed: ${(e as Error).message}`;
      exportStatus.classList.add('error');
    }
  };
  const json = toolButton('JSON', 'json', 'Export the analysis as JSON', () => void exportAs('json'));
  const csv = toolButton('CSV', 'table', 'Export the logit-lens table as CSV', () => void exportAs('csv'));
  const notice = el('div', { class: 'notice' });
  const banner = el('div', { class: 'banner' });
  const root = el('header', { class: 'td-header' }, [
    el('div', { class: 'title-row' }, [name, arch, meta, el('span', { class: 'spacer' }), state, exportStatus, json, csv]),
    notice,
    banner,
  ]);

  const render = (s: Readonly<AppState>) => {
    const p = s.payload;
    const analysisOnShow = !!p && tabShowsAnalysis(s.tab);
    name.textContent = p?.model.name ?? s.modelName ?? 'No model';
    arch.textContent = p ? p.model.architecture : '';
    arch.hidden = !p;
    if (p) {
      const m = p.model;
      const dims = `${m.n_layers} layers · d_model ${m.d_model}`;
      meta.textContent = analysisOnShow ? `${p.tokens.length} tokens · ${dims} · ${duration(p.timings.totalMs)}` : dims;
      const t = p.timings;
      const inRuntime = runtimeMs(t);
      meta.title = !analysisOnShow
        ? ''
        : `tokenize ${duration(t.tokenizeMs)}, forward ${duration(t.forwardMs)}, lens ${duration(t.lensMs)}, metrics ${duration(t.metricsMs)}` +
          (inRuntime === null ? '' : ` (in onnxruntime: ${duration(inRuntime)})`);
    } else {
      meta.textContent = '';
      meta.title = '';
    }
    json.disabled = csv.disabled = !p || s.runState.kind === 'running';
    json.hidden = csv.hidden = !analysisOnShow; // they export the analysis (none yet, or not on show)

    clear(notice);
    notice.hidden = !analysisOnShow || !p?.truncation;
    if (analysisOnShow && p?.truncation) {
      notice.append(icon('warning'), el('span', { text: `Analysed ${truncationText(p.truncation)} (context window or token limit).` }));
    }

    clear(state);
    clear(banner);
    banner.hidden = true;
    banner.className = 'banner';
    const rs = s.runState;
    if (rs.kind === 'running') {
      state.append(
        el('vscode-progress-ring', { class: 'ring', attrs: { 'aria-label': 'Running' } }),
        el('span', { text: rs.message || 'Running…', attrs: { title: rs.message || 'Running…' } }),
      );
    } else if (rs.kind === 'error') {
      banner.hidden = false;
      banner.classList.add('error');
      banner.append(icon('error'), el('span', { text: rs.message }));
    } else if (rs.kind === 'cancelled') {
      state.append(icon('circle-slash'), el('span', { text: 'Cancelled' }));
    }
  };
  const keys: Key[] = ['payload', 'runState', 'modelName', 'tab'];
  ctx.store.subscribe((s, changed) => {
    if (keys.some((k) => changed.has(k))) render(s);
  });
  render(ctx.store.state);
  return root;
}
