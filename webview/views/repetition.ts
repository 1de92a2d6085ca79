// Repetition: token × token cosine similarity of the residual stream at a chosen layer (lower
// triangle), repeated n-grams outlined on it, in-context copy mass per position, and a list
// of the repeats. Other layers' matrices are requested from the host and cached.
import '@vscode-elements/elements/dist/vscode-single-select/index.js';
import '@vscode-elements/elements/dist/vscode-option/index.js';
import '@vscode-elements/elements/dist/vscode-progress-ring/index.js';
import type { AnalysisPayload } from '../../src/shared/protocol';
import { clear, el, lazyDraw, serial } from '../dom';
import { mix, plotlyColorscale, type Rgba } from '../shapeColor';
import { imageName } from '../shapeExport';
import {
  copyMassSeries,
  isSimilarityMatrix,
  lowerTriangle,
  offDiagonalRange,
  rectOutlines,
  repeatRuns,
  repeatedSpans,
  runRect,
  type RepeatRun,
} from '../shapeRepetition';
import { fmt, pct, plotlyToken, rowLabel, rowTitle, tokenDisplay, clip } from '../shapeText';
import type { AppState } from '../store';
import { ChartCard, axisStyle, baseLayout, c, type Data, type Layout } from './chart';
import type { TabFactory, ViewContext } from './context';
import { comparison, copyMassDelta, copyMassRow, pairDelta, pairNames, repeatCopyMass, type Comparison } from '../shapeWhatIf';

type Shape = NonNullable<Layout['shapes']>[number];

const MIN_N_CHOICES = [1, 2, 3, 4, 6, 8];

export const repetitionTab: TabFactory = (ctx: ViewContext) => {
  const slider = el('input', { class: 'layer-slider', attrs: { type: 'range', min: 0, max: 1, step: 1, 'aria-label': 'Layer' } });
  const layerName = el('span', { class: 'layer-name' });
  const ring = el('vscode-progress-ring', { class: 'ring' });
  ring.hidden = true;
  const minSelect = el('vscode-single-select', {
    class: 'n-select',
    attrs: { 'aria-label': 'Shortest repeat to outline' },
  }) as HTMLElement & { value: string };
  let minN = 2;
  for (const n of MIN_N_CHOICES) minSelect.append(el('vscode-option', { text: `${n}+ tokens`, attrs: { value: n, selected: n === minN } }));
  const runCount = el('span', { class: 'muted' });
  const error = el('span', { class: 'chart-status error' });
  const bar = el('div', { class: 'view-bar' }, [
    el('label', { class: 'bar-label', text: 'Layer' }),
    slider,
    layerName,
    ring,
    el('span', { class: 'sep' }),
    el('label', { class: 'bar-label', text: 'Outline repeats of' }),
    minSelect,
    runCount,
    error,
    el('span', { class: 'spacer' }),
    el('span', { class: 'hint', text: 'click a cell (i, j): select token i, highlight j' }),
  ]);
  const name = (what: string) => () =>
    imageName(what, ctx.store.state.payload?.model.name ?? 'model', rowLabel(ctx.store.state.similarityRow));
  const heat = new ChartCard(ctx, 'Cosine similarity of tokens (j ≤ i)', name('similarity'), 'rep-heat');
  const copy = new ChartCard(ctx, 'In-context copy mass', name('copy-mass'), 'rep-copy');
  const list = el('div', { class: 'ngram-list', attrs: { role: 'list' } });
  const listCard = el('section', { class: 'chart-card rep-list' }, [
    el('header', { class: 'chart-head' }, [el('h3', { text: 'Repeats (length · text · from → to)' })]),
    list,
  ]);
  const root = el('div', { class: 'view rep-view' }, [
    bar,
    el('div', { class: 'rep-grid' }, [heat.el, el('div', { class: 'rep-col' }, [copy.el, listCard])]),
  ]);

  const cache = new Map<string, Float32Array>();
  const lazy = lazyDraw(
    () => render(),
    () => heat.isDrawn,
  );
  let paintedRun = -1;
  let runs: RepeatRun[] = [];
  let runsFor = '';
  let fetchTimer = 0;

  const key = (p: AnalysisPayload, row: number) => `${p.runId}:${row}`;

  // Plotly.react skips traces whose arrays are the same objects as last time, so the heavy
  // arrays are built once per (run, row) and reused while only the selection changes.
  const memo = new Map<string, unknown>();
  let heatKey = '';
  let copyKey = '';
  function once<V>(k: string, make: () => V): V {
    if (!memo.has(k)) memo.set(k, make());
    return memo.get(k) as V;
  }

  const matrixFor = (p: AnalysisPayload, row: number): Float32Array | null => {
    if (row === p.walk.similarity.row && isSimilarityMatrix(p.walk.similarity.matrix, p.lens.pos)) return p.walk.similarity.matrix;
    return cache.get(key(p, row)) ?? null;
  };

  const fetchRow = (p: AnalysisPayload, row: number) => {
    window.clearTimeout(fetchTimer);
    fetchTimer = window.setTimeout(async () => {
      ring.hidden = false;
      error.textContent = '';
      try {
        const m = await ctx.host.request('similarity', { runId: p.runId, row });
        if (!isSimilarityMatrix(m, p.lens.pos)) throw new Error('the matrix has the wrong size');
        cache.set(key(p, row), m);
        if (ctx.store.state.payload === p && ctx.store.state.similarityRow === row) void render();
      } catch (e) {
        if (ctx.store.state.payload === p) error.textContent = `Could not load layer ${rowLabel(row)}: ${(e as Error).message}`;
      } finally {
        ring.hidden = true;
      }
    }, 90);
  };

  slider.addEventListener('input', () => ctx.store.set({ similarityRow: Number(slider.value) }));
  minSelect.addEventListener('change', () => {
    minN = Number(minSelect.value) || 2;
    runsFor = '';
    void render();
  });

  heat.on('plotly_hover', (ev) => {
    const p = ctx.store.state.payload;
    const pt = ev.points[0];
    if (!p || !pt) return;
    const i = Number(pt.y);
    const j = Number(pt.x);
    if (!(j <= i)) return ctx.tooltip.hide();
    const m = matrixFor(p, ctx.store.state.similarityRow);
    const v = m ? m[i * p.lens.pos + j]! : NaN;
    const mouse = ev.event as MouseEvent;
    ctx.tooltip.show(mouse.clientX, mouse.clientY, [
      el('div', { class: 'tt-title', text: `cos ${fmt(v, 3)} at ${rowTitle(ctx.store.state.similarityRow, p.lens.rows)}` }),
      el('div', {}, [
        el('span', { class: 'muted', text: `i = ${i}  ` }),
        el('span', { class: 'mono', text: tokenDisplay(p.tokens[i]!).text }),
      ]),
      el('div', {}, [
        el('span', { class: 'muted', text: `j = ${j}  ` }),
        el('span', { class: 'mono', text: tokenDisplay(p.tokens[j]!).text }),
      ]),
    ]);
  });
  heat.on('plotly_unhover', () => ctx.tooltip.hide());
  heat.on('plotly_click', (ev) => {
    const pt = ev.points[0];
    if (!pt) return;
    const i = Number(pt.y);
    const j = Number(pt.x);
    if (j <= i) ctx.select(i, j === i ? null : j);
  });
  copy.on('plotly_click', (ev) => {
    const x = ev.points[0]?.x;
    if (typeof x === 'number') ctx.select(x);
  });
  // Square cells: the figure is as wide as its height plus room for the axis and colour bar.
  heat.sizeWith((w, h) => ({ width: Math.min(w, h + 70), height: h }));

  const drawHeat = async (p: AnalysisPayload, s: Readonly<AppState>, m: Float32Array) => {
    const pal = ctx.palette();
    const T = p.lens.pos;
    const [lo] = offDiagonalRange(m, T);
    const rampCols: Rgba[] = Array.from({ length: 9 }, (_, i) => mix(pal.bg, pal.blue, 0.08 + (0.92 * i) / 8, pal.bg));
    const idx = once(`idx:${p.runId}`, () => Array.from({ length: T }, (_, i) => i));
    const ax = axisStyle(pal);
    const tickFor = (): Partial<Layout['xaxis']> =>
      T <= 40 ? { tickmode: 'array', tickvals: idx, ticktext: p.tokens.map((t) => plotlyToken(t.text, 8)), tickangle: -60 } : {};
    const shapes: Shape[] = [];
    const outlines = rectOutlines(runs.map(runRect));
    const sel = s.selectedPos;
    if (sel >= 0 && sel < T) {
      shapes.push({
        type: 'rect',
        xref: 'x',
        yref: 'y',
        x0: -0.5,
        x1: sel + 0.5,
        y0: sel - 0.5,
        y1: sel + 0.5,
        line: { color: c(pal.focus), width: 1 },
        fillcolor: 'rgba(0,0,0,0)',
      });
      if (s.highlightPos !== null && s.highlightPos <= sel) {
        const j = s.highlightPos;
        shapes.push({
          type: 'rect',
          xref: 'x',
          yref: 'y',
          x0: j - 0.5,
          x1: j + 0.5,
          y0: sel - 0.5,
          y1: sel + 0.5,
          line: { color: c(pal.focus), width: 2.5 },
          fillcolor: 'rgba(0,0,0,0)',
        });
      }
    }
    const drawKey = `${key(p, s.similarityRow)}:${minN}:${s.themeVersion}`;
    if (heatKey === drawKey && heat.isDrawn) return heat.relayout({ shapes }); // only the selection moved
    heatKey = drawKey;
    const base = baseLayout(pal);
    await heat.draw(
      [
        {
          type: 'heatmap',
          z: once(`z:${key(p, s.similarityRow)}`, () => lowerTriangle(m, T)),
          x: idx,
          y: idx,
          zmin: Math.min(lo, 0.999),
          zmax: 1,
          colorscale: plotlyColorscale(rampCols),
          hoverinfo: 'none',
          xgap: T <= 64 ? 1 : 0,
          ygap: T <= 64 ? 1 : 0,
          colorbar: {
            thickness: 8,
            len: 0.9,
            outlinewidth: 0,
            tickfont: { size: 10, color: c(pal.muted) },
            title: { text: 'cos', font: { size: 10, color: c(pal.muted) } },
          },
        } as Data,
        {
          type: 'scatter',
          mode: 'lines',
          x: outlines.x,
          y: outlines.y,
          line: { color: c(pal.yellow), width: 1.5 },
          hoverinfo: 'skip',
          connectgaps: false,
        } as Data,
      ],
      {
        ...base,
        margin: { l: 40, r: 8, t: 8, b: 36 },
        uirevision: `${p.runId}`,
        shapes,
        xaxis: {
          ...ax,
          ...tickFor(),
          title: { text: 'j (earlier token)', font: { size: 11, color: c(pal.muted) } },
          showgrid: false,
          zeroline: false,
          constrain: 'domain',
        },
        yaxis: {
          ...ax,
          ...tickFor(),
          tickangle: 0,
          autorange: 'reversed',
          scaleanchor: 'x',
          showgrid: false,
          zeroline: false,
          constrain: 'domain',
          title: { text: 'i', font: { size: 11, color: c(pal.muted) } },
        },
      },
    );
  };

  const drawCopy = async (p: AnalysisPayload, s: Readonly<AppState>) => {
    const pal = ctx.palette();
    const T = p.lens.pos;
    const k = key(p, s.similarityRow);
    const y = once(`copy:${k}`, () => copyMassSeries(p.lens, s.similarityRow));
    const x = once(`idx:${p.runId}`, () => Array.from({ length: T }, (_, i) => i));
    const hover = once(`copyhover:${k}`, () => y.map((v, i) => `pos ${i} <b>${plotlyToken(p.tokens[i]!.text)}</b><br>copy mass ${pct(v)}`));
    const shapes: Shape[] = repeatedSpans(runs).map(([a, b]) => ({
      type: 'rect',
      xref: 'x',
      yref: 'paper',
      x0: a - 0.5,
      x1: b - 0.5,
      y0: 0,
      y1: 1,
      line: { width: 0 },
      fillcolor: c(pal.yellow, 0.16),
      layer: 'below',
    }));
    if (s.selectedPos >= 0)
      shapes.push({
        type: 'line',
        xref: 'x',
        yref: 'paper',
        x0: s.selectedPos,
        x1: s.selectedPos,
        y0: 0,
        y1: 1,
        line: { color: c(pal.focus), width: 1.5 },
      });
    const cmp = comparison(s.whatIf, p);
    const drawKey = `${k}:${minN}:${s.themeVersion}:${cmp ? `${cmp.mode}:${cmp.other.runId}` : ''}`;
    if (copyKey === drawKey && copy.isDrawn) return copy.relayout({ shapes });
    copyKey = drawKey;
    const ax = axisStyle(pal);
    if (cmp) return drawCopyCompared(p, s, cmp, x, shapes);
    await copy.draw(
      [
        {
          type: 'scatter', // not scattergl: WebGL 2D traces need eval, which the CSP forbids
          mode: T <= 200 ? 'lines+markers' : 'lines',
          x,
          y,
          hovertext: hover,
          hoverinfo: 'text',
          line: { color: c(pal.orange), width: 1.5 },
          marker: { color: c(pal.orange), size: 4 },
          fill: 'tozeroy',
          fillcolor: c(pal.orange, 0.15),
        } as Data,
      ],
      {
        ...baseLayout(pal),
        margin: { l: 40, r: 8, t: 6, b: 30 },
        uirevision: `${p.runId}`,
        shapes,
        xaxis: {
          ...ax,
          title: { text: 'position (shaded: inside a later repeat)', font: { size: 10, color: c(pal.muted) } },
          zeroline: false,
        },
        yaxis: { ...ax, range: [0, 1.02], tickformat: '.0%' },
      },
    );
  };

  /** What-if: copy mass of both runs (beside) or ablated − clean (difference). */
  const drawCopyCompared = async (p: AnalysisPayload, s: Readonly<AppState>, cmp: Comparison, x: number[], shapes: Shape[]) => {
    const pal = ctx.palette();
    const row = s.similarityRow;
    const ax = axisStyle(pal);
    const tok = (i: number) => plotlyToken(p.tokens[i]!.text);
    const series = (lens: AnalysisPayload['lens'], name: string, color: string, dash: string): Data =>
      ({
        type: 'scatter',
        mode: p.lens.pos <= 200 ? 'lines+markers' : 'lines',
        name,
        x,
        y: copyMassRow(lens, row),
        hovertext: copyMassRow(lens, row).map((v, i) => `pos ${i} <b>${tok(i)}</b><br>${name} copy mass ${pct(v)}`),
        hoverinfo: 'text',
        line: { color, width: 1.5, dash },
        marker: { color, size: 3 },
      }) as Data;
    const diff = cmp.mode === 'difference';
    const delta = copyMassDelta(cmp.intervened.lens, cmp.clean.lens, row);
    const traces: Data[] = diff
      ? [
          {
            type: 'scatter',
            mode: p.lens.pos <= 200 ? 'lines+markers' : 'lines',
            name: pairDelta(cmp),
            x,
            y: delta,
            hovertext: delta.map((v, i) => `pos ${i} <b>${tok(i)}</b><br>copy mass ${pairDelta(cmp)} ${v >= 0 ? '+' : ''}${pct(v)}`),
            hoverinfo: 'text',
            line: { color: c(pal.purple), width: 1.5 },
            marker: { color: c(pal.purple), size: 3 },
            fill: 'tozeroy',
            fillcolor: c(pal.purple, 0.12),
          } as Data,
        ]
      : [
          series(cmp.clean.lens, pairNames(cmp).base, c(pal.muted), 'dot'),
          series(cmp.intervened.lens, pairNames(cmp).twin, c(pal.orange), 'solid'),
        ];
    let lo = 0;
    let hi = 0;
    for (const v of delta) if (Number.isFinite(v)) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
    await copy.draw(traces, {
      ...baseLayout(pal),
      showlegend: !diff,
      legend: { orientation: 'h', x: 0, y: 1.02, yanchor: 'bottom', font: { size: 10, color: c(pal.fg) }, bgcolor: 'rgba(0,0,0,0)' },
      margin: { l: 44, r: 8, t: diff ? 6 : 18, b: 30 },
      uirevision: `${p.runId}`,
      shapes,
      xaxis: {
        ...ax,
        title: { text: 'position (shaded: inside a later repeat)', font: { size: 10, color: c(pal.muted) } },
        zeroline: false,
      },
      yaxis: diff
        ? { ...ax, range: [lo - 0.05, hi + 0.05], tickformat: '.0%', zeroline: true }
        : { ...ax, range: [0, 1.02], tickformat: '.0%' },
    });
  };

  const drawList = (p: AnalysisPayload) => {
    clear(list);
    if (runs.length === 0) {
      list.append(el('div', { class: 'muted empty-note', text: `No repeats of ${minN}+ tokens.` }));
      return;
    }
    for (const r of runs.slice(0, 200)) {
      const text = p.tokens
        .slice(r.src, r.src + r.len)
        .map((t) => tokenDisplay(t).text)
        .join('');
      const item = el('button', { class: 'ngram', attrs: { type: 'button', role: 'listitem' } }, [
        el('span', { class: 'count', text: String(r.len) }),
        el('span', { class: 'mono', text: clip(text, 80) }),
        el('span', { class: 'muted', text: `${r.src} → ${r.dst}` }),
        repeatCompare(r),
      ]);
      item.title = `${r.len} tokens at ${r.src}–${r.src + r.len - 1} repeat at ${r.dst}–${r.dst + r.len - 1}. Click: select the repeat, highlight the original.`;
      item.addEventListener('click', () => ctx.select(r.dst, r.src));
      list.append(item);
    }
  };

  /** What-if: how much the repeat is copied in each run (mean copy mass inside its later occurrence). */
  const repeatCompare = (r: RepeatRun): HTMLElement | null => {
    const s = ctx.store.state;
    const cmp = comparison(s.whatIf, s.payload);
    if (!cmp) return null;
    const a = repeatCopyMass(cmp.clean.lens, r, s.similarityRow);
    const b = repeatCopyMass(cmp.intervened.lens, r, s.similarityRow);
    if (!Number.isFinite(a) || !Number.isFinite(b)) return null;
    const text = cmp.mode === 'difference' ? `copy ${b - a >= 0 ? '+' : ''}${pct(b - a)}` : `copy ${pct(a)} → ${pct(b)}`;
    return el('span', {
      class: `rep-cmp${b < a ? ' down' : ''}`,
      text,
      title: `mean copy mass inside the repeat at ${rowTitle(s.similarityRow, cmp.clean.lens.rows)}: ${pairNames(cmp).base} ${pct(a)}, ${pairNames(cmp).twin} ${pct(b)}`,
    });
  };

  const render = serial(async () => {
    const s = ctx.store.state;
    const p = s.payload;
    if (!p) return;
    const rows = p.lens.rows;
    const row = Math.max(0, Math.min(rows - 1, s.similarityRow));
    slider.max = String(rows - 1);
    slider.value = String(row);
    layerName.textContent = rowTitle(row, rows);
    const cmpNow = comparison(s.whatIf, p);
    const rk = `${p.runId}:${minN}:${cmpNow ? `${cmpNow.mode}:${cmpNow.other.runId}:${s.similarityRow}` : ''}`;
    if (runsFor !== rk) {
      runs = repeatRuns(p.walk.ngrams, minN);
      runsFor = rk;
      drawList(p);
    }
    runCount.textContent = `${runs.length} repeat${runs.length === 1 ? '' : 's'}`;
    const m = matrixFor(p, row);
    try {
      const jobs = [drawCopy(p, s)];
      if (m) jobs.push(drawHeat(p, s, m));
      else fetchRow(p, row);
      await Promise.all(jobs);
      if (m && paintedRun !== p.runId) {
        paintedRun = p.runId;
        ctx.painted('repetition');
      }
    } catch (e) {
      ctx.host.log('error', `Repetition view failed to draw: ${(e as Error).message}`);
    }
  });

  ctx.store.subscribe((_s, changed) => {
    if (changed.has('payload')) {
      cache.clear();
      memo.clear();
      runsFor = '';
    }
    const relevant = ['payload', 'selectedPos', 'highlightPos', 'similarityRow', 'themeVersion', 'whatIf'] as const;
    if (!relevant.some((k) => changed.has(k))) return;
    lazy.invalidate();
  });

  return {
    id: 'repetition',
    title: 'Repetition',
    el: root,
    setActive: lazy.setActive,
  };
};
