// --vscode-* variables for the standalone HTML report (outside VS Code nothing defines them):
// VS Code's Light Modern and Dark Modern values from src/shared/themeVars.json, which the webview
// dev harness (tools/webview-dev/themes.mjs) reads too. The report follows the system's
// light/dark preference.
import THEME_VARS from '../shared/themeVars.json';

const { common: COMMON, light, dark } = THEME_VARS;

export const REPORT_THEMES: Record<'light' | 'dark', Record<string, string>> = { light, dark };

/** The theme stylesheet: variables on <html data-td-theme="light|dark"> (light until the page script runs). */
export function reportThemeCss(): string {
  const vars = (o: Record<string, string>) =>
    Object.entries({ ...COMMON, ...o })
      .map(([k, v]) => `  --vscode-${k}: ${v};`)
      .join('\n');
  return (
    `:root,\nhtml[data-td-theme="light"] {\n${vars(REPORT_THEMES.light)}\n  color-scheme: light;\n}\n` +
    `html[data-td-theme="dark"] {\n${vars(REPORT_THEMES.dark)}\n  color-scheme: dark;\n}\n` +
    `html { scrollbar-color: var(--vscode-scrollbarSlider-background) var(--vscode-editor-background); }\n`
  );
}
