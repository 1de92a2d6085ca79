// Plotly charts in the panel: theme-coloured layouts, a card with a title and PNG/SVG export
// (the modebar's download cannot save from a webview, so the modebar is hidden and export goes
// through the host's saveImage request), and resizing with the container.
import Plotly from 'plotly.js-dist-min';
import type { Config, Data, Layout, LayoutAxis, PlotlyHTMLElement, PlotMouseEvent } from 'plotly.js-dist-min';
import { toCss, mix, type Rgba } from '../shapeColor';
import { svgFromDataUrl } from '../shapeExport';
import { el, toolButton } from '../dom';
import type { Palette } from '../theme';
import type { ViewContext } from './context';

export { Plotly };
export type { Data, Layout, PlotlyHTMLElement };

export const PLOT_CONFIG: Partial<Config> = {
  displayModeBar: false,
  displaylogo: false,
  responsive: false,
  typesetMath: false,
  showTips: false,
  doubleClick: 'reset',
};

export const c = (x: Rgba, alpha = 1): string => toCss(alpha >= 1 ? x : [x[0], x[1], x[2], alpha]);

export function axisStyle(pal: Palette): Partial<LayoutAxis> {
  return {
    color: c(pal.muted),
    gridcolor: c(mix(pal.bg, pal.fg, 0.1, pal.bg)),
    zerolinecolor: c(mix(pal.bg, pal.fg, 0.25, pal.bg)),
    linecolor: c(mix(pal.bg, pal.fg, 0.3, pal.bg)),
    tickfont: { size: 10, color: c(pal.muted) },
    title: { font: { size: 11, color: c(pal.fg) } },
    automargin: true,
  };
}

export function baseLayout(pal: Palette): Partial<Layout> {
  return {
    paper_bgcolor: c(pal.bg),
    plot_bgcolor: c(pal.bg),
    font: { family: pal.fontFamily, size: 11, color: c(pal.fg) },
    margin: { l: 44, r: 10, t: 10, b: 32 },
    showlegend: false,
    hovermode: 'closest',
    hoverlabel: {
      bgcolor: c(pal.widgetBg),
      bordercolor: c(pal.widgetBorder),
      font: { family: pal.fontFamily, size: 11, color: c(pal.widgetFg) },
      align: 'left',
    },
    xaxis: axisStyle(pal),
    yaxis: axisStyle(pal),
  };
}

/** A titled card holding one Plotly chart with PNG/SVG export. */
export class ChartCard {
  readonly el: HTMLElement;
  readonly plot: HTMLDivElement;
  readonly tools: HTMLElement;
  private readonly status: HTMLElement;
  private drawn = false;
  private resizeQueued = false;
  private readonly handlers: [string, (ev: never) => void][] = [];
  private bound = false;
  private size: ((w: number, h: number) => { width: number; height: number }) | null = null;

  constructor(
    private readonly ctx: ViewContext,
    readonly title: string,
    private readonly imageName: () => string,
    className = '',
  ) {
    this.plot = el('div', { class: 'chart-plot' });
    this.status = el('span', { class: 'chart-status', attrs: { 'aria-live': 'polite' } });
    this.tools = el('div', { class: 'chart-tools' }, [
      this.status,
      toolButton('PNG', 'file-media', 'Save this chart as PNG', () => void this.export('png')),
      toolButton('SVG', 'file-code', 'Save this chart as SVG', () => void this.export('svg')),
    ]);
    this.el = el('section', { class: `chart-card ${className}` }, [
      el('header', { class: 'chart-head' }, [el('h3', { text: title }), this.tools]),
      this.plot,
    ]);
    new ResizeObserver(() => this.queueResize()).observe(this.plot);
  }

  get gd(): PlotlyHTMLElement {
    return this.plot as unknown as PlotlyHTMLElement;
  }

  get isDrawn(): boolean {
    return this.drawn;
  }

  /** Registers a Plotly event handler (bound once the chart exists). */
  on(event: 'plotly_click' | 'plotly_hover' | 'plotly_unhover', handler: (ev: PlotMouseEvent) => void): void {
    this.handlers.push([event, handler as (ev: never) => void]);
    this.bind();
  }

  /** Sizes the figure from the container's size (default: fill it). */
  sizeWith(fn: (w: number, h: number) => { width: number; height: number }): void {
    this.size = fn;
  }

  private figureSize(): { width: number; height: number } | null {
    const w = this.plot.clientWidth;
    const h = this.plot.clientHeight;
    if (w === 0 || h === 0) return null;
    return this.size ? this.size(w, h) : { width: w, height: h };
  }

  private bind(): void {
    if (!this.drawn || this.bound) return;
    this.bound = true;
    const gd = this.gd as unknown as { on(event: string, cb: (ev: never) => void): void };
    for (const [event, handler] of this.handlers) gd.on(event, handler);
  }

  async draw(data: Data[], layout: Partial<Layout>): Promise<void> {
    const size = this.figureSize();
    if (!size) return;
    const t0 = performance.now();
    await Plotly.react(this.plot, data, { ...layout, ...size }, PLOT_CONFIG);
    performance.measure(`td:draw ${this.title}`, { start: t0, end: performance.now() });
    this.drawn = true;
    this.bind();
  }

  /** Layout-only update (e.g. selection shapes) without recomputing traces. */
  async relayout(update: Partial<Layout>): Promise<void> {
    if (!this.drawn) return;
    const t0 = performance.now();
    await Plotly.relayout(this.plot, update);
    performance.measure(`td:relayout ${this.title}`, { start: t0, end: performance.now() });
  }

  /** Replaces attributes of some traces (values wrapped per trace, as Plotly.restyle expects). */
  async restyle(update: Record<string, unknown[]>, traces: number[]): Promise<void> {
    if (!this.drawn) return;
    const t0 = performance.now();
    await Plotly.restyle(this.plot, update as Data, traces);
    performance.measure(`td:restyle ${this.title}`, { start: t0, end: performance.now() });
  }

  private queueResize(): void {
    if (!this.drawn || this.resizeQueued) return;
    this.resizeQueued = true;
    requestAnimationFrame(() => {
      this.resizeQueued = false;
      const size = this.figureSize();
      if (size && this.plot.isConnected) void Plotly.relayout(this.plot, size);
    });
  }

  setStatus(text: string, kind: 'info' | 'error' = 'info'): void {
    this.status.textContent = text;
    this.status.classList.toggle('error', kind === 'error');
  }

  async export(format: 'png' | 'svg'): Promise<void> {
    if (!this.drawn) return;
    try {
      this.setStatus('Exporting…');
      const size = this.figureSize() ?? { width: 800, height: 600 };
      const url = await Plotly.toImage(this.plot, { format, ...size, scale: format === 'png' ? 2 : 1 });
      const data = format === 'svg' ? svgFromDataUrl(url) : url;
      const saved = await this.ctx.host.request('saveImage', { name: this.imageName(), format, data });
      this.setStatus(saved ? 'Saved' : '');
      if (saved) window.setTimeout(() => this.setStatus(''), 2500);
    } catch (e) {
      this.setStatus(`Export failed: ${(e as Error).message}`, 'error');
      this.ctx.host.log('warn', `Chart export failed: ${(e as Error).message}`);
    }
  }
}
