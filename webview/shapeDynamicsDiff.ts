// Prompt diff: the lens top-1 per layer at the last position of two runs, side by side, their
// last-token trajectories in one PCA basis and where the two walks part.
import { truncationText, type Analysis, type DiffResult, type LensTable } from '../src/shared/analysis';
import { clip, escapeXml, visibleText } from './shapeText';

/**
 * What a side of the comparison says about its prompt: its tokens, and — when the context window
 * or the token limit cut it — that the walk compared is the one after the last token kept, not
 * after the prompt's end.
 */
export function sideSummary(
  p: { tokens: readonly { text: string }[]; truncation: Analysis['truncation'] },
  label: string,
): { count: string; title: string; cut: boolean } {
  const n = p.tokens.length;
  const last = JSON.stringify(p.tokens[n - 1]?.text ?? '');
  if (!p.truncation) return { count: `${n} tokens`, title: `${label}: ${n} tokens, last ${last}`, cut: false };
  const t = p.truncation;
  return {
    count: t.total === null ? `first ${t.kept} tokens` : `first ${t.kept} of ${t.total.toLocaleString('en-US')} tokens`,
    title:
      `${label}: analysed ${truncationText(t)} (context window or token limit). The walk compared is the one after ` +
      `token ${t.kept} (${last}), not after the prompt's end: select a shorter prompt to compare its end.`,
    cut: true,
  };
}

/** True when `v` is a DiffResult whose arrays match `rows` (and `k` PCA components). */
export function isDiffResult(v: unknown, rows?: number): v is DiffResult {
  if (!v || typeof v !== 'object') return false;
  const d = v as DiffResult;
  if (!Number.isInteger(d.rows) || d.rows < 1 || (rows !== undefined && d.rows !== rows)) return false;
  if (!Number.isInteger(d.k) || d.k < 1 || d.k > 3) return false;
  if (!(d.cosine instanceof Float32Array) || d.cosine.length !== d.rows) return false;
  if (!(d.coordsA instanceof Float32Array) || d.coordsA.length !== d.rows * d.k) return false;
  if (!(d.coordsB instanceof Float32Array) || d.coordsB.length !== d.rows * d.k) return false;
  if (!Array.isArray(d.explained)) return false;
  return d.divergeRow === null || (Number.isInteger(d.divergeRow) && d.divergeRow >= 0 && d.divergeRow < d.rows);
}

export interface TopCell {
  id: number;
  text: string;
  prob: number;
}

/** Lens top-1 per row at one position (default: the last). */
export function lensTop1(lens: LensTable, vocab: Record<number, string>, pos = lens.pos - 1): TopCell[] {
  const T = lens.pos;
  const out: TopCell[] = [];
  if (pos < 0 || pos >= T) return out;
  for (let r = 0; r < lens.rows; r++) {
    const o = (r * T + pos) * lens.k;
    const id = lens.topIds[o]!;
    out.push({ id, text: vocab[id] ?? '', prob: lens.topProbs[o]! });
  }
  return out;
}

export interface DiffRow {
  row: number;
  a: TopCell;
  b: TopCell;
  /** Same top-1 token in both runs. */
  same: boolean;
  /** cos of the two last-token residual streams at this row. */
  cos: number;
}

export function diffRows(
  a: { lens: LensTable; vocab: Record<number, string> },
  b: { lens: LensTable; vocab: Record<number, string> },
  diff: DiffResult,
): DiffRow[] {
  const ta = lensTop1(a.lens, a.vocab);
  const tb = lensTop1(b.lens, b.vocab);
  const n = Math.min(ta.length, tb.length, diff.rows);
  return Array.from({ length: n }, (_, r) => ({ row: r, a: ta[r]!, b: tb[r]!, same: ta[r]!.id === tb[r]!.id, cos: diff.cosine[r]! }));
}

/** Component c (0-based) of a [rows, k] coordinate block; NaN when the basis has fewer components. */
export function component(coords: Float32Array, rows: number, k: number, c: number): number[] {
  return Array.from({ length: rows }, (_, r) => (c < k ? coords[r * k + c]! : NaN));
}

/** One sentence on where the walks part. */
export function divergeSentence(diff: DiffResult, label: (row: number) => string): string {
  if (diff.divergeRow === null) return 'The two last-token walks end close together (cos ≥ 0.9 at the output).';
  if (diff.divergeRow === 0) return 'The walks differ from the embeddings on (cos < 0.9 at every row): the last tokens differ.';
  return `The walks part at ${label(diff.divergeRow)}: from there on the cosine stays below 0.9.`;
}

export interface DiffSvgStyle {
  background: string;
  foreground: string;
  muted: string;
  border: string;
  changed: string;
  diverge: string;
  fontFamily: string;
  monoFamily: string;
}

/** The side-by-side lens table as standalone SVG (for export); every string escaped. */
export function diffTableSvg(
  rows: readonly DiffRow[],
  labels: [string, string],
  divergeRow: number | null,
  rowName: (r: number) => string,
  st: DiffSvgStyle,
): string {
  const colW = [56, 190, 64, 190, 64, 64];
  const W = colW.reduce((a, b) => a + b, 0);
  const rowH = 22;
  const H = rowH * (rows.length + 1) + 8;
  const xs = colW.map((_, i) => colW.slice(0, i).reduce((a, b) => a + b, 0));
  const esc = escapeXml;
  const tok = (s: string) => clip(visibleText(s), 26) || '∅';
  const text = (x: number, y: number, s: string, fill: string, extra = '') =>
    `<text x="${x}" y="${y}" fill="${fill}" dominant-baseline="central"${extra}>${esc(s)}</text>`;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="${esc(st.fontFamily)}" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="${st.background}"/>`,
  ];
  const head = ['row', `A: ${labels[0]}`, 'p', `B: ${labels[1]}`, 'p', 'cos'];
  head.forEach((h, i) => parts.push(text(xs[i]! + 6, rowH / 2, clip(visibleText(h), 28), st.muted)));
  rows.forEach((r, k) => {
    const y = rowH * (k + 1);
    if (!r.same) parts.push(`<rect x="0" y="${y}" width="${W}" height="${rowH}" fill="${st.changed}"/>`);
    if (divergeRow === r.row) parts.push(`<line x1="0" x2="${W}" y1="${y}" y2="${y}" stroke="${st.diverge}" stroke-width="2"/>`);
    parts.push(`<line x1="0" x2="${W}" y1="${y + rowH}" y2="${y + rowH}" stroke="${st.border}" stroke-width="0.5"/>`);
    const mono = ` font-family="${esc(st.monoFamily)}"`;
    parts.push(
      text(xs[0]! + 6, y + rowH / 2, rowName(r.row), st.muted),
      text(xs[1]! + 6, y + rowH / 2, tok(r.a.text), st.foreground, mono),
      text(xs[2]! + 6, y + rowH / 2, `${(r.a.prob * 100).toFixed(1)}%`, st.muted),
      text(xs[3]! + 6, y + rowH / 2, tok(r.b.text), st.foreground, mono),
      text(xs[4]! + 6, y + rowH / 2, `${(r.b.prob * 100).toFixed(1)}%`, st.muted),
      text(xs[5]! + 6, y + rowH / 2, Number.isFinite(r.cos) ? r.cos.toFixed(3) : '–', st.foreground),
    );
  });
  parts.push('</svg>');
  return parts.join('');
}
