// Every command is a small factory over the context, registered from one table in main.ts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { Ctx } from './ctx';
import { cachedHubModels, downloadFromHub, setToken } from './hub';
import { comparePrompts } from './diff';

export type Cmd = (...args: unknown[]) => unknown;

/** Analyse the selection, or the whole document when nothing is selected. */
export function analyzeSelection(ctx: Ctx): Cmd {
  return async () => {
    const editor = vscode.window.activeTextEditor;
    if (!editor) {
      void vscode.window.showWarningMessage('Transformer Dynamics: open a file and select some text to analyse.');
      return;
    }
    const doc = editor.document;
    const sel = editor.selection;
    const range = sel.isEmpty
      ? new vscode.Range(doc.positionAt(0), doc.positionAt(doc.getText().length))
      : new vscode.Range(sel.start, sel.end);
    const text = doc.getText(range);
    if (text.trim().length === 0 && text.length === 0) {
      void vscode.window.showWarningMessage('Transformer Dynamics: the document is empty — there is nothing to analyse.');
      return;
    }
    return ctx.analyze({
      text,
      source: { uri: doc.uri.toString(), fileName: path.basename(doc.fileName), offset: doc.offsetAt(range.start) },
    });
  };
}

export function openPanel(ctx: Ctx): Cmd {
  return () => ctx.panel.show(false);
}

interface ModelPick extends vscode.QuickPickItem {
  action: 'bundled' | 'folder' | 'recent' | 'hub' | 'download';
  dir?: string;
}

/** Pick the bundled model, a recent folder, or browse for a Hugging Face model folder. */
export function selectModel(ctx: Ctx): Cmd {
  return async () => {
    const current = ctx.models.current();
    const items: ModelPick[] = [
      {
        label: '$(package) td-mini (bundled)',
        description: current.bundled ? 'current' : '',
        detail: 'Trained by this project on public-domain prose and Python code',
        action: 'bundled',
      },
      ...ctx.models.recent().map<ModelPick>((dir) => ({
        label: `$(folder) ${path.basename(dir)}`,
        description: !current.bundled && current.dir === dir ? 'current' : '',
        detail: dir,
        action: 'recent',
        dir,
      })),
      ...cachedHubModels(ctx)
        .filter((m) => !ctx.models.recent().includes(m.dir))
        .map<ModelPick>((m) => ({
          label: `$(cloud) ${m.repo}`,
          description: !current.bundled && current.dir === m.dir ? 'current' : 'downloaded',
          detail: `${(m.size / 1e6).toFixed(0)} MB in the extension's storage`,
          action: 'hub',
          dir: m.dir,
        })),
      {
        label: '$(folder-opened) Open Model Folder…',
        detail: 'A folder with config.json, model.safetensors and tokenizer.json',
        action: 'folder',
      },
      {
        label: '$(cloud-download) Download from Hugging Face…',
        detail: 'GPT-2, Pythia, SmolLM2, Qwen2.5 or any supported repository',
        action: 'download',
      },
    ];
    const pick = await vscode.window.showQuickPick(items, {
      title: 'Transformer Dynamics: Select Model',
      placeHolder: `Current: ${current.name}`,
    });
    if (!pick) return;
    let dir = '';
    if ((pick.action === 'recent' || pick.action === 'hub') && pick.dir) dir = pick.dir;
    if (pick.action === 'download') {
      const got = await downloadFromHub(ctx);
      if (!got) return;
      dir = got;
    }
    if (pick.action === 'folder') {
      const uris = await vscode.window.showOpenDialog({
        canSelectFolders: true,
        canSelectFiles: false,
        canSelectMany: false,
        openLabel: 'Use This Model',
      });
      const chosen = uris?.[0]?.fsPath;
      if (!chosen) return;
      if (!fs.existsSync(path.join(chosen, 'config.json'))) {
        void vscode.window.showErrorMessage(`Transformer Dynamics: ${chosen} has no config.json — choose a Hugging Face model folder.`);
        return;
      }
      dir = chosen;
    }
    await ctx.config.setModelPath(dir);
    if ((await loadSelected(ctx)) && ctx.last) await ctx.rerunLast();
  };
}

/**
 * Loads the newly selected model under a notification that shows a first conversion's progress
 * and can cancel it. False when it failed (with a message) or was cancelled.
 */
async function loadSelected(ctx: Ctx): Promise<boolean> {
  try {
    await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `Loading ${ctx.models.current().name}…`, cancellable: true },
      (progress, token) => ctx.ensureModel((message) => progress.report({ message }), abortSignal(token)),
    );
    return true;
  } catch (e) {
    if ((e as { code?: string }).code === 'CANCELLED') {
      void vscode.window.setStatusBarMessage(`Transformer Dynamics: loading ${ctx.models.current().name} was cancelled.`, 5000);
    } else void vscode.window.showErrorMessage(`Transformer Dynamics: ${(e as Error).message}`);
    return false;
  }
}

export function exportAnalysis(ctx: Ctx): Cmd {
  return () => ctx.exportAnalysis();
}

export function toggleOverlay(ctx: Ctx): Cmd {
  return async () => {
    await ctx.config.setOverlayEnabled(!ctx.config.overlayEnabled);
  };
}

/** Opens the sample document shipped with the extension (prose and code). */
export function openSample(ctx: Ctx): Cmd {
  return async () => {
    const doc = await vscode.workspace.openTextDocument(vscode.Uri.joinPath(ctx.context.extensionUri, 'media', 'sample.md'));
    await vscode.window.showTextDocument(doc, { preview: false });
  };
}

/** Download a model from the Hugging Face Hub and switch to it. */
export function downloadModel(ctx: Ctx): Cmd {
  return async (repo?: unknown) => {
    const dir = await downloadFromHub(ctx, typeof repo === 'string' ? repo : undefined);
    if (!dir) return;
    await ctx.config.setModelPath(dir);
    if (!(await loadSelected(ctx))) return;
    void vscode.window.showInformationMessage(`Transformer Dynamics: now using ${ctx.models.current().name}.`);
    if (ctx.last) await ctx.rerunLast();
  };
}

export function setHuggingFaceToken(ctx: Ctx): Cmd {
  return () => setToken(ctx);
}

export function compareCompletions(ctx: Ctx): Cmd {
  return () => ctx.completions.compareCommand();
}

export function comparePromptsCmd(ctx: Ctx): Cmd {
  return () => comparePrompts(ctx);
}

/** An AbortSignal that follows a VS Code cancellation token (Cancel on a progress notification). */
function abortSignal(token: vscode.CancellationToken): AbortSignal {
  const ctl = new AbortController();
  if (token.isCancellationRequested) ctl.abort();
  else token.onCancellationRequested(() => ctl.abort());
  return ctl.signal;
}
