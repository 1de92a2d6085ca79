// Layer trajectories: every token's path through the PCA of the residual stream (rows 0..n_layers,
// one basis for all tokens), the selected token highlighted, and its per-layer measures beside it.
// With a what-if pair compared, the other run's path of the selected token and its measures are
// drawn too (the intervened run's walk is in its clean run's axes: where does it leave it?).
import type { AnalysisPayload } from '../../src/shared/protocol';
import { el, lazyDraw, serial } from '../dom';
import { mix, toCss } from '../shapeColor';
import { imageName } from '../shapeExport';
import { allPaths, layerSeries, manyPoints, pathHover, pcAxisTitle, tokenPath, type PathSeries } from '../shapeTrajectory';
import { rowLabel, tokenDisplay } from '../shapeText';
import type { AppState } from '../store';
import { comparison, roleIn, sameAxes } from '../shapeWhatIf';
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
  const root = el('div', { class: 'view traj-view' }, [
    bar,
    el('div', { class: 'traj-grid' }, [main.el, el('div', { class: 'traj-col' }, [norms.el, cos.el])]),
  ]);

  const lazy = lazyDraw(
    () => render(),
    () => main.isDrawn,
  );
  let paintedRun = -1;
  // All paths, built once per run: the same arrays every draw, so Plotly.react leaves that
  // trace alone when only the selection changes.
  let cloud: { run: number; series: PathSeries; hover: string[] } | null = null;
  let mainKey = '';

  main.on('plotly_click', (ev) => {
    const pos = ev.points[0]?.customdata;
    if (typeof pos === 'number' && pos >= 0) ctx.select(pos);
  });

  const drawMain = async (p: AnalysisPayload, s: Readonly<AppState>) => {
    const pal = ctx.palette();
    const rows = p.lens.rows;
    const T = p.lens.pos;
    const sel = Math.max(0, Math.min(T - 1, s.selectedPos));
    if (cloud?.run !== p.runId) {
      const series = allPaths(p.walk.pca.coords, rows, T);
      cloud = { run: p.runId, series, hover: pathHover(series, p.tokens, p.lens, p.vocab) };
    }
    const path = tokenPath(p.walk.pca.coords, rows, T, sel);
    const pathText = pathHover(path, p.tokens, p.lens, p.vocab);
    const three = s.trajectoryDims === 3;
    // a what-if pair compared, both walks in one run's axes: the other run's path of this token
    const cmp = comparison(s.whatIf, p);
    const pair = cmp && sameAxes(cmp.shown, cmp.other) ? cmp : null;
    const otherName = pair ? `${roleIn(pair, pair.other)} run` : '';
    const otherPath = pair ? tokenPath(pair.other.walk.pca.coords, rows, T, sel) : null;
    const otherText = pair
      ? pathHover(otherPath!, pair.other.tokens, pair.other.lens, pair.other.vocab).map((t) => (t ? `${otherName}<br>${t}` : t))
      : [];
    const faded = c(mix(pal.bg, pal.fg, 0.35, pal.bg));
    // label every layer of a shallow model; a deep one gets emb, the middle and the output
    const mid = Math.round((rows - 1) / 2);
    const selText = path.row.map((r) => (rows <= 9 || r === 0 || r === rows - 1 || r === mid ? rowLabel(r) : ''));
    const markerColors = path.row.map((r) => toCss(mix(pal.bg, pal.blue, 0.3 + (0.7 * r) / Math.max(1, rows - 1), pal.bg)));
    const symbols = path.row.map((r) => (r === 0 ? 'circle-open' : r === rows - 1 ? 'diamond' : 'circle'));
    /** A series' points, positions and hovers as trace attributes (z in 3D). */
    const points = (series: PathSeries, hover: string[]): Record<string, unknown> => ({
      x: series.x,
      y: series.y,
      ...(three ? { z: series.z } : {}),
      customdata: series.pos,
      hovertext: hover,
      hoverinfo: 'text',
    });
    /** Trace attributes as Plotly.restyle takes them: each value wrapped for one trace. */
    const restyleOf = (attrs: Record<string, unknown>) => Object.fromEntries(Object.entries(attrs).map(([k, v]) => [k, [v]]));
    const drawKey = `${p.runId}:${s.trajectoryDims}:${s.themeVersion}:${pair?.other.runId ?? ''}`;
    if (mainKey === drawKey && main.isDrawn) {
      if (otherPath) await main.restyle(restyleOf(points(otherPath, otherText)), [2]);
      // only the selection moved: replace the selected trace's points, leave the cloud alone
      return main.restyle(restyleOf({ ...points(path, pathText), text: selText, 'marker.color': markerColors }), [1]);
    }
    mainKey = drawKey;
    const others = {
      type: three ? 'scatter3d' : 'scatter',
      // SVG markers for tens of thousands of points are slow; WebGL 2D (scattergl) needs eval,
      // which the webview's CSP forbids. So many points = one SVG path without markers.
      mode: manyPoints(rows, T) ? 'lines' : 'lines+markers',
      ...points(cloud.series, cloud.hover),
      line: { color: faded, width: 1 },
      marker: { color: faded, size: three ? 1.5 : 3 },
      opacity: (three ? 0.45 : 0.55) * (T > 200 ? 0.5 : 1), // many paths: fade more so the selected one stands out
      name: 'other tokens',
    };
    const selected = {
      type: three ? 'scatter3d' : 'scatter',
      mode: 'lines+markers+text',
      ...points(path, pathText),
      text: selText,
      textposition: 'top center',
      textfont: { size: 10, color: c(pal.fg) },
      line: { color: c(pal.blue), width: three ? 5 : 2.5 },
      marker: three
        ? { color: markerColors, size: 4 }
        : { color: markerColors, size: 8, symbol: symbols, line: { color: c(pal.blue), width: 1.5 } },
      name: pair ? `selected token, ${roleIn(pair, pair.shown)} run` : 'selected token',
      // gl3d draws translucent traces after opaque ones; a (barely) translucent selected path is
      // drawn after the faded cloud instead of disappearing behind it
      opacity: three ? 0.99 : 1,
    };
    const traces = [others as Data, selected as Data];
    if (otherPath) {
      const compared = {
        type: three ? 'scatter3d' : 'scatter',
        mode: 'lines+markers',
        ...points(otherPath, otherText),
        line: { color: c(pal.orange), width: three ? 4 : 2, dash: 'dash' },
        marker: three ? { color: c(pal.orange), size: 3 } : { color: c(pal.orange), size: 6, symbol: symbols },
        name: `selected token, ${otherName}`,
        opacity: three ? 0.99 : 1,
      };
      traces.push(compared as Data);
    }
    const base = baseLayout(pal);
    const ax = axisStyle(pal);
    const ex = p.walk.pca.explained;
    // a twin's walk is in its clean run's axes
    const axesOf =
      p.walk.pca.axesOf === undefined
        ? undefined
        : s.whatIf && s.whatIf.clean.runId === p.walk.pca.axesOf
          ? roleIn(s.whatIf, s.whatIf.clean)
          : 'unintervened';
    const legend = {
      showlegend: !!pair,
      legend: { orientation: 'h', x: 0, y: 1.02, yanchor: 'bottom', font: { size: 10, color: c(pal.fg) }, bgcolor: 'rgba(0,0,0,0)' },
    } as const;
    const layout: Partial<Layout> = three
      ? ({
          ...base,
          margin: { l: 0, r: 0, t: 0, b: 0 },
          ...legend,
          uirevision: `${p.runId}-3d`,
          scene: {
            bgcolor: c(pal.bg),
            xaxis: { ...ax, title: { text: pcAxisTitle(0, ex, axesOf), font: { size: 11, color: c(pal.fg) } }, showspikes: false },
            yaxis: { ...ax, title: { text: pcAxisTitle(1, ex, axesOf), font: { size: 11, color: c(pal.fg) } }, showspikes: false },
            zaxis: { ...ax, title: { text: pcAxisTitle(2, ex, axesOf), font: { size: 11, color: c(pal.fg) } }, showspikes: false },
            aspectmode: 'cube',
          },
        } as Partial<Layout>)
      : {
          ...base,
          ...legend,
          uirevision: `${p.runId}-2d`,
          xaxis: { ...ax, title: { text: pcAxisTitle(0, ex, axesOf), font: { size: 11, color: c(pal.fg) } } },
          yaxis: { ...ax, title: { text: pcAxisTitle(1, ex, axesOf), font: { size: 11, color: c(pal.fg) } } },
        };
    await main.draw(traces, layout);
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
    const every = Math.max(1, Math.ceil(ls.x.length / 10));
    const ticks = ls.x.filter((_, i) => i % every === 0 || i === ls.x.length - 1);
    const xaxis = { ...ax, type: 'category' as const, tickangle: 0, tickmode: 'array' as const, tickvals: ticks, ticktext: ticks };
    // a what-if pair compared: the other run's ‖x‖ and cosine to the final layer, dashed
    const cmp = comparison(s.whatIf, p);
    const other = cmp ? layerSeries(cmp.other.walk, cmp.other.lens, sel) : null;
    const otherName = cmp ? roleIn(cmp, cmp.other) : '';
    const normTraces = [line(ls.norm, c(pal.blue), cmp ? `‖x‖ ${roleIn(cmp, cmp.shown)}` : '‖x‖')];
    if (ls.normFinal) normTraces.push(line(ls.normFinal, c(pal.purple), '‖ln_final(x)‖', 'dot'));
    if (other) normTraces.push(line(other.norm, c(pal.orange), `‖x‖ ${otherName}`, 'dash'));
    await norms.draw(normTraces, {
      ...base,
      margin: { l: 44, r: 10, t: 6, b: 28 },
      showlegend: !!ls.normFinal || !!other,
      legend: { orientation: 'h', x: 0, y: 1.02, yanchor: 'bottom', font: { size: 10, color: c(pal.fg) }, bgcolor: 'rgba(0,0,0,0)' },
      xaxis,
      yaxis: { ...ax, rangemode: 'tozero' },
    });
    await cos.draw(
      [
        line(ls.cosToFinal, c(pal.blue), 'cos to final layer'),
        line(ls.cosNext, c(pal.green), 'cos to next token'),
        line(ls.cosPred, c(pal.orange), 'cos to prediction', 'dot'),
        ...(other ? [line(other.cosNext, c(pal.green), `cos to next token, ${otherName}`, 'dash')] : []),
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
    const relevant = ['payload', 'selectedPos', 'trajectoryDims', 'themeVersion', 'whatIf'] as const;
    if (!relevant.some((k) => changed.has(k))) return;
    lazy.invalidate();
  });

  return {
    id: 'trajectories',
    title: 'Trajectories',
    el: root,
    setActive: lazy.setActive,
  };
};
