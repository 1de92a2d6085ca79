// The text editor a command works on. With the panel focused (a user clicked in it, then ran a
// command from the palette) VS Code has no active text editor; the one the user worked in last
// is still beside the panel, and that is the one meant.
import * as vscode from 'vscode';

let last: vscode.TextEditor | undefined;

/** Follows the active text editor (an editor of the Output panel is not a text to analyse). */
export function trackEditors(): vscode.Disposable {
  const note = (e: vscode.TextEditor | undefined) => {
    if (e && e.document.uri.scheme !== 'output') last = e;
  };
  note(vscode.window.activeTextEditor);
  return vscode.window.onDidChangeActiveTextEditor(note);
}

/** The active text editor, else the one active last while it is still visible. */
export function targetEditor(): vscode.TextEditor | undefined {
  const active = vscode.window.activeTextEditor;
  if (active) return active;
  const was = last;
  if (!was) return undefined;
  return vscode.window.visibleTextEditors.find((e) => e === was || (e.document === was.document && e.viewColumn === was.viewColumn));
}
