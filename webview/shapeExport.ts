// Image export helpers: file names and turning Plotly's image data URLs into what the
// saveImage request carries (a data URL for PNG, SVG markup for SVG).

/** A safe file stem: letters, digits, dot, dash, underscore; at most 80 characters. */
export function imageName(...parts: (string | number)[]): string {
  const s = parts
    .map((p) => String(p))
    .join('-')
    .replace(/[^A-Za-z0-9._-]+/g, '_')
    .replace(/^[._-]+|[._-]+$/g, '')
    .slice(0, 80);
  return s || 'chart';
}

/** SVG markup from a data URL (URI-encoded or base64, as Plotly.toImage returns). */
export function svgFromDataUrl(url: string): string {
  const m = /^data:image\/svg\+xml(;charset=[^;,]+)?(;base64)?,/.exec(url);
  if (!m) throw new Error('Not an SVG data URL.');
  const body = url.slice(m[0].length);
  if (m[2]) {
    const bin = atob(body);
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    return new TextDecoder().decode(bytes);
  }
  return decodeURIComponent(body);
}

/** A data URL for SVG markup (for drawing it into a canvas). */
export function svgDataUrl(svg: string): string {
  return 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(svg);
}
