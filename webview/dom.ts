// Tiny DOM helpers. Text goes in through textContent only: nothing from the model or the host
// is ever parsed as HTML.

type Attrs = Record<string, string | number | boolean | undefined>;

export interface ElOptions {
  class?: string;
  text?: string;
  title?: string;
  attrs?: Attrs;
}

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  opts?: ElOptions,
  children?: (Node | null | undefined)[],
): HTMLElementTagNameMap[K];
export function el(tag: string, opts?: ElOptions, children?: (Node | null | undefined)[]): HTMLElement;
export function el(tag: string, opts: ElOptions = {}, children: (Node | null | undefined)[] = []): HTMLElement {
  const e = document.createElement(tag);
  if (opts.class) e.className = opts.class;
  if (opts.text !== undefined) e.textContent = opts.text;
  if (opts.title !== undefined) e.title = opts.title;
  for (const [k, v] of Object.entries(opts.attrs ?? {})) {
    if (v === undefined || v === false) continue;
    e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c) e.append(c);
  return e;
}

/** A codicon glyph (the codicon stylesheet is linked by the HTML shell). */
export function icon(name: string, extra = ''): HTMLElement {
  return el('span', { class: `codicon codicon-${name}${extra ? ' ' + extra : ''}`, attrs: { 'aria-hidden': 'true' } });
}

/** A compact text button in the VS Code toolbar style. */
export function toolButton(label: string, iconName: string | null, title: string, onClick: () => void): HTMLButtonElement {
  const b = el('button', { class: 'tool-btn', title, attrs: { type: 'button' } }, [
    iconName ? icon(iconName) : null,
    label ? el('span', { text: label }) : null,
  ]);
  b.addEventListener('click', onClick);
  return b;
}

export function clear(e: Element): void {
  while (e.firstChild) e.firstChild.remove();
}

/** Runs fn at most once per animation frame. */
export function rafThrottle(fn: () => void): () => void {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      fn();
    });
  };
}

/** True when a key event is aimed at a control that uses arrow keys itself. */
export function isEditableTarget(t: EventTarget | null): boolean {
  if (!(t instanceof HTMLElement)) return false;
  const tag = t.tagName.toLowerCase();
  return (
    tag === 'input' ||
    tag === 'textarea' ||
    tag === 'select' ||
    tag.startsWith('vscode-') ||
    t.isContentEditable ||
    t.getAttribute('role') === 'tab'
  );
}

/**
 * The show/hide lifecycle every chart tab shares. While the tab is shown, a change it cares
 * about redraws at once; while hidden the change is only remembered, and the tab draws when it
 * is shown again — or when its chart was never drawn (`drawn` false, e.g. created hidden).
 */
export interface LazyDraw {
  /** Whether the tab is shown. */
  readonly active: boolean;
  /** Something the tab shows changed. */
  invalidate(): void;
  /** TabView.setActive. */
  setActive(active: boolean): void;
}

export function lazyDraw(draw: () => Promise<void>, drawn: () => boolean): LazyDraw {
  let active = false;
  let dirty = true;
  const run = () => {
    dirty = false;
    return draw();
  };
  return {
    get active() {
      return active;
    },
    invalidate() {
      if (active) void run();
      else dirty = true;
    },
    setActive(a: boolean) {
      active = a;
      if (a && (dirty || !drawn())) requestAnimationFrame(() => void run());
    },
  };
}

/**
 * Wraps an async redraw so calls never overlap: a call made while one runs schedules exactly
 * one more run afterwards (with the latest state), and the returned promise settles then.
 */
export function serial(fn: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | null = null;
  let again = false;
  const run = async (): Promise<void> => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        await fn();
      } while (again);
    })();
    try {
      await running;
    } finally {
      running = null;
    }
  };
  return run;
}
