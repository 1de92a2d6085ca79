// The one place that talks to VS Code: acquireVsCodeApi (called once), message validation,
// typed requests with timeouts, and persisted state.
import type { HostToWebview, PersistedState, RequestMap, RequestMethod, WebviewToHost } from '../src/shared/protocol';
import { isHostToWebview } from '../src/shared/protocol';
import { RequestTracker } from './shapeRequests';
import { createStaticApi } from './staticHost';

interface VsCodeApi {
  postMessage(message: unknown): void;
  getState(): unknown;
  setState(state: unknown): void;
}
declare function acquireVsCodeApi(): VsCodeApi;

/** VS Code's API in the panel; in a standalone HTML report (no VS Code, data inlined) the report's stand-in. */
function acquireApi(): VsCodeApi {
  if (typeof acquireVsCodeApi === 'function') return acquireVsCodeApi();
  const api = createStaticApi();
  if (!api) throw new Error('Transformer Dynamics: not running in VS Code and no report data in the page.');
  return api;
}

export type HostMessage = Exclude<HostToWebview, { type: 'response' }>;

export class Host {
  /** In VS Code, not in a standalone HTML report (which has no commands to run). */
  readonly inVsCode = typeof acquireVsCodeApi === 'function';
  private readonly api: VsCodeApi = acquireApi();
  private readonly tracker = new RequestTracker({
    set: (fn, ms) => window.setTimeout(fn, ms),
    clear: (h) => window.clearTimeout(h as number),
  });

  /** Starts listening; `handler` gets every valid message except responses (handled here). */
  listen(handler: (m: HostMessage) => void): void {
    window.addEventListener('message', (ev: MessageEvent<unknown>) => {
      const m = ev.data;
      if (!isHostToWebview(m)) {
        const type = typeof m === 'object' && m !== null ? String((m as { type?: unknown }).type).slice(0, 40) : typeof m;
        this.log('warn', `Dropped a malformed message from the host (type: ${type}).`);
        return;
      }
      if (m.type === 'response') {
        if (!this.tracker.settle(m)) this.log('info', `Ignored a late or unknown response (id ${m.id}).`);
        return;
      }
      handler(m);
    });
  }

  post(msg: WebviewToHost): void {
    this.api.postMessage(msg);
  }

  request<M extends RequestMethod>(method: M, params: RequestMap[M]['params']): Promise<RequestMap[M]['result']> {
    return this.tracker.start(method, (id) => this.post({ type: 'request', id, method, params } as WebviewToHost));
  }

  log(level: 'info' | 'warn' | 'error', message: string): void {
    this.post({ type: 'log', level, message: message.slice(0, 9000) });
  }

  getState(): unknown {
    return this.api.getState();
  }

  setState(s: PersistedState): void {
    this.api.setState(s);
  }
}
