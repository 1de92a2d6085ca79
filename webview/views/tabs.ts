// The panel's tabs, in order. A new view (attention, proximity, completions) is one more
// factory here: it receives the ViewContext and returns a TabView.
import '@vscode-elements/elements/dist/vscode-tabs/index.js';
import '@vscode-elements/elements/dist/vscode-tab-header/index.js';
import '@vscode-elements/elements/dist/vscode-tab-panel/index.js';
import { el } from '../dom';
import type { TabFactory, TabView, ViewContext } from './context';
import { attentionTab } from './attention';
import { ballTab } from './ball';
import { clustersTab } from './clusters';
import { completionsTab } from './completions';
import { diffTab } from './diff';
import { lensTab } from './lensTable';
import { proximityTab } from './proximity';
import { repetitionTab } from './repetition';
import { trajectoriesTab } from './trajectories';

export const TABS: TabFactory[] = [
  lensTab,
  trajectoriesTab,
  repetitionTab,
  // dynamics views (attention, angular proximity, the ball, encoding-walk clusters, prompt diff)
  attentionTab,
  proximityTab,
  ballTab,
  clustersTab,
  diffTab,
  completionsTab,
];

/**
 * vscode-tabs lays its headers out on one line and clips what does not fit: in a narrow panel
 * the last tabs ("COMP…") vanished with nothing saying they exist. They wrap onto more rows
 * instead. The tab list lives in the element's shadow DOM (no CSS parts), so the rule is
 * adopted into it.
 */
const WRAP_TABS = `
  .tablist { flex-wrap: wrap; flex: 1 1 auto; min-width: 0; row-gap: 2px; }
`;

function wrapHeaders(tabs: HTMLElement & { updateComplete?: Promise<unknown> }): void {
  const adopt = () => {
    const root = tabs.shadowRoot;
    if (!root) return;
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(WRAP_TABS);
    root.adoptedStyleSheets = [...root.adoptedStyleSheets, sheet];
  };
  void customElements.whenDefined('vscode-tabs').then(() => (tabs.updateComplete ?? Promise.resolve()).then(adopt));
}

/** Builds the vscode-tabs element; the selected tab follows the store's `tab`. */
export function createTabs(ctx: ViewContext): HTMLElement {
  const views: TabView[] = TABS.map((f) => f(ctx));
  const tabs = el('vscode-tabs', { class: 'td-tabs', attrs: { panel: true } }) as HTMLElement & { selectedIndex: number };
  wrapHeaders(tabs);
  for (const v of views) {
    tabs.append(
      el('vscode-tab-header', { text: v.title, attrs: { slot: 'header', panel: true, 'data-tab': v.id } }),
      el('vscode-tab-panel', { class: `tab-${v.id}`, attrs: { panel: true } }, [v.el]),
    );
  }
  const indexOf = (id: string) =>
    Math.max(
      0,
      views.findIndex((v) => v.id === id),
    );
  let current = -1;
  const show = (i: number) => {
    if (i === current) return;
    current = i;
    ctx.tooltip.hide();
    views.forEach((v, k) => v.setActive(k === i));
  };
  tabs.selectedIndex = indexOf(ctx.store.state.tab);
  tabs.addEventListener('vsc-tabs-select', (ev) => {
    const i = (ev as CustomEvent<{ selectedIndex: number }>).detail.selectedIndex;
    ctx.store.set({ tab: views[i]?.id ?? views[0]!.id });
  });
  ctx.store.subscribe((s, changed) => {
    if (!changed.has('tab')) return;
    const i = indexOf(s.tab);
    if (tabs.selectedIndex !== i) tabs.selectedIndex = i;
    show(i);
  });
  // Lit renders asynchronously: activate once the panels are laid out.
  requestAnimationFrame(() => show(indexOf(ctx.store.state.tab)));
  return tabs;
}
