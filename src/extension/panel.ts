// The analysis panel: a webview beside the editor (createOrShow / revive), its HTML shell
// with a nonce CSP, and the typed message channel to the webview app.
import { randomBytes } from 'node:crypto';
import * as vscode from 'vscode';
import {
  isWebviewToHost,
  type HostToWebview,
  type PersistedState,
  type RequestMap,
  type RequestMethod,
  type WebviewToHost,
} from '../shared/protocol';

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
    if (!isWebviewToHost(raw)) {
      this.log.warn(`panel: dropped a malformed message ${JSON.stringify(raw)?.slice(0, 200)}`);
      return;
    }
    const m: WebviewToHost = raw;
    switch (m.type) {
      case 'ready': {
        this.ready = true;
        const queued = this.queue;
        this.queue = [];
        this.handlers.onReady();
        for (const q of queued) void this.panel?.webview.postMessage(q);
        return;
      }
      case 'selectPosition':
        this.handlers.onSelectPosition(m.runId, m.pos);
        return;
      case 'log':
        this.handlers.onLog(m.level, m.message);
        return;
      case 'request':
        this.handlers.onRequest(m.method, m.params as never).then(
          (result) => this.post({ type: 'response', id: m.id, ok: true, result }),
          (e: unknown) => this.post({ type: 'response', id: m.id, ok: false, error: e instanceof Error ? e.message : String(e) }),
        );
        return;
    }
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
