// Theme colours read from VS Code's CSS variables (resolved to rgb by the browser), and a
// notification when the theme changes (VS Code swaps the body's vscode-* class).
import { parseColor, type Rgba } from './shapeColor';

export type ThemeKind = 'light' | 'dark' | 'high-contrast' | 'high-contrast-light';

export interface Palette {
  kind: ThemeKind;
  bg: Rgba;
  fg: Rgba;
  muted: Rgba;
  border: Rgba;
  focus: Rgba;
  grid: Rgba;
  widgetBg: Rgba;
  widgetFg: Rgba;
  widgetBorder: Rgba;
  selection: Rgba;
  blue: Rgba;
  red: Rgba;
  green: Rgba;
  yellow: Rgba;
  orange: Rgba;
  purple: Rgba;
  fontFamily: string;
  monoFamily: string;
  fontSize: number;
}

let probe: HTMLElement | null = null;

/** Resolves a CSS colour expression (e.g. "var(--vscode-charts-blue, currentColor)") to RGBA. */
function resolve(expr: string, fallback: Rgba): Rgba {
  if (!probe) {
    probe = document.createElement('div');
    probe.style.display = 'none';
    document.body.append(probe);
  }
  probe.style.color = '';
  probe.style.color = expr;
  return parseColor(getComputedStyle(probe).color) ?? fallback;
}

function themeKind(): ThemeKind {
  const c = document.body.classList;
  if (c.contains('vscode-high-contrast-light')) return 'high-contrast-light';
  if (c.contains('vscode-high-contrast')) return 'high-contrast';
  if (c.contains('vscode-light')) return 'light';
  return 'dark';
}

export function readPalette(): Palette {
  const kind = themeKind();
  const light = kind === 'light' || kind === 'high-contrast-light';
  const black: Rgba = [0, 0, 0, 1];
  const white: Rgba = [255, 255, 255, 1];
  const bg = resolve('var(--vscode-editor-background)', light ? white : [30, 30, 30, 1]);
  const fg = resolve('var(--vscode-editor-foreground, var(--vscode-foreground))', light ? black : white);
  const v = (name: string, fb: string) => resolve(`var(${name}, ${fb})`, fg);
  const css = getComputedStyle(document.documentElement);
  const font = css.getPropertyValue('--vscode-font-family').trim() || 'system-ui, sans-serif';
  const mono = css.getPropertyValue('--vscode-editor-font-family').trim() || 'monospace';
  const size = parseFloat(css.getPropertyValue('--vscode-font-size')) || 13;
  const highContrast = kind.startsWith('high-contrast');
  return {
    kind,
    bg,
    fg,
    muted: v('--vscode-descriptionForeground', 'var(--vscode-foreground)'),
    border: highContrast
      ? v('--vscode-contrastBorder', 'var(--vscode-foreground)')
      : v('--vscode-editorWidget-border', 'var(--vscode-widget-border, currentColor)'),
    focus: v('--vscode-focusBorder', 'var(--vscode-foreground)'),
    grid: v('--vscode-editorIndentGuide-background1', 'var(--vscode-editorWidget-border, currentColor)'),
    widgetBg: v('--vscode-editorHoverWidget-background', 'var(--vscode-editorWidget-background)'),
    widgetFg: v('--vscode-editorHoverWidget-foreground', 'var(--vscode-editorWidget-foreground, var(--vscode-foreground))'),
    widgetBorder: v('--vscode-editorHoverWidget-border', 'var(--vscode-editorWidget-border, currentColor)'),
    selection: v('--vscode-editor-selectionBackground', 'var(--vscode-focusBorder)'),
    blue: v('--vscode-charts-blue', 'var(--vscode-focusBorder)'),
    red: v('--vscode-charts-red', 'var(--vscode-errorForeground)'),
    green: v('--vscode-charts-green', 'var(--vscode-charts-blue)'),
    yellow: v('--vscode-charts-yellow', 'var(--vscode-charts-orange)'),
    orange: v('--vscode-charts-orange', 'var(--vscode-charts-yellow)'),
    purple: v('--vscode-charts-purple', 'var(--vscode-charts-blue)'),
    fontFamily: font,
    monoFamily: mono,
    fontSize: size,
  };
}

/** Calls `cb` after VS Code changes the theme (body class or the injected variables). */
export function onThemeChange(cb: () => void): void {
  let timer = 0;
  const fire = () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(cb, 30);
  };
  new MutationObserver(fire).observe(document.body, { attributes: true, attributeFilter: ['class'] });
  new MutationObserver(fire).observe(document.documentElement, { attributes: true, attributeFilter: ['style', 'class'] });
}
