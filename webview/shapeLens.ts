// The logit-lens table's numbers: per-cell values for each colour mode, the colour scale and
// its legend, hover details, surprisal, and the table as standalone SVG for export.
// Rows r = 0..n_layers (0 = embeddings, r = layer r−1, the last row = the model's output);
// arrays are [rows, pos] and [rows, pos, k] as in LensTable.
import type { LensTable, Token } from '../src/shared/analysis';
import type { LensColorMode } from '../src/shared/protocol';
import { clip, escapeXml, fmt, pct, rowLabel, rowTitle, tokenDisplay, type TokenDisplay } from './shapeText';

/** What the lens views need from a payload. */
export interface LensSource {
  lens: LensTable;
  tokens: Token[];
  vocab: Record<number, string>;
  model: { d_vocab: number };
}

export const LENS_MODES: { mode: LensColorMode; label: string }[] = [
  { mode: 'prob', label: 'Top-1 probability' },
  { mode: 'rank', label: 'Rank of next token' },
  { mode: 'entropy', label: 'Entropy' },
  { mode: 'kl', label: 'KL to final' },
];

export function isLensColorMode(v: unknown): v is LensColorMode {
  return v === 'prob' || v === 'rank' || v === 'entropy' || v === 'kl';
}

/** The actual next token's id after position p, or null at the last position. */
export function nextTokenId(tokens: Token[], p: number): number | null {
  return tokens[p + 1]?.id ?? null;
}

/** The raw value a cell is coloured by, or null where it has none (rank at the last position). */
export function modeValue(lens: LensTable, mode: LensColorMode, r: number, p: number): number | null {
  const i = r * lens.pos + p;
  let v: number;
  switch (mode) {
    case 'prob':
      v = lens.topProbs[i * lens.k]!;
      break;
    case 'rank':
      v = lens.nextRank[i]!;
      if (v < 0) return null;
      break;
    case 'entropy':
      v = lens.entropy[i]!;
      break;
    case 'kl':
      v = lens.klToFinal[i]!;
      break;
  }
  return Number.isFinite(v) ? v : null;
}

export interface ScaleTick {
  /** Position on the bar, 0..1. */
  t: number;
  label: string;
}

export interface LensScale {
  mode: LensColorMode;
  title: string;
  /** What the strong end of the bar means. */
  strong: string;
  max: number;
  log: boolean;
  ticks: ScaleTick[];
}

function maxFinite(a: Float32Array): number {
  let m = 0;
  for (const v of a) if (Number.isFinite(v) && v > m) m = v;
  return m;
}

/** The scale that maps a mode's values onto 0..1 (1 = the accent colour), with legend ticks. */
export function lensScale(mode: LensColorMode, lens: LensTable, dVocab: number): LensScale {
  switch (mode) {
    case 'prob':
      return {
        mode,
        title: 'p(top-1)',
        strong: 'confident',
        max: 1,
        log: false,
        ticks: [0, 0.25, 0.5, 0.75, 1].map((t) => ({ t, label: `${t * 100}%` })),
      };
    case 'rank': {
      const worst = Math.max(1, dVocab - 1);
      const ticks: ScaleTick[] = [];
      for (let r = 1; r <= dVocab; r *= 10) ticks.push({ t: rankT(r - 1, worst), label: `#${r >= 1000 ? `${r / 1000}k` : r}` });
      ticks.push({ t: 0, label: `#${dVocab}` });
      return { mode, title: 'rank of next token (log)', strong: 'next token on top', max: worst, log: true, ticks: dedupeTicks(ticks) };
    }
    case 'entropy': {
      const max = Math.log(Math.max(2, dVocab));
      return {
        mode,
        title: 'entropy (nats)',
        strong: 'uncertain',
        max,
        log: false,
        ticks: [0, 0.25, 0.5, 0.75, 1].map((t) => ({ t, label: fmt(t * max, 2) })),
      };
    }
    case 'kl': {
      const max = Math.max(1e-6, maxFinite(lens.klToFinal));
      const ticks: ScaleTick[] = [{ t: 0, label: '0' }];
      for (const v of [0.1, 1, 10, 100]) if (v < max * 0.8) ticks.push({ t: Math.log1p(v) / Math.log1p(max), label: fmt(v, 2) });
      ticks.push({ t: 1, label: fmt(max, 3) });
      return { mode, title: 'KL(final ‖ layer) nats (log)', strong: 'far from output', max, log: true, ticks: dedupeTicks(ticks) };
    }
  }
}

function rankT(rank: number, worst: number): number {
  return 1 - Math.log1p(rank) / Math.log1p(worst);
}

/** Drops ticks that would overlap (closer than 8% of the bar) keeping the ends. */
function dedupeTicks(ticks: ScaleTick[]): ScaleTick[] {
  const sorted = [...ticks].sort((a, b) => a.t - b.t);
  const out: ScaleTick[] = [];
  for (const t of sorted) {
    const last = out[out.length - 1];
    if (last && t.t - last.t < 0.08) {
      if (t.t === 1 || t.t === 0) out[out.length - 1] = t;
      continue;
    }
    out.push(t);
  }
  return out;
}

/** A value's position on the scale, 0..1; null stays null (uncoloured cell). */
export function scaleT(scale: LensScale, v: number | null): number | null {
  if (v === null || !Number.isFinite(v)) return null;
  let t: number;
  switch (scale.mode) {
    case 'prob':
      t = v;
      break;
    case 'rank':
      t = rankT(v, scale.max);
      break;
    case 'entropy':
      t = v / scale.max;
      break;
    case 'kl':
      t = Math.log1p(Math.max(0, v)) / Math.log1p(scale.max);
      break;
  }
  return Math.max(0, Math.min(1, t));
}

/** Top-1 id of a cell. */
export function top1Id(lens: LensTable, r: number, p: number): number {
  return lens.topIds[(r * lens.pos + p) * lens.k]!;
}

/** True when the row's top-1 is the token that actually comes next. */
export function isNextMatch(src: LensSource, r: number, p: number): boolean {
  const next = nextTokenId(src.tokens, p);
  return next !== null && top1Id(src.lens, r, p) === next;
}

export interface LensCellInfo {
  rowTitle: string;
  pos: number;
  input: TokenDisplay;
  top: { text: TokenDisplay; prob: number; isNext: boolean }[];
  entropy: number;
  next: TokenDisplay | null;
  /** 1-based rank of the actual next token (1 = top-1). */
  nextRank: number | null;
  nextProb: number | null;
  kl: number;
  copyMass: number;
  cosNext: number | null;
  cosPred: number;
}

/** Everything a cell's hover shows. */
export function lensCellInfo(src: LensSource, r: number, p: number, topK: number): LensCellInfo {
  const { lens, tokens, vocab } = src;
  const i = r * lens.pos + p;
  const next = nextTokenId(tokens, p);
  const k = Math.max(1, Math.min(lens.k, topK));
  const top = Array.from({ length: k }, (_, j) => {
    const id = lens.topIds[i * lens.k + j]!;
    return { text: tokenDisplay({ text: vocab[id] ?? `<${id}>` }), prob: lens.topProbs[i * lens.k + j]!, isNext: id === next };
  });
  const tok = tokens[p]!;
  const last = next === null;
  return {
    rowTitle: rowTitle(r, lens.rows),
    pos: p,
    input: tokenDisplay(tok),
    top,
    entropy: lens.entropy[i]!,
    next: last ? null : tokenDisplay(tokens[p + 1]!),
    nextRank: last ? null : lens.nextRank[i]! + 1,
    nextProb: last ? null : Math.exp(lens.nextLogprob[i]!),
    kl: lens.klToFinal[i]!,
    copyMass: lens.copyMass[i]!,
    cosNext: last ? null : lens.cosNext[i]!,
    cosPred: lens.cosPred[i]!,
  };
}

/** Surprisal of the token after position p in bits, from the model's output row; null at the end. */
export function surprisalBits(lens: LensTable, p: number): number | null {
  if (p < 0 || p >= lens.pos) return null;
  const v = lens.nextLogprob[(lens.rows - 1) * lens.pos + p]!;
  return Number.isFinite(v) ? -v / Math.LN2 : null;
}

/** The visible window of a virtualised grid: [first, last) indices along one axis. */
export function visibleRange(scroll: number, viewport: number, cell: number, count: number, overscan = 2): [number, number] {
  if (count <= 0 || cell <= 0) return [0, 0];
  const first = Math.max(0, Math.floor(scroll / cell) - overscan);
  const last = Math.min(count, Math.ceil((scroll + viewport) / cell) + overscan);
  return [Math.min(first, last), last];
}

/** Colours the SVG export uses (CSS colour strings from the theme). */
export interface LensSvgPalette {
  background: string;
  foreground: string;
  muted: string;
  border: string;
  fontFamily: string;
  /** Cell fill and text colour for a scale position t (null = uncoloured). */
  cell: (t: number | null) => { fill: string; text: string };
}

/** The whole lens table as standalone SVG markup (every string escaped). */
export function lensTableSvg(src: LensSource, mode: LensColorMode, pal: LensSvgPalette, cellW = 64, rowH = 20): string {
  const { lens, tokens, vocab } = src;
  const scale = lensScale(mode, lens, src.model.d_vocab);
  const labelW = 44;
  const headH = 24;
  const T = lens.pos;
  const W = labelW + T * cellW;
  const H = headH + (lens.rows + 1) * rowH + 8;
  const chars = Math.max(2, Math.floor((cellW - 6) / 6.5));
  const text = (x: number, y: number, s: string, fill: string, extra = '') =>
    `<text x="${x}" y="${y}" fill="${fill}"${extra}>${escapeXml(clip(s, chars))}</text>`;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="${escapeXml(pal.fontFamily)}" font-size="11" text-anchor="middle" dominant-baseline="central">`,
    `<rect width="${W}" height="${H}" fill="${pal.background}"/>`,
  ];
  for (let p = 0; p < T; p++) parts.push(text(labelW + p * cellW + cellW / 2, headH / 2, tokenDisplay(tokens[p]!).text, pal.foreground));
  for (let r = 0; r < lens.rows; r++) {
    const y = headH + r * rowH;
    parts.push(text(labelW / 2, y + rowH / 2, rowLabel(r), pal.muted));
    for (let p = 0; p < T; p++) {
      const { fill, text: ink } = pal.cell(scaleT(scale, modeValue(lens, mode, r, p)));
      const x = labelW + p * cellW;
      parts.push(`<rect x="${x}" y="${y}" width="${cellW}" height="${rowH}" fill="${fill}" stroke="${pal.border}" stroke-width="0.5"/>`);
      const hit = isNextMatch(src, r, p);
      const id = top1Id(lens, r, p);
      parts.push(
        text(
          x + cellW / 2,
          y + rowH / 2,
          tokenDisplay({ text: vocab[id] ?? '' }).text,
          ink,
          hit ? ' font-weight="bold" text-decoration="underline"' : '',
        ),
      );
    }
  }
  const yNext = headH + lens.rows * rowH + 4;
  parts.push(text(labelW / 2, yNext + rowH / 2, 'next', pal.muted));
  for (let p = 0; p + 1 < T; p++)
    parts.push(text(labelW + p * cellW + cellW / 2, yNext + rowH / 2, tokenDisplay(tokens[p + 1]!).text, pal.foreground));
  parts.push('</svg>');
  return parts.join('\n');
}

/** Short stats line for a cell ("H 2.31 · KL 0.12 · next #3 4.1%"). */
export function cellSummary(info: LensCellInfo): string {
  const bits = [`H ${fmt(info.entropy)} nats`, `KL ${fmt(info.kl)}`];
  if (info.nextRank !== null && info.nextProb !== null) bits.push(`next #${info.nextRank} (${pct(info.nextProb)})`);
  return bits.join(' · ');
}
