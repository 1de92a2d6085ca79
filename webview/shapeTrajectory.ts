// Layer trajectories from the PCA coordinates of the walk: one polyline per token through
// rows 0..n_layers (coords [rows, pos, 3]), split into the selected token's path and all
// other paths joined into one trace with NaN separators (one trace stays fast at 1024 tokens).
import type { LensTable, Token, WalkMetrics } from '../src/shared/analysis';
import { escapePlotly, fmt, plotlyToken, rowLabel, rowTitle } from './shapeText';

export interface PathSeries {
  x: number[];
  y: number[];
  z: number[];
  /** Row of each point (−1 at separators). */
  row: number[];
  /** Position of each point (−1 at separators). */
  pos: number[];
}

function emptySeries(): PathSeries {
  return { x: [], y: [], z: [], row: [], pos: [] };
}

function pushPath(s: PathSeries, coords: Float32Array, rows: number, T: number, p: number): void {
  for (let r = 0; r < rows; r++) {
    const o = (r * T + p) * 3;
    s.x.push(coords[o]!);
    s.y.push(coords[o + 1]!);
    s.z.push(coords[o + 2]!);
    s.row.push(r);
    s.pos.push(p);
  }
}

/** One token's path through the rows, from coords [rows, pos, 3]. */
export function tokenPath(coords: Float32Array, rows: number, T: number, p: number): PathSeries {
  const s = emptySeries();
  if (p >= 0 && p < T) pushPath(s, coords, rows, T, p);
  return s;
}

/**
 * Every token's path in one series, NaN-separated (one trace, drawn once per run; the selected
 * path is a separate trace on top, so changing the selection leaves this one untouched).
 */
export function allPaths(coords: Float32Array, rows: number, T: number, except = -1): PathSeries {
  const s = emptySeries();
  for (let p = 0; p < T; p++) {
    if (p === except) continue;
    if (s.x.length > 0) {
      s.x.push(NaN);
      s.y.push(NaN);
      s.z.push(NaN);
      s.row.push(-1);
      s.pos.push(-1);
    }
    pushPath(s, coords, rows, T, p);
  }
  return s;
}

/** Axis title with explained variance: "PC1 (41.3%)". `explained` holds fractions. */
/** "PC1 (12.3%)"; in another run's axes (`of`: what that run is), "PC1 of the clean run (11.8%)". */
export function pcAxisTitle(i: number, explained: number[], of?: string): string {
  const e = explained[i];
  const name = of ? `PC${i + 1} of the ${of} run` : `PC${i + 1}`;
  return e === undefined || !Number.isFinite(e) ? name : `${name} (${(e * 100).toFixed(1)}%)`;
}

/** Plotly hover text for each point of a series (escaped; '' at separators). */
export function pathHover(s: PathSeries, tokens: Token[], lens: LensTable, vocab: Record<number, string>): string[] {
  return s.row.map((r, i) => {
    const p = s.pos[i]!;
    if (r < 0) return '';
    const top = lens.topIds[(r * lens.pos + p) * lens.k]!;
    const prob = lens.topProbs[(r * lens.pos + p) * lens.k]!;
    return (
      `<b>${plotlyToken(tokens[p]!.text)}</b> · pos ${p}<br>` +
      `${escapePlotly(rowTitle(r, lens.rows))}<br>` +
      `lens top-1: ${plotlyToken(vocab[top] ?? '')} (${fmt(prob * 100, 3)}%)`
    );
  });
}

export interface LayerSeries {
  /** Category labels for the x axis: emb, L0, L1, … */
  x: string[];
  norm: number[];
  /** ‖ln_final(x)‖ per layer, or null when the run has none. */
  normFinal: number[] | null;
  cosToFinal: number[];
  cosNext: (number | null)[];
  cosPred: number[];
}

/** Per-layer measures of one token for the line charts ([rows, pos] arrays read at column p). */
export function layerSeries(walk: WalkMetrics, lens: LensTable, p: number): LayerSeries {
  const T = lens.pos;
  const x: string[] = [];
  const norm: number[] = [];
  const hasFinal = walk.normsFinal instanceof Float32Array && walk.normsFinal.length === lens.rows * T;
  const normFinal: number[] | null = hasFinal ? [] : null;
  const cosToFinal: number[] = [];
  const cosNext: (number | null)[] = [];
  const cosPred: number[] = [];
  for (let r = 0; r < lens.rows; r++) {
    const i = r * T + p;
    x.push(rowLabel(r));
    norm.push(walk.norms[i]!);
    normFinal?.push(walk.normsFinal[i]!);
    cosToFinal.push(walk.cosToFinal[i]!);
    const cn = lens.cosNext[i]!;
    cosNext.push(Number.isFinite(cn) ? cn : null);
    cosPred.push(lens.cosPred[i]!);
  }
  return { x, norm, normFinal, cosToFinal, cosNext, cosPred };
}

/** Too many points for one SVG marker each (SVG scatter slows down past a few thousand). */
export function manyPoints(rows: number, T: number): boolean {
  return rows * T > 4000;
}
