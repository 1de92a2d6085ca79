// The one protocol between the extension host and the panel's webview. Both bundles import
// this file. Every message that crosses is checked by a guard on receipt; anything that does
// not match is dropped and logged.
//
// Handshake: the webview posts `ready` once its script runs (each new document does: a created,
// revived or reloaded panel). Until then the host holds its messages; on `ready` it sends every
// message that makes up what the panel shows, in the order they were posted (src/shared/outbox.ts),
// then each new one as it is posted. Requests carry an id and get exactly one `response` with the
// same id, sent only to the document that asked.
import type { Analysis, ClustersResult, DiffResult, HeadStatsResult, ModelInfo, ProximityResult, WalkMetrics } from './analysis';
import type { Completion, GenStep, Strategy } from './generation';
import {
  ABLATION_MODES,
  isPatchSite,
  type HeadAblation,
  type InterventionRecord,
  type PatchDirection,
  type PatchingResult,
  type PatchSite,
} from './interventions';

/** What the panel shows for one run: the analysis minus the heavy activation cache. */
export interface AnalysisPayload extends Omit<Analysis, 'cache'> {
  runId: number;
  dims: { n_layers: number; pos: number; d_model: number; n_heads: number };
  /** The run's interventions (the activation cache's record); null or absent for a clean run. */
  interventions?: InterventionRecord | null;
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
  /** Attention head statistics of a run (kernels, self-bias, induction). */
  headStats: { params: { runId: number }; result: HeadStatsResult };
  /** One head's attention pattern → [pos, pos]. */
  pattern: { params: { runId: number; layer: number; head: number }; result: Float32Array };
  /** Angular proximity over the vocabulary at one position. */
  proximity: { params: { runId: number; pos: number }; result: ProximityResult };
  /** Encoding-walk clusters at one row of the walk. */
  clusters: { params: { runId: number; row: number }; result: ClustersResult };
  /** Show soft clusters in the editor as coloured spans (labels per position; null clears). */
  showClusters: { params: { runId: number; labels: number[] | null }; result: null };
  /** Generate completions of a prompt, one per strategy; steps stream as `completionStep`. */
  generate: { params: GenerateParams; result: { batchId: number } };
  /** Stop a generation batch. */
  stopGeneration: { params: { batchId: number }; result: null };
  /** Insert text at the cursor of the editor the prompt came from (one undo step). */
  insertText: { params: { text: string }; result: boolean };
  /** Run the full analysis on a text (prompt + completion). */
  analyzeText: { params: { text: string }; result: null };
  /** Re-run the run's text with heads ablated (null: drop the intervened run); the pair arrives as `whatIf`. */
  ablate: { params: { runId: number; ablation: HeadAblation | null }; result: null };
  /** Activation patching between the prompt comparison's two runs (Diff tab). */
  patching: { params: PatchingParams; result: PatchingResult };
  /**
   * One cell of the patching heatmap as a whole run: the patched prompt analysed with that cell
   * patched. It arrives as an `analysis` (the patched prompt unpatched) and a `whatIf` pair.
   */
  openPatched: { params: OpenPatchedParams; result: null };
  /**
   * The run the panel shows (what-if: clean or intervened), compared with another or not: the
   * editor's surprisal tint (the difference when compared) and Export Analysis follow it.
   */
  showRun: { params: { runId: number; compareTo: number | null }; result: null };
  /** Run one of the extension's commands from a button of the panel (answered at once). */
  runCommand: { params: { command: PanelCommand }; result: null };
}

/** The commands the panel's buttons may run (`transformerDynamics.<name>`); no other. */
export const PANEL_COMMANDS = ['openSample', 'selectModel', 'comparePrompts', 'compareCompletions'] as const;
export type PanelCommand = (typeof PANEL_COMMANDS)[number];

export interface PatchingParams {
  cleanRunId: number;
  corruptedRunId: number;
  direction: PatchDirection;
  /** Default: resid_pre. */
  site?: PatchSite;
  /** Default: the clean run's top prediction at its last position. */
  target?: number;
  /** Default: the corrupted run's top prediction when it differs; null: log p(target). */
  contrast?: number | null;
}

/** Heatmap cells of one site, patched together: (layer, position), or for site z (layer, head). */
export interface OpenPatchedParams {
  cleanRunId: number;
  corruptedRunId: number;
  direction: PatchDirection;
  site: PatchSite;
  /** col: a position of the patched run, or a head (site z). */
  cells: { layer: number; col: number }[];
}

/** A clean run and the same text with interventions (head ablation, a patch), shown beside each other. */
export interface WhatIfPair {
  clean: AnalysisPayload;
  intervened: AnalysisPayload;
}

export interface GenerateParams {
  /** The prompt text; null = the prompt of the last "Compare Completions…". */
  prompt: string | null;
  strategies: Strategy[];
  maxNewTokens: number;
  /** Decoding-walk fork: continue after these forced tokens (same strategy, same seed). */
  forcedIds?: number[];
  /** Label of the completion this one forks from (for the branch display). */
  forkOf?: { completionKey: string; step: number } | null;
}

/** A batch of completions the host starts (from the command or a request). */
export interface CompletionBatch {
  batchId: number;
  prompt: string;
  strategies: Strategy[];
  maxNewTokens: number;
  forkOf: GenerateParams['forkOf'];
  forcedIds: number[];
}
export type RequestMethod = keyof RequestMap;

export type HostToWebview =
  | { type: 'analysis'; payload: AnalysisPayload }
  | { type: 'runState'; state: RunState }
  | { type: 'settings'; settings: PanelSettings }
  | { type: 'selectPosition'; runId: number; pos: number }
  | { type: 'modelChanged'; model: ModelInfo | null; modelName: string }
  | { type: 'completionBatch'; batch: CompletionBatch }
  | { type: 'completionStep'; batchId: number; index: number; stepIndex: number; step: GenStep }
  | { type: 'completionDone'; batchId: number; index: number; completion: Completion }
  | { type: 'completionError'; batchId: number; index: number; error: string }
  | {
      type: 'promptDiff';
      a: AnalysisPayload;
      b: AnalysisPayload;
      diff: DiffResult;
      labels: [string, string];
      /** A heatmap computed with A clean and B corrupted (the CLI's report); the panel computes on request. */
      patching?: PatchingResult;
    }
  | { type: 'whatIf'; pair: WhatIfPair | null }
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
    case 'headStats':
      return isNonNegInt(p.runId);
    case 'pattern':
      return isNonNegInt(p.runId) && isNonNegInt(p.layer) && isNonNegInt(p.head);
    case 'proximity':
      return isNonNegInt(p.runId) && isNonNegInt(p.pos);
    case 'clusters':
      return isNonNegInt(p.runId) && isNonNegInt(p.row);
    case 'showClusters':
      return (
        isNonNegInt(p.runId) &&
        (p.labels === null || (Array.isArray(p.labels) && p.labels.length <= 1 << 20 && p.labels.every(isNonNegInt)))
      );
    case 'generate':
      return isGenerateParams(p);
    case 'ablate':
      return isNonNegInt(p.runId) && (p.ablation === null || isAblation(p.ablation));
    case 'patching':
      return (
        isNonNegInt(p.cleanRunId) &&
        isNonNegInt(p.corruptedRunId) &&
        (p.direction === 'denoise' || p.direction === 'noise') &&
        (p.site === undefined || isPatchSite(p.site)) &&
        (p.target === undefined || isNonNegInt(p.target)) &&
        (p.contrast === undefined || p.contrast === null || isNonNegInt(p.contrast))
      );
    case 'openPatched':
      return (
        isNonNegInt(p.cleanRunId) &&
        isNonNegInt(p.corruptedRunId) &&
        (p.direction === 'denoise' || p.direction === 'noise') &&
        isPatchSite(p.site) &&
        Array.isArray(p.cells) &&
        p.cells.length > 0 &&
        p.cells.length <= 1 << 16 &&
        p.cells.every((c) => isObj(c) && isNonNegInt(c.layer) && isNonNegInt(c.col))
      );
    case 'showRun':
      return isNonNegInt(p.runId) && (p.compareTo === null || isNonNegInt(p.compareTo));
    case 'stopGeneration':
      return isNonNegInt(p.batchId);
    case 'insertText':
    case 'analyzeText':
      return isStr(p.text, 1e7);
    case 'runCommand':
      return (PANEL_COMMANDS as readonly unknown[]).includes(p.command);
    default:
      return false;
  }
}

const STRATEGY_NUMBERS = [
  'temperature',
  'topK',
  'topP',
  'minP',
  'repetitionPenalty',
  'frequencyPenalty',
  'presencePenalty',
  'noRepeatNgram',
  'beams',
  'lengthPenalty',
  'seed',
];

export function isStrategy(s: unknown): s is Strategy {
  if (!isObj(s) || !isStr(s.label, 200) || !['greedy', 'sample', 'beam'].includes(s.kind as string)) return false;
  for (const k of STRATEGY_NUMBERS) if (s[k] !== undefined && (typeof s[k] !== 'number' || !Number.isFinite(s[k] as number))) return false;
  if (s.ablation !== undefined && !isAblation(s.ablation)) return false;
  return s.earlyStopping === undefined || typeof s.earlyStopping === 'boolean';
}

/** A head ablation's outline (the engine checks the heads against the model). */
export function isAblation(a: unknown): a is HeadAblation {
  return (
    isObj(a) &&
    (ABLATION_MODES as readonly unknown[]).includes(a.mode) &&
    Array.isArray(a.heads) &&
    a.heads.length <= 4096 &&
    a.heads.every((h) => isObj(h) && isNonNegInt(h.layer) && isNonNegInt(h.head))
  );
}

function isGenerateParams(p: Obj): boolean {
  if (!(p.prompt === null || isStr(p.prompt, 1e7))) return false;
  if (!Array.isArray(p.strategies) || p.strategies.length < 1 || p.strategies.length > 6 || !p.strategies.every(isStrategy)) return false;
  if (!isNonNegInt(p.maxNewTokens) || p.maxNewTokens < 1 || p.maxNewTokens > 1024) return false;
  if (p.forcedIds !== undefined && !(Array.isArray(p.forcedIds) && p.forcedIds.length <= 4096 && p.forcedIds.every(isNonNegInt)))
    return false;
  if (p.forkOf !== undefined && p.forkOf !== null && !(isObj(p.forkOf) && isStr(p.forkOf.completionKey, 200) && isNonNegInt(p.forkOf.step)))
    return false;
  return true;
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
    case 'completionBatch':
      return (
        isObj(m.batch) &&
        isNonNegInt((m.batch as Obj).batchId) &&
        Array.isArray((m.batch as Obj).strategies) &&
        isStr((m.batch as Obj).prompt, 1e7)
      );
    case 'completionStep':
      return isNonNegInt(m.batchId) && isNonNegInt(m.index) && isNonNegInt(m.stepIndex) && isObj(m.step) && isNonNegInt((m.step as Obj).id);
    case 'completionDone':
      return isNonNegInt(m.batchId) && isNonNegInt(m.index) && isObj(m.completion) && Array.isArray((m.completion as Obj).steps);
    case 'completionError':
      return isNonNegInt(m.batchId) && isNonNegInt(m.index) && isStr(m.error, 10000);
    case 'promptDiff':
      return isPayload(m.a) && isPayload(m.b) && isObj(m.diff) && Array.isArray(m.labels) && m.labels.length === 2;
    case 'whatIf':
      return m.pair === null || (isObj(m.pair) && isPayload((m.pair as Obj).clean) && isPayload((m.pair as Obj).intervened));
    case 'response':
      return isNonNegInt(m.id) && (m.ok === true || (m.ok === false && isStr(m.error, 10000)));
    default:
      return false;
  }
}

export function isPersistedState(s: unknown): s is PersistedState {
  return isObj(s) && s.version === 1 && isStr(s.text, 1e7) && isStr(s.tab, 50) && isInt(s.selectedPos);
}

// ---- routing -------------------------------------------------------------------------

export interface WebviewMessageHandlers {
  ready(): void;
  selectPosition(runId: number, pos: number): void;
  request(req: WebviewRequest): void;
  log(level: 'info' | 'warn' | 'error', message: string): void;
  /** A message that failed validation (dropped). */
  dropped(raw: unknown): void;
}

/** Validates one message from the webview and calls exactly one handler. Never throws. */
export function routeWebviewMessage(raw: unknown, h: WebviewMessageHandlers): void {
  let ok = false;
  try {
    ok = isWebviewToHost(raw);
  } catch {
    ok = false;
  }
  if (!ok) {
    h.dropped(raw);
    return;
  }
  const m = raw as WebviewToHost;
  switch (m.type) {
    case 'ready':
      return h.ready();
    case 'selectPosition':
      return h.selectPosition(m.runId, m.pos);
    case 'request':
      return h.request(m);
    case 'log':
      return h.log(m.level, m.message);
  }
}
