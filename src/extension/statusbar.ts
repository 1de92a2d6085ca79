// The status bar item: current model, and the last run's token count and time.
import * as vscode from 'vscode';

export class StatusBar implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  private model = '';
  private provider = '';
  private last = '';

  constructor() {
    this.item = vscode.window.createStatusBarItem('transformerDynamics.status', vscode.StatusBarAlignment.Right, 100);
    this.item.name = 'Transformer Dynamics';
    this.item.command = 'transformerDynamics.selectModel';
    this.render();
    this.item.show();
  }

  setModel(name: string, provider = ''): void {
    this.model = name;
    this.provider = provider;
    this.render();
  }

  setRunning(message: string): void {
    this.item.text = `$(loading~spin) ${this.model}`;
    this.item.tooltip = message;
  }

  setLastRun(tokens: number, ms: number): void {
    this.last = `${tokens} tok · ${ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`}`;
    this.render();
  }

  setIdle(): void {
    this.render();
  }

  private render(): void {
    this.item.text = `$(pulse) ${this.model}${this.provider ? ` · ${this.provider}` : ''}${this.last ? ` · ${this.last}` : ''}`;
    this.item.tooltip = new vscode.MarkdownString(
      `**Transformer Dynamics**\n\nModel: ${escapeMd(this.model)}` +
        (this.provider ? `\n\nRuns on: ${escapeMd(this.provider)}` : '') +
        (this.last ? `\n\nLast run: ${this.last}` : '') +
        '\n\nClick to select a model.',
    );
  }

  dispose(): void {
    this.item.dispose();
  }
}

export function escapeMd(s: string): string {
  return s.replace(/[\\`*_{}[\]()#+\-.!|<>]/g, (c) => `\\${c}`);
}
