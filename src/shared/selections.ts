// Several selections in one editor (multi-cursor: Ctrl+D, Alt+click, Add Cursor Below …): which
// one a command takes, how the others are named, and the pair Compare Prompts can compare.
// Plain positions, as VS Code's (0-based line and character), so the host and tests share them.

export interface Pos {
  line: number;
  character: number;
}

export interface Span {
  start: Pos;
  end: Pos;
}

const isEmpty = (s: Span) => s.start.line === s.end.line && s.start.character === s.end.character;
const before = (a: Pos, b: Pos) => a.line - b.line || a.character - b.character;

/**
 * "line 3" or "lines 3–5" (1-based). A selection that ends at the start of a line (a whole line
 * taken with Shift+Down) does not count that line, as the editor's gutter shows it.
 */
export function linesLabel(s: Span): string {
  const first = s.start.line + 1;
  const last = s.end.line > s.start.line && s.end.character === 0 ? s.end.line : s.end.line + 1;
  return last > first ? `lines ${first}–${last}` : `line ${first}`;
}

/** The selections that hold text, in document order. */
export function nonEmptySpans<T extends Span>(spans: readonly T[]): T[] {
  return spans.filter((s) => !isEmpty(s)).sort((a, b) => before(a.start, b.start));
}

/**
 * What a command that takes one selection says when there are more: null for one (or none).
 * `primary` is the editor's primary selection, the one the command used.
 */
export function multiSelectionNote(spans: readonly Span[], primary: Span, verb: string): string | null {
  const n = nonEmptySpans(spans).length;
  if (n < 2 || isEmpty(primary)) return null;
  return `${n} selections: ${verb} the primary one (${linesLabel(primary)}) only. To compare two selections, run Compare Prompts… with them.`;
}

/** The two selections Compare Prompts compares, first in the document first; null for fewer. */
export function selectionPair<T extends Span>(spans: readonly T[]): { a: T; b: T; of: number } | null {
  const text = nonEmptySpans(spans);
  return text.length >= 2 ? { a: text[0]!, b: text[1]!, of: text.length } : null;
}
