// Compare Completions: the prompt (selection, or the text before the cursor), up to six
// decoding strategies, tokens streamed to the panel as they are produced, one batch at a
// time (a new batch or Stop cancels the old one); insert a completion at the cursor.
import * as vscode from 'vscode';
import { DEFAULT_STRATEGIES, cursorPromptStart, shiftedOffset, type Strategy } from '../shared/generation';
import type { CompletionBatch, GenerateParams } from '../shared/protocol';
import type { Ctx } from './ctx';
import { noteOtherSelections } from './source';
import { targetEditor } from './editors';

/** Characters of context taken before the cursor when nothing is selected. */
const CURSOR_CONTEXT_CHARS = 4000;

interface PromptSource {
  text: string;
  uri: string | null;
  /**
   * Where a completion is inserted: the offset of the selection's end or the cursor, kept up to
   * date through the document's edits (null: an edit replaced the text around it).
   */
  insertAt: number | null;
}

export class Completions implements vscode.Disposable {
  private seq = 0;
  private running: { batchId: number; ctl: AbortController } | null = null;
  private prompt: PromptSource | null = null;
  private readonly subscription: vscode.Disposable;

  constructor(private readonly ctx: Ctx) {
    // the insertion point follows edits above it (typing, an earlier Insert), as a cursor would
    this.subscription = vscode.workspace.onDidChangeTextDocument((e) => {
      const p = this.prompt;
      if (!p || p.insertAt === null || e.document.uri.toString() !== p.uri || e.contentChanges.length === 0) return;
      p.insertAt = shiftedOffset(
        p.insertAt,
        e.contentChanges.map((c) => ({ rangeOffset: c.rangeOffset, rangeLength: c.rangeLength, textLength: c.text.length })),
      );
    });
  }

  dispose(): void {
    this.subscription.dispose();
  }

  /** The prompt from the active editor: the selection, or the text before the cursor. */
  promptFromEditor(): PromptSource | null {
    const editor = targetEditor();
    if (!editor) return null;
    const doc = editor.document;
    const sel = editor.selection;
    if (!sel.isEmpty) return { text: doc.getText(sel), uri: doc.uri.toString(), insertAt: doc.offsetAt(sel.end) };
    // a little more than the prompt needs, then from the start of a line (or word) in it
    const end = doc.offsetAt(sel.active);
    const from = Math.max(0, end - CURSOR_CONTEXT_CHARS - 1);
    const before = doc.getText(new vscode.Range(doc.positionAt(from), sel.active));
    const text = from === 0 ? before : before.slice(cursorPromptStart(before, CURSOR_CONTEXT_CHARS));
    return { text, uri: doc.uri.toString(), insertAt: end };
  }

  /** The command: choose strategies and a length, then start. */
  async compareCommand(): Promise<void> {
    const prompt = this.promptFromEditor();
    if (!prompt || prompt.text.trim().length === 0) {
      void vscode.window.showWarningMessage(
        'Transformer Dynamics: select a prompt (or put the cursor after some text) to compare completions.',
      );
      return;
    }
    const picks = await vscode.window.showQuickPick(
      DEFAULT_STRATEGIES.map((s) => ({ label: s.label, description: describe(s), picked: true, strategy: s })),
      { title: 'Compare Completions: decoding strategies (up to 6)', canPickMany: true, placeHolder: 'Presets; edit them in the panel' },
    );
    if (!picks || picks.length === 0) return;
    const n = await vscode.window.showInputBox({
      title: 'Compare Completions: new tokens per completion',
      value: '40',
      validateInput: (v) => (/^\d+$/.test(v) && Number(v) >= 1 && Number(v) <= 512 ? null : 'A number from 1 to 512'),
    });
    if (!n) return;
    noteOtherSelections(targetEditor(), 'completing');
    this.prompt = prompt;
    this.ctx.panel.show(true);
    try {
      await this.start({ prompt: prompt.text, strategies: picks.slice(0, 6).map((p) => p.strategy), maxNewTokens: Number(n) });
    } catch (e) {
      await this.ctx.showRunError(e); // the model (or a setting) cannot be used: say so, with the way out
    }
  }

  /** Starts a batch (from the command or the panel); returns its id at once, results stream. */
  async start(params: GenerateParams): Promise<{ batchId: number }> {
    const text = params.prompt ?? this.prompt?.text;
    if (!text) throw new Error('There is no prompt yet: run "Compare Completions…" on a selection first.');
    if (params.prompt !== null && this.prompt?.text !== params.prompt)
      this.prompt = { text: params.prompt, uri: this.prompt?.uri ?? null, insertAt: this.prompt?.insertAt ?? null };
    this.running?.ctl.abort();
    const batchId = ++this.seq;
    const ctl = new AbortController();
    this.running = { batchId, ctl };
    try {
      await this.ctx.ensureModel();
    } catch (e) {
      if (this.running?.batchId === batchId) this.running = null;
      throw e;
    }
    const batch: CompletionBatch = {
      batchId,
      prompt: text,
      strategies: params.strategies,
      maxNewTokens: params.maxNewTokens,
      forkOf: params.forkOf ?? null,
      forcedIds: params.forcedIds ?? [],
    };
    this.ctx.panel.post({ type: 'completionBatch', batch });
    void this.run(batch, text, ctl);
    return { batchId };
  }

  private async run(batch: CompletionBatch, text: string, ctl: AbortController): Promise<void> {
    for (let index = 0; index < batch.strategies.length; index++) {
      if (ctl.signal.aborted) break;
      const strategy = batch.strategies[index]!;
      try {
        const completion = await this.ctx.engine.generate(
          // a column with an ablation (what-if) generates with those heads ablated
          { text, strategy, maxNewTokens: batch.maxNewTokens, forcedIds: batch.forcedIds, topAlternatives: 5, ablation: strategy.ablation },
          (step, stepIndex) => this.ctx.panel.post({ type: 'completionStep', batchId: batch.batchId, index, stepIndex, step }),
          ctl.signal,
        );
        this.ctx.panel.post({ type: 'completionDone', batchId: batch.batchId, index, completion });
        this.ctx.log.info(
          `completion ${batch.batchId}.${index} (${strategy.label}): ${completion.steps.length} tokens, ${completion.timings.perTokenMs.toFixed(1)} ms/token, stop ${completion.stopReason}${completion.timings.promptReused ? ', prompt state reused' : ''}`,
        );
      } catch (e) {
        this.ctx.panel.post({ type: 'completionError', batchId: batch.batchId, index, error: (e as Error).message });
      }
    }
    if (this.running?.batchId === batch.batchId) this.running = null;
  }

  stop(batchId: number): void {
    if (this.running?.batchId === batchId) this.running.ctl.abort();
  }

  /** Inserts text at the prompt's cursor in its editor, as one undo step. */
  async insertText(text: string): Promise<boolean> {
    const p = this.prompt;
    const editor =
      (p?.uri && vscode.window.visibleTextEditors.find((e) => e.document.uri.toString() === p.uri)) ||
      (p?.uri
        ? await vscode.window.showTextDocument(vscode.Uri.parse(p.uri), { preview: false, viewColumn: vscode.ViewColumn.One })
        : targetEditor());
    if (!editor) {
      void vscode.window.showWarningMessage('Transformer Dynamics: open the editor to insert the completion into.');
      return false;
    }
    const tracked = p?.uri === editor.document.uri.toString() && p.insertAt !== null;
    const at = tracked ? editor.document.positionAt(p.insertAt!) : editor.selection.active;
    const ok = await editor.edit((b) => b.insert(at, text), { undoStopBefore: true, undoStopAfter: true });
    if (ok) editor.revealRange(new vscode.Range(at, at));
    if (ok && p?.uri && !tracked)
      void vscode.window.showInformationMessage(
        'Transformer Dynamics: the text at the end of the prompt was edited, so the completion went in at the cursor.',
      );
    return ok;
  }
}

/** One line describing a strategy's settings. */
export function describe(s: Strategy): string {
  const parts: string[] = [s.kind === 'beam' ? `beam ${s.beams ?? 4}` : s.kind];
  if (s.temperature !== undefined) parts.push(`T=${s.temperature}`);
  if (s.topK) parts.push(`top-k ${s.topK}`);
  if (s.topP !== undefined) parts.push(`top-p ${s.topP}`);
  if (s.minP) parts.push(`min-p ${s.minP}`);
  if (s.repetitionPenalty) parts.push(`repetition ×${s.repetitionPenalty}`);
  if (s.noRepeatNgram) parts.push(`no-repeat ${s.noRepeatNgram}-gram`);
  if (s.seed !== undefined && s.kind === 'sample') parts.push(`seed ${s.seed}`);
  return parts.join(' · ');
}
