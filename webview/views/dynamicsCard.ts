// Shared pieces of the dynamics views (attention, proximity, ball, clusters, diff): a titled
// card for charts the panel draws itself (SVG or canvas) with PNG/SVG export through the host,
// notes for empty and error states, and SVG element helpers (text via textContent only).
import { clear, el, icon, toolButton } from '../dom';
import { svgDataUrl } from '../shapeExport';
import type { ViewContext } from './context';

export const SVG_NS = 'http://www.w3.org/2000/svg';

/** An SVG element with attributes (never markup). */
export function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number> = {},
  text?: string,
): SVGElementTagNameMap[K] {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

export interface CardExporter {
  /** Standalone SVG markup of the chart, or null when there is nothing to export. */
  svg(): string | null;
  /** A PNG data URL; default: the SVG rasterised at 2×. */
  png?(): Promise<string | null>;
}

/** A titled card with PNG/SVG export for a chart drawn by the view itself. */
export class CustomCard {
  readonly el: HTMLElement;
  readonly body: HTMLElement;
  readonly tools: HTMLElement;
  readonly titleEl: HTMLElement;
  private readonly status: HTMLElement;

  constructor(
    private readonly ctx: ViewContext,
    title: string,
    private readonly imageName: () => string,
    private readonly exporter: CardExporter,
    className = '',
  ) {
    this.titleEl = el('h3', { text: title });
    this.status = el('span', { class: 'chart-status', attrs: { 'aria-live': 'polite' } });
    this.tools = el('div', { class: 'chart-tools' }, [
      this.status,
      toolButton('PNG', 'file-media', 'Save this chart as PNG', () => void this.export('png')),
      toolButton('SVG', 'file-code', 'Save this chart as SVG', () => void this.export('svg')),
    ]);
    this.body = el('div', { class: 'chart-plot dyn-body' });
    this.el = el('section', { class: `chart-card ${className}` }, [
      el('header', { class: 'chart-head' }, [this.titleEl, this.tools]),
      this.body,
    ]);
  }

  setTitle(t: string): void {
    this.titleEl.textContent = t;
  }

  setStatus(text: string, kind: 'info' | 'error' = 'info'): void {
    this.status.textContent = text;
    this.status.classList.toggle('error', kind === 'error');
  }

  async export(format: 'png' | 'svg'): Promise<void> {
    try {
      const markup = this.exporter.svg();
      if (!markup) return;
      this.setStatus('Exporting…');
      const data = format === 'svg' ? markup : ((await this.exporter.png?.()) ?? (await svgToPng(markup)));
      if (!data) return this.setStatus('');
      const saved = await this.ctx.host.request('saveImage', { name: this.imageName(), format, data });
      this.setStatus(saved ? 'Saved' : '');
      if (saved) window.setTimeout(() => this.setStatus(''), 2500);
    } catch (e) {
      this.setStatus(`Export failed: ${(e as Error).message}`, 'error');
      this.ctx.host.log('warn', `Chart export failed: ${(e as Error).message}`);
    }
  }
}

/** Rasterises SVG markup (with width/height attributes) to a PNG data URL at `scale`. */
export async function svgToPng(markup: string, scale = 2): Promise<string> {
  const m = /width="([\d.]+)" height="([\d.]+)"/.exec(markup);
  const w = m ? Number(m[1]) : 800;
  const h = m ? Number(m[2]) : 600;
  const s = Math.min(scale, Math.sqrt(16e6 / Math.max(1, w * h)));
  const img = new Image();
  img.src = svgDataUrl(markup);
  await img.decode();
  const canvas = document.createElement('canvas');
  canvas.width = Math.max(1, Math.floor(w * s));
  canvas.height = Math.max(1, Math.floor(h * s));
  const g = canvas.getContext('2d');
  if (!g) throw new Error('No 2D canvas.');
  g.scale(s, s);
  g.drawImage(img, 0, 0);
  return canvas.toDataURL('image/png');
}

/** Serialises an SVG element (already carrying its own colours) as standalone markup. */
export function serializeSvg(root: SVGSVGElement): string {
  const copy = root.cloneNode(true) as SVGSVGElement;
  copy.setAttribute('xmlns', SVG_NS);
  return new XMLSerializer().serializeToString(copy);
}

/** A note in place of a chart: an icon, a headline and optional detail lines (all textContent). */
export function fillNote(box: HTMLElement, kind: 'info' | 'warning' | 'error', headline: string, ...details: (string | Node)[]): void {
  clear(box);
  box.classList.remove('info', 'warning', 'error');
  box.classList.add('dyn-note', kind);
  box.append(
    icon(kind === 'error' ? 'error' : kind === 'warning' ? 'warning' : 'info'),
    el('div', { class: 'dyn-note-text' }, [
      el('div', { class: 'dyn-note-head', text: headline }),
      ...details.map((d) => (typeof d === 'string' ? el('div', { class: 'dyn-note-detail', text: d }) : d)),
    ]),
  );
  box.hidden = false;
}

/** A small segmented control; returns the group and a function that marks the active value. */
export function segmented<V extends string>(
  label: string,
  options: readonly { value: V; text: string; title?: string }[],
  onPick: (v: V) => void,
): { el: HTMLElement; set(v: V): void; relabel(texts: Partial<Record<V, string>>): void } {
  const buttons = options.map((o) => {
    const b = el('button', { class: 'seg', text: o.text, title: o.title, attrs: { type: 'button', 'data-value': o.value } });
    b.addEventListener('click', () => onPick(o.value));
    return b;
  });
  const group = el('span', { class: 'segmented', attrs: { role: 'group', 'aria-label': label } }, buttons);
  return {
    el: group,
    set(v: V) {
      buttons.forEach((b, i) => {
        const on = options[i]!.value === v;
        b.classList.toggle('on', on);
        b.setAttribute('aria-pressed', String(on));
      });
    },
    /** New button texts (what the options stand for changed, e.g. ablated → patched). */
    relabel(texts: Partial<Record<V, string>>) {
      buttons.forEach((b, i) => {
        const t = texts[options[i]!.value];
        if (t !== undefined && b.textContent !== t) b.textContent = t;
      });
    },
  };
}

/** A cache of request results per key, dropping the oldest beyond `max`. */
export class ResultCache<V> {
  private readonly map = new Map<string, V>();
  constructor(private readonly max = 16) {}
  get(k: string): V | undefined {
    return this.map.get(k);
  }
  set(k: string, v: V): void {
    this.map.delete(k);
    this.map.set(k, v);
    while (this.map.size > this.max) this.map.delete(this.map.keys().next().value!);
  }
  clear(): void {
    this.map.clear();
  }
}
