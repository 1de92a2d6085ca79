// What the e2e tests compare the panel with: the engine run in the test's own process on the
// same model and text (so a number in the panel is checked against the model, not a constant).
import * as assert from 'node:assert/strict';
import type { FrameLocator, Locator } from 'playwright-core';
import type { Analysis } from '../../src/shared/analysis';
import type { Completion } from '../../src/shared/generation';
import { tokenPieces } from '../../webview/shapeCompletions';
import { tokenDisplay } from '../../webview/shapeText';

/**
 * Every painted lens cell shows the top-1 token the engine computes for its layer and position
 * (the virtualised table keeps unused cells, hidden, from the run it showed before).
 */
export async function assertLensCells(frame: FrameLocator, expected: Analysis, minCells = 20): Promise<number> {
  const cells = await frame
    .locator('.lens-body .lc:not([hidden])')
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

/**
 * Elements of the page (called with its body) cut at a side: past the left or right edge of the
 * box that clips them (the nearest ancestor whose overflow is not visible, or the page), unless
 * that ancestor scrolls sideways (the head grid). Elements drawn inside an SVG are left out
 * (Plotly's drag layers overhang by design); text cut with an ellipsis is not an element and is
 * not reported. Browser-side code as a function body: the tests compile without the DOM library.
 */
const CUT_AT_SIDES = `
  const doc = body.ownerDocument;
  const page = doc.documentElement.clientWidth;
  const out = [];
  for (const e of body.querySelectorAll('*')) {
    if (e.closest('svg') && e.tagName.toLowerCase() !== 'svg') continue;
    const r = e.getBoundingClientRect();
    // (nothing or off-screen on purpose: Plotly measures text in an SVG at x = -10000)
    if (r.width === 0 || r.height === 0 || r.right <= 0) continue;
    let left = 0;
    let right = page;
    let scrolls = false;
    for (let a = e.parentElement; a; a = a.parentElement) {
      const x = doc.defaultView.getComputedStyle(a).overflowX;
      if (x === 'visible') continue;
      // a box that scrolls sideways shows the rest; one that scrolls only up and down (its
      // sideways overflow then reads auto too) clips like a hidden one
      if ((x === 'auto' || x === 'scroll') && a.scrollWidth > a.clientWidth + 1) scrolls = true;
      const box = a.getBoundingClientRect();
      left = Math.max(0, box.left);
      right = Math.min(page, box.right);
      break;
    }
    if (scrolls || (r.right <= right + 1 && r.left >= left - 1)) continue;
    const cls = typeof e.className === 'string' && e.className.trim() ? '.' + e.className.trim().split(/\\s+/).join('.') : '';
    const where = r.right > right + 1 ? 'right ' + Math.round(r.right) + ' > ' + Math.round(right) : 'left ' + Math.round(r.left) + ' < ' + Math.round(left);
    out.push(e.tagName.toLowerCase() + cls + ' (' + (e.textContent || '').trim().slice(0, 30) + ') ' + where);
  }
  return out.slice(0, 12);
`;

/** No control, label or chart of the panel is cut at a side (a narrow panel wraps them). */
export async function assertNothingCut(body: Locator, where: string): Promise<void> {
  const cut = await body.evaluate(new Function('body', CUT_AT_SIDES) as (body: unknown) => string[]);
  assert.deepEqual(cut, [], `cut at a side in ${where}`);
}
