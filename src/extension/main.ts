import * as vscode from 'vscode';

export function activate(_context: vscode.ExtensionContext): void {
  // The commands, panel and editor integration are registered here (issue 4).
}

export function deactivate(): void {}
