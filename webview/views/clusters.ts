// Encoding-walk clusters: at a chosen layer, the positions ordered by average-linkage clustering
// of their residual-stream vectors (cosine distance), the similarity matrix in that order with
// the dendrogram above it, and soft clusters from cutting the dendrogram at a merge height —
// coloured bands beside the matrix, a list, and coloured spans in the editor.
import type { ClustersResult } from '../../src/shared/analysis';
import type { AnalysisPayload } from '../../src/shared/protocol';
import { clear, el, lazyDraw, serial } from '../dom';
import { mix, toCss, type Rgba } from '../shapeColor';
import {
  clusterBands,
  clusterCount,
  cohesion,
  cutTree,
  defaultThreshold,
  dendrogramLines,
  isClusters,
  maxHeight,
  reorderMatrix,
  similarityRange,
  type ClusterBand,
} from '../shapeDynamicsClusters';
import { imageName } from '../shapeExport';
import { clip, fmt, plotlyToken, rowTitle, tokenDisplay } from '../shapeText';
import type { Palette } from '../theme';
import type { AppState } from '../store';
import { ChartCard, axisStyle, baseLayout, c, type Data, type Layout } from './chart';
import type { TabFactory, ViewContext } from './context';
import { ResultCache, fillNote } from './dynamicsCard';

type Shape = NonNullable<Layout['shapes']>[number];

const MATRIX_TOP = 0.8; // the matrix takes y ∈ [0, 0.8] of the plot, the dendrogram the rest
const MATRIX_RIGHT = 0.92; // the bands sit between the matrix and the colour bar

/** Cluster colours: the theme's chart colours, then lighter mixes of them; singletons stay neutral. */
function clusterColor(pal: Palette, i: number, size: number): Rgba {
  if (size < 2) return mix(pal.bg, pal.fg, 0.18, pal.bg);
  const base = [pal.blue, pal.orange, pal.green, pal.purple, pal.red, pal.yellow];
  const round = Math.floor(i / base.length);
  return mix(pal.bg, base[i % base.length]!, round === 0 ? 1 : round === 1 ? 0.6 : 0.38, pal.bg);
}

export const clustersTab: TabFactory = (ctx: ViewContext) => {
  const layerSlider = el('input', { class: 'cl-layer-slider', attrs: { type: 'range', min: 0, max: 1, step: 1, 'aria-label': 'Layer' } });
  const layerName = el('span', { class: 'cl-layer-name' });
  const cutSlider = el('input', {
    class: 'cut-slider',
    attrs: { type: 'range', min: 0, max: 1000, step: 1, 'aria-label': 'Cut the dendrogram at this distance' },
  });
  const cutLabel = el('span', { class: 'cut-label' });
  const editorBox = el('input', { attrs: { type: 'checkbox', id: 'td-cl-editor', checked: true } });
  const bar = el('div', { class: 'view-bar' }, [
    el('label', { class: 'bar-label', text: 'Layer' }),
    layerSlider,
    layerName,
    el('span', { class: 'sep' }),
    el('label', { class: 'bar-label', text: 'Cut at distance' }),
    cutSlider,
    cutLabel,
    el('span', { class: 'sep' }),
    el('label', { class: 'cl-check', attrs: { for: 'td-cl-editor' } }, [editorBox, el('span', { text: 'Colour the editor' })]),
    el('span', { class: 'spacer' }),
    el('span', { class: 'hint', text: 'distance = 1 − cos of resid_post · click a cell: select its row token' }),
  ]);
  const model = () => ctx.store.state.payload?.model.name ?? 'model';
  const heat = new ChartCard(ctx, 'Similarity in cluster order', () => imageName('clusters', model(), `row${row}`), 'cl-heat');
  const note = el('div', { class: 'dyn-note overlay' });
  note.hidden = true;
  heat.el.append(note);
  const list = el('div', { class: 'cl-list', attrs: { role: 'list' } });
  const listCard = el('section', { class: 'chart-card cl-list-card' }, [
    el('header', { class: 'chart-head' }, [el('h3', { text: 'Soft clusters (in dendrogram order)' })]),
    list,
  ]);
  const root = el('div', { class: 'view cl-view' }, [bar, el('div', { class: 'dyn-split cl-split' }, [heat.el, listCard])]);

  const cache = new ResultCache<ClustersResult>(8);
  const errors = new Map<string, string>();
  let row = -1;
  let threshold = -1;
  let thresholdFor = '';
  const lazy = lazyDraw(
    () => render(),
    () => heat.isDrawn,
  );
  let heatKey = '';
  let paintedRun = -1;
  let sentLabels: string | null = null;
  let sendTimer = 0;
  let labels: number[] = [];
  let bands: ClusterBand[] = [];

  const key = (p: AnalysisPayload, r: number) => `${p.runId}:${r}`;

  const inflight = new Set<string>();
  const load = async (p: AnalysisPayload, r: number) => {
    const k = key(p, r);
    if (inflight.has(k)) return;
    inflight.add(k);
    try {
      const res = await ctx.host.request('clusters', { runId: p.runId, row: r });
      if (!isClusters(res, p.tokens.length)) throw new Error('The clusters have the wrong shape.');
      cache.set(k, res);
    } catch (e) {
      errors.set(k, (e as Error).message);
    } finally {
      inflight.delete(k);
    }
    if (ctx.store.state.payload === p) void render();
  };

  /** Sends the clusters to the editor (or clears them), at most every 150 ms and only on change. */
  const syncEditor = () => {
    window.clearTimeout(sendTimer);
    sendTimer = window.setTimeout(() => {
      const p = ctx.store.state.payload;
      if (!p) return;
      const want = lazy.active && editorBox.checked && labels.length === p.tokens.length ? labels : null;
      const sig = want ? `${p.runId}:${want.join(',')}` : null;
      if (sig === sentLabels) return;
      sentLabels = sig;
      ctx.host
        .request('showClusters', { runId: p.runId, labels: want })
        .catch((e: Error) => ctx.host.log('warn', `showClusters failed: ${e.message}`));
    }, 150);
  };

  layerSlider.addEventListener('input', () => {
    row = Number(layerSlider.value);
    void render();
  });
  cutSlider.addEventListener('input', () => {
    const p = ctx.store.state.payload;
    const res = p && cache.get(key(p, row));
    if (!res) return;
    threshold = (Number(cutSlider.value) / 1000) * maxHeight(res.merges);
    void render();
  });
  editorBox.addEventListener('change', syncEditor);

  heat.on('plotly_hover', (ev) => {
    const p = ctx.store.state.payload;
    const res = p && cache.get(key(p, row));
    const pt = ev.points.find((q) => (q.data as { type?: string }).type === 'heatmap');
    if (!p || !res || !pt) return ctx.tooltip.hide();
    const i = res.order[Number(pt.y)];
    const j = res.order[Number(pt.x)];
    if (i === undefined || j === undefined) return;
    const T = p.tokens.length;
    const mouse = ev.event as MouseEvent;
    const same = labels[i] === labels[j];
    ctx.tooltip.show(mouse.clientX, mouse.clientY, [
      el('div', { class: 'tt-title', text: `cos ${fmt(res.similarity[i * T + j]!, 3)} at ${rowTitle(row, p.lens.rows)}` }),
      el('div', {}, [
        el('span', { class: 'muted', text: `pos ${i}  ` }),
        el('span', { class: 'mono', text: tokenDisplay(p.tokens[i]!).text }),
      ]),
      el('div', {}, [
        el('span', { class: 'muted', text: `pos ${j}  ` }),
        el('span', { class: 'mono', text: tokenDisplay(p.tokens[j]!).text }),
      ]),
      el('div', {
        class: 'muted',
        text: same ? `same cluster (C${labels[i]! + 1})` : `clusters C${labels[i]! + 1} and C${labels[j]! + 1}`,
      }),
    ]);
  });
  heat.on('plotly_unhover', () => ctx.tooltip.hide());
  heat.on('plotly_click', (ev) => {
    const p = ctx.store.state.payload;
    const res = p && cache.get(key(p, row));
    const pt = ev.points.find((q) => (q.data as { type?: string }).type === 'heatmap');
    if (!res || !pt) return;
    const i = res.order[Number(pt.y)];
    const j = res.order[Number(pt.x)];
    if (i !== undefined) ctx.select(i, j === undefined || j === i ? null : j);
  });
  heat.sizeWith((w, h) => ({ width: Math.min(w, Math.round(((h - 60) * MATRIX_TOP) / MATRIX_RIGHT) + 130), height: h }));

  const drawList = (p: AnalysisPayload, res: ClustersResult, sel: number) => {
    clear(list);
    const pal = ctx.palette();
    const T = p.tokens.length;
    let singles = 0;
    bands.forEach((b, i) => {
      if (b.members.length < 2) {
        singles++;
        return;
      }
      const sw = el('span', { class: 'cl-swatch' });
      sw.style.backgroundColor = toCss(clusterColor(pal, i, b.members.length));
      const members = [...b.members].sort((x, y) => x - y);
      const text = members.map((q) => tokenDisplay(p.tokens[q]!).text).join(' ');
      const item = el('button', { class: `cl-item${members.includes(sel) ? ' sel' : ''}`, attrs: { type: 'button', role: 'listitem' } }, [
        sw,
        el('span', { class: 'cl-name', text: `C${b.label + 1}` }),
        el('span', { class: 'count', text: String(members.length) }),
        el('span', { class: 'mono cl-text', text: clip(text, 200) }),
        el('span', { class: 'muted num', text: `cos ${fmt(cohesion(res.similarity, T, members), 2)}` }),
      ]);
      item.title = `Cluster C${b.label + 1}: ${members.length} positions (${clip(members.join(', '), 300)}); mean cosine ${fmt(cohesion(res.similarity, T, members), 3)}. Click: select the first.`;
      item.addEventListener('click', () =>
        ctx.select(members.includes(sel) ? members[(members.indexOf(sel) + 1) % members.length]! : members[0]!),
      );
      list.append(item);
    });
    if (singles > 0)
      list.append(
        el('div', {
          class: 'muted empty-note',
          text: `${singles} position${singles === 1 ? '' : 's'} on ${singles === 1 ? 'its' : 'their'} own at this cut.`,
        }),
      );
    if (bands.length === 1)
      list.prepend(el('div', { class: 'muted empty-note', text: 'Everything is one cluster at this cut: lower the distance.' }));
  };

  const shapesFor = (res: ClustersResult, sel: number): Shape[] => {
    const pal = ctx.palette();
    const shapes: Shape[] = [];
    bands.forEach((b, i) => {
      const col = clusterColor(pal, i, b.members.length);
      shapes.push({
        type: 'rect',
        xref: 'paper',
        yref: 'y',
        x0: MATRIX_RIGHT + 0.008,
        x1: MATRIX_RIGHT + 0.035,
        y0: b.start - 0.5,
        y1: b.end - 0.5,
        line: { width: 0.5, color: c(pal.bg) },
        fillcolor: c(col),
      });
      if (b.members.length > 1)
        shapes.push({
          type: 'rect',
          xref: 'x',
          yref: 'y',
          x0: b.start - 0.5,
          x1: b.end - 0.5,
          y0: b.start - 0.5,
          y1: b.end - 0.5,
          line: { width: 1.5, color: c(col) },
          fillcolor: 'rgba(0,0,0,0)',
        });
    });
    // the cut on the dendrogram
    shapes.push({
      type: 'line',
      xref: 'paper',
      yref: 'y2',
      x0: 0,
      x1: MATRIX_RIGHT,
      y0: threshold,
      y1: threshold,
      line: { color: c(pal.red), width: 1.2, dash: 'dash' },
    });
    const idx = res.order.indexOf(sel);
    if (idx >= 0)
      shapes.push(
        {
          type: 'rect',
          xref: 'x',
          yref: 'y',
          x0: -0.5,
          x1: res.order.length - 0.5,
          y0: idx - 0.5,
          y1: idx + 0.5,
          line: { color: c(pal.focus), width: 1 },
          fillcolor: 'rgba(0,0,0,0)',
        },
        {
          type: 'rect',
          xref: 'x',
          yref: 'y',
          x0: idx - 0.5,
          x1: idx + 0.5,
          y0: -0.5,
          y1: res.order.length - 0.5,
          line: { color: c(pal.focus), width: 1 },
          fillcolor: 'rgba(0,0,0,0)',
        },
      );
    return shapes;
  };

  const drawHeat = async (p: AnalysisPayload, s: Readonly<AppState>, res: ClustersResult) => {
    const pal = ctx.palette();
    const T = p.tokens.length;
    const sel = Math.max(0, Math.min(T - 1, s.selectedPos));
    const hmax = maxHeight(res.merges);
    const shapes = shapesFor(res, sel);
    const drawKey = `${key(p, row)}:${s.themeVersion}`;
    if (heatKey === drawKey && heat.isDrawn) return heat.relayout({ shapes });
    heatKey = drawKey;
    const [lo] = similarityRange(res.similarity, T);
    const ramp: [number, string][] = Array.from({ length: 9 }, (_, i) => [
      i / 8,
      toCss(mix(pal.bg, pal.blue, 0.06 + (0.94 * i) / 8, pal.bg)),
    ]);
    const idx = Array.from({ length: T }, (_, i) => i);
    const ax = axisStyle(pal);
    const ticks =
      T <= 60
        ? { tickmode: 'array' as const, tickvals: idx, ticktext: res.order.map((q) => plotlyToken(p.tokens[q]!.text, 8)) }
        : { showticklabels: false, ticks: '' as const };
    const dend = dendrogramLines(res.merges, T, res.order);
    await heat.draw(
      [
        {
          type: 'heatmap',
          z: reorderMatrix(res.similarity, T, res.order),
          x: idx,
          y: idx,
          zmin: Math.min(lo, 0.999),
          zmax: 1,
          colorscale: ramp,
          hoverinfo: 'none',
          xgap: T <= 64 ? 1 : 0,
          ygap: T <= 64 ? 1 : 0,
          colorbar: {
            thickness: 8,
            len: MATRIX_TOP * 0.95,
            y: MATRIX_TOP / 2,
            yanchor: 'middle',
            x: 1.0,
            outlinewidth: 0,
            tickfont: { size: 10, color: c(pal.muted) },
            title: { text: 'cos', font: { size: 10, color: c(pal.muted) } },
          },
        } as Data,
        {
          type: 'scatter',
          mode: 'lines',
          x: dend.x,
          y: dend.y,
          xaxis: 'x',
          yaxis: 'y2',
          hoverinfo: 'skip',
          line: { color: c(mix(pal.bg, pal.fg, 0.55, pal.bg)), width: 1 },
          connectgaps: false,
        } as Data,
      ],
      {
        ...baseLayout(pal),
        margin: { l: 44, r: 8, t: 8, b: 40 },
        uirevision: key(p, row),
        shapes,
        xaxis: {
          ...ax,
          ...ticks,
          domain: [0, MATRIX_RIGHT],
          tickangle: -60,
          range: [-0.5, T - 0.5],
          showgrid: false,
          zeroline: false,
          title: T <= 60 ? undefined : { text: 'positions in cluster order', font: { size: 11, color: c(pal.muted) } },
        },
        yaxis: { ...ax, ...ticks, domain: [0, MATRIX_TOP], range: [T - 0.5, -0.5], showgrid: false, zeroline: false },
        yaxis2: {
          ...ax,
          domain: [MATRIX_TOP + 0.02, 1],
          anchor: 'x',
          range: [0, hmax * 1.05 || 1],
          showgrid: false,
          zeroline: false,
          tickfont: { size: 9, color: c(pal.muted) },
          nticks: 3,
          title: { text: 'dist', font: { size: 10, color: c(pal.muted) } },
        },
      } as Partial<Layout>,
    );
  };

  const render = serial(async () => {
    const s = ctx.store.state;
    const p = s.payload;
    if (!p) return;
    const rows = p.lens.rows;
    if (row < 0 || row >= rows) row = rows - 1;
    layerSlider.max = String(rows - 1);
    layerSlider.value = String(row);
    layerName.textContent = rowTitle(row, rows);
    const k = key(p, row);
    const res = cache.get(k);
    if (!res) {
      const err = errors.get(k);
      if (err) fillNote(note, 'warning', `The clusters of ${rowTitle(row, rows)} are not available.`, err);
      else {
        fillNote(note, 'info', `Clustering ${p.tokens.length} positions at ${rowTitle(row, rows)}…`);
        void load(p, row);
      }
      heat.gd.style.visibility = 'hidden';
      clear(list);
      return;
    }
    note.hidden = true;
    heat.gd.style.visibility = '';
    const T = p.tokens.length;
    const hmax = maxHeight(res.merges);
    if (thresholdFor !== k) {
      thresholdFor = k;
      threshold = defaultThreshold(res.merges, T);
    }
    cutSlider.value = String(hmax > 0 ? Math.round((threshold / hmax) * 1000) : 0);
    labels = cutTree(res.merges, T, res.order, threshold);
    bands = clusterBands(labels, res.order);
    const n = clusterCount(res.merges, T, threshold);
    const multi = bands.filter((b) => b.members.length > 1).length;
    cutLabel.textContent = `${fmt(threshold, 3)} → ${n} cluster${n === 1 ? '' : 's'} (${multi} with 2+)`;
    heat.el.querySelector('h3')!.textContent = `Similarity in cluster order · ${rowTitle(row, rows)}`;
    const sel = Math.max(0, Math.min(T - 1, s.selectedPos));
    drawList(p, res, sel);
    syncEditor();
    try {
      await drawHeat(p, s, res);
      if (paintedRun !== p.runId) {
        paintedRun = p.runId;
        ctx.painted('clusters');
      }
    } catch (e) {
      ctx.host.log('error', `Clusters view failed to draw: ${(e as Error).message}`);
    }
  });

  ctx.store.subscribe((_s, changed) => {
    if (changed.has('payload')) {
      cache.clear();
      errors.clear();
      heatKey = '';
      thresholdFor = '';
      labels = [];
      sentLabels = null;
    }
    const relevant = ['payload', 'selectedPos', 'themeVersion'] as const;
    if (!relevant.some((k) => changed.has(k))) return;
    lazy.invalidate();
  });

  return {
    id: 'clusters',
    title: 'Clusters',
    el: root,
    setActive(a: boolean) {
      lazy.setActive(a);
      syncEditor(); // leaving the tab clears the editor's cluster colours
    },
  };
};
