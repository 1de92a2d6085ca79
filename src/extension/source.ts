// The text a command analyses: the active editor's selection, or its whole document when
// nothing is selected (Analyze Selection, and Export Analysis before anything was analysed).
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { AnalysisSource } from './ctx';
import { multiSelectionNote } from '../shared/selections';
import { targetEditor } from './editors';

/** The selection (or the document) of the active editor, or why there is nothing to analyse. */
export function selectionSource(): AnalysisSource | string {
  const editor = targetEditor();
  if (!editor) return 'open a file and select some text to analyse.';
  const doc = editor.document;
  const sel = editor.selection;
  const range = sel.isEmpty
    ? new vscode.Range(doc.positionAt(0), doc.positionAt(doc.getText().length))
    : new vscode.Range(sel.start, sel.end);
  const text = doc.getText(range);
  if (text.length === 0) return 'the document is empty — there is nothing to analyse.';
  return { text, source: { uri: doc.uri.toString(), fileName: path.basename(doc.fileName), offset: doc.offsetAt(range.start) } };
}

/**
 * With several selections a command takes the primary one: say so (not modal), with the command
 * that compares two of them.
 */
export function noteOtherSelections(editor: vscode.TextEditor | undefined, verb: string): void {
  const note = editor && multiSelectionNote(editor.selections, editor.selection, verb);
  if (!note) return;
  void vscode.window.showInformationMessage(`Transformer Dynamics: ${note}`, 'Compare Prompts…').then((pick) => {
    if (pick) void vscode.commands.executeCommand('transformerDynamics.comparePrompts');
  });
}
