// Pure part of the editor overlay: which tint each token gets and what its hover says.
// Surprisal (METRICS.md): surprisal[i] = −log2 p(token[i+1] | tokens[..i]). A token is tinted
// by how surprising it was to the model, i.e. token j by surprisal[j−1].
import type { AnalysisPayload } from './protocol';
import { describePatch } from './interventions';

/** Upper bounds (bits) of the tint buckets; the last bucket is open-ended. */
export const SURPRISAL_BUCKETS = [1, 2, 4, 6, 9] as const;
export const BUCKET_COUNT = SURPRISAL_BUCKETS.length + 1;

export function surprisalBucket(bits: number): number {
  for (let b = 0; b < SURPRISAL_BUCKETS.length; b++) if (bits < SURPRISAL_BUCKETS[b]!) return b;
  return SURPRISAL_BUCKETS.length;
}

/** surprisal in bits per position from the final lens row (NaN at the last position). */
export function surprisalBits(p: AnalysisPayload): Float64Array {
  const T = p.lens.pos;
  const last = p.lens.rows - 1;
  const out = new Float64Array(T);
  for (let i = 0; i < T; i++) out[i] = i === T - 1 ? NaN : -p.lens.nextLogprob[last * T + i]! / Math.LN2;
  return out;
}

export interface OverlayToken {
  index: number;
  /** Offsets in the source document (UTF-16). */
  start: number;
  end: number;
  /** Bits for seeing this token (NaN for the first token). */
  bits: number;
  bucket: number;
}

/** Tokens with a non-empty span in the source document and their tint. */
export function overlayTokens(p: AnalysisPayload): OverlayToken[] {
  if (!p.source) return [];
  const bits = surprisalBits(p);
  const out: OverlayToken[] = [];
  p.tokens.forEach((t, j) => {
    if (t.end <= t.start) return;
    const b = j === 0 ? NaN : bits[j - 1]!;
    out.push({
      index: j,
      start: p.source!.offset + t.start,
      end: p.source!.offset + t.end,
      bits: b,
      bucket: Number.isNaN(b) ? -1 : surprisalBucket(b),
    });
  });
  return out;
}

/**
 * What-if difference: Δ = surprisal of seeing the token in the shown run − in the run compared
 * with (bits). Buckets by |Δ|, separately for "more surprising" (positive) and "less".
 */
export const DIFF_BUCKETS = [0.25, 1, 2, 4] as const;
export const DIFF_BUCKET_COUNT = DIFF_BUCKETS.length;

export interface OverlayDiffToken extends OverlayToken {
  /** Δ bits (NaN for the first token). */
  delta: number;
  /** More (+1) or less (−1) surprising than the run compared with; 0: within ±0.25 bits. */
  sign: -1 | 0 | 1;
}

/** Tokens with their change in surprisal against `base` (the same tokens, e.g. the clean twin). */
export function overlayDiffTokens(p: AnalysisPayload, base: AnalysisPayload): OverlayDiffToken[] {
  const mine = surprisalBits(p);
  const theirs = surprisalBits(base);
  return overlayTokens(p).map((t) => {
    const j = t.index;
    const delta = j === 0 || j - 1 >= theirs.length ? NaN : mine[j - 1]! - theirs[j - 1]!;
    const size = Math.abs(delta);
    let bucket = -1;
    for (let b = DIFF_BUCKETS.length - 1; b >= 0; b--)
      if (size >= DIFF_BUCKETS[b]!) {
        bucket = b;
        break;
      }
    const sign = bucket < 0 || Number.isNaN(delta) ? 0 : delta > 0 ? 1 : -1;
    return { ...t, delta, sign, bucket: sign === 0 ? -1 : bucket };
  });
}

/** Index of the token covering document offset `off` (or null). */
export function tokenAtOffset(p: AnalysisPayload, off: number): number | null {
  if (!p.source) return null;
  const rel = off - p.source.offset;
  let best: number | null = null;
  for (let j = 0; j < p.tokens.length; j++) {
    const t = p.tokens[j]!;
    if (t.end <= t.start) continue;
    if (rel >= t.start && rel < t.end) return j;
    if (rel === t.end) best = j;
  }
  return best;
}

/** Visible form of a token: whitespace and control characters shown. */
export function visibleToken(text: string): string {
  return (
    text
      .replace(/ /g, '·')
      .replace(/\n/g, '↵')
      .replace(/\t/g, '→')
      .replace(/\r/g, '␍')
      // eslint-disable-next-line no-control-regex -- control characters are exactly what we make visible
      .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
      .replace(/[\u202a-\u202e\u2066-\u2069\u200e\u200f]/g, (c) => `\\u${c.charCodeAt(0).toString(16)}`)
  );
}

/** Markdown-safe inline code (backticks cannot break out). */
function code(s: string): string {
  const v = visibleToken(s) || '∅';
  const fence = v.includes('`') ? '``' : '`';
  return `${fence}${v.includes('`') ? ' ' : ''}${v}${v.includes('`') ? ' ' : ''}${fence}`;
}

/** A run's name in the what-if hover: "clean" or what was done to it. */
function runName(p: AnalysisPayload): string {
  const a = p.interventions?.ablation;
  if (a) return `ablated (${a.heads.map((h) => `L${h.layer}H${h.head}`).join(', ')}, ${a.mode})`;
  const patch = p.interventions?.patch;
  return patch ? `patched (${describePatch(patch)})` : 'clean';
}

/** The hover for token j: how surprising it was, and what the model predicts next (against `base`: both runs). */
export function hoverMarkdown(p: AnalysisPayload, j: number, base: AnalysisPayload | null = null): string {
  const T = p.lens.pos;
  const k = p.lens.k;
  const last = p.lens.rows - 1;
  const bits = surprisalBits(p);
  const tok = p.tokens[j]!;
  const lines: string[] = [`**Token ${j}** ${code(tok.text)} · id ${tok.id}`];
  if (j > 0) {
    const b = bits[j - 1]!;
    lines.push(`p = ${(2 ** -b * 100).toPrecision(3)}% · surprisal ${b.toFixed(2)} bits`);
    if (base) {
      const b0 = surprisalBits(base)[j - 1]!;
      lines.push(
        '',
        `${runName(base)} ${b0.toFixed(2)} bits → ${runName(p)} ${b.toFixed(2)} bits (Δ ${b - b0 >= 0 ? '+' : ''}${(b - b0).toFixed(2)})`,
      );
    }
  }
  lines.push('', `**Top ${k} predictions for the next token**`, '');
  lines.push('| token | p |', '|---|---:|');
  for (let r = 0; r < k; r++) {
    const id = p.lens.topIds[(last * T + j) * k + r]!;
    const prob = p.lens.topProbs[(last * T + j) * k + r]!;
    lines.push(`| ${code(p.vocab[id] ?? String(id)).replace(/\|/g, '\\|')} | ${(prob * 100).toFixed(1)}% |`);
  }
  lines.push('', `entropy ${p.lens.entropy[last * T + j]!.toFixed(2)} nats · ${p.model.name}`);
  return lines.join('\n');
}
