// Colours from the theme's CSS variables: parsing, mixing and readable text on a tint.
// Every colour the panel paints comes from a --vscode-* variable, so ramps are built by
// mixing the editor background with a chart colour rather than from a fixed palette.

export type Rgba = [number, number, number, number];

/** Parses #rgb, #rgba, #rrggbb, #rrggbbaa, rgb() and rgba(); null when it cannot. */
export function parseColor(s: string): Rgba | null {
  const t = s.trim().toLowerCase();
  let m = /^#([0-9a-f]{3,8})$/.exec(t);
  if (m) {
    const h = m[1]!;
    if (h.length === 3 || h.length === 4) {
      const v = [...h].map((c) => parseInt(c + c, 16));
      return [v[0]!, v[1]!, v[2]!, h.length === 4 ? v[3]! / 255 : 1];
    }
    if (h.length === 6 || h.length === 8) {
      const v = [0, 2, 4, 6].map((i) => parseInt(h.slice(i, i + 2), 16));
      return [v[0]!, v[1]!, v[2]!, h.length === 8 ? v[3]! / 255 : 1];
    }
    return null;
  }
  m = /^rgba?\(\s*([\d.]+)[\s,]+([\d.]+)[\s,]+([\d.]+)(?:[\s,/]+([\d.]+%?))?\s*\)$/.exec(t);
  if (m) {
    const a = m[4] === undefined ? 1 : m[4].endsWith('%') ? parseFloat(m[4]) / 100 : parseFloat(m[4]);
    return [Number(m[1]), Number(m[2]), Number(m[3]), Math.max(0, Math.min(1, a))];
  }
  return null;
}

export function toCss([r, g, b, a]: Rgba): string {
  const c = (v: number) => Math.round(Math.max(0, Math.min(255, v)));
  return a >= 1 ? `rgb(${c(r)}, ${c(g)}, ${c(b)})` : `rgba(${c(r)}, ${c(g)}, ${c(b)}, ${Number(a.toFixed(3))})`;
}

/** Composites `top` over an opaque `bottom`. */
export function over(top: Rgba, bottom: Rgba): Rgba {
  const a = top[3];
  return [top[0] * a + bottom[0] * (1 - a), top[1] * a + bottom[1] * (1 - a), top[2] * a + bottom[2] * (1 - a), 1];
}

/** Linear mix from a (t = 0) to b (t = 1), both made opaque against `base` first. */
export function mix(a: Rgba, b: Rgba, t: number, base: Rgba = [0, 0, 0, 1]): Rgba {
  const x = over(a, base);
  const y = over(b, base);
  const u = Math.max(0, Math.min(1, t));
  return [x[0] + (y[0] - x[0]) * u, x[1] + (y[1] - x[1]) * u, x[2] + (y[2] - x[2]) * u, 1];
}

/** WCAG relative luminance of an opaque colour. */
export function luminance([r, g, b]: Rgba): number {
  const lin = (v: number) => {
    const s = v / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
}

export function contrast(a: Rgba, b: Rgba): number {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x) as [number, number];
  return (hi + 0.05) / (lo + 0.05);
}

/** Whichever of the candidates reads best on `bg`. */
export function readableOn(bg: Rgba, candidates: Rgba[]): Rgba {
  let best = candidates[0]!;
  for (const c of candidates) if (contrast(c, bg) > contrast(best, bg)) best = c;
  return best;
}

/**
 * A sequential ramp: t = 0 is the background, t = 1 the accent. Returns `steps` opaque
 * colours so cells can index a precomputed table instead of mixing per cell.
 */
export function ramp(bg: Rgba, accent: Rgba, steps = 64): Rgba[] {
  return Array.from({ length: steps }, (_, i) => mix(bg, accent, i / (steps - 1), bg));
}

/** Index into a ramp of `steps` entries for t in [0, 1]. */
export function rampIndex(t: number, steps: number): number {
  if (!Number.isFinite(t)) return 0;
  return Math.max(0, Math.min(steps - 1, Math.round(t * (steps - 1))));
}

/** A Plotly colorscale [[0, c0], …, [1, c1]] for a ramp. */
export function plotlyColorscale(colors: Rgba[]): [number, string][] {
  const n = colors.length;
  return colors.map((c, i) => [n === 1 ? 0 : i / (n - 1), toCss(c)]);
}
