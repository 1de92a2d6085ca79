// Attention: every head's position kernel K(d) as a small multiple in a layer × head grid (raw
// or divided by the uniform baseline, where a flat kernel reads 1), tinted by its self-bias
// (orange = avoids itself) with its induction score; sortable, or as a table. Clicking a head
// shows its attention pattern over the analysed tokens with the selected token's row outlined.
import type { HeadStatsResult } from '../../src/shared/analysis';
import type { AnalysisPayload } from '../../src/shared/protocol';
import { clear, el, lazyDraw, serial } from '../dom';
import { mix, toCss } from '../shapeColor';
import {
  divergingT,
  headLabel,
  headRows,
  inductionText,
  isHeadStats,
  isPattern,
  kernelOf,
  kernelScale,
  scaleT,
  selfBiasRange,
  signedText,
  sortHeads,
  sparkPoints,
  topKeys,
  type HeadRow,
  type HeadSort,
  type KernelMode,
} from '../shapeDynamicsAttention';
import { imageName } from '../shapeExport';
import { lowerTriangle } from '../shapeRepetition';
import { fmt, plotlyToken, tokenDisplay } from '../shapeText';
import type { AppState } from '../store';
import { ChartCard, axisStyle, baseLayout, c, type Data, type Layout } from './chart';
import type { TabFactory, ViewContext } from './context';
import { CustomCard, ResultCache, fillNote, segmented, serializeSvg, svg } from './dynamicsCard';
import { createAblateControls } from './ablateControls';

type Shape = NonNullable<Layout['shapes']>[number];
type State = { kind: 'none' } | { kind: 'loading' } | { kind: 'ok'; stats: HeadStatsResult } | { kind: 'error'; message: string };

const CELL_W = 92;
const CELL_H = 66;
const GAP = 4;
const HEAD_W = 30; // row labels (layer order)
const HEAD_H = 18; // column labels (layer order)

export const attentionTab: TabFactory = (ctx: ViewContext) => {
  let mode: KernelMode = 'norm';
  let sort: HeadSort = 'layer';
  let reverse = false;
  let layout: 'grid' | 'table' = 'grid';
  let selected = -1; // head index
  const modeCtl = segmented<KernelMode>(
    'Kernel scale',
    [
      { value: 'norm', text: '÷ uniform', title: 'K(d) divided by the uniform baseline 1/(q+1): a flat kernel reads 1' },
      { value: 'raw', text: 'raw', title: 'K(d) = mean attention from a query to the token d positions back' },
    ],
    (v) => {
      mode = v;
      void render();
    },
  );
  const sortCtl = segmented<HeadSort>(
    'Order heads by',
    [
      { value: 'layer', text: 'Layer', title: 'Layer × head grid' },
      { value: 'selfBias', text: 'Self-bias', title: 'Most self-avoiding first (click again to reverse)' },
      { value: 'induction', text: 'Induction', title: 'Strongest induction score first (click again to reverse)' },
    ],
    (v) => {
      reverse = v === sort && v !== 'layer' ? !reverse : false;
      sort = v;
      void render();
    },
  );
  const layoutCtl = segmented<'grid' | 'table'>(
    'Show as',
    [
      { value: 'grid', text: 'Grid', title: 'Small multiples of the kernels' },
      { value: 'table', text: 'Table', title: 'One row per head, sortable' },
    ],
    (v) => {
      layout = v;
      void render();
    },
  );
  const hint = el('span', { class: 'hint', text: 'K(d): mean attention d tokens back · click a head for its pattern' });
  // what-if: heads to ablate (the ✕ in a cell or the table's column), and the re-run
  const ablate = createAblateControls(ctx);
  const controls = el('span', { class: 'att-controls' }, [
    el('span', { class: 'bar-group' }, [el('label', { class: 'bar-label', text: 'Kernel' }), modeCtl.el]),
    el('span', { class: 'sep' }),
    el('span', { class: 'bar-group' }, [el('label', { class: 'bar-label', text: 'Order' }), sortCtl.el]),
    el('span', { class: 'sep' }),
    layoutCtl.el,
  ]);
  const bar = el('div', { class: 'view-bar' }, [controls, el('span', { class: 'spacer' }), hint]);
  const ablateBar = el('div', { class: 'view-bar abl-bar' }, [ablate.el]);

  const model = () => ctx.store.state.payload?.model.name ?? 'model';
  let gridSvg: SVGSVGElement | null = null;
  const grid = new CustomCard(
    ctx,
    'Head kernels',
    () => imageName('attention-kernels', model(), mode),
    { svg: () => (gridSvg ? serializeSvg(gridSvg) : null) },
    'att-grid-card',
  );
  const legend = el('div', { class: 'att-legend' });
  grid.tools.prepend(legend);
  const scroller = el('div', { class: 'att-scroll', attrs: { tabindex: -1 } });
  const note = el('div', { class: 'dyn-note' });
  note.hidden = true;
  grid.body.append(note, scroller);

  const heat = new ChartCard(ctx, 'Attention pattern', () => imageName('attention-pattern', model(), selectedName()), 'att-heat');
  const heatNote = el('div', { class: 'dyn-note overlay' });
  heatNote.hidden = true;
  heat.el.append(heatNote);
  const keysLine = el('div', { class: 'att-keys' });
  heat.el.append(keysLine);

  const root = el('div', { class: 'view att-view' }, [bar, ablateBar, el('div', { class: 'dyn-split att-split' }, [grid.el, heat.el])]);

  const statsCache = new Map<number, State>();
  const patterns = new ResultCache<Float32Array>(24);
  const patternErrors = new Map<string, string>();
  const lazy = lazyDraw(
    () => render(),
    () => heat.isDrawn,
  );
  let heatKey = '';
  let gridKey = '';
  let paintedRun = -1;
  let rowsOf: { stats: HeadStatsResult; rows: HeadRow[] } | null = null;
  const rowsFor = (stats: HeadStatsResult) => {
    if (rowsOf?.stats !== stats) rowsOf = { stats, rows: headRows(stats) };
    return rowsOf.rows;
  };

  /** The ✕ in a grid cell: selects the head for ablation (filled while selected). */
  const ablateToggle = (layer: number, head: number, cellW: number, pal: ReturnType<ViewContext['palette']>) => {
    const on = ablate.isAblated(layer, head);
    const g = svg('g', { transform: `translate(${cellW - 15} 3)`, class: `att-abl${on ? ' on' : ''}`, 'data-ablate': `${layer}.${head}` });
    g.append(
      svg('title', {}, on ? 'selected for ablation (click to unselect)' : 'select for ablation'),
      svg('rect', {
        width: 12,
        height: 12,
        rx: 2,
        fill: on ? toCss(pal.red) : toCss(pal.bg),
        stroke: on ? toCss(pal.red) : toCss(pal.muted),
      }),
      svg('path', { d: 'M3.5 3.5 L8.5 8.5 M8.5 3.5 L3.5 8.5', stroke: on ? toCss(pal.bg) : toCss(pal.muted), 'stroke-width': 1.4 }),
    );
    return g;
  };
  const ablateBox = (layer: number, head: number) => {
    const box = el('input', {
      attrs: { type: 'checkbox', 'aria-label': `ablate ${headLabel(layer, head)}`, 'data-ablate': `${layer}.${head}` },
    });
    box.checked = ablate.isAblated(layer, head);
    return box;
  };
  const abKey = (s: Readonly<AppState>) => s.ablation.heads.map((h) => `${h.layer}.${h.head}`).join(',');

  const selectedName = () => {
    const s = current();
    if (s.kind !== 'ok' || selected < 0) return 'head';
    return headLabel(Math.floor(selected / s.stats.n_heads), selected % s.stats.n_heads);
  };

  const current = (): State => {
    const p = ctx.store.state.payload;
    return p ? (statsCache.get(p.runId) ?? { kind: 'none' }) : { kind: 'none' };
  };

  const loadStats = async (p: AnalysisPayload) => {
    statsCache.set(p.runId, { kind: 'loading' });
    try {
      const s = await ctx.host.request('headStats', { runId: p.runId });
      if (!isHeadStats(s, p.dims.n_layers)) throw new Error('The head statistics have the wrong shape.');
      statsCache.set(p.runId, { kind: 'ok', stats: s });
    } catch (e) {
      statsCache.set(p.runId, { kind: 'error', message: (e as Error).message });
    }
    if (ctx.store.state.payload === p) void render();
  };

  const inflight = new Set<string>();
  const loadPattern = async (p: AnalysisPayload, layer: number, head: number) => {
    const k = `${p.runId}:${layer}.${head}`;
    if (inflight.has(k)) return;
    inflight.add(k);
    try {
      const m = await ctx.host.request('pattern', { runId: p.runId, layer, head });
      if (!isPattern(m, p.tokens.length)) throw new Error('The pattern has the wrong size.');
      patterns.set(k, m);
    } catch (e) {
      patternErrors.set(k, (e as Error).message);
    } finally {
      inflight.delete(k);
    }
    if (ctx.store.state.payload === p) void render();
  };

  const pick = (index: number) => {
    selected = index;
    void render();
  };

  // ---- the grid ------------------------------------------------------------------------

  const drawGrid = (p: AnalysisPayload, s: HeadStatsResult) => {
    const pal = ctx.palette();
    const rows = sortHeads(rowsFor(s), sort, reverse);
    const sc = kernelScale(s, mode);
    const range = selfBiasRange(s);
    const byLayer = sort === 'layer' && !reverse;
    const avail = Math.max(CELL_W + HEAD_W, scroller.clientWidth - 16);
    const cols = byLayer ? s.n_heads : Math.max(1, Math.floor((avail + GAP) / (CELL_W + GAP)));
    const cellW = byLayer ? Math.max(64, Math.min(CELL_W + 24, Math.floor((avail - HEAD_W) / s.n_heads) - GAP)) : CELL_W;
    const x0 = byLayer ? HEAD_W : 0;
    const y0 = byLayer ? HEAD_H : 0;
    const nRows = byLayer ? s.n_layers : Math.ceil(rows.length / cols);
    const W = x0 + cols * (cellW + GAP);
    const H = y0 + nRows * (CELL_H + GAP);
    const fg = toCss(pal.fg);
    const muted = toCss(pal.muted);
    const line = toCss(mix(pal.bg, pal.fg, 0.85, pal.bg));
    const neg = pal.orange;
    const pos = pal.blue;
    const root = svg('svg', {
      width: W,
      height: H,
      viewBox: `0 0 ${W} ${H}`,
      'font-family': pal.fontFamily,
      'font-size': 10,
      class: 'att-svg',
      role: 'grid',
      'aria-label': 'Attention heads',
    });
    root.append(svg('rect', { width: W, height: H, fill: toCss(pal.bg) }));
    if (byLayer) {
      for (let h = 0; h < s.n_heads; h++)
        root.append(svg('text', { x: x0 + h * (cellW + GAP) + cellW / 2, y: 12, fill: muted, 'text-anchor': 'middle' }, `H${h}`));
      for (let L = 0; L < s.n_layers; L++)
        root.append(svg('text', { x: 2, y: y0 + L * (CELL_H + GAP) + CELL_H / 2 + 3, fill: muted }, `L${L}`));
    }
    const plotH = CELL_H - 30;
    rows.forEach((r: HeadRow, i: number) => {
      const col = byLayer ? r.head : i % cols;
      const row = byLayer ? r.layer : Math.floor(i / cols);
      const x = x0 + col * (cellW + GAP);
      const y = y0 + row * (CELL_H + GAP);
      const t = divergingT(r.selfBias, range);
      const tint = mix(pal.bg, t < 0 ? neg : pos, Math.abs(t) * 0.42, pal.bg);
      const g = svg('g', {
        transform: `translate(${x} ${y})`,
        class: `att-cell${r.index === selected ? ' sel' : ''}`,
        tabindex: 0,
        role: 'button',
        'data-head': r.index,
        'aria-label': `${headLabel(r.layer, r.head)}: self-bias ${signedText(r.selfBias, 3)}, induction ${inductionText(r.induction, 3)}`,
      });
      g.append(
        svg('rect', {
          width: cellW,
          height: CELL_H,
          rx: 3,
          fill: toCss(tint),
          stroke: r.index === selected ? toCss(pal.focus) : toCss(mix(pal.bg, pal.fg, 0.18, pal.bg)),
          'stroke-width': r.index === selected ? 2 : 1,
        }),
        // narrow cells in the layer × head grid: the row and column headers name the head
        svg('text', { x: 5, y: 12, fill: fg, 'font-weight': 600 }, byLayer && cellW < 84 ? '' : headLabel(r.layer, r.head)),
        svg(
          'text',
          { x: cellW - 19, y: 12, fill: Number.isFinite(r.induction) && r.induction > 0.2 ? fg : muted, 'text-anchor': 'end' },
          `ind ${inductionText(r.induction)}`,
        ),
        ablateToggle(r.layer, r.head, cellW, pal),
      );
      const plot = svg('g', { transform: `translate(6 17)` });
      const pw = cellW - 12;
      plot.append(
        svg('line', { x1: 0, x2: pw, y1: plotH, y2: plotH, stroke: toCss(mix(pal.bg, pal.fg, 0.3, pal.bg)), 'stroke-width': 0.6 }),
      );
      if (mode === 'norm') {
        const y1 = plotH - scaleT(1, sc) * plotH;
        plot.append(svg('line', { x1: 0, x2: pw, y1, y2: y1, stroke: muted, 'stroke-width': 0.7, 'stroke-dasharray': '2 2' }));
      }
      plot.append(
        svg('polyline', {
          points: sparkPoints(kernelOf(s, r.index, mode), pw, plotH, sc),
          fill: 'none',
          stroke: line,
          'stroke-width': 1.3,
          'stroke-linejoin': 'round',
        }),
      );
      g.append(plot);
      g.append(svg('text', { x: 5, y: CELL_H - 4, fill: Math.abs(t) > 0.25 ? fg : muted }, `self ${signedText(r.selfBias)}`));
      if (cellW >= 100) g.append(svg('text', { x: cellW - 5, y: CELL_H - 4, fill: muted, 'text-anchor': 'end' }, `peak d=${r.peak}`));
      root.append(g);
    });
    clear(scroller);
    scroller.append(root);
    gridSvg = root;
    // legend: the self-bias colours and the kernel scale
    clear(legend);
    const bg = pal.bg;
    const bar = el('span', { class: 'att-legend-bar' });
    bar.style.background = `linear-gradient(to right, ${toCss(mix(bg, neg, 0.42, bg))}, ${toCss(bg)}, ${toCss(mix(bg, pos, 0.42, bg))})`;
    legend.append(
      el('span', { class: 'muted', text: `self-bias ${signedText(-range)}` }),
      bar,
      el('span', { class: 'muted', text: `${signedText(range)}` }),
    );
    hint.textContent =
      mode === 'norm'
        ? `K(d) ÷ uniform, log y from 1/16 to ${fmt(sc.hi, 2)}× (dashed: 1 = flat) · d = 0…${s.maxOffset} · click a head for its pattern`
        : `K(d), y from 0 to ${fmt(sc.hi, 2)} · d = 0…${s.maxOffset} tokens back · click a head for its pattern`;
    legend.title =
      'Cell colour: self-bias = mean attention to itself minus the uniform baseline. Orange: the head avoids its own token; blue: it prefers it.';
  };

  const drawTable = (s: HeadStatsResult) => {
    const rows = sortHeads(rowsFor(s), sort, reverse);
    const pal = ctx.palette();
    const range = selfBiasRange(s);
    const th = (text: string, key: HeadSort | null, title: string) => {
      const h = el('th', { text, title, attrs: { scope: 'col' } });
      if (key) {
        h.classList.add('sortable');
        h.setAttribute('aria-sort', sort === key ? (reverse ? 'descending' : 'ascending') : 'none');
        h.tabIndex = 0;
        const go = () => {
          reverse = key === sort && key !== 'layer' ? !reverse : false;
          sort = key;
          void render();
        };
        h.addEventListener('click', go);
        h.addEventListener('keydown', (ev) => (ev.key === 'Enter' || ev.key === ' ') && (ev.preventDefault(), go()));
      }
      return h;
    };
    const table = el('table', { class: 'att-table' }, [
      el('thead', {}, [
        el('tr', {}, [
          th('Head', 'layer', 'Layer and head'),
          th('Self-bias', 'selfBias', 'mean attention to itself − uniform baseline (negative = avoids itself)'),
          th('Induction', 'induction', 'mean attention to the successor of an earlier occurrence of the current token'),
          th('K(0)', null, 'mean attention to the token itself'),
          th('K(1)', null, 'mean attention to the previous token'),
          th('Peak d', null, 'offset with the largest normalised kernel'),
          th('Ablate', null, 'select the head for ablation (what-if)'),
        ]),
      ]),
    ]);
    const body = el('tbody');
    for (const r of rows) {
      const t = divergingT(r.selfBias, range);
      const tr = el('tr', { class: r.index === selected ? 'sel' : '', attrs: { tabindex: 0, 'data-head': r.index } }, [
        el('td', { class: 'mono', text: headLabel(r.layer, r.head) }),
        el('td', { class: 'num', text: signedText(r.selfBias, 3) }),
        el('td', { class: 'num', text: inductionText(r.induction, 3) }),
        el('td', { class: 'num', text: fmt(r.k0, 3) }),
        el('td', { class: 'num', text: fmt(r.k1, 3) }),
        el('td', { class: 'num', text: String(r.peak) }),
        el('td', { class: 'abl' }, [ablateBox(r.layer, r.head)]),
      ]);
      const cell = tr.children[1] as HTMLElement;
      cell.style.backgroundColor = toCss(mix(pal.bg, t < 0 ? pal.orange : pal.blue, Math.abs(t) * 0.42, pal.bg));
      tr.addEventListener('click', () => pick(r.index));
      tr.addEventListener('keydown', (ev) => (ev.key === 'Enter' || ev.key === ' ') && (ev.preventDefault(), pick(r.index)));
      body.append(tr);
    }
    table.append(body);
    clear(scroller);
    scroller.append(table);
    gridSvg = null;
    clear(legend);
  };

  scroller.addEventListener('click', (ev) => {
    const t = (ev.target as Element).closest?.('[data-ablate]');
    if (t) {
      ev.stopPropagation();
      const [L, h] = (t.getAttribute('data-ablate') ?? '').split('.').map(Number) as [number, number];
      ablate.toggle(L, h);
      return;
    }
    const g = (ev.target as Element).closest?.('[data-head]');
    if (g && g instanceof SVGElement) pick(Number(g.getAttribute('data-head')));
  });
  scroller.addEventListener('keydown', (ev) => {
    const g = (ev.target as Element).closest?.('[data-head]');
    if (g instanceof SVGElement && (ev.key === 'a' || ev.key === 'A')) {
      const s = current();
      const r = s.kind === 'ok' ? rowsFor(s.stats)[Number(g.getAttribute('data-head'))] : undefined;
      if (r) ablate.toggle(r.layer, r.head);
      return;
    }
    if (g instanceof SVGElement && (ev.key === 'Enter' || ev.key === ' ')) {
      ev.preventDefault();
      pick(Number(g.getAttribute('data-head')));
    }
  });
  scroller.addEventListener('mousemove', (ev) => {
    const g = (ev.target as Element).closest?.('[data-head]');
    const s = current();
    if (!(g instanceof SVGElement) || s.kind !== 'ok') return ctx.tooltip.hide();
    const r = rowsFor(s.stats)[Number(g.getAttribute('data-head'))];
    if (!r) return;
    ctx.tooltip.show(ev.clientX, ev.clientY, [
      el('div', { class: 'tt-title', text: `Head ${headLabel(r.layer, r.head)}` }),
      el('div', { text: `self-bias ${signedText(r.selfBias, 3)}${r.selfBias < 0 ? ' (avoids itself)' : ''}` }),
      el('div', { text: `induction ${inductionText(r.induction, 3)}` }),
      el('div', { class: 'muted', text: `K(0) ${fmt(r.k0, 3)} · K(1) ${fmt(r.k1, 3)} · peak at d = ${r.peak}` }),
      el('div', {
        class: 'muted',
        text: `click: show its attention pattern · ✕ (or A): ${ablate.isAblated(r.layer, r.head) ? 'do not ablate it' : 'select it for ablation'}`,
      }),
    ]);
  });
  scroller.addEventListener('mouseleave', () => ctx.tooltip.hide());

  // ---- the pattern heatmap -------------------------------------------------------------

  heat.on('plotly_hover', (ev) => {
    const p = ctx.store.state.payload;
    const pt = ev.points[0];
    const s = current();
    if (!p || !pt || s.kind !== 'ok' || selected < 0) return;
    const q = Number(pt.y);
    const k = Number(pt.x);
    if (!(k <= q)) return ctx.tooltip.hide();
    const m = patterns.get(`${p.runId}:${Math.floor(selected / s.stats.n_heads)}.${selected % s.stats.n_heads}`);
    const v = m ? m[q * p.tokens.length + k]! : NaN;
    const mouse = ev.event as MouseEvent;
    ctx.tooltip.show(mouse.clientX, mouse.clientY, [
      el('div', { class: 'tt-title', text: `attention ${fmt(v, 3)} · ${selectedName()}` }),
      el('div', {}, [
        el('span', { class: 'muted', text: `query ${q}  ` }),
        el('span', { class: 'mono', text: tokenDisplay(p.tokens[q]!).text }),
      ]),
      el('div', {}, [
        el('span', { class: 'muted', text: `key ${k}  ` }),
        el('span', { class: 'mono', text: tokenDisplay(p.tokens[k]!).text }),
      ]),
      el('div', { class: 'muted', text: `offset d = ${q - k}` }),
    ]);
  });
  heat.on('plotly_unhover', () => ctx.tooltip.hide());
  heat.on('plotly_click', (ev) => {
    const pt = ev.points[0];
    if (!pt) return;
    const q = Number(pt.y);
    const k = Number(pt.x);
    if (k <= q) ctx.select(q, k === q ? null : k);
  });
  heat.sizeWith((w, h) => ({ width: Math.min(w, h + 90), height: h }));

  const drawKeys = (p: AnalysisPayload, m: Float32Array, q: number) => {
    clear(keysLine);
    const T = p.tokens.length;
    if (q < 0 || q >= T) return;
    keysLine.append(
      el('span', { class: 'muted', text: `pos ${q} ` }),
      el('span', { class: 'mono', text: tokenDisplay(p.tokens[q]!).text }),
      el('span', { class: 'muted', text: ' attends to ' }),
    );
    for (const { key, p: v } of topKeys(m, T, q, 4)) {
      const chip = el(
        'button',
        { class: 'att-chip', attrs: { type: 'button' }, title: `key ${key} (d = ${q - key}); click: highlight it` },
        [
          el('span', { class: 'mono', text: tokenDisplay(p.tokens[key]!).text }),
          el('span', { class: 'muted', text: ` ${key === q ? 'self' : `d=${q - key}`} ` }),
          el('span', { class: 'num', text: v.toFixed(2) }),
        ],
      );
      chip.addEventListener('click', () => ctx.select(q, key === q ? null : key));
      keysLine.append(chip);
    }
  };

  const drawHeat = async (p: AnalysisPayload, s: Readonly<AppState>, stats: HeadStatsResult) => {
    const pal = ctx.palette();
    const T = p.tokens.length;
    if (selected < 0 || selected >= stats.n_layers * stats.n_heads) {
      heatNote.hidden = true;
      return;
    }
    const layer = Math.floor(selected / stats.n_heads);
    const head = selected % stats.n_heads;
    heat.el.querySelector('h3')!.textContent = `Attention pattern · ${headLabel(layer, head)}`;
    const k = `${p.runId}:${layer}.${head}`;
    const m = patterns.get(k);
    const err = patternErrors.get(k);
    if (!m) {
      if (err) {
        fillNote(heatNote, 'warning', 'This head’s pattern is not available.', err);
        heat.gd.style.visibility = 'hidden';
        clear(keysLine);
      } else {
        fillNote(heatNote, 'info', `Loading ${headLabel(layer, head)}…`);
        void loadPattern(p, layer, head);
      }
      return;
    }
    heatNote.hidden = true;
    heat.gd.style.visibility = '';
    const sel = Math.max(0, Math.min(T - 1, s.selectedPos));
    drawKeys(p, m, sel);
    const shapes: Shape[] = [
      {
        type: 'rect',
        xref: 'x',
        yref: 'y',
        x0: -0.5,
        x1: sel + 0.5,
        y0: sel - 0.5,
        y1: sel + 0.5,
        line: { color: c(pal.focus), width: 1.5 },
        fillcolor: 'rgba(0,0,0,0)',
      },
    ];
    if (s.highlightPos !== null && s.highlightPos <= sel)
      shapes.push({
        type: 'rect',
        xref: 'x',
        yref: 'y',
        x0: s.highlightPos - 0.5,
        x1: s.highlightPos + 0.5,
        y0: sel - 0.5,
        y1: sel + 0.5,
        line: { color: c(pal.focus), width: 2.5 },
        fillcolor: 'rgba(0,0,0,0)',
      });
    const drawKey = `${k}:${s.themeVersion}`;
    if (heatKey === drawKey && heat.isDrawn) return heat.relayout({ shapes });
    heatKey = drawKey;
    let zmax = 0;
    for (const v of m) if (v > zmax) zmax = v;
    // a square-root ramp: small attention weights stay visible next to a dominant one
    const ramp: [number, string][] = Array.from({ length: 11 }, (_, i) => {
      const u = i / 10;
      return [u, toCss(mix(pal.bg, pal.purple, 0.06 + 0.94 * Math.sqrt(u), pal.bg))];
    });
    const idx = Array.from({ length: T }, (_, i) => i);
    const ax = axisStyle(pal);
    const labels = T <= 48 ? { tickmode: 'array' as const, tickvals: idx, ticktext: p.tokens.map((t) => plotlyToken(t.text, 8)) } : {};
    await heat.draw(
      [
        {
          type: 'heatmap',
          z: lowerTriangle(m, T),
          x: idx,
          y: idx,
          zmin: 0,
          zmax: Math.max(zmax, 1e-6),
          colorscale: ramp,
          hoverinfo: 'none',
          xgap: T <= 64 ? 1 : 0,
          ygap: T <= 64 ? 1 : 0,
          colorbar: {
            thickness: 8,
            len: 0.9,
            outlinewidth: 0,
            tickfont: { size: 10, color: c(pal.muted) },
            title: { text: 'p', font: { size: 10, color: c(pal.muted) } },
          },
        } as Data,
      ],
      {
        ...baseLayout(pal),
        margin: { l: 40, r: 8, t: 8, b: 36 },
        uirevision: k,
        shapes,
        xaxis: {
          ...ax,
          ...labels,
          tickangle: -60,
          title: { text: 'key (attended token)', font: { size: 11, color: c(pal.muted) } },
          showgrid: false,
          zeroline: false,
          constrain: 'domain',
        },
        yaxis: {
          ...ax,
          ...labels,
          tickangle: 0,
          autorange: 'reversed',
          scaleanchor: 'x',
          showgrid: false,
          zeroline: false,
          constrain: 'domain',
          title: { text: 'query', font: { size: 11, color: c(pal.muted) } },
        },
      },
    );
  };

  // ---- render ----------------------------------------------------------------------------

  const render = serial(async () => {
    modeCtl.set(mode);
    sortCtl.set(sort);
    layoutCtl.set(layout);
    const s = ctx.store.state;
    const p = s.payload;
    if (!p) return;
    const st = current();
    if (st.kind === 'none') {
      void loadStats(p);
      fillNote(note, 'info', 'Loading attention statistics…');
      scroller.hidden = true;
      return;
    }
    if (st.kind === 'loading') return;
    const failed = st.kind === 'error';
    controls.hidden = failed;
    grid.tools.hidden = failed;
    scroller.hidden = failed;
    heat.el.hidden = failed;
    grid.el.classList.toggle('wide', failed);
    if (st.kind === 'error') {
      if (/not computed/i.test(st.message)) {
        const fromCli = /--no-patterns/.test(st.message);
        fillNote(
          note,
          'warning',
          'Attention patterns were not computed for this run.',
          fromCli
            ? 'The CLI ran with --no-patterns: run it without that flag to include attention (in VS Code: the setting transformerDynamics.attentionPatterns).'
            : 'Turn on the setting transformerDynamics.attentionPatterns (Settings → Transformer Dynamics) and analyse the text again.',
        );
      } else fillNote(note, 'warning', 'The attention statistics are not available.', st.message);
      hint.textContent = 'K(d): mean attention d tokens back';
      return;
    }
    note.hidden = true;
    const stats = st.stats;
    ablate.setStats(stats);
    if (selected < 0 || selected >= stats.n_layers * stats.n_heads) {
      // start on the most self-avoiding head: the seed's "negative self-bias"
      selected = sortHeads(rowsFor(stats), 'selfBias')[0]?.index ?? 0;
    }
    try {
      // the grid and table only change with their own inputs, not with the selected token
      const gk = `${p.runId}:${layout}:${mode}:${sort}:${reverse}:${selected}:${s.themeVersion}:${scroller.clientWidth}:${abKey(s)}`;
      if (gk !== gridKey) {
        gridKey = gk;
        if (layout === 'grid') drawGrid(p, stats);
        else drawTable(stats);
      }
      await drawHeat(p, s, stats);
      if (paintedRun !== p.runId) {
        paintedRun = p.runId;
        ctx.painted('attention');
      }
    } catch (e) {
      ctx.host.log('error', `Attention view failed to draw: ${(e as Error).message}`);
    }
  });

  new ResizeObserver(() => {
    if (lazy.active && layout === 'grid' && current().kind === 'ok') void render();
  }).observe(scroller);

  ctx.store.subscribe((_s, changed) => {
    if (changed.has('payload')) {
      const p = ctx.store.state.payload;
      for (const k of [...statsCache.keys()]) if (k !== p?.runId) statsCache.delete(k);
      patterns.clear();
      patternErrors.clear();
      heatKey = '';
    }
    const relevant = ['payload', 'selectedPos', 'highlightPos', 'themeVersion', 'ablation'] as const;
    if (!relevant.some((k) => changed.has(k))) return;
    lazy.invalidate();
  });

  return {
    id: 'attention',
    title: 'Attention',
    el: root,
    setActive: lazy.setActive,
  };
};
