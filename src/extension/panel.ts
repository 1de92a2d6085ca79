// The analysis panel: a webview beside the editor (createOrShow / revive), its HTML shell
// with a nonce CSP, and the typed message channel to the webview app.
import { randomBytes } from 'node:crypto';
import * as vscode from 'vscode';
import { routeWebviewMessage, type HostToWebview, type PersistedState, type RequestMap, type RequestMethod } from '../shared/protocol';

export const PANEL_VIEW_TYPE = 'transformerDynamics.panel';

export interface PanelHandlers {
  onReady(): void;
  onSelectPosition(runId: number, pos: number): void;
  onRequest<M extends RequestMethod>(method: M, params: RequestMap[M]['params']): Promise<RequestMap[M]['result']>;
  onLog(level: 'info' | 'warn' | 'error', message: string): void;
  onRevive(state: PersistedState | null): void;
}

export class AnalysisPanel implements vscode.Disposable {
  private panel: vscode.WebviewPanel | null = null;
  private ready = false;
  private queue: HostToWebview[] = [];
  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly handlers: PanelHandlers,
    private readonly log: vscode.LogOutputChannel,
  ) {}

  get visible(): boolean {
    return this.panel !== null;
  }

  /** Shows the panel beside the active editor, creating it if needed. */
  show(preserveFocus = true): void {
    if (this.panel) {
      this.panel.reveal(undefined, preserveFocus);
      return;
    }
    const panel = vscode.window.createWebviewPanel(
      PANEL_VIEW_TYPE,
      'Transformer Dynamics',
      { viewColumn: vscode.ViewColumn.Beside, preserveFocus },
      { enableScripts: true, retainContextWhenHidden: true, localResourceRoots: [vscode.Uri.joinPath(this.extensionUri, 'dist')] },
    );
    this.attach(panel);
  }

  /** Restores a panel after a window reload (panel serializer). */
  revive(panel: vscode.WebviewPanel, state: unknown): void {
    panel.webview.options = { enableScripts: true, localResourceRoots: [vscode.Uri.joinPath(this.extensionUri, 'dist')] };
    this.attach(panel);
    const s = state as PersistedState | null;
    this.handlers.onRevive(s && typeof s === 'object' && s.version === 1 ? s : null);
  }

  post(msg: HostToWebview): void {
    if (!this.panel) return;
    if (!this.ready) {
      // Keep only the latest message of each type until the webview is listening.
      this.queue = this.queue.filter((m) => m.type !== msg.type || msg.type === 'response');
      this.queue.push(msg);
      return;
    }
    void this.panel.webview.postMessage(msg);
  }

  private attach(panel: vscode.WebviewPanel): void {
    this.panel = panel;
    this.ready = false;
    panel.iconPath = vscode.Uri.joinPath(this.extensionUri, 'media', 'icon.svg');
    panel.webview.html = this.html(panel.webview);
    const subs = [panel.webview.onDidReceiveMessage((m: unknown) => this.receive(m))];
    subs.push(
      panel.onDidDispose(() => {
        this.panel = null;
        this.ready = false;
        this.queue = [];
        subs.forEach((d) => d.dispose());
      }),
    );
  }

  private receive(raw: unknown): void {
    routeWebviewMessage(raw, {
      dropped: (m) => this.log.warn(`panel: dropped a malformed message ${safeJson(m)}`),
      ready: () => {
        this.ready = true;
        const queued = this.queue;
        this.queue = [];
        this.handlers.onReady();
        for (const q of queued) void this.panel?.webview.postMessage(q);
      },
      selectPosition: (runId, pos) => this.handlers.onSelectPosition(runId, pos),
      log: (level, message) => this.handlers.onLog(level, message),
      request: (m) =>
        this.handlers.onRequest(m.method, m.params as never).then(
          (result) => this.post({ type: 'response', id: m.id, ok: true, result }),
          (e: unknown) => this.post({ type: 'response', id: m.id, ok: false, error: e instanceof Error ? e.message : String(e) }),
        ),
    });
  }

  private html(webview: vscode.Webview): string {
    const nonce = randomBytes(16).toString('base64');
    const asset = (f: string) => webview.asWebviewUri(vscode.Uri.joinPath(this.extensionUri, 'dist', f)).toString();
    const csp = [
      "default-src 'none'",
      `img-src ${webview.cspSource} data: blob:`,
      `style-src ${webview.cspSource} 'unsafe-inline'`,
      `font-src ${webview.cspSource}`,
      `script-src 'nonce-${nonce}'`,
    ].join('; ');
    return `<!DOCTYPE html><html lang="en"><head><meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp};">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link href="${asset('webview.css')}" rel="stylesheet"><link href="${asset('codicon.css')}" rel="stylesheet" id="vscode-codicon-stylesheet">
<title>Transformer Dynamics</title></head>
<body><div id="app"></div><script nonce="${nonce}" src="${asset('webview.js')}"></script></body></html>`;
  }

  dispose(): void {
    this.panel?.dispose();
  }
}

function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v)?.slice(0, 200) ?? String(v);
  } catch {
    return '(unserialisable)';
  }
}
