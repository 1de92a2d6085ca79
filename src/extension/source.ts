// The text a command analyses: the active editor's selection, or its whole document when
// nothing is selected (Analyze Selection, and Export Analysis before anything was analysed).
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { AnalysisSource } from './ctx';

/** The selection (or the document) of the active editor, or why there is nothing to analyse. */
export function selectionSource(): AnalysisSource | string {
  const editor = vscode.window.activeTextEditor;
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
