// The analysis panel: a webview beside the editor (createOrShow / revive), its HTML shell
// with a nonce CSP, and the typed message channel to the webview app. Messages go through an
// Outbox (src/shared/outbox.ts): a webview document that is still loading, reloading or not yet
// created gets everything it missed, in order, when it says `ready`.
import { randomBytes } from 'node:crypto';
import * as vscode from 'vscode';
import { Outbox } from '../shared/outbox';
import { routeWebviewMessage, type HostToWebview, type PersistedState, type RequestMap, type RequestMethod } from '../shared/protocol';

export const PANEL_VIEW_TYPE = 'transformerDynamics.panel';

export interface PanelHandlers {
  onSelectPosition(runId: number, pos: number): void;
  onRequest<M extends RequestMethod>(method: M, params: RequestMap[M]['params']): Promise<RequestMap[M]['result']>;
  onLog(level: 'info' | 'warn' | 'error', message: string): void;
  onRevive(state: PersistedState | null): void;
}

export class AnalysisPanel implements vscode.Disposable {
  private panel: vscode.WebviewPanel | null = null;
  private readonly outbox = new Outbox((m) => this.deliver(m));
  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly handlers: PanelHandlers,
    private readonly log: vscode.LogOutputChannel,
  ) {}

  get visible(): boolean {
    return this.panel !== null;
  }

  /** The editor column the panel is in (undefined: no panel). */
  get viewColumn(): vscode.ViewColumn | undefined {
    return this.panel?.viewColumn;
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

  /**
   * Sends a message to the panel: now if its webview is listening, else when it is (also when
   * no panel is open: the next one shows what this one would have).
   */
  post(msg: HostToWebview): void {
    this.outbox.post(msg);
  }

  private deliver(msg: HostToWebview): void {
    const panel = this.panel;
    if (!panel) return;
    panel.webview.postMessage(msg).then(
      (delivered) => {
        // a webview that is being replaced says `ready` again and gets everything then
        if (!delivered && panel === this.panel)
          this.log.info(`panel: ${msg.type} not delivered (webview not live); kept for its next ready`);
      },
      (e: unknown) => this.log.warn(`panel: posting ${msg.type} failed: ${e instanceof Error ? e.message : String(e)}`),
    );
  }

  private attach(panel: vscode.WebviewPanel): void {
    this.panel = panel;
    this.outbox.loading();
    panel.iconPath = vscode.Uri.joinPath(this.extensionUri, 'media', 'icon.svg');
    // listen before the document exists, so its `ready` cannot come first
    const subs = [panel.webview.onDidReceiveMessage((m: unknown) => this.receive(m))];
    subs.push(
      panel.onDidDispose(() => {
        if (this.panel === panel) {
          this.panel = null;
          this.outbox.closed();
        }
        subs.forEach((d) => d.dispose());
      }),
    );
    panel.webview.html = this.html(panel.webview);
  }

  private receive(raw: unknown): void {
    routeWebviewMessage(raw, {
      dropped: (m) => this.log.warn(`panel: dropped a malformed message ${safeJson(m)}`),
      // the first `ready` of this panel's webview, or again after it reloaded: it starts empty
      ready: () => this.outbox.ready(),
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
