// --vscode-* variables for three themes (values from VS Code's Light Modern, Dark Modern and
// Dark High Contrast; src/shared/themeVars.json, shared with the CLI's HTML report), served as
// stylesheets so the panel can be seen outside VS Code.
import * as fs from 'node:fs';
const { common, light, dark, hc } = JSON.parse(fs.readFileSync(new URL('../../src/shared/themeVars.json', import.meta.url), 'utf8'));

export const THEMES = {
  light: { bodyClass: 'vscode-light', vars: { ...common, ...light } },
  dark: { bodyClass: 'vscode-dark', vars: { ...common, ...dark } },
  hc: { bodyClass: 'vscode-high-contrast', vars: { ...common, ...hc } },
};

/** The theme as a stylesheet, like the variables VS Code injects into a webview. */
export function themeCss(name) {
  const t = THEMES[name];
  const vars = Object.entries(t.vars)
    .map(([k, v]) => `  --vscode-${k}: ${v};`)
    .join('\n');
  // VS Code's own webview defaults (body padding, scrollbars) so the panel's overrides are exercised.
  return `html {\n${vars}\n  scrollbar-color: var(--vscode-scrollbarSlider-background) var(--vscode-editor-background);\n}\nbody { padding: 0 20px; color: var(--vscode-editor-foreground); font-family: var(--vscode-font-family); font-size: var(--vscode-font-size); }\n`;
}
