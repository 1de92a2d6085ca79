// The what-if texts and the Compare Prompts → activation patching steps, shared by the what-if
// e2e test and `npm run screenshots` (which takes the README's what-if pictures the same way).
import type { VsCodeSession } from './harness';

/** td-mini repeats itself here; its induction heads carry the copying. */
export const REPEATS = [
  'The cat sat on the mat and looked at the door. The dog sat on the rug and looked at the window. The cat sat on the mat and looked at the door. The dog sat on the rug and looked at the window.',
  'The cat sat on the mat and looked',
].join('\n');
/** Two prompts that differ in one name (activation patching). */
export const CLEAN = 'When Mary and John went to the store, John gave a drink to';
export const CORRUPTED = 'When Mary and John went to the store, Mary gave a drink to';

/** The workspace files (no final newline: Select All is the text). */
export const WHATIF_FILES = { 'repeats.md': REPEATS, 'clean.md': CLEAN, 'corrupted.md': CORRUPTED };

/**
 * corrupted.md moved into another editor group (`move`: the command that moves it), then Compare
 * Prompts on the whole of clean.md against it, then Run patching in the Diff tab, until its
 * heatmap is drawn.
 */
export async function patchPrompts(
  vs: VsCodeSession,
  move: 'View: Move Editor into Right Group' | 'View: Move Editor into Group Below',
): Promise<void> {
  await vs.openFile('corrupted.md');
  await vs.runCommand(move);
  await vs.page.keyboard.press('Control+1');
  await vs.openFile('clean.md');
  await vs.selectAll();
  await vs.runCommand('Transformer Dynamics: Compare Prompts…');
  await vs.page.locator('.quick-input-list .monaco-list-row', { hasText: 'vs corrupted.md' }).click();
  await vs.waitForWebview((f) => f.locator('.diff-table tbody tr').first(), { timeoutMs: 120_000 });
  await vs
    .webviewFrame()
    .getByRole('button', { name: /Run patching/ })
    .click();
  await vs.waitForWebview((f) => f.locator('.pat-heat .js-plotly-plot .heatmaplayer').first(), { timeoutMs: 120_000 });
}
