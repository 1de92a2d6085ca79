// The panel outside VS Code, as a standalone HTML report (CLI `analyze --html`): a stand-in for
// the VS Code API that answers the panel from data inlined in the page (shapeDynamicsStatic.ts),
// downloads exports through blob URLs, keeps state in sessionStorage and follows the system's
// light/dark preference (the report's CSS defines the --vscode-* variables for both).
import type { Analysis } from '../src/shared/analysis';
import { analysisToCsv, analysisToJson } from '../src/shared/export';
import type { HostToWebview, WebviewToHost } from '../src/shared/protocol';
import { STATIC_DATA_ID, decodeTypedJson, staticAnswer, staticDataProblems, type StaticData } from './shapeDynamicsStatic';

export interface StaticApi {
  postMessage(message: unknown): void;
  getState(): unknown;
  setState(state: unknown): void;
}

const STATE_KEY = 'td-report-state';

/** Saves a file through a blob URL and a detached <a download> (never attached to the page). */
export function download(name: string, blob: Blob): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.rel = 'noopener';
  a.click();
  window.setTimeout(() => URL.revokeObjectURL(url), 30_000);
}

function base64Bytes(b64: string): Uint8Array<ArrayBuffer> {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function safeName(name: string): string {
  return name.replace(/[^\w.-]+/g, '-').slice(0, 80) || 'chart';
}

/** The body class and the report's theme variables follow prefers-color-scheme. */
function followSystemTheme(): void {
  const mq = window.matchMedia?.('(prefers-color-scheme: dark)');
  const apply = () => {
    const dark = !!mq?.matches;
    document.documentElement.dataset.tdTheme = dark ? 'dark' : 'light';
    document.body.classList.toggle('vscode-dark', dark);
    document.body.classList.toggle('vscode-light', !dark);
    document.body.dataset.vscodeThemeKind = dark ? 'vscode-dark' : 'vscode-light';
  };
  apply();
  mq?.addEventListener?.('change', apply);
}

/** The analysis JSON/CSV of the report (the same schema as the CLI's --json). */
function exportText(data: StaticData, format: 'json' | 'csv'): string {
  const p = data.payload;
  const a = {
    ...p,
    cache: {
      n_layers: p.dims.n_layers,
      pos: p.dims.pos,
      d_model: p.dims.d_model,
      n_heads: p.dims.n_heads,
      resid: new Float32Array(0),
      residMid: new Float32Array(0),
      patterns: null,
    },
  } as unknown as Analysis;
  if (format === 'csv') return analysisToCsv(a);
  const last = p.tokens.length - 1;
  const lastRow = p.dims.n_layers;
  return JSON.stringify(
    analysisToJson(a, {
      headStats: data.headStats,
      proximityLast: data.proximity[last] ?? null,
      clustersLast: data.clusters[lastRow], // undefined: computed from the walk's similarity matrix
    }),
  );
}

/** The API the panel uses in a report, or null when the page holds no report data. */
export function createStaticApi(): StaticApi | null {
  const script = document.getElementById(STATIC_DATA_ID);
  if (!script) return null;
  let data: StaticData | null = null;
  let problem = '';
  try {
    const d = decodeTypedJson(script.textContent ?? '');
    const problems = staticDataProblems(d);
    if (problems.length) problem = problems.join('; ');
    else data = d as StaticData;
  } catch (e) {
    problem = (e as Error).message;
  }
  followSystemTheme();
  let state: unknown = null;
  try {
    state = JSON.parse(sessionStorage.getItem(STATE_KEY) ?? 'null');
  } catch {
    state = null; // file:// pages may have no storage
  }
  const toWebview = (m: HostToWebview) => window.setTimeout(() => window.postMessage(m, '*'), 0);

  const answer = async (m: Extract<WebviewToHost, { type: 'request' }>): Promise<unknown> => {
    if (!data) throw new Error('The report data could not be read.');
    switch (m.method) {
      case 'saveImage': {
        const { name, format, data: body } = m.params;
        const blob =
          format === 'png'
            ? new Blob([base64Bytes(body.replace(/^data:image\/png;base64,/, ''))], { type: 'image/png' })
            : new Blob([body], { type: 'image/svg+xml' });
        const file = `${safeName(name)}.${format}`;
        download(file, blob);
        return file;
      }
      case 'exportAnalysis': {
        const fmt = m.params.format;
        const file = `transformer-dynamics-analysis.${fmt}`;
        download(file, new Blob([exportText(data, fmt)], { type: fmt === 'json' ? 'application/json' : 'text/csv' }));
        return file;
      }
      default:
        return staticAnswer(data, m.method, m.params as never);
    }
  };

  return {
    postMessage(raw: unknown) {
      const m = raw as WebviewToHost;
      switch (m.type) {
        case 'ready':
          if (!data) {
            toWebview({ type: 'runState', state: { kind: 'error', message: `This report could not be opened: ${problem}` } });
            return;
          }
          document.title = `Transformer Dynamics — ${data.payload.model.name}`;
          toWebview({ type: 'runState', state: { kind: 'idle' } });
          toWebview({ type: 'settings', settings: data.settings });
          toWebview({ type: 'analysis', payload: data.payload });
          // what-if (CLI --ablate / --patch-cells): the clean run beside the intervened one
          if (data.clean) toWebview({ type: 'whatIf', pair: { clean: data.clean, intervened: data.payload } });
          // CLI --patch-from: the two prompts and their activation-patching heatmap
          if (data.promptDiff) {
            const { patching, ...d } = data.promptDiff;
            toWebview({ type: 'promptDiff', ...d, ...(patching ? { patching } : {}) });
          }
          return;
        case 'request':
          answer(m).then(
            (result) => toWebview({ type: 'response', id: m.id, ok: true, result }),
            (e: unknown) => toWebview({ type: 'response', id: m.id, ok: false, error: e instanceof Error ? e.message : String(e) }),
          );
          return;
        case 'log':
          if (m.level === 'error') console.error(`[panel] ${m.message}`);
          else if (m.level === 'warn') console.warn(`[panel] ${m.message}`);
          else console.info(`[panel] ${m.message}`);
          return;
        default:
          return; // selectPosition: no editor here
      }
    },
    getState: () => state,
    setState(s: unknown) {
      state = s;
      try {
        sessionStorage.setItem(STATE_KEY, JSON.stringify(s));
      } catch {
        // no storage: state lives for this page only
      }
    },
  };
}
