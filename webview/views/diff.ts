// Prompt diff ("where do these two prompts start to diverge?"): after Compare Prompts, the lens
// top-1 per layer at the last position of both runs side by side, both last-token trajectories
// in one PCA basis, and the per-layer cosine between the two last-token residual streams with
// the row from which they stay apart.
import { clear, el, lazyDraw, serial } from '../dom';
import { mix, toCss } from '../shapeColor';
import { component, diffRows, diffTableSvg, divergeSentence, isDiffResult, sideSummary, type DiffRow } from '../shapeDynamicsDiff';
import { imageName } from '../shapeExport';
import { pcAxisTitle } from '../shapeTrajectory';
import { clip, escapePlotly, fmt, pct, plotlyToken, rowLabel, rowTitle, tokenDisplay, visibleText } from '../shapeText';
import type { AppState, PromptDiff } from '../store';
import { ChartCard, axisStyle, baseLayout, c, type Data, type Layout } from './chart';
import type { TabFactory, ViewContext } from './context';
import { CustomCard, fillNote } from './dynamicsCard';
import { createPatchingCard } from './patchingCard';
import { commandButton } from './commandButton';

type Shape = NonNullable<Layout['shapes']>[number];

/** A source label (file name, "clipboard") with control and bidi characters made visible, spaces kept. */
const labelText = (s: string) => s.split(' ').map(visibleText).join(' ');

export const diffTab: TabFactory = (ctx: ViewContext) => {
  const sideA = el('span', { class: 'diff-side a' });
  const sideB = el('span', { class: 'diff-side b' });
  const sentence = el('span', { class: 'diff-sentence' });
  const bar = el('div', { class: 'view-bar' }, [
    sideA,
    el('span', { class: 'muted', text: 'vs' }),
    sideB,
    el('span', { class: 'sep' }),
    sentence,
  ]);
  const note = el('div', { class: 'dyn-note diff-empty' });
  const name = (what: string) => () => imageName(what, ctx.store.state.promptDiff?.a.model.name ?? 'model');
  let rows: DiffRow[] = [];
  const table = el('div', { class: 'diff-table-wrap' });
  const tableCard = new CustomCard(
    ctx,
    'Lens top-1 at the last token',
    name('prompt-diff-lens'),
    {
      svg: () => {
        const d = ctx.store.state.promptDiff;
        if (!d || rows.length === 0) return null;
        const pal = ctx.palette();
        return diffTableSvg(rows, d.labels, d.diff.divergeRow, rowLabel, {
          background: toCss(pal.bg),
          foreground: toCss(pal.fg),
          muted: toCss(pal.muted),
          border: toCss(mix(pal.bg, pal.fg, 0.2, pal.bg)),
          changed: toCss(mix(pal.bg, pal.orange, 0.16, pal.bg)),
          diverge: toCss(pal.red),
          fontFamily: pal.fontFamily,
          monoFamily: pal.monoFamily,
        });
      },
    },
    'diff-table-card',
  );
  tableCard.body.append(table);
  const traj = new ChartCard(ctx, 'Last-token trajectories (one PCA basis)', name('prompt-diff-trajectories'), 'diff-traj');
  const cos = new ChartCard(ctx, 'cos(A, B) of the last-token residual stream', name('prompt-diff-cosine'), 'diff-cos');
  const content = el('div', { class: 'dyn-split diff-split' }, [tableCard.el, el('div', { class: 'dyn-col' }, [traj.el, cos.el])]);
  const patching = createPatchingCard(ctx);
  const root = el('div', { class: 'view diff-view' }, [bar, note, content, patching.el]);

  const lazy = lazyDraw(
    () => render(),
    () => traj.isDrawn,
  );

  const drawTable = (d: PromptDiff) => {
    clear(table);
    const t = el('table', { class: 'diff-table' });
    const lastTok = (p: PromptDiff['a']) => tokenDisplay(p.tokens[p.tokens.length - 1] ?? { text: '' }).text;
    t.append(
      el('thead', {}, [
        el('tr', {}, [
          el('th', { text: 'row', attrs: { scope: 'col' } }),
          el('th', { class: 'a', text: `A · after “${clip(lastTok(d.a), 14)}”`, attrs: { scope: 'col' }, title: labelText(d.labels[0]) }),
          el('th', { class: 'num', text: 'p', attrs: { scope: 'col' } }),
          el('th', { class: 'b', text: `B · after “${clip(lastTok(d.b), 14)}”`, attrs: { scope: 'col' }, title: labelText(d.labels[1]) }),
          el('th', { class: 'num', text: 'p', attrs: { scope: 'col' } }),
          el('th', { class: 'num', text: 'cos', attrs: { scope: 'col' }, title: 'cosine of the two last-token residual streams' }),
        ]),
      ]),
    );
    const body = el('tbody');
    for (const r of rows) {
      const tr = el('tr', { class: `${r.same ? 'same' : 'changed'}${d.diff.divergeRow === r.row ? ' diverge' : ''}` }, [
        el('td', { class: 'muted', text: rowLabel(r.row), title: rowTitle(r.row, rows.length) }),
        el('td', { class: 'mono', text: tokenDisplay({ text: r.a.text }).text }),
        el('td', { class: 'num', text: pct(r.a.prob) }),
        el('td', { class: 'mono', text: tokenDisplay({ text: r.b.text }).text }),
        el('td', { class: 'num', text: pct(r.b.prob) }),
        el('td', { class: 'num', text: fmt(r.cos, 3) }),
      ]);
      if (d.diff.divergeRow === r.row) tr.title = 'From this row on the two walks stay apart (cos < 0.9).';
      body.append(tr);
    }
    t.append(body);
    table.append(t);
  };

  const drawTraj = async (d: PromptDiff) => {
    const pal = ctx.palette();
    const { diff } = d;
    const R = diff.rows;
    const labels = Array.from({ length: R }, (_, r) => rowLabel(r));
    const mid = Math.round((R - 1) / 2);
    const text = labels.map((l, r) => (R <= 9 || r === 0 || r === R - 1 || r === mid ? l : ''));
    const trace = (coords: Float32Array, color: string, tag: string, label: string, side: 'a' | 'b'): Data => {
      const nm = `${tag}: ${escapePlotly(clip(labelText(label), 40))}`;
      const x = component(coords, R, diff.k, 0);
      const y = diff.k > 1 ? component(coords, R, diff.k, 1) : x.map(() => 0);
      const p = side === 'a' ? d.a : d.b;
      return {
        type: 'scatter',
        mode: 'lines+markers+text',
        name: nm,
        x,
        y,
        text,
        textposition: side === 'a' ? 'top center' : 'bottom center',
        cliponaxis: false, // a row label at the plot's edge is drawn whole, in the margin
        textfont: { size: 10, color },
        hovertext: labels.map(
          (l, r) => `${nm} · ${l}<br>top-1 ${plotlyToken(rows[r]?.[side].text ?? '')} ${pct(rows[r]?.[side].prob ?? NaN)}`,
        ),
        hoverinfo: 'text',
        line: { color, width: 2.5 },
        marker: {
          color,
          size: labels.map((_, r) => (r === diff.divergeRow ? 11 : 7)),
          symbol: labels.map((_, r) => (r === 0 ? 'circle-open' : r === R - 1 ? 'diamond' : 'circle')),
        },
        customdata: [p.runId],
      } as Data;
    };
    const ax = axisStyle(pal);
    await traj.draw([trace(diff.coordsA, c(pal.blue), 'A', d.labels[0], 'a'), trace(diff.coordsB, c(pal.orange), 'B', d.labels[1], 'b')], {
      ...baseLayout(pal),
      showlegend: true,
      legend: { orientation: 'h', x: 0, y: 1.02, yanchor: 'bottom', font: { size: 10, color: c(pal.fg) }, bgcolor: 'rgba(0,0,0,0)' },
      margin: { l: 48, r: 14, t: 16, b: 36 },
      xaxis: { ...ax, title: { text: pcAxisTitle(0, diff.explained), font: { size: 11, color: c(pal.fg) } } },
      yaxis: { ...ax, title: { text: pcAxisTitle(1, diff.explained), font: { size: 11, color: c(pal.fg) } } },
    });
  };

  const drawCos = async (d: PromptDiff) => {
    const pal = ctx.palette();
    const { diff } = d;
    const x = Array.from({ length: diff.rows }, (_, r) => rowLabel(r));
    const y = Array.from(diff.cosine, (v) => (Number.isFinite(v) ? v : null));
    const shapes: Shape[] = [
      { type: 'line', xref: 'paper', yref: 'y', x0: 0, x1: 1, y0: 0.9, y1: 0.9, line: { color: c(pal.muted), width: 1, dash: 'dot' } },
    ];
    const annotations: NonNullable<Layout['annotations']> = [];
    if (diff.divergeRow !== null) {
      shapes.push({
        type: 'rect',
        xref: 'x',
        yref: 'paper',
        x0: diff.divergeRow - 0.5,
        x1: diff.rows - 0.5,
        y0: 0,
        y1: 1,
        line: { width: 0 },
        fillcolor: c(pal.red, 0.1),
        layer: 'below',
      });
      shapes.push({
        type: 'line',
        xref: 'x',
        yref: 'paper',
        x0: diff.divergeRow - 0.5,
        x1: diff.divergeRow - 0.5,
        y0: 0,
        y1: 1,
        line: { color: c(pal.red), width: 1.5 },
      });
      annotations.push({
        x: diff.divergeRow - 0.5,
        y: 1,
        xref: 'x',
        yref: 'paper',
        text: `diverge from ${rowLabel(diff.divergeRow)}`,
        showarrow: false,
        xanchor: 'left',
        yanchor: 'top',
        xshift: 4,
        font: { size: 10, color: c(pal.red) },
      });
    }
    const ax = axisStyle(pal);
    const every = Math.max(1, Math.ceil(x.length / 10));
    const ticks = x.filter((_, i) => i % every === 0 || i === x.length - 1);
    let lo = 1;
    for (const v of y) if (v !== null && v < lo) lo = v;
    await cos.draw(
      [
        {
          type: 'scatter',
          mode: 'lines+markers',
          x,
          y,
          name: 'cos(A, B)',
          line: { color: c(pal.purple), width: 2 },
          marker: { color: y.map((_, r) => (diff.divergeRow !== null && r >= diff.divergeRow ? c(pal.red) : c(pal.purple))), size: 7 },
          hovertemplate: 'cos(A, B) at %{x}: %{y:.3f}<extra></extra>',
        } as Data,
      ],
      {
        ...baseLayout(pal),
        margin: { l: 44, r: 10, t: 8, b: 28 },
        shapes,
        annotations,
        xaxis: { ...ax, type: 'category', tickangle: 0, tickmode: 'array', tickvals: ticks, ticktext: ticks },
        yaxis: { ...ax, range: [Math.min(0, lo - 0.05), 1.05], title: { text: 'cos', font: { size: 10, color: c(pal.muted) } } },
      },
    );
  };

  const render = serial(async () => {
    const s: Readonly<AppState> = ctx.store.state;
    const d = s.promptDiff;
    if (!d || !isDiffResult(d.diff, d.a.lens.rows) || d.b.lens.rows !== d.a.lens.rows) {
      content.hidden = bar.hidden = true; // (no sides to name)
      patching.el.hidden = true;
      clear(sideA);
      clear(sideB);
      sentence.textContent = '';
      if (d) fillNote(note, 'error', 'The prompt comparison could not be shown: its data is inconsistent.');
      else
        fillNote(
          note,
          'info',
          'No prompt comparison yet.',
          'Run “Transformer Dynamics: Compare Prompts…” (two selections of one editor, the selection against the clipboard, or against another editor) to see where two prompts start to diverge.',
          el('div', { class: 'empty-actions start' }, [
            commandButton(ctx.host, 'Compare Prompts…', 'diff', 'Compare the selection in the editor beside the panel', 'comparePrompts'),
          ]),
        );
      return;
    }
    note.hidden = true;
    content.hidden = bar.hidden = false;
    patching.el.hidden = false;
    const side = (box: HTMLElement, tag: string, label: string, p: PromptDiff['a']) => {
      clear(box);
      const sum = sideSummary(p, labelText(label));
      box.append(
        el('span', { class: 'diff-tag', text: tag }),
        el('span', { class: 'diff-label', text: clip(labelText(label), 40) }),
        el('span', { class: sum.cut ? 'diff-count warn' : 'diff-count muted', text: ` ${sum.count}` }),
      );
      box.title = sum.title;
    };
    side(sideA, 'A', d.labels[0], d.a);
    side(sideB, 'B', d.labels[1], d.b);
    sentence.textContent = divergeSentence(d.diff, (r) => rowTitle(r, d.diff.rows));
    rows = diffRows(d.a, d.b, d.diff);
    drawTable(d);
    try {
      await Promise.all([drawTraj(d), drawCos(d), patching.show(d)]);
    } catch (e) {
      ctx.host.log('error', `Prompt diff failed to draw: ${(e as Error).message}`);
    }
  });

  ctx.store.subscribe((_s, changed) => {
    if (!changed.has('promptDiff') && !changed.has('themeVersion')) return;
    lazy.invalidate();
  });

  return {
    id: 'diff',
    title: 'Diff',
    el: root,
    setActive: lazy.setActive,
  };
};
