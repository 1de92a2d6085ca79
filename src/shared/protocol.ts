// The one protocol between the extension host and the panel's webview. Both bundles import
// this file. Every message that crosses is checked by a guard on receipt; anything that does
// not match is dropped and logged.
//
// Handshake: the webview posts `ready` once its script runs; the host answers with the
// current run state and the last analysis (if any). Requests carry an id and get exactly one
// `response` with the same id.
import type { Analysis, ModelInfo, WalkMetrics } from './analysis';

/** What the panel shows for one run: the analysis minus the heavy activation cache. */
export interface AnalysisPayload extends Omit<Analysis, 'cache'> {
  runId: number;
  dims: { n_layers: number; pos: number; d_model: number; n_heads: number };
  /** Where the text came from (for selection sync); null for text not from an editor. */
  source: { uri: string; fileName: string; offset: number } | null;
  walk: WalkMetrics;
}

export type RunState = { kind: 'idle' } | { kind: 'running'; message: string } | { kind: 'cancelled' } | { kind: 'error'; message: string };

export interface PanelSettings {
  lensTopK: number;
  overlayEnabled: boolean;
}

/** Methods the webview can call on the host: params and result types. */
export interface RequestMap {
  /** Token × token cosine similarity at one row of the walk → [pos, pos]. */
  similarity: { params: { runId: number; row: number }; result: Float32Array };
  /** Save the analysis (host shows a save dialog). Result: the saved path or null. */
  exportAnalysis: { params: { format: 'json' | 'csv' }; result: string | null };
  /** Save a chart image produced in the webview (data URL for png, markup for svg). */
  saveImage: { params: { name: string; format: 'png' | 'svg'; data: string }; result: string | null };
}
export type RequestMethod = keyof RequestMap;

export type HostToWebview =
  | { type: 'analysis'; payload: AnalysisPayload }
  | { type: 'runState'; state: RunState }
  | { type: 'settings'; settings: PanelSettings }
  | { type: 'selectPosition'; runId: number; pos: number }
  | { type: 'modelChanged'; model: ModelInfo | null; modelName: string }
  | { type: 'response'; id: number; ok: true; result: unknown }
  | { type: 'response'; id: number; ok: false; error: string };

export type WebviewRequest = {
  [M in RequestMethod]: { type: 'request'; id: number; method: M; params: RequestMap[M]['params'] };
}[RequestMethod];

export type WebviewToHost =
  | { type: 'ready' }
  | { type: 'selectPosition'; runId: number; pos: number }
  | WebviewRequest
  | { type: 'log'; level: 'info' | 'warn' | 'error'; message: string };

/** State the webview persists with setState (small: the host re-runs the analysis on revive). */
export interface PersistedState {
  version: 1;
  text: string;
  source: AnalysisPayload['source'];
  tab: string;
  selectedPos: number;
  similarityRow: number;
  lensColor: LensColorMode;
  trajectoryDims: 2 | 3;
}

export type LensColorMode = 'prob' | 'rank' | 'entropy' | 'kl';

// ---- guards ------------------------------------------------------------------------

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);
const isNonNegInt = (v: unknown): v is number => isInt(v) && v >= 0;
const isStr = (v: unknown, max = 1e7): v is string => typeof v === 'string' && v.length <= max;

function isParams(method: unknown, p: unknown): boolean {
  if (!isObj(p)) return false;
  switch (method) {
    case 'similarity':
      return isNonNegInt(p.runId) && isNonNegInt(p.row);
    case 'exportAnalysis':
      return p.format === 'json' || p.format === 'csv';
    case 'saveImage':
      return isStr(p.name, 200) && (p.format === 'png' || p.format === 'svg') && isStr(p.data, 50e6);
    default:
      return false;
  }
}

export function isWebviewToHost(m: unknown): m is WebviewToHost {
  if (!isObj(m)) return false;
  switch (m.type) {
    case 'ready':
      return true;
    case 'selectPosition':
      return isNonNegInt(m.runId) && isNonNegInt(m.pos);
    case 'request':
      return isNonNegInt(m.id) && isParams(m.method, m.params);
    case 'log':
      return (m.level === 'info' || m.level === 'warn' || m.level === 'error') && isStr(m.message, 10000);
    default:
      return false;
  }
}

const TYPED = [Int32Array, Float32Array] as const;
function isTyped(v: unknown): boolean {
  return TYPED.some((T) => v instanceof T);
}

function isPayload(p: unknown): p is AnalysisPayload {
  if (!isObj(p) || !isNonNegInt(p.runId) || !isObj(p.model) || !isObj(p.dims) || !Array.isArray(p.tokens)) return false;
  if (!isObj(p.lens) || !isObj(p.walk) || !isObj(p.vocab) || !isStr(p.text, 1e8)) return false;
  const lens = p.lens as Obj;
  for (const k of ['topIds', 'topProbs', 'entropy', 'nextLogprob', 'nextRank', 'klToFinal', 'copyMass', 'cosNext', 'cosPred']) {
    if (!isTyped(lens[k])) return false;
  }
  const dims = p.dims as Obj;
  if (!isNonNegInt(dims.pos) || !isNonNegInt(dims.n_layers) || p.tokens.length !== dims.pos) return false;
  return p.tokens.every((t) => isObj(t) && isNonNegInt(t.id) && isStr(t.text, 1e6) && isNonNegInt(t.start) && isNonNegInt(t.end));
}

function isRunState(s: unknown): s is RunState {
  if (!isObj(s)) return false;
  switch (s.kind) {
    case 'idle':
    case 'cancelled':
      return true;
    case 'running':
    case 'error':
      return isStr(s.message, 10000);
    default:
      return false;
  }
}

export function isHostToWebview(m: unknown): m is HostToWebview {
  if (!isObj(m)) return false;
  switch (m.type) {
    case 'analysis':
      return isPayload(m.payload);
    case 'runState':
      return isRunState(m.state);
    case 'settings':
      return isObj(m.settings) && isInt((m.settings as Obj).lensTopK) && typeof (m.settings as Obj).overlayEnabled === 'boolean';
    case 'selectPosition':
      return isNonNegInt(m.runId) && isNonNegInt(m.pos);
    case 'modelChanged':
      return (m.model === null || isObj(m.model)) && isStr(m.modelName, 1000);
    case 'response':
      return isNonNegInt(m.id) && (m.ok === true || (m.ok === false && isStr(m.error, 10000)));
    default:
      return false;
  }
}

export function isPersistedState(s: unknown): s is PersistedState {
  return isObj(s) && s.version === 1 && isStr(s.text, 1e7) && isStr(s.tab, 50) && isInt(s.selectedPos);
}
