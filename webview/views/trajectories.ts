// Layer trajectories: every token's path through the PCA of the residual stream (rows 0..n_layers,
// one basis for all tokens), the selected token highlighted, and its per-layer measures beside it.
import type { AnalysisPayload } from '../../src/shared/protocol';
import { el, serial } from '../dom';
import { mix, toCss } from '../shapeColor';
import { imageName } from '../shapeExport';
import { layerSeries, pathHover, pcAxisTitle, trajectorySeries, useWebGl2d } from '../shapeTrajectory';
import { rowLabel, tokenDisplay } from '../shapeText';
import type { AppState } from '../store';
import { ChartCard, axisStyle, baseLayout, c, type Data, type Layout } from './chart';
import type { TabFactory, ViewContext } from './context';

export const trajectoriesTab: TabFactory = (ctx: ViewContext) => {
  const b2 = el('button', { class: 'seg', text: '2D', attrs: { type: 'button' } });
  const b3 = el('button', { class: 'seg', text: '3D', attrs: { type: 'button' } });
  b2.addEventListener('click', () => ctx.store.set({ trajectoryDims: 2 }));
  b3.addEventListener('click', () => ctx.store.set({ trajectoryDims: 3 }));
  const selLabel = el('span', { class: 'sel-label' });
  const bar = el('div', { class: 'view-bar' }, [
    el('span', { class: 'segmented', attrs: { role: 'group', 'aria-label': 'Projection' } }, [b2, b3]),
    selLabel,
    el('span', { class: 'spacer' }),
    el('span', { class: 'hint', text: 'PCA of every token × layer · click a point to select its token' }),
  ]);
  const name = (what: string) => () => imageName(what, ctx.store.state.payload?.model.name ?? 'model', `pos${ctx.store.state.selectedPos}`);
  const main = new ChartCard(ctx, 'Trajectories through the layers', name('trajectories'), 'traj-main');
  const norms = new ChartCard(ctx, 'Norm ‖x‖ per layer', name('norms'), 'traj-side');
  const cos = new ChartCard(ctx, 'Cosines per layer', name('cosines'), 'traj-side');
  const root = el('div', { class: 'view traj-view' }, [bar, el('div', { class: 'traj-grid' }, [main.el, el('div', { class: 'traj-col' }, [norms.el, cos.el])])]);

  let active = false;
  let dirty = true;
  let paintedRun = -1;
  let hover: { others: string[]; selected: string[]; run: number; pos: number } | null = null;

  let clickBound = false;
  const bindClick = () => {
    if (clickBound) return;
    clickBound = true;
    main.gd.on('plotly_click', (ev) => {
      const pt = ev.points[0];
      const pos = pt?.customdata;
      if (typeof pos === 'number' && pos >= 0) ctx.select(pos);
    });
  };

  const drawMain = async (p: AnalysisPayload, s: Readonly<AppState>) => {
    const pal = ctx.palette();
    const rows = p.lens.rows;
    const T = p.lens.pos;
    const sel = Math.max(0, Math.min(T - 1, s.selectedPos));
    const series = trajectorySeries(p.walk.pca.coords, rows, T, sel);
    if (!hover || hover.run !== p.runId || hover.pos !== sel) {
      hover = {
        run: p.runId,
        pos: sel,
        others: pathHover(series.others, p.tokens, p.lens, p.vocab),
        selected: pathHover(series.selected, p.tokens, p.lens, p.vocab),
      };
    }
    const three = s.trajectoryDims === 3;
    const faded = c(mix(pal.bg, pal.fg, 0.35, pal.bg));
    const labelEvery = Math.max(1, Math.ceil(rows / 8));
    const selText = series.selected.row.map((r) => (r === 0 || r === rows - 1 || r % labelEvery === 0 ? rowLabel(r) : ''));
    const markerColors = series.selected.row.map((r) => toCss(mix(pal.bg, pal.blue, 0.3 + (0.7 * r) / Math.max(1, rows - 1), pal.bg)));
    const symbols = series.selected.row.map((r) => (r === 0 ? 'circle-open' : r === rows - 1 ? 'diamond' : 'circle'));
    const others: Record<string, unknown> = {
      type: three ? 'scatter3d' : useWebGl2d(rows, T) ? 'scattergl' : 'scatter',
      mode: 'lines+markers',
      x: series.others.x,
      y: series.others.y,
      customdata: series.others.pos,
      hovertext: hover.others,
      hoverinfo: 'text',
      line: { color: faded, width: 1 },
      marker: { color: faded, size: three ? 1.5 : 3 },
      opacity: three ? 0.45 : 0.55,
      name: 'other tokens',
    };
    const selected: Record<string, unknown> = {
      type: three ? 'scatter3d' : 'scatter',
      mode: 'lines+markers+text',
      x: series.selected.x,
      y: series.selected.y,
      customdata: series.selected.pos,
      hovertext: hover.selected,
      hoverinfo: 'text',
      text: selText,
      textposition: 'top center',
      textfont: { size: 10, color: c(pal.fg) },
      line: { color: c(pal.blue), width: three ? 5 : 2.5 },
      marker: three
        ? { color: markerColors, size: 4 }
        : { color: markerColors, size: 8, symbol: symbols, line: { color: c(pal.blue), width: 1.5 } },
      name: 'selected token',
    };
    if (three) {
      others.z = series.others.z;
      selected.z = series.selected.z;
    }
    const base = baseLayout(pal);
    const ax = axisStyle(pal);
    const ex = p.walk.pca.explained;
    const layout: Partial<Layout> = three
      ? {
          ...base,
          margin: { l: 0, r: 0, t: 0, b: 0 },
          uirevision: `${p.runId}-3d`,
          scene: {
            bgcolor: c(pal.bg),
            xaxis: { ...ax, title: { text: pcAxisTitle(0, ex), font: { size: 11, color: c(pal.fg) } }, showspikes: false },
            yaxis: { ...ax, title: { text: pcAxisTitle(1, ex), font: { size: 11, color: c(pal.fg) } }, showspikes: false },
            zaxis: { ...ax, title: { text: pcAxisTitle(2, ex), font: { size: 11, color: c(pal.fg) } }, showspikes: false },
            aspectmode: 'cube',
          },
        } as Partial<Layout>
      : {
          ...base,
          uirevision: `${p.runId}-2d`,
          xaxis: { ...ax, title: { text: pcAxisTitle(0, ex), font: { size: 11, color: c(pal.fg) } } },
          yaxis: { ...ax, title: { text: pcAxisTitle(1, ex), font: { size: 11, color: c(pal.fg) } } },
        };
    await main.draw([others as Data, selected as Data], layout);
    bindClick();
  };

  const drawSide = async (p: AnalysisPayload, s: Readonly<AppState>) => {
    const pal = ctx.palette();
    const sel = Math.max(0, Math.min(p.lens.pos - 1, s.selectedPos));
    const ls = layerSeries(p.walk, p.lens, sel);
    const base = baseLayout(pal);
    const ax = axisStyle(pal);
    const line = (y: (number | null)[], color: string, name: string, dash = 'solid'): Data =>
      ({
        type: 'scatter',
        mode: 'lines+markers',
        x: ls.x,
        y,
        name,
        line: { color, width: 2, dash },
        marker: { color, size: 5 },
        hovertemplate: `${name}<br>%{x}: %{y:.3f}<extra></extra>`,
      }) as Data;
    const xaxis = { ...ax, type: 'category' as const, tickangle: 0 };
    await norms.draw([line(ls.norm, c(pal.blue), '‖x‖')], {
      ...base,
      margin: { l: 44, r: 10, t: 6, b: 28 },
      xaxis,
      yaxis: { ...ax, rangemode: 'tozero' },
    });
    await cos.draw(
      [
        line(ls.cosToFinal, c(pal.blue), 'cos to final layer'),
        line(ls.cosNext, c(pal.green), 'cos to next token'),
        line(ls.cosPred, c(pal.orange), 'cos to prediction', 'dot'),
      ],
      {
        ...base,
        margin: { l: 44, r: 10, t: 6, b: 28 },
        showlegend: true,
        legend: { orientation: 'h', x: 0, y: 1.02, yanchor: 'bottom', font: { size: 10, color: c(pal.fg) }, bgcolor: 'rgba(0,0,0,0)' },
        xaxis,
        yaxis: { ...ax, range: [-1.05, 1.05], zeroline: true },
      },
    );
  };

  const render = serial(async () => {
    dirty = false;
    const s = ctx.store.state;
    const p = s.payload;
    b2.classList.toggle('on', s.trajectoryDims === 2);
    b3.classList.toggle('on', s.trajectoryDims === 3);
    b2.setAttribute('aria-pressed', String(s.trajectoryDims === 2));
    b3.setAttribute('aria-pressed', String(s.trajectoryDims === 3));
    if (!p) return;
    const tok = p.tokens[s.selectedPos];
    selLabel.textContent = tok ? `pos ${s.selectedPos} · ${tokenDisplay(tok).text}` : '';
    try {
      await Promise.all([drawMain(p, s), drawSide(p, s)]);
      if (paintedRun !== p.runId) {
        paintedRun = p.runId;
        ctx.painted('trajectories');
      }
    } catch (e) {
      ctx.host.log('error', `Trajectories failed to draw: ${(e as Error).message}`);
    }
  });

  ctx.store.subscribe((_s, changed) => {
    const relevant = ['payload', 'selectedPos', 'trajectoryDims', 'themeVersion'] as const;
    if (!relevant.some((k) => changed.has(k))) return;
    if (active) void render();
    else dirty = true;
  });

  return {
    id: 'trajectories',
    title: 'Trajectories',
    el: root,
    setActive(a: boolean) {
      active = a;
      if (a && (dirty || !main.isDrawn)) requestAnimationFrame(() => void render());
    },
  };
};
