// What the e2e tests compare the panel with: the engine run in the test's own process on the
// same model and text (so a number in the panel is checked against the model, not a constant).
import * as assert from 'node:assert/strict';
import type { FrameLocator } from 'playwright-core';
import type { Analysis } from '../../src/shared/analysis';
import type { Completion } from '../../src/shared/generation';
import { tokenPieces } from '../../webview/shapeCompletions';
import { tokenDisplay } from '../../webview/shapeText';

/** Every painted lens cell shows the top-1 token the engine computes for its layer and position. */
export async function assertLensCells(frame: FrameLocator, expected: Analysis, minCells = 20): Promise<number> {
  const cells = await frame
    .locator('.lens-body .lc')
    .evaluateAll((els) =>
      els.map((e) => ({ r: Number(e.getAttribute('data-r')), p: Number(e.getAttribute('data-p')), text: e.textContent ?? '' })),
    );
  assert.ok(cells.length >= minCells, `only ${cells.length} cells painted`);
  const T = expected.lens.pos;
  const k = expected.lens.k;
  for (const c of cells) {
    const id = expected.lens.topIds[(c.r * T + c.p) * k]!;
    assert.equal(c.text, tokenDisplay({ text: expected.vocab[id] ?? '' }).text, `lens cell row ${c.r}, position ${c.p}`);
  }
  return cells.length;
}

/** The text a completion's tokens show in the Completions tab (whitespace made visible), one string per token. */
export function shownTokens(c: Completion): string[] {
  return c.steps.map((s) =>
    tokenPieces(s.text)
      .map((p) => (p.kind === 'br' ? '' : p.text))
      .join(''),
  );
}

/** The tokens each column of the Completions tab shows (its root completion). */
export async function columnTokens(frame: FrameLocator): Promise<string[][]> {
  return frame.locator('.comp-col').evaluateAll((cols) =>
    cols.map((col) => {
      const text = col.querySelector('.comp-entry')?.querySelector('.comp-text'); // the root, not its forks
      return text ? Array.from(text.querySelectorAll(':scope > .ctok'), (t: { textContent: string | null }) => t.textContent ?? '') : [];
    }),
  );
}
