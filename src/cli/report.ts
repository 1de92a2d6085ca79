// `transformer-dynamics analyze … --html report.html`: one standalone HTML file with the panel
// (the same webview bundle and stylesheet as the extension, codicons inlined as data) and the
// analysis plus precomputed answers to the panel's requests, inlined as typed-array-aware JSON.
// A CSP like the panel's (scripts by nonce only, no network), so opening it makes no requests.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Engine } from '../engine/engine';
import type { Analysis, ClustersResult, DiffResult, HeadStatsResult, ProximityResult } from '../shared/analysis';
import type { PatchingResult } from '../shared/interventions';
import { analysisToPayload } from '../shared/payload';
import { STATIC_DATA_ID, STATIC_DATA_VERSION, encodeTypedJson, type Base64Codec, type StaticData } from '../../webview/shapeDynamicsStatic';
import { reportThemeCss } from './reportTheme';

/** Limits on what is inlined (the report must stay a reasonable size). */
export interface ReportOptions {
  /** Similarity matrices for every row up to this many tokens, else the last row only. */
  maxSimilarityPos?: number;
  /** Attention patterns for all heads if n_layers · n_heads · pos² is at most this, else none. */
  maxPatternFloats?: number;
  /** Angular proximity for every position (the dev harness), not just the last. */
  allProximity?: boolean;
  /** Clusters precomputed for every row, not just the last (others are computed in the page). */
  allClusters?: boolean;
  lensTopK?: number;
}

export const REPORT_DEFAULTS = { maxSimilarityPos: 512, maxPatternFloats: 8e6 } as const;

/** What-if parts of a report (runs kept in the engine by id). */
export interface ReportWhatIf {
  /** The clean run shown beside the intervened analysis of the report. */
  twinRunId?: number;
  /** Two prompts for the Diff tab, with their activation-patching heatmap. */
  diff?: { a: number; b: number; labels: [string, string] };
  patching?: PatchingResult;
}

const NODE_BASE64: Base64Codec = {
  encode: (b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64'),
  decode: (s) => new Uint8Array(Buffer.from(s, 'base64')),
};

/** The analysis and the panel's precomputed request answers (kept in the engine as `runId`). */
export async function reportData(
  engine: Engine,
  analysis: Analysis,
  runId: number,
  opts: ReportOptions = {},
  whatIf: ReportWhatIf = {},
): Promise<StaticData> {
  const c = analysis.cache;
  const T = c.pos;
  const rows = c.n_layers + 1;
  const last = T - 1;
  const maxSim = opts.maxSimilarityPos ?? REPORT_DEFAULTS.maxSimilarityPos;
  const maxPat = opts.maxPatternFloats ?? REPORT_DEFAULTS.maxPatternFloats;
  const payload = analysisToPayload(analysis, runId, null);

  const similarity: Record<number, Float32Array> = {};
  for (let r = T <= maxSim ? 0 : rows - 1; r < rows; r++)
    similarity[r] = (await engine.query({ type: 'similarity', runId, row: r })) as Float32Array;

  let headStats: HeadStatsResult | null = null;
  let attentionNote: string | null = null;
  let patterns: Record<string, Float32Array> | null = null;
  let patternsNote: string | null = null;
  if (!c.patterns && !c.headStats) {
    attentionNote = patternsNote = 'Attention patterns were not computed for this run (the CLI ran with --no-patterns).';
  } else {
    try {
      headStats = (await engine.query({ type: 'headStats', runId })) as HeadStatsResult;
    } catch (e) {
      attentionNote = (e as Error).message;
    }
    const floats = c.n_layers * c.n_heads * T * T;
    if (floats > maxPat) {
      patternsNote =
        `Attention patterns of single heads are not in this report: ${c.n_layers} layers × ${c.n_heads} heads × ${T}² positions = ` +
        `${floats.toLocaleString('en-US')} values, more than its limit of ${maxPat.toLocaleString('en-US')}. Analyse fewer tokens (--max-tokens) to include them.`;
    } else {
      patterns = {};
      for (let L = 0; L < c.n_layers; L++)
        for (let h = 0; h < c.n_heads; h++)
          patterns[`${L}.${h}`] = (await engine.query({ type: 'pattern', runId, layer: L, head: h })) as Float32Array;
    }
  }

  const proximity: Record<number, ProximityResult> = {};
  for (const pos of opts.allProximity ? Array.from({ length: T }, (_, i) => i) : [last])
    if (pos >= 0) proximity[pos] = (await engine.query({ type: 'proximity', runId, pos })) as ProximityResult;

  const clusters: Record<number, ClustersResult> = {};
  for (const r of opts.allClusters ? Array.from({ length: rows }, (_, i) => i) : [rows - 1]) {
    clusters[r] = (await engine.query({ type: 'clusters', runId, row: r })) as ClustersResult;
  }

  return {
    version: STATIC_DATA_VERSION,
    generated: new Date().toISOString(),
    generator: 'transformer-dynamics CLI',
    payload,
    settings: { lensTopK: opts.lensTopK ?? analysis.lens.k, overlayEnabled: false },
    similarity,
    headStats,
    attentionNote,
    patterns,
    patternsNote,
    proximity,
    clusters,
    clean: whatIf.twinRunId !== undefined ? analysisToPayload(engine.analysis(whatIf.twinRunId), whatIf.twinRunId, null) : null,
    promptDiff: await promptDiffData(engine, whatIf),
  };
}

async function promptDiffData(engine: Engine, w: ReportWhatIf): Promise<StaticData['promptDiff']> {
  if (!w.diff) return null;
  const { a, b, labels } = w.diff;
  return {
    a: analysisToPayload(engine.analysis(a), a, null),
    b: analysisToPayload(engine.analysis(b), b, null),
    diff: (await engine.query({ type: 'diff', runId: a, otherRunId: b })) as DiffResult,
    labels,
    patching: w.patching ?? null,
  };
}

export interface ReportAssets {
  js: string;
  css: string;
  codiconCss: string;
  codiconTtf: Buffer;
}

function firstExisting(candidates: string[], what: string): string {
  for (const f of candidates) if (fs.existsSync(f)) return f;
  throw new Error(
    `The panel's ${what} is missing (looked in ${candidates.map((f) => path.dirname(f)).join(', ')}). Build it with "npm run build".`,
  );
}

/** Finds the built webview bundle next to the CLI (dist/) or, from compiled tests, in the repository's dist/. */
export function loadAssets(): ReportAssets {
  const dirs = [__dirname, path.resolve(__dirname, '..', '..', 'dist'), path.resolve(__dirname, '..', '..', '..', 'dist')];
  const find = (name: string) =>
    firstExisting(
      dirs.map((d) => path.join(d, name)),
      name,
    );
  const codiconDirs = [
    ...dirs,
    path.resolve(__dirname, '..', '..', 'node_modules', '@vscode', 'codicons', 'dist'),
    path.resolve(__dirname, '..', '..', '..', 'node_modules', '@vscode', 'codicons', 'dist'),
  ];
  const findCodicon = (name: string) =>
    firstExisting(
      codiconDirs.map((d) => path.join(d, name)),
      name,
    );
  return {
    js: fs.readFileSync(find('webview.js'), 'utf8'),
    css: fs.readFileSync(find('webview.css'), 'utf8'),
    codiconCss: fs.readFileSync(findCodicon('codicon.css'), 'utf8'),
    codiconTtf: fs.readFileSync(findCodicon('codicon.ttf')),
  };
}

/** Script text that cannot end its <script> element early ("</script" and "<script" are escaped). */
export function safeInlineScript(js: string): string {
  return js
    .replace(/^\/\/# sourceMappingURL=.*$/gm, '')
    .replace(
      /<(\/?)(script)/gi,
      (_m, slash: string, word: string) => `<${slash ? '\\/' : ''}\\x${word.charCodeAt(0).toString(16)}${word.slice(1)}`,
    );
}

/** Stylesheet text for a <style> element (no source-map comment; refuses a closing tag inside). */
export function safeInlineStyle(css: string): string {
  const out = css.replace(/\/\*# sourceMappingURL=[^*]*\*\//g, '');
  if (/<\/style/i.test(out)) throw new Error('A stylesheet contains "</style" and cannot be inlined.');
  return out;
}

/** codicon.css with its font as a data: URL (no file next to the report). */
export function inlineCodicons(css: string, ttf: Buffer): string {
  return css.replace(/url\((["']?)\.\/codicon\.ttf[^)"']*\1\)/g, `url("data:font/ttf;base64,${ttf.toString('base64')}")`);
}

const escAttr = (s: string) => s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** The report's HTML: CSP by nonce, no external resources, the data before the app script. */
export function reportHtml(data: StaticData, assets: ReportAssets): string {
  const nonce = randomBytes(16).toString('base64');
  const csp = [
    "default-src 'none'",
    `script-src 'nonce-${nonce}'`,
    "style-src 'unsafe-inline' data:",
    'font-src data:',
    'img-src data: blob:',
  ].join('; ');
  const codicons = Buffer.from(inlineCodicons(assets.codiconCss, assets.codiconTtf)).toString('base64');
  const title = `Transformer Dynamics — ${data.payload.model.name} (${data.payload.tokens.length} tokens)`;
  return [
    '<!DOCTYPE html>',
    '<html lang="en" data-td-theme="light"><head><meta charset="UTF-8">',
    `<meta http-equiv="Content-Security-Policy" content="${csp};">`,
    '<meta name="viewport" content="width=device-width, initial-scale=1.0">',
    `<meta name="generator" content="${escAttr(data.generator)}">`,
    `<title>${escAttr(title)}</title>`,
    `<style id="td-report-theme">\n${safeInlineStyle(reportThemeCss())}</style>`,
    `<style>\n${safeInlineStyle(assets.css)}</style>`,
    // vscode-elements adopt this link (by id) into their shadow roots; a data: URL keeps it offline
    `<link href="data:text/css;base64,${codicons}" rel="stylesheet" id="vscode-codicon-stylesheet">`,
    '</head>',
    '<body class="vscode-light">',
    `<script type="application/json" id="${STATIC_DATA_ID}">${encodeTypedJson(data, NODE_BASE64)}</script>`,
    '<div id="app"></div>',
    `<script nonce="${nonce}">\n${safeInlineScript(assets.js)}\n</script>`,
    '</body></html>',
    '',
  ].join('\n');
}

/** Precomputes, renders and writes the report; returns its size in bytes. */
export async function writeReport(
  file: string,
  engine: Engine,
  analysis: Analysis,
  runId: number,
  opts: ReportOptions = {},
  whatIf: ReportWhatIf = {},
): Promise<number> {
  const assets = loadAssets();
  const data = await reportData(engine, analysis, runId, opts, whatIf);
  const html = reportHtml(data, assets);
  fs.writeFileSync(file, html);
  return Buffer.byteLength(html);
}
