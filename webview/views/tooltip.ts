// One floating hover card shared by every view, filled with DOM nodes (never HTML strings).
import { clear, el } from '../dom';

export class Tooltip {
  private readonly box = el('div', { class: 'td-tooltip', attrs: { role: 'tooltip' } });

  constructor() {
    this.box.hidden = true;
    document.body.append(this.box);
  }

  /** Shows `content` near the client point (x, y), kept inside the window. */
  show(x: number, y: number, content: Node[]): void {
    clear(this.box);
    this.box.append(...content);
    this.box.hidden = false;
    const pad = 12;
    const r = this.box.getBoundingClientRect();
    let left = x + pad;
    let top = y + pad;
    if (left + r.width > window.innerWidth - 4) left = Math.max(4, x - pad - r.width);
    if (top + r.height > window.innerHeight - 4) top = Math.max(4, y - pad - r.height);
    this.box.style.transform = `translate(${Math.round(left)}px, ${Math.round(top)}px)`;
  }

  hide(): void {
    this.box.hidden = true;
  }
}
