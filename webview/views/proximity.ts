// Angular proximity: at the selected position, every vocabulary token as a point (cosine of the
// normed residual stream to its unembedding on x, its logit on y), drawn on a canvas (tens of
// thousands of points; Plotly's WebGL traces need eval, which the CSP forbids). The top tokens
// by logit and by cosine are labelled; their overlap and Spearman correlation are shown, with
// the per-layer cosines of the lens to the next token and to the final prediction.
import type { ProximityResult } from '../../src/shared/analysis';
import type { AnalysisPayload } from '../../src/shared/protocol';
import { clear, el, lazyDraw, serial, toolButton } from '../dom';
import { mix, toCss, type Rgba } from '../shapeColor';
import {
  KIND_BOTH,
  KIND_COS,
  KIND_LOGIT,
  KIND_REST,
  buildGrid,
  extentOf,
  isProximity,
  lensCosSeries,
  nearestPoint,
  niceTicks,
  placeLabels,
  pointKinds,
  proximitySvg,
  rankOf,
  toPx,
  toPy,
  topList,
  vocabLabel,
  type Frame,
  type PointGrid,
} from '../shapeDynamicsProximity';
import { imageName } from '../shapeExport';
import { fmt, rowLabel, tokenDisplay } from '../shapeText';
import type { AppState } from '../store';
import { ChartCard, axisStyle, baseLayout, c, type Data } from './chart';
import type { TabFactory, ViewContext } from './context';
import { CustomCard, ResultCache, fillNote } from './dynamicsCard';

const M = { l: 54, r: 14, t: 12, b: 38 };

export const proximityTab: TabFactory = (ctx: ViewContext) => {
  const selLabel = el('span', { class: 'sel-label' });
  const stats = el('span', { class: 'prox-stats' });
  const bar = el('div', { class: 'view-bar' }, [
    selLabel,
    el('span', { class: 'sep' }),
    stats,
    el('span', { class: 'spacer' }),
    el('span', { class: 'hint', text: 'logit = ‖x‖·‖W_U[:, t]‖·cos (+ bias): the rankings differ only through token norms' }),
  ]);
  const name = (what: string) => () => imageName(what, ctx.store.state.payload?.model.name ?? 'model', `pos${ctx.store.state.selectedPos}`);
  const canvas = el('canvas', {
    class: 'prox-canvas',
    attrs: { role: 'img', 'aria-label': 'Cosine against logit for every vocabulary token' },
  });
  const scatter = new CustomCard(
    ctx,
    'Whole vocabulary at the output: cosine vs logit',
    name('proximity'),
    {
      svg: () => {
        const d = shown();
        if (!d) return null;
        const pal = ctx.palette();
        return proximitySvg(d.r, (id) => label(d.p, d.r, id), { width: 900, height: 600 }, svgStyle(pal), nextIdOf(d.p, d.r.pos));
      },
      png: async () => {
        const d = shown();
        if (!d) return null;
        const off = document.createElement('canvas');
        const w = Math.max(300, canvas.clientWidth);
        const h = Math.max(200, canvas.clientHeight);
        off.width = w * 2;
        off.height = h * 2;
        paint(off, w, h, 2, d.p, d.r, null);
        return off.toDataURL('image/png');
      },
    },
    'prox-main',
  );
  const legend = el('div', { class: 'prox-legend' });
  scatter.tools.prepend(legend);
  const note = el('div', { class: 'dyn-note' });
  note.hidden = true;
  scatter.body.append(canvas, note);

  const lists = el('div', { class: 'prox-lists' });
  const listCard = el('section', { class: 'chart-card prox-list-card' }, [
    el('header', { class: 'chart-head' }, [el('h3', { text: 'Top tokens by logit and by cosine' })]),
    lists,
  ]);
  const layers = new ChartCard(ctx, 'Per layer: cos(ln_final(x), token)', name('proximity-layers'), 'prox-layers');
  const root = el('div', { class: 'view prox-view' }, [
    bar,
    el('div', { class: 'dyn-split prox-split' }, [scatter.el, el('div', { class: 'dyn-col' }, [listCard, layers.el])]),
  ]);

  const cache = new ResultCache<ProximityResult>(8);
  const errors = new Map<string, string>();
  const lazy = lazyDraw(
    () => render(),
    () => layers.isDrawn,
  );
  let fetchTimer = 0;
  let pending = '';
  let grid: PointGrid | null = null;
  let kinds: Uint8Array | null = null;
  let hover = -1;
  let paintedRun = -1;

  const key = (p: AnalysisPayload, pos: number) => `${p.runId}:${pos}`;
  const shown = (): { p: AnalysisPayload; r: ProximityResult } | null => {
    const p = ctx.store.state.payload;
    if (!p) return null;
    const r = cache.get(key(p, clampPos(p, ctx.store.state.selectedPos)));
    return r ? { p, r } : null;
  };
  const clampPos = (p: AnalysisPayload, pos: number) => Math.max(0, Math.min(p.tokens.length - 1, pos));

  const fetchPos = (p: AnalysisPayload, pos: number) => {
    const k = key(p, pos);
    if (pending === k) return;
    window.clearTimeout(fetchTimer);
    pending = k;
    fetchTimer = window.setTimeout(async () => {
      try {
        const r = await ctx.host.request('proximity', { runId: p.runId, pos });
        if (!isProximity(r, p.model.d_vocab) || r.pos !== pos) throw new Error('The proximity result has the wrong shape.');
        cache.set(k, r);
      } catch (e) {
        errors.set(k, (e as Error).message);
      } finally {
        if (pending === k) pending = '';
      }
      if (ctx.store.state.payload === p) void render();
    }, 120);
  };

  // ---- drawing ---------------------------------------------------------------------------

  const frameOf = (w: number, h: number, r: ProximityResult): Frame => ({
    left: M.l,
    top: M.t,
    width: Math.max(10, w - M.l - M.r),
    height: Math.max(10, h - M.t - M.b),
    ext: extentOf(r.cos, r.logits),
  });

  /** Paints the scatter into `cv` (w × h CSS pixels at `scale`); returns the screen positions. */
  function paint(
    cv: HTMLCanvasElement,
    w: number,
    h: number,
    scale: number,
    p: AnalysisPayload,
    r: ProximityResult,
    hovered: number | null,
  ) {
    const pal = ctx.palette();
    const g = cv.getContext('2d')!;
    g.setTransform(scale, 0, 0, scale, 0, 0);
    g.fillStyle = toCss(pal.bg);
    g.fillRect(0, 0, w, h);
    const f = frameOf(w, h, r);
    const V = r.logits.length;
    const px = new Float32Array(V);
    const py = new Float32Array(V);
    for (let t = 0; t < V; t++) {
      px[t] = toPx(f, r.cos[t]!);
      py[t] = toPy(f, r.logits[t]!);
    }
    // axes
    g.font = `10px ${pal.fontFamily}`;
    g.lineWidth = 1;
    g.strokeStyle = toCss(mix(pal.bg, pal.fg, 0.1, pal.bg));
    g.fillStyle = toCss(pal.muted);
    g.textAlign = 'center';
    g.textBaseline = 'top';
    for (const v of niceTicks(f.ext.x0, f.ext.x1, Math.max(3, Math.floor(f.width / 90)))) {
      const x = Math.round(toPx(f, v)) + 0.5;
      g.beginPath();
      g.moveTo(x, f.top);
      g.lineTo(x, f.top + f.height);
      g.stroke();
      g.fillText(fmt(v, 3).replace('-', '−'), x, f.top + f.height + 4);
    }
    g.textAlign = 'right';
    g.textBaseline = 'middle';
    for (const v of niceTicks(f.ext.y0, f.ext.y1, Math.max(3, Math.floor(f.height / 60)))) {
      const y = Math.round(toPy(f, v)) + 0.5;
      g.beginPath();
      g.moveTo(f.left, y);
      g.lineTo(f.left + f.width, y);
      g.stroke();
      g.fillText(fmt(v, 3).replace('-', '−'), f.left - 6, y);
    }
    g.strokeStyle = toCss(mix(pal.bg, pal.fg, 0.3, pal.bg));
    g.strokeRect(f.left + 0.5, f.top + 0.5, f.width, f.height);
    g.fillStyle = toCss(pal.fg);
    g.font = `11px ${pal.fontFamily}`;
    g.textAlign = 'center';
    g.textBaseline = 'alphabetic';
    g.fillText('cos(ln_final(x), W_U[:, t])', f.left + f.width / 2, h - 6);
    g.save();
    g.translate(13, f.top + f.height / 2);
    g.rotate(-Math.PI / 2);
    g.fillText('logit', 0, 0);
    g.restore();
    // the cloud, then the highlighted tokens on top
    const k = pointKinds(r);
    g.save();
    g.beginPath();
    g.rect(f.left, f.top, f.width, f.height);
    g.clip();
    const hc = pal.kind.startsWith('high-contrast');
    g.fillStyle = toCss(mix(pal.bg, pal.fg, hc ? 0.7 : 0.45, pal.bg));
    g.globalAlpha = V > 5000 ? 0.35 : 0.6;
    const s = V > 5000 ? 1.6 : 2.4;
    for (let t = 0; t < V; t++) if (k[t] === KIND_REST) g.fillRect(px[t]! - s / 2, py[t]! - s / 2, s, s);
    g.globalAlpha = 1;
    const colour: Record<number, Rgba> = { [KIND_COS]: pal.blue, [KIND_LOGIT]: pal.orange, [KIND_BOTH]: pal.purple };
    for (const kind of [KIND_COS, KIND_LOGIT, KIND_BOTH]) {
      g.fillStyle = toCss(colour[kind]!);
      g.strokeStyle = toCss(pal.bg);
      for (let t = 0; t < V; t++) {
        if (k[t] !== kind) continue;
        g.beginPath();
        g.arc(px[t]!, py[t]!, 3.6, 0, Math.PI * 2);
        g.fill();
        g.stroke();
      }
    }
    const next = nextIdOf(p, r.pos);
    if (next !== null) {
      g.strokeStyle = toCss(pal.green);
      g.lineWidth = 2;
      g.beginPath();
      g.arc(px[next]!, py[next]!, 6.5, 0, Math.PI * 2);
      g.stroke();
    }
    if (hovered !== null && hovered >= 0) {
      g.strokeStyle = toCss(pal.focus);
      g.lineWidth = 1.5;
      g.beginPath();
      g.arc(px[hovered]!, py[hovered]!, 5, 0, Math.PI * 2);
      g.stroke();
    }
    g.restore();
    // labels: top by logit first (the prediction), then by cosine, then the next token
    g.font = `11px ${pal.monoFamily}`;
    const ids = [...new Set([...(next !== null ? [next] : []), ...r.topByLogit, ...r.topByCos])];
    const boxes = ids.map((id) => ({ id, x: px[id]!, y: py[id]!, w: g.measureText(label(p, r, id)).width + 6, h: 15 }));
    const placed = placeLabels(boxes, { x: f.left + 2, y: f.top + 2, w: f.width - 4, h: f.height - 4 }, 5);
    g.textAlign = 'left';
    g.textBaseline = 'middle';
    for (const pl of placed) {
      g.fillStyle = toCss([pal.bg[0], pal.bg[1], pal.bg[2], 0.78]);
      g.fillRect(pl.x, pl.y, pl.w, pl.h);
      const kind = k[pl.id]!;
      g.fillStyle = toCss(pl.id === next ? pal.green : kind === KIND_REST ? pal.fg : (colour[kind] ?? pal.fg));
      if (hc) g.fillStyle = toCss(pal.fg);
      g.fillText(label(p, r, pl.id), pl.x + 3, pl.y + pl.h / 2 + 0.5);
    }
    return { px, py, kinds: k, width: w, height: h };
  }

  const drawScatter = (p: AnalysisPayload, r: ProximityResult) => {
    const w = scatter.body.clientWidth;
    const h = scatter.body.clientHeight;
    if (w < 20 || h < 20) return;
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    canvas.style.width = `${w}px`;
    canvas.style.height = `${h}px`;
    const out = paint(canvas, w, h, dpr, p, r, hover >= 0 ? hover : null);
    grid = buildGrid(out.px, out.py, w, h, 12);
    kinds = out.kinds;
  };

  const drawLegend = () => {
    const pal = ctx.palette();
    clear(legend);
    const item = (color: Rgba, text: string, ring = false) => {
      const dot = el('span', { class: `prox-dot${ring ? ' ring' : ''}` });
      if (ring) dot.style.borderColor = toCss(color);
      else dot.style.backgroundColor = toCss(color);
      return el('span', { class: 'prox-key' }, [dot, el('span', { text })]);
    };
    legend.append(
      item(pal.orange, 'top by logit'),
      item(pal.blue, 'top by cos'),
      item(pal.purple, 'both'),
      item(pal.green, 'next token', true),
    );
  };

  const drawStats = (p: AnalysisPayload, r: ProximityResult) => {
    clear(stats);
    const next = nextIdOf(p, r.pos);
    const chip = (k: string, v: string, title: string) =>
      el('span', { class: 'prox-stat', title }, [el('span', { class: 'muted', text: `${k} ` }), el('span', { class: 'num', text: v })]);
    stats.append(
      chip('Spearman ρ', fmt(r.spearman, 3), 'Rank correlation of the logit and cosine orderings over the whole vocabulary'),
      chip(`top-${r.k} overlap`, `${Math.round(r.topkOverlap * r.k)}/${r.k}`, 'Tokens in both the top-k by logit and the top-k by cosine'),
      chip('‖ln_final(x)‖', fmt(r.xNorm, 3), 'Norm of the normed residual stream at this position'),
    );
    if (next !== null)
      stats.append(
        chip(
          'next token rank',
          `${rankOf(r.logits, next) + 1} by logit · ${rankOf(r.cos, next) + 1} by cos`,
          `Where the actual next token ${JSON.stringify(p.vocab[next] ?? '')} ranks`,
        ),
      );
  };

  const drawLists = (p: AnalysisPayload, r: ProximityResult) => {
    clear(lists);
    const pal = ctx.palette();
    const next = nextIdOf(p, r.pos);
    for (const by of ['logit', 'cos'] as const) {
      const col = el('div', { class: 'prox-list' }, [
        el('div', { class: 'prox-list-head muted', text: by === 'logit' ? 'by logit' : 'by cosine' }),
      ]);
      topList(r, by).forEach((t, i) => {
        const dot = el('span', { class: 'prox-dot' });
        dot.style.backgroundColor = toCss(t.shared ? pal.purple : by === 'logit' ? pal.orange : pal.blue);
        const row = el(
          'div',
          {
            class: `prox-row${t.id === next ? ' next' : ''}`,
            title: `#${t.id} · logit ${fmt(t.logit, 4)} · cos ${fmt(t.cos, 4)}${t.shared ? ' · in both lists' : ''}${t.id === next ? ' · the actual next token' : ''}`,
          },
          [
            el('span', { class: 'muted num', text: String(i + 1) }),
            dot,
            el('span', { class: 'mono', text: label(p, r, t.id) }),
            el('span', { class: 'num', text: by === 'logit' ? fmt(t.logit, 3) : fmt(t.cos, 3) }),
          ],
        );
        col.append(row);
      });
      lists.append(col);
    }
  };

  const drawLayers = async (p: AnalysisPayload, pos: number) => {
    const pal = ctx.palette();
    const series = lensCosSeries(p.lens, pos);
    const x = Array.from({ length: p.lens.rows }, (_, r) => rowLabel(r));
    const line = (y: (number | null)[], color: string, nm: string, dash = 'solid'): Data =>
      ({
        type: 'scatter',
        mode: 'lines+markers',
        x,
        y,
        name: nm,
        line: { color, width: 2, dash },
        marker: { color, size: 5 },
        hovertemplate: `${nm}<br>%{x}: %{y:.3f}<extra></extra>`,
      }) as Data;
    const ax = axisStyle(pal);
    const every = Math.max(1, Math.ceil(x.length / 10));
    const ticks = x.filter((_, i) => i % every === 0 || i === x.length - 1);
    await layers.draw([line(series.next, c(pal.green), 'to next token'), line(series.pred, c(pal.orange), 'to final prediction', 'dot')], {
      ...baseLayout(pal),
      margin: { l: 44, r: 10, t: 6, b: 28 },
      showlegend: true,
      legend: { orientation: 'h', x: 0, y: 1.02, yanchor: 'bottom', font: { size: 10, color: c(pal.fg) }, bgcolor: 'rgba(0,0,0,0)' },
      xaxis: { ...ax, type: 'category', tickangle: 0, tickmode: 'array', tickvals: ticks, ticktext: ticks },
      yaxis: { ...ax, zeroline: true, title: { text: 'cos', font: { size: 10, color: c(pal.muted) } } },
    });
  };

  // ---- hover -----------------------------------------------------------------------------

  canvas.addEventListener('mousemove', (ev) => {
    const d = shown();
    if (!d || !grid) return;
    const rect = canvas.getBoundingClientRect();
    const t = nearestPoint(grid, ev.clientX - rect.left, ev.clientY - rect.top, 8, kinds ?? undefined);
    if (t !== hover) {
      hover = t;
      drawScatter(d.p, d.r);
    }
    if (t < 0) return ctx.tooltip.hide();
    const next = nextIdOf(d.p, d.r.pos);
    ctx.tooltip.show(ev.clientX, ev.clientY, [
      el('div', { class: 'tt-title' }, [
        el('span', { class: 'mono', text: label(d.p, d.r, t, 40) }),
        el('span', { class: 'muted', text: `  #${t}` }),
      ]),
      el('div', { text: `logit ${fmt(d.r.logits[t]!, 4)} · rank ${rankOf(d.r.logits, t) + 1}` }),
      el('div', { text: `cos ${fmt(d.r.cos[t]!, 4)} · rank ${rankOf(d.r.cos, t) + 1}` }),
      el('div', {
        class: 'muted',
        text: `‖W_U[:, t]‖ ${fmt(d.r.unembedNorms[t] ?? NaN, 3)}${t === next ? ' · the actual next token' : ''}`,
      }),
    ]);
  });
  canvas.addEventListener('mouseleave', () => {
    ctx.tooltip.hide();
    const d = shown();
    if (hover >= 0 && d) {
      hover = -1;
      drawScatter(d.p, d.r);
    }
  });

  // ---- render ----------------------------------------------------------------------------

  const render = serial(async () => {
    const s: Readonly<AppState> = ctx.store.state;
    const p = s.payload;
    if (!p) return;
    const pos = clampPos(p, s.selectedPos);
    const tok = p.tokens[pos];
    selLabel.textContent = tok ? `pos ${pos} · ${tokenDisplay(tok).text}` : '';
    drawLegend();
    try {
      await drawLayers(p, pos);
    } catch (e) {
      ctx.host.log('error', `Proximity layers failed to draw: ${(e as Error).message}`);
    }
    const k = key(p, pos);
    const r = cache.get(k);
    if (!r) {
      const err = errors.get(k);
      canvas.hidden = true;
      clear(lists);
      lists.append(el('div', { class: 'muted empty-note', text: 'No tokens to rank for this position yet.' }));
      clear(stats);
      if (err) {
        const last = p.tokens.length - 1;
        const details: (string | Node)[] = [err];
        if (pos !== last)
          details.push(
            el('div', { class: 'dyn-note-actions' }, [
              toolButton(`Show position ${last} (the last token)`, 'arrow-right', 'Select the last token', () => ctx.select(last)),
            ]),
          );
        fillNote(note, 'warning', 'Angular proximity is not available for this position.', ...details);
      } else {
        fillNote(note, 'info', `Scoring the whole vocabulary (${p.model.d_vocab.toLocaleString()} tokens) at position ${pos}…`);
        fetchPos(p, pos);
      }
      return;
    }
    note.hidden = true;
    canvas.hidden = false;
    hover = -1;
    drawStats(p, r);
    drawLists(p, r);
    drawScatter(p, r);
    if (paintedRun !== p.runId) {
      paintedRun = p.runId;
      ctx.painted('proximity');
    }
  });

  new ResizeObserver(() => {
    const d = shown();
    if (lazy.active && d && !canvas.hidden) drawScatter(d.p, d.r);
  }).observe(scatter.body);

  ctx.store.subscribe((_s, changed) => {
    if (changed.has('payload')) {
      cache.clear();
      errors.clear();
    }
    const relevant = ['payload', 'selectedPos', 'themeVersion'] as const;
    if (!relevant.some((k) => changed.has(k))) return;
    lazy.invalidate();
  });

  return {
    id: 'proximity',
    title: 'Proximity',
    el: root,
    setActive: lazy.setActive,
  };
};

/** The actual next token at `pos`, or null at the last position. */
function nextIdOf(p: AnalysisPayload, pos: number): number | null {
  const t = p.tokens[pos + 1];
  return t && t.id < p.model.d_vocab ? t.id : null;
}

function label(p: AnalysisPayload, r: ProximityResult, id: number, max = 16): string {
  return vocabLabel(r.labels[id] ?? p.vocab[id], id, max);
}

function svgStyle(pal: ReturnType<ViewContext['palette']>) {
  return {
    background: toCss(pal.bg),
    foreground: toCss(pal.fg),
    muted: toCss(pal.muted),
    grid: toCss(mix(pal.bg, pal.fg, 0.1, pal.bg)),
    rest: toCss(mix(pal.bg, pal.fg, 0.45, pal.bg)),
    logit: toCss(pal.orange),
    cos: toCss(pal.blue),
    both: toCss(pal.purple),
    next: toCss(pal.green),
    fontFamily: pal.fontFamily,
  };
}
