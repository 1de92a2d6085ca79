// The ball: how the residual-stream norms are distributed over all positions at every row,
// before the final norm (they grow with depth) and after it (every vector lands near one
// sphere, the space the unembedding reads). Box plots per row, outliers as points (click one
// to select its token), the selected token's norms as a line.
import type { AnalysisPayload } from '../../src/shared/protocol';
import { el, lazyDraw, serial } from '../dom';
import { ballSummary, positionSeries, rowBoxes, type BoxStats } from '../shapeDynamicsBall';
import { imageName } from '../shapeExport';
import { fmt, plotlyToken, rowLabel, tokenDisplay } from '../shapeText';
import type { AppState } from '../store';
import { ChartCard, axisStyle, baseLayout, c, type Data, type Layout } from './chart';
import type { TabFactory, ViewContext } from './context';
import { fillNote, segmented } from './dynamicsCard';
import type { Rgba } from '../shapeColor';

export const ballTab: TabFactory = (ctx: ViewContext) => {
  let scale: 'linear' | 'log' = 'linear';
  const scaleCtl = segmented<'linear' | 'log'>(
    'Scale of the norms before the final norm',
    [
      { value: 'linear', text: 'linear' },
      { value: 'log', text: 'log', title: 'Log scale: outliers (often the first token) stay on the chart without flattening the rest' },
    ],
    (v) => {
      scale = v;
      void render();
    },
  );
  const selLabel = el('span', { class: 'sel-label' });
  const summary = el('span', { class: 'ball-summary' });
  const bar = el('div', { class: 'view-bar' }, [
    el('label', { class: 'bar-label', text: 'Before-norm scale' }),
    scaleCtl.el,
    el('span', { class: 'sep' }),
    selLabel,
    el('span', { class: 'spacer' }),
    summary,
  ]);
  const name = (what: string) => () => imageName(what, ctx.store.state.payload?.model.name ?? 'model');
  const before = new ChartCard(ctx, 'Before the final norm: ‖x‖ per layer', name('norms-before'), 'ball-before');
  const after = new ChartCard(ctx, 'After the final norm: ‖ln_final(x)‖ — the ball', name('norms-after'), 'ball-after');
  const afterNote = el('div', { class: 'dyn-note overlay' });
  afterNote.hidden = true;
  after.el.append(afterNote);
  const root = el('div', { class: 'view ball-view' }, [bar, el('div', { class: 'dyn-split ball-split' }, [before.el, after.el])]);

  const lazy = lazyDraw(
    () => render(),
    () => before.isDrawn,
  );
  let paintedRun = -1;
  const memo = new Map<string, BoxStats[]>();
  const boxes = (p: AnalysisPayload, which: 'norms' | 'normsFinal') => {
    const k = `${p.runId}:${which}`;
    if (!memo.has(k)) memo.set(k, rowBoxes(p.walk[which], p.lens.rows, p.lens.pos, 60));
    return memo.get(k)!;
  };

  for (const card of [before, after])
    card.on('plotly_click', (ev) => {
      const pos = ev.points[0]?.customdata;
      if (typeof pos === 'number' && pos >= 0) ctx.select(pos);
    });

  const draw = async (
    card: ChartCard,
    p: AnalysisPayload,
    s: Readonly<AppState>,
    arr: Float32Array,
    stats: BoxStats[],
    color: Rgba,
    log: boolean,
  ) => {
    const pal = ctx.palette();
    const rows = p.lens.rows;
    const T = p.lens.pos;
    const x = Array.from({ length: rows }, (_, r) => rowLabel(r));
    const sel = Math.max(0, Math.min(T - 1, s.selectedPos));
    const box = {
      type: 'box',
      name: 'all positions',
      x,
      q1: stats.map((b) => b.q1),
      median: stats.map((b) => b.median),
      q3: stats.map((b) => b.q3),
      lowerfence: stats.map((b) => b.lower),
      upperfence: stats.map((b) => b.upper),
      mean: stats.map((b) => b.mean),
      sd: stats.map((b) => b.std),
      boxmean: true,
      boxpoints: false,
      fillcolor: c(color, 0.22),
      line: { color: c(color), width: 1.5 },
      whiskerwidth: 0.5,
      hoverinfo: 'y',
    };
    const ox: string[] = [];
    const oy: number[] = [];
    const od: number[] = [];
    const ot: string[] = [];
    stats.forEach((b, r) =>
      b.outliers.forEach((pos) => {
        ox.push(x[r]!);
        oy.push(arr[r * T + pos]!);
        od.push(pos);
        ot.push(`pos ${pos} <b>${plotlyToken(p.tokens[pos]!.text)}</b><br>${rowLabel(r)}: ${fmt(arr[r * T + pos]!, 4)}`);
      }),
    );
    const outliers = {
      type: 'scatter',
      mode: 'markers',
      name: 'outliers',
      x: ox,
      y: oy,
      customdata: od,
      hovertext: ot,
      hoverinfo: 'text',
      marker: { color: c(color, 0.7), size: 5, symbol: 'circle-open' },
    };
    const series = positionSeries(arr, rows, T, sel);
    const selected = {
      type: 'scatter',
      mode: 'lines+markers',
      name: `pos ${sel}`,
      x,
      y: series,
      customdata: x.map(() => sel),
      hovertext: series.map((v, r) => `pos ${sel} <b>${plotlyToken(p.tokens[sel]!.text)}</b><br>${rowLabel(r)}: ${fmt(v ?? NaN, 4)}`),
      hoverinfo: 'text',
      line: { color: c(pal.orange), width: 2 },
      marker: { color: c(pal.orange), size: 6 },
    };
    const ax = axisStyle(pal);
    const every = Math.max(1, Math.ceil(rows / 12));
    const ticks = x.filter((_, i) => i % every === 0 || i === rows - 1);
    const layout: Partial<Layout> = {
      ...baseLayout(pal),
      margin: { l: 52, r: 10, t: 8, b: 30 },
      showlegend: true,
      legend: { orientation: 'h', x: 0, y: 1.02, yanchor: 'bottom', font: { size: 10, color: c(pal.fg) }, bgcolor: 'rgba(0,0,0,0)' },
      uirevision: `${p.runId}:${log}`,
      xaxis: { ...ax, type: 'category', tickangle: 0, tickmode: 'array', tickvals: ticks, ticktext: ticks },
      yaxis: {
        ...ax,
        type: log ? 'log' : 'linear',
        rangemode: log ? undefined : 'tozero',
        title: { text: 'norm', font: { size: 10, color: c(pal.muted) } },
      },
    };
    await card.draw([box as Data, outliers as Data, selected as Data], layout);
  };

  const render = serial(async () => {
    scaleCtl.set(scale);
    const s = ctx.store.state;
    const p = s.payload;
    if (!p) return;
    const T = p.lens.pos;
    const rows = p.lens.rows;
    const sel = Math.max(0, Math.min(T - 1, s.selectedPos));
    const tok = p.tokens[sel];
    selLabel.textContent = tok ? `line: pos ${sel} · ${tokenDisplay(tok).text}` : '';
    const hasAfter = p.walk.normsFinal instanceof Float32Array && p.walk.normsFinal.length === rows * T;
    try {
      await draw(before, p, s, p.walk.norms, boxes(p, 'norms'), ctx.palette().blue, scale === 'log');
      if (hasAfter) {
        afterNote.hidden = true;
        after.gd.style.visibility = '';
        await draw(after, p, s, p.walk.normsFinal, boxes(p, 'normsFinal'), ctx.palette().purple, false);
        const b = ballSummary(p.walk.norms, p.walk.normsFinal, rows, T);
        summary.textContent = `after the final norm: radius ${fmt(b.radius, 3)}, spread ${fmt(b.cvAfter * 100, 2)}% · before: spread ${fmt(b.cvBefore * 100, 2)}%, median ×${fmt(b.growth, 2)} from emb to output`;
        summary.title =
          'Spread = standard deviation / mean over every row and position. After ln_final the vectors sit close to one sphere; before it their norms grow with depth.';
      } else {
        summary.textContent = '';
        fillNote(
          afterNote,
          'info',
          'The norms after the final norm are not in this analysis.',
          'Analyse the text again with this version of the extension.',
        );
        after.gd.style.visibility = 'hidden';
      }
      if (paintedRun !== p.runId) {
        paintedRun = p.runId;
        ctx.painted('ball');
      }
    } catch (e) {
      ctx.host.log('error', `The ball view failed to draw: ${(e as Error).message}`);
    }
  });

  ctx.store.subscribe((_s, changed) => {
    if (changed.has('payload')) memo.clear();
    const relevant = ['payload', 'selectedPos', 'themeVersion'] as const;
    if (!relevant.some((k) => changed.has(k))) return;
    lazy.invalidate();
  });

  return {
    id: 'ball',
    title: 'The Ball',
    el: root,
    setActive: lazy.setActive,
  };
};
