// Token text as the panel shows it. Every string from the model is untrusted: the DOM gets
// it through textContent only, Plotly gets it escaped (it renders a subset of HTML such as
// <a href>, <br>, <b>), and invisible or direction-changing characters become visible.
import { BYTE_LABEL } from '../src/shared/bytes';

/** Bidirectional formatting characters (embeddings, overrides, isolates, marks). */
const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;
const BIDI_G = new RegExp(BIDI.source, 'g');

/** How one code point is shown, or null to show it as is. */
function visibleChar(ch: string): string | null {
  switch (ch) {
    case ' ':
      return '·';
    case '\n':
      return '↵';
    case '\t':
      return '→';
    case '\r':
      return '␍';
    case '\u00a0':
      return '⍽';
  }
  const c = ch.codePointAt(0)!;
  if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) return `\\x${c.toString(16).padStart(2, '0').toUpperCase()}`;
  if (BIDI.test(ch) || (c >= 0x200b && c <= 0x200d) || c === 0x2060 || c === 0xfeff || c === 0x2028 || c === 0x2029)
    return `\\u${c.toString(16).padStart(4, '0').toUpperCase()}`;
  return null;
}

/**
 * Whitespace made visible (space ·, newline ↵, tab →, CR ␍, NBSP ⍽), "\r\n" as one ↵,
 * control characters as \xNN and bidi / zero-width characters as \uNNNN, so a token can
 * neither hide nor reorder the text around it.
 */
export function visibleText(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (ch === '\r' && s[i + 1] === '\n') {
      out += '↵';
      i++;
      continue;
    }
    out += visibleChar(ch) ?? ch;
  }
  return out;
}

/** Escapes the characters Plotly reads as markup or entities. Use on every data string given to Plotly. */
export function escapePlotly(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Escapes text for XML/SVG element content and attribute values. */
export function escapeXml(s: string): string {
  return escapePlotly(s).replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

/** Shortens to at most `max` UTF-16 units with an ellipsis, never splitting a surrogate pair. */
export function clip(s: string, max: number): string {
  if (s.length <= max) return s;
  let cut = Math.max(0, max - 1);
  const c = s.charCodeAt(cut - 1);
  if (c >= 0xd800 && c <= 0xdbff) cut--;
  return s.slice(0, cut) + '…';
}

export type TokenKind = 'normal' | 'special' | 'bytes' | 'empty';

export interface TokenDisplay {
  /** What to render (textContent). */
  text: string;
  kind: TokenKind;
  /** A longer description for tooltips. */
  title: string;
}

const BYTE_LABEL_G = new RegExp(BYTE_LABEL.source, 'g');

/** The text a token stands for, as the token strip, table headers and tooltips show it. */
export function tokenDisplay(tok: { text: string; special?: boolean }): TokenDisplay {
  const quoted = JSON.stringify(tok.text).replace(BIDI_G, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (tok.special) return { text: visibleText(tok.text) || '∅', kind: 'special', title: `special token ${quoted}` };
  if (tok.text.length === 0) return { text: '∅', kind: 'empty', title: 'empty token (no text)' };
  // the engine names a byte that is not a whole character <0xHH> (engine/tokenizer.ts, bytesLabel);
  // U+FFFD: an analysis exported before it did
  const bytes = tok.text.match(BYTE_LABEL_G);
  if (bytes || tok.text.includes('\ufffd')) {
    const which = bytes ? `byte${bytes.length > 1 ? 's' : ''} ${bytes.map((b) => b.slice(3, 5)).join(' ')}` : 'bytes';
    return { text: visibleText(tok.text), kind: 'bytes', title: `${quoted}: ${which} of a character split across tokens (a byte piece)` };
  }
  return { text: visibleText(tok.text), kind: 'normal', title: quoted };
}

/** Characters quoted, with the code points of those beyond ASCII (not clip's "…"): `"🙂" U+1F642`. */
export function characterNames(chars: string): string {
  const wide = [...chars]
    .map((c) => c.codePointAt(0)!)
    .filter((c) => c > 0x7f && c !== 0x2026)
    .map((c) => `U+${c.toString(16).toUpperCase().padStart(4, '0')}`);
  return `${JSON.stringify(visibleText(chars))}${wide.length ? ` ${wide.join(' ')}` : ''}`;
}

/**
 * For a byte piece of the analysed text: the characters its span covers (a character split across
 * tokens is covered by each of its pieces), named by characterNames. Null when the span is empty
 * (a token not in the text).
 */
export function splitCharacter(text: string, tok: { start: number; end: number }): string | null {
  const covered = text.slice(tok.start, tok.end);
  return covered ? characterNames(clip(covered, 16)) : null;
}

/** A token for Plotly labels and hover text: visible, clipped, escaped. */
export function plotlyToken(text: string, max = 24): string {
  return escapePlotly(clip(visibleText(text), max));
}

/** Display name of lens row r (0 = embeddings, r = layer r−1). */
export function rowLabel(r: number): string {
  return r === 0 ? 'emb' : `L${r - 1}`;
}

/** Long name of lens row r for tooltips. */
export function rowTitle(r: number, rows: number): string {
  if (r === 0) return 'embeddings (resid_pre 0)';
  return `layer ${r - 1}${r === rows - 1 ? ' (output)' : ''}`;
}

/** Compact number formatting for tables and tooltips. */
export function fmt(x: number, digits = 3): string {
  if (!Number.isFinite(x)) return '–';
  if (x !== 0 && Math.abs(x) < 10 ** -(digits - 1)) return x.toExponential(1);
  return Number(x.toPrecision(digits)).toString();
}

/** A probability as a percentage with sensible precision. */
export function pct(p: number): string {
  if (!Number.isFinite(p)) return '–';
  const v = p * 100;
  if (v >= 10) return `${v.toFixed(0)}%`;
  if (v >= 1) return `${v.toFixed(1)}%`;
  if (v >= 0.01) return `${v.toFixed(2)}%`;
  return `${v.toExponential(0)}%`;
}

/** Milliseconds as "850 ms" / "2.4 s". */
export function duration(ms: number): string {
  if (!Number.isFinite(ms)) return '–';
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
}
