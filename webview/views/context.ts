// What every view gets: the store, the host bridge, theme colours, the shared tooltip and the
// selection action (which also tells the host, so it can reveal the token in the editor).
import type { Host } from '../host';
import type { Store } from '../store';
import type { Palette } from '../theme';
import type { Tooltip } from './tooltip';

export interface ViewContext {
  store: Store;
  host: Host;
  palette(): Palette;
  tooltip: Tooltip;
  /** Selects a token position (and optionally highlights a second one). */
  select(pos: number, highlight?: number | null): void;
  /** A view reports that it has drawn the current payload (for the data → paint timing). */
  painted(view: string): void;
}

/** A tab of the panel. More tabs (attention, proximity, completions) are added to TABS in tabs.ts. */
export interface TabView {
  readonly id: string;
  readonly title: string;
  readonly el: HTMLElement;
  /** Called when the tab is shown or hidden; views draw lazily while shown. */
  setActive(active: boolean): void;
}

export type TabFactory = (ctx: ViewContext) => TabView;
