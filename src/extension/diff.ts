// Prompt diff: analyse two texts (two selections of one editor, the selection and the clipboard,
// or two open editors) and show where their last-token walks diverge.
import * as path from 'node:path';
import * as vscode from 'vscode';
import { analysisToPayload } from '../shared/payload';
import type { Ctx } from './ctx';
import { linesLabel, selectionPair } from '../shared/selections';
import { targetEditor } from './editors';

interface Side {
  text: string;
  label: string;
}

async function pickSides(): Promise<[Side, Side] | null> {
  const editor = targetEditor();
  if (!editor) {
    void vscode.window.showWarningMessage(
      'Transformer Dynamics: open the first prompt in an editor (select it, or the whole file is used), then run Compare Prompts… again.',
    );
    return null;
  }
  const file = path.basename(editor.document.fileName);
  const here: Side = { text: selectionOrAll(editor), label: file + (editor.selection.isEmpty ? '' : ' (selection)') };
  const others = vscode.window.visibleTextEditors.filter((e) => e !== editor);
  // several selections (multi-cursor): the first two, in document order, are the likeliest pair
  const pair = selectionPair(editor.selections);
  const items: (vscode.QuickPickItem & { kind2: 'selections' | 'clipboard' | 'editor'; editor?: vscode.TextEditor })[] = [
    ...(pair
      ? [
          {
            label: '$(selection) Selection 1 vs selection 2',
            description: `${linesLabel(pair.a)} vs ${linesLabel(pair.b)}`,
            detail:
              pair.of === 2
                ? 'The two selections of this editor, the first in the file first'
                : `The first two of this editor's ${pair.of} selections, in file order`,
            kind2: 'selections' as const,
          },
        ]
      : []),
    {
      label: '$(clippy) Selection vs clipboard',
      detail: 'The current selection (or file) against the text on the clipboard',
      kind2: 'clipboard',
    },
    ...others.map((e) => ({
      label: `$(file) vs ${path.basename(e.document.fileName)}`,
      detail: 'Against the selection (or whole text) of another visible editor',
      kind2: 'editor' as const,
      editor: e,
    })),
  ];
  const pick = await vscode.window.showQuickPick(items, { title: 'Compare Prompts: where do two prompts start to diverge?' });
  if (!pick) return null;
  if (pick.kind2 === 'selections' && pair) {
    const side = (sel: vscode.Selection, n: number): Side => ({
      text: editor.document.getText(sel),
      label: `${file} (selection ${n}, ${linesLabel(sel)})`,
    });
    return [side(pair.a, 1), side(pair.b, 2)];
  }
  if (pick.kind2 === 'clipboard') {
    const clip = await vscode.env.clipboard.readText();
    if (!clip.trim()) {
      void vscode.window.showWarningMessage('Transformer Dynamics: the clipboard is empty — copy the other version of the prompt first.');
      return null;
    }
    return [here, { text: clip, label: 'clipboard' }];
  }
  const e = pick.editor!;
  return [here, { text: selectionOrAll(e), label: path.basename(e.document.fileName) }];
}

/** An editor's (primary) selection, or its whole text when nothing is selected. */
function selectionOrAll(e: vscode.TextEditor): string {
  return e.selection.isEmpty ? e.document.getText() : e.document.getText(e.selection);
}

export async function comparePrompts(ctx: Ctx): Promise<void> {
  const sides = await pickSides();
  if (!sides) return;
  ctx.panel.show(true);
  await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: 'Transformer Dynamics: comparing prompts…', cancellable: true },
    async (progress, cancel) => {
      const ctl = new AbortController();
      cancel.onCancellationRequested(() => ctl.abort());
      try {
        const { choice } = await ctx.ensureModel((message) => progress.report({ message: `loading the model: ${message}` }), ctl.signal);
        const req = (text: string) => ({ text, topK: ctx.config.lensTopK, maxTokens: ctx.config.maxTokens, patterns: false });
        const idA = ctx.nextRunId();
        const idB = ctx.nextRunId();
        const a = await ctx.engine.analyze(req(sides[0].text), ctl.signal, false, idA);
        const b = await ctx.engine.analyze(req(sides[1].text), ctl.signal, false, idB);
        ctx.diffRuns = [idA, idB];
        ctx.retainRuns();
        const diff = await ctx.engine.query({ type: 'diff', runId: idA, otherRunId: idB });
        const named = (x: typeof a) => ({ ...x, model: { ...x.model, name: choice.name } });
        const payloadA = analysisToPayload(named(a), idA, null);
        const payloadB = analysisToPayload(named(b), idB, null);
        ctx.diffKept = [
          { analysis: a, payload: payloadA, request: req(sides[0].text) },
          { analysis: b, payload: payloadB, request: req(sides[1].text) },
        ];
        ctx.panel.post({
          type: 'promptDiff',
          a: payloadA,
          b: payloadB,
          diff,
          labels: [sides[0].label, sides[1].label],
        });
      } catch (e) {
        void ctx.showRunError(e); // (silent when cancelled)
      }
    },
  );
}
