// Request/response bookkeeping for webview → host requests: ids, timeouts, and checking
// each result's type before it reaches a view. Timers are injected so this stays pure.
import type { RequestMap, RequestMethod } from '../src/shared/protocol';
import { isPatchSite, patchColumns, type PatchingResult } from '../src/shared/interventions';

export interface Timers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

/** How long each method may take; dialogs (save) wait on the user. */
export const REQUEST_TIMEOUT_MS: Record<RequestMethod, number> = {
  similarity: 60_000,
  exportAnalysis: 15 * 60_000,
  saveImage: 15 * 60_000,
  // Completions tab: generate may load the model first; insertText may open the editor.
  generate: 5 * 60_000,
  stopGeneration: 30_000,
  insertText: 60_000,
  analyzeText: 60_000,
  // dynamics views: computed on demand by the engine (the vocabulary, all heads, a clustering)
  headStats: 120_000,
  pattern: 60_000,
  proximity: 120_000,
  clusters: 120_000,
  showClusters: 30_000,
  // what-if: a re-analysis with heads ablated; the patching heatmap (n_layers × pos patched runs)
  ablate: 5 * 60_000,
  patching: 10 * 60_000,
  openPatched: 5 * 60_000, // two analyses of the patched prompt
  showRun: 30_000,
  runCommand: 30_000, // answered as soon as the command starts
};

export class RequestError extends Error {
  constructor(
    readonly method: RequestMethod,
    message: string,
    readonly timedOut = false,
  ) {
    super(message);
  }
}

/** Result checks per method (the protocol guard checks envelopes, not result payloads). */
export function isResult<M extends RequestMethod>(method: M, v: unknown): v is RequestMap[M]['result'] {
  switch (method) {
    case 'similarity':
      return v instanceof Float32Array;
    case 'exportAnalysis':
    case 'saveImage':
      return v === null || typeof v === 'string';
    // Completions tab
    case 'generate':
      return typeof v === 'object' && v !== null && Number.isInteger((v as { batchId?: unknown }).batchId);
    case 'stopGeneration':
    case 'analyzeText':
      return v === null;
    case 'insertText':
      return typeof v === 'boolean';
    // dynamics views (the views check shapes against the run's dimensions)
    case 'headStats':
    case 'proximity':
    case 'clusters':
      return typeof v === 'object' && v !== null;
    case 'pattern':
      return v instanceof Float32Array;
    case 'showClusters':
    case 'ablate':
    case 'openPatched':
    case 'showRun':
    case 'runCommand':
      return v === null;
    case 'patching':
      return isPatchingResult(v);
    default:
      return false;
  }
}

/** A patching heatmap whose arrays have the size its dimensions promise. */
export function isPatchingResult(v: unknown): v is PatchingResult {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Partial<PatchingResult>;
  if (!isPatchSite(r.site) || !Number.isInteger(r.n_heads)) return false;
  const n = (r.n_layers ?? -1) * patchColumns(r as PatchingResult);
  return (
    Number.isInteger(r.n_layers) &&
    Number.isInteger(r.pos) &&
    n > 0 &&
    r.ld instanceof Float32Array &&
    r.ld.length === n &&
    r.normalized instanceof Float32Array &&
    r.normalized.length === n &&
    Number.isInteger(r.target) &&
    (r.contrast === null || Number.isInteger(r.contrast)) &&
    (r.direction === 'denoise' || r.direction === 'noise')
  );
}

interface Pending {
  method: RequestMethod;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: unknown;
}

export class RequestTracker {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  constructor(private readonly timers: Timers) {}

  /** Registers a request; `send` is called with its id. The promise settles on settle(), timeout or cancelAll(). */
  start<M extends RequestMethod>(
    method: M,
    send: (id: number) => void,
    timeoutMs = REQUEST_TIMEOUT_MS[method],
  ): Promise<RequestMap[M]['result']> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = this.timers.set(() => {
        if (this.pending.delete(id))
          reject(new RequestError(method, `The host did not answer "${method}" within ${Math.round(timeoutMs / 1000)} s.`, true));
      }, timeoutMs);
      this.pending.set(id, { method, resolve: resolve as (v: unknown) => void, reject, timer });
      try {
        send(id);
      } catch (e) {
        this.pending.delete(id);
        this.timers.clear(timer);
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
  }

  /** Settles the request a response answers; false when no request has that id (late or unknown). */
  settle(msg: { id: number; ok: boolean; result?: unknown; error?: string }): boolean {
    const p = this.pending.get(msg.id);
    if (!p) return false;
    this.pending.delete(msg.id);
    this.timers.clear(p.timer);
    if (!msg.ok) p.reject(new RequestError(p.method, msg.error ?? 'The request failed.'));
    else if (!isResult(p.method, msg.result)) p.reject(new RequestError(p.method, `The host sent a malformed result for "${p.method}".`));
    else p.resolve(msg.result);
    return true;
  }

  /** Rejects everything still waiting (e.g. a new run replaced the data). */
  cancelAll(reason: string): void {
    for (const [id, p] of this.pending) {
      this.timers.clear(p.timer);
      this.pending.delete(id);
      p.reject(new RequestError(p.method, reason));
    }
  }

  get size(): number {
    return this.pending.size;
  }
}
