// The logit-lens table: rows = lens rows (emb, L0 … the output layer), columns = positions.
// Each cell shows the row's top-1 token, coloured by the chosen measure. Virtualised: only
// the cells in view exist in the DOM (keyed by row × position and recycled), so 1024 tokens
// × 33 rows scroll smoothly. Header, row labels and the "next token" row are sticky.
import '@vscode-elements/elements/dist/vscode-single-select/index.js';
import '@vscode-elements/elements/dist/vscode-option/index.js';
import type { AnalysisPayload, LensColorMode } from '../../src/shared/protocol';
import { clear, el, rafThrottle, toolButton } from '../dom';
import { mix, rampIndex, readableOn, toCss, type Rgba } from '../shapeColor';
import { imageName, svgDataUrl } from '../shapeExport';
import {
  LENS_MODES,
  isLensColorMode,
  isNextMatch,
  lensCellInfo,
  lensScale,
  lensTableSvg,
  modeValue,
  scaleT,
  top1Id,
  visibleRange,
  type LensScale,
} from '../shapeLens';
import { fmt, pct, rowLabel, tokenDisplay } from '../shapeText';
import type { Palette } from '../theme';
import type { TabFactory, ViewContext } from './context';
import type { AppState } from '../store';
import { comparison, divergingIndex, lensDelta, lensDeltaScale, pairDelta, roleIn, top1Changed, type Comparison } from '../shapeWhatIf';

const COL_W = 68;
const ROW_H = 20;
const LABEL_W = 46;
const HEAD_H = 24;
const FOOT_H = 22;
const STEPS = 48;

/** Elements keyed by an integer, created on demand and recycled when they leave the view. */
class KeyedLayer {
  private readonly live = new Map<number, HTMLElement>();
  private readonly spare: HTMLElement[] = [];

  constructor(
    private readonly parent: HTMLElement,
    private readonly className: string,
  ) {}

  sync(keys: number[], fill: (e: HTMLElement, key: number) => void, refill: boolean): void {
    const want = new Set(keys);
    for (const [k, e] of this.live) {
      if (!want.has(k)) {
        this.live.delete(k);
        e.hidden = true;
        this.spare.push(e);
      }
    }
    for (const k of keys) {
      let e = this.live.get(k);
      if (e && !refill) continue;
      if (!e) {
        e = this.spare.pop() ?? this.parent.appendChild(document.createElement('div'));
        e.hidden = false;
        this.live.set(k, e);
      }
      e.className = this.className;
      fill(e, k);
    }
  }

  get count(): number {
    return this.live.size;
  }

  reset(): void {
    for (const e of [...this.live.values(), ...this.spare]) e.remove();
    this.live.clear();
    this.spare.length = 0;
  }
}

interface Colours {
  fills: string[];
  inks: string[];
  naInk: string;
  scale: LensScale;
  ramp: Rgba[];
}

/** What-if difference colours: Δ log p(next token), ablated − clean, on a diverging ramp. */
interface DiffColours {
  fills: string[];
  inks: string[];
  scale: number;
}

function diffColours(pal: Palette, cmp: Comparison): DiffColours {
  const ramp = Array.from({ length: 2 * DIFF_HALF + 1 }, (_, i) => {
    const t = (i - DIFF_HALF) / DIFF_HALF;
    return mix(pal.bg, t < 0 ? pal.orange : pal.blue, 0.9 * Math.abs(t), pal.bg);
  });
  return {
    fills: ramp.map((c) => toCss(c)),
    inks: ramp.map((c) => toCss(readableOn(c, [pal.fg, pal.bg]))),
    scale: lensDeltaScale(cmp.intervened.lens, cmp.clean.lens),
  };
}

const DIFF_HALF = 24;

function colours(pal: Palette, p: AnalysisPayload, mode: LensColorMode): Colours {
  const accent = { prob: pal.blue, rank: pal.green, entropy: pal.orange, kl: pal.purple }[mode];
  const ramp = Array.from({ length: STEPS }, (_, i) => mix(pal.bg, accent, (0.9 * i) / (STEPS - 1), pal.bg));
  return {
    ramp,
    fills: ramp.map((c) => toCss(c)),
    inks: ramp.map((c) => toCss(readableOn(c, [pal.fg, pal.bg]))),
    naInk: toCss(pal.muted),
    scale: lensScale(mode, p.lens, p.model.d_vocab),
  };
}

export const lensTab: TabFactory = (ctx: ViewContext) => {
  const select = el('vscode-single-select', { class: 'mode-select', attrs: { 'aria-label': 'Colour cells by' } }) as HTMLElement & {
    value: string;
  };
  for (const m of LENS_MODES) {
    select.append(el('vscode-option', { text: m.label, attrs: { value: m.mode, selected: m.mode === ctx.store.state.lensColor } }));
  }
  select.addEventListener('change', () => {
    if (isLensColorMode(select.value)) ctx.store.set({ lensColor: select.value });
  });
  const legend = el('div', { class: 'legend' });
  const status = el('span', { class: 'chart-status' });
  const bar = el('div', { class: 'view-bar' }, [
    el('label', { class: 'bar-label', text: 'Colour' }),
    select,
    legend,
    el('span', { class: 'spacer' }),
    el('span', { class: 'hint', text: 'bold underline = top-1 is the actual next token' }),
    status,
    toolButton('PNG', 'file-media', 'Save the whole table as PNG', () => void exportTable('png')),
    toolButton('SVG', 'file-code', 'Save the whole table as SVG', () => void exportTable('svg')),
  ]);

  const corner = el('div', { class: 'lens-corner', text: 'layer' });
  const head = el('div', { class: 'lens-head' }, [corner]);
  const labels = el('div', { class: 'lens-labels' });
  const selCol = el('div', { class: 'lens-selcol' });
  const body = el('div', { class: 'lens-body' }, [labels, selCol]);
  const foot = el('div', { class: 'lens-foot' }, [el('div', { class: 'lens-corner', text: 'next', title: 'the actual next token' })]);
  const content = el('div', { class: 'lens-content' }, [head, body, foot]);
  const scroller = el('div', { class: 'lens-scroller', attrs: { tabindex: 0, role: 'grid', 'aria-label': 'Logit lens' } }, [content]);
  const root = el('div', { class: 'view lens-view' }, [bar, scroller]);

  const headCells = new KeyedLayer(head, 'lh');
  const footCells = new KeyedLayer(foot, 'lf');
  const labelCells = new KeyedLayer(labels, 'll');
  const cells = new KeyedLayer(body, 'lc');

  let active = false;
  let dirty = true;
  let payload: AnalysisPayload | null = null;
  let col: Colours | null = null;
  /** What-if: the run compared with, and the difference colours when comparing by difference. */
  let cmp: Comparison | null = null;
  let dcol: DiffColours | null = null;
  let textCache = new Map<number, string>();
  let range = { c0: 0, c1: 0, r0: 0, r1: 0 };
  let paintedRun = -1;

  const top1Text = (id: number): string => {
    let t = textCache.get(id);
    if (t === undefined) {
      t = tokenDisplay({ text: payload?.vocab[id] ?? '' }).text;
      textCache.set(id, t);
    }
    return t;
  };

  const layout = () => {
    const p = payload!;
    const T = p.lens.pos;
    content.style.width = `${LABEL_W + T * COL_W}px`;
    body.style.height = `${p.lens.rows * ROW_H}px`;
    head.style.height = `${HEAD_H}px`;
    foot.style.height = `${FOOT_H}px`;
  };

  const fillCell = (e: HTMLElement, key: number) => {
    const p = payload!;
    const T = p.lens.pos;
    const r = Math.floor(key / T);
    const c = key % T;
    e.style.left = `${LABEL_W + c * COL_W}px`;
    e.style.top = `${r * ROW_H}px`;
    e.dataset.r = String(r);
    e.dataset.p = String(c);
    e.textContent = top1Text(top1Id(p.lens, r, c));
    if (cmp && top1Changed(p.lens, cmp.other.lens, r, c)) e.classList.add('chg');
    if (dcol && cmp) {
      const k = divergingIndex(lensDelta(cmp.intervened.lens, cmp.clean.lens, r, c), dcol.scale, DIFF_HALF);
      e.style.backgroundColor = k === null ? '' : dcol.fills[k]!;
      e.style.color = k === null ? col!.naInk : dcol.inks[k]!;
      if (isNextMatch(p, r, c)) e.classList.add('hit');
      if (r === p.lens.rows - 1) e.classList.add('out');
      return;
    }
    const t = scaleT(col!.scale, modeValue(p.lens, ctx.store.state.lensColor, r, c));
    if (t === null) {
      e.style.backgroundColor = '';
      e.style.color = col!.naInk;
      e.classList.add('na');
    } else {
      const k = rampIndex(t, STEPS);
      e.style.backgroundColor = col!.fills[k]!;
      e.style.color = col!.inks[k]!;
    }
    if (isNextMatch(p, r, c)) e.classList.add('hit');
    if (r === p.lens.rows - 1) e.classList.add('out');
  };

  const fillHead = (e: HTMLElement, c: number) => {
    const p = payload!;
    const d = tokenDisplay(p.tokens[c]!);
    e.style.left = `${LABEL_W + c * COL_W}px`;
    e.dataset.p = String(c);
    e.textContent = d.text;
    e.classList.add(d.kind);
    if (c === ctx.store.state.selectedPos) e.classList.add('sel');
  };

  const fillFoot = (e: HTMLElement, c: number) => {
    const p = payload!;
    e.style.left = `${LABEL_W + c * COL_W}px`;
    e.dataset.p = String(c);
    const next = p.tokens[c + 1];
    if (next) {
      const d = tokenDisplay(next);
      e.textContent = d.text;
      e.classList.add(d.kind);
    } else {
      e.textContent = '';
      e.classList.add('na');
    }
    if (c === ctx.store.state.selectedPos) e.classList.add('sel');
  };

  const fillLabel = (e: HTMLElement, r: number) => {
    const p = payload!;
    e.style.top = `${r * ROW_H}px`;
    e.textContent = rowLabel(r);
    e.title = r === 0 ? 'embeddings' : r === p.lens.rows - 1 ? `layer ${r - 1}: the model's output` : `layer ${r - 1}`;
    if (r === p.lens.rows - 1) e.classList.add('out');
  };

  /** Renders the cells in view; `refill` redraws every live cell (mode, theme or selection changed). */
  const paint = (refill: boolean) => {
    if (!payload || !col) return;
    const T = payload.lens.pos;
    const rows = payload.lens.rows;
    const [c0, c1] = visibleRange(Math.max(0, scroller.scrollLeft), Math.max(0, scroller.clientWidth - LABEL_W), COL_W, T);
    const [r0, r1] = visibleRange(Math.max(0, scroller.scrollTop), Math.max(0, scroller.clientHeight - HEAD_H - FOOT_H), ROW_H, rows);
    range = { c0, c1, r0, r1 };
    const colsIn: number[] = [];
    for (let c = c0; c < c1; c++) colsIn.push(c);
    const rowsIn: number[] = [];
    for (let r = r0; r < r1; r++) rowsIn.push(r);
    const keys: number[] = [];
    for (const r of rowsIn) for (const c of colsIn) keys.push(r * T + c);
    headCells.sync(colsIn, fillHead, refill);
    footCells.sync(colsIn, fillFoot, refill);
    labelCells.sync(rowsIn, fillLabel, refill);
    cells.sync(keys, fillCell, refill);
    root.dataset.cells = String(cells.count);
  };
  const onScroll = rafThrottle(() => {
    ctx.tooltip.hide();
    paint(false);
  });
  scroller.addEventListener('scroll', onScroll, { passive: true });
  new ResizeObserver(() => active && payload && paint(false)).observe(scroller);

  const paintLegend = () => {
    clear(legend);
    if (dcol && cmp) {
      const g = el('div', { class: 'legend-bar' });
      g.style.background = `linear-gradient(to right, ${dcol.fills[0]}, ${dcol.fills[DIFF_HALF]}, ${dcol.fills[2 * DIFF_HALF]})`;
      const ticks = el('div', { class: 'legend-ticks' });
      for (const [t, label] of [
        [0, `−${fmt(dcol.scale, 2)}`],
        [0.5, '0'],
        [1, `+${fmt(dcol.scale, 2)}`],
      ] as const) {
        const tick = el('span', { text: label });
        tick.style.left = `${t * 100}%`;
        ticks.append(tick);
      }
      const what = cmp.intervened.interventions?.patch ? 'the patch' : 'the ablation';
      legend.title = `log p(actual next token): ${pairDelta(cmp)}, in nats. Orange: ${what} makes the next token less likely; blue: more likely. Outlined cells: the top-1 token changed.`;
      legend.append(el('span', { class: 'legend-title', text: 'Δ log p(next)' }), el('div', { class: 'legend-scale' }, [g, ticks]));
      return;
    }
    if (!col) return;
    const stops = col.fills.filter((_, i) => i % 6 === 0 || i === STEPS - 1);
    const gradient = el('div', { class: 'legend-bar' });
    gradient.style.background = `linear-gradient(to right, ${stops.join(', ')})`;
    const ticks = el('div', { class: 'legend-ticks' });
    for (const t of col.scale.ticks) {
      const tick = el('span', { text: t.label });
      tick.style.left = `${t.t * 100}%`;
      ticks.append(tick);
    }
    legend.title = `${col.scale.title}; strong colour = ${col.scale.strong}`;
    legend.append(el('span', { class: 'legend-title', text: col.scale.title }), el('div', { class: 'legend-scale' }, [gradient, ticks]));
  };

  const placeSelection = (scroll: boolean) => {
    if (!payload) return;
    const pos = ctx.store.state.selectedPos;
    selCol.hidden = pos < 0 || pos >= payload.lens.pos;
    selCol.style.left = `${LABEL_W + pos * COL_W}px`;
    if (!scroll || selCol.hidden) return;
    // out of view: bring it to the middle (a jump to the edge would hide its neighbours)
    const x = pos * COL_W;
    const view = scroller.clientWidth - LABEL_W;
    if (x < scroller.scrollLeft || x + COL_W > scroller.scrollLeft + view) scroller.scrollLeft = Math.max(0, x - (view - COL_W) / 2);
  };

  const render = () => {
    dirty = false;
    payload = ctx.store.state.payload;
    root.classList.toggle('empty', !payload);
    if (!payload) return;
    col = colours(ctx.palette(), payload, ctx.store.state.lensColor);
    cmp = comparison(ctx.store.state.whatIf, payload);
    dcol = cmp?.mode === 'difference' ? diffColours(ctx.palette(), cmp) : null;
    select.hidden = !!dcol;
    layout();
    paintLegend();
    placeSelection(true);
    paint(true);
    if (paintedRun !== payload.runId) {
      paintedRun = payload.runId;
      ctx.painted('lens');
    }
  };

  // Hover: the cell's top-k, entropy, the actual next token's rank and probability, KL.
  body.addEventListener('mouseover', (ev) => {
    const cell = (ev.target as HTMLElement).closest<HTMLElement>('.lc');
    if (!cell || !payload) return;
    const r = Number(cell.dataset.r);
    const p = Number(cell.dataset.p);
    const info = lensCellInfo(payload, r, p, ctx.store.state.settings.lensTopK);
    const rows: Node[] = [
      el('div', { class: 'tt-title' }, [
        el('span', { text: `${info.rowTitle} · pos ${p} ` }),
        el('span', { class: 'mono', text: info.input.text }),
        el('span', { class: 'muted', text: info.next ? ' → ' : '' }),
        info.next ? el('span', { class: 'mono', text: info.next.text }) : null,
      ]),
    ];
    const table = el('div', { class: 'tt-top' });
    for (const t of info.top) {
      const barEl = el('span', { class: 'tt-bar' });
      barEl.style.width = `${Math.max(1, Math.round(t.prob * 60))}px`;
      table.append(
        el('span', { class: `mono${t.isNext ? ' hit' : ''}`, text: t.text.text }),
        el('span', { class: 'num', text: pct(t.prob) }),
        el('span', { class: 'tt-bar-wrap' }, [barEl]),
      );
    }
    rows.push(table);
    const stats = el('div', { class: 'tt-stats' }, [
      el('span', { text: `entropy ${fmt(info.entropy)} nats` }),
      el('span', { text: `KL to final ${fmt(info.kl)} nats` }),
      el('span', {
        text: info.nextRank === null ? 'last position: no next token' : `next token rank #${info.nextRank}, p ${pct(info.nextProb ?? NaN)}`,
      }),
      el('span', { text: `copy mass ${pct(info.copyMass)}` }),
    ]);
    rows.push(stats);
    if (cmp) {
      const o = lensCellInfo(cmp.other, r, p, 1);
      const d = lensDelta(cmp.intervened.lens, cmp.clean.lens, r, p);
      rows.push(
        el('div', { class: 'tt-stats' }, [
          el('span', { text: `${roleIn(cmp, cmp.other)}: top-1 ${o.top[0]?.text.text ?? ''} ${pct(o.top[0]?.prob ?? NaN)}` }),
          el('span', {
            text: Number.isFinite(d)
              ? `Δ log p(next) ${pairDelta(cmp)} ${d >= 0 ? '+' : ''}${fmt(d, 3)} nats`
              : 'last position: no next token',
          }),
        ]),
      );
    }
    const rect = cell.getBoundingClientRect();
    ctx.tooltip.show(rect.left, rect.bottom, rows);
  });
  body.addEventListener('mouseleave', () => ctx.tooltip.hide());
  const clickPos = (ev: MouseEvent) => {
    const e = (ev.target as HTMLElement).closest<HTMLElement>('[data-p]');
    if (e?.dataset.p !== undefined) ctx.select(Number(e.dataset.p));
  };
  body.addEventListener('click', clickPos);
  head.addEventListener('click', clickPos);
  foot.addEventListener('click', clickPos);

  async function exportTable(format: 'png' | 'svg'): Promise<void> {
    const p = ctx.store.state.payload;
    if (!p || !col) return;
    status.textContent = 'Exporting…';
    status.classList.remove('error');
    try {
      const pal = ctx.palette();
      const c = col;
      const svg = lensTableSvg(p, ctx.store.state.lensColor, {
        background: toCss(pal.bg),
        foreground: toCss(pal.fg),
        muted: toCss(pal.muted),
        border: toCss(mix(pal.bg, pal.fg, 0.12, pal.bg)),
        fontFamily: pal.monoFamily,
        cell: (t) =>
          t === null ? { fill: toCss(pal.bg), text: c.naInk } : { fill: c.fills[rampIndex(t, STEPS)]!, text: c.inks[rampIndex(t, STEPS)]! },
      });
      const data = format === 'svg' ? svg : await svgToPng(svg);
      const name = imageName('logit-lens', p.model.name, ctx.store.state.lensColor);
      const saved = await ctx.host.request('saveImage', { name, format, data });
      status.textContent = saved ? 'Saved' : '';
    } catch (e) {
      status.textContent = `Export failed: ${(e as Error).message}`;
      status.classList.add('error');
    }
  }

  ctx.store.subscribe((s, changed) => {
    if (changed.has('payload')) textCache = new Map();
    if (!active) {
      if (['payload', 'lensColor', 'themeVersion', 'selectedPos', 'whatIf'].some((k) => changed.has(k as keyof AppState))) dirty = true;
      return;
    }
    if (changed.has('payload') || changed.has('lensColor') || changed.has('themeVersion') || changed.has('whatIf')) render();
    else if (changed.has('selectedPos') && payload) {
      placeSelection(true);
      // header and footer cells carry the selection mark
      const colsIn = Array.from({ length: range.c1 - range.c0 }, (_, i) => range.c0 + i);
      headCells.sync(colsIn, fillHead, true);
      footCells.sync(colsIn, fillFoot, true);
      paint(false);
    } else if (changed.has('settings')) ctx.tooltip.hide();
  });

  return {
    id: 'lens',
    title: 'Logit lens',
    el: root,
    setActive(a: boolean) {
      active = a;
      if (a && (dirty || payload !== ctx.store.state.payload)) requestAnimationFrame(render);
    },
  };
};

/** Rasterises SVG markup to a PNG data URL (capped so the canvas stays within browser limits). */
async function svgToPng(svg: string): Promise<string> {
  const m = /width="(\d+)" height="(\d+)"/.exec(svg);
  const w = Number(m?.[1] ?? 800);
  const h = Number(m?.[2] ?? 600);
  const scale = Math.min(2, 16000 / w, 16000 / h, Math.sqrt(100e6 / (w * h)));
  const img = new Image();
  img.src = svgDataUrl(svg);
  await img.decode();
  const canvas = document.createElement('canvas');
  canvas.width = Math.max(1, Math.floor(w * scale));
  canvas.height = Math.max(1, Math.floor(h * scale));
  const g = canvas.getContext('2d');
  if (!g) throw new Error('No 2D canvas.');
  g.scale(scale, scale);
  g.drawImage(img, 0, 0);
  return canvas.toDataURL('image/png');
}
