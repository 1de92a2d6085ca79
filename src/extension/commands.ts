// Every command is a small factory over the context, registered from one table in main.ts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { Ctx } from './ctx';
import { noteOtherSelections, selectionSource } from './source';
import { cachedHubModels, downloadFromHub, setToken } from './hub';
import { comparePrompts } from './diff';
import { clearCache, limitBytes, listCache, type CacheEntry } from '../engine/graphcache';
import { formatBytes } from '../engine/hub/messages';
import { targetEditor } from './editors';

export type Cmd = (...args: unknown[]) => unknown;

/** Analyse the selection, or the whole document when nothing is selected. */
export function analyzeSelection(ctx: Ctx): Cmd {
  return async () => {
    const input = selectionSource();
    if (typeof input === 'string') {
      void vscode.window.showWarningMessage(`Transformer Dynamics: ${input}`);
      return;
    }
    noteOtherSelections(targetEditor(), 'analysing');
    return ctx.analyze(input);
  };
}

export function openPanel(ctx: Ctx): Cmd {
  return () => ctx.panel.show(false);
}

interface ModelPick extends vscode.QuickPickItem {
  action: 'bundled' | 'folder' | 'recent' | 'hub' | 'download' | 'clearCache';
  dir?: string;
}

/** "graph cached (30 MB)" for a model folder with graphs in the cache, else ''. */
function cachedNote(entries: readonly CacheEntry[], dir: string): string {
  const mine = entries.filter((e) => e.model !== null && path.resolve(e.model) === path.resolve(dir));
  return mine.length ? `graph cached (${formatBytes(mine.reduce((s, e) => s + e.bytes, 0))})` : '';
}

/** The picker's line on the graph cache: its size, its limit, and clearing it. */
function cacheItem(ctx: Ctx, entries: readonly CacheEntry[]): ModelPick {
  const dir = ctx.graphCacheDir();
  const used = entries.reduce((s, e) => s + e.bytes, 0);
  const limit = limitBytes(dir, ctx.config.graphCacheLimitBytes, entries);
  return {
    label: '$(trash) Clear Graph Cache',
    description: `${formatBytes(used)} in ${entries.length} graph${entries.length === 1 ? '' : 's'} · limit ${formatBytes(limit)}`,
    detail: ctx.config.graphCache
      ? 'Built graphs of the models used last; the next load of a cleared model converts it again'
      : 'The graph cache is off (transformerDynamics.graphCache)',
    action: 'clearCache',
  };
}

/** Pick the bundled model, a recent folder, or browse for a Hugging Face model folder. */
export function selectModel(ctx: Ctx): Cmd {
  return async () => {
    const current = ctx.models.current();
    const cached = listCache(ctx.graphCacheDir());
    const note = (dir: string, text: string) => [text, cachedNote(cached, dir)].filter(Boolean).join(' · ');
    const items: ModelPick[] = [
      {
        label: '$(package) td-mini (bundled)',
        description: note(ctx.models.bundledDir, current.bundled ? 'current' : ''),
        detail: 'Trained by this project on public-domain prose and Python code',
        action: 'bundled',
      },
      ...ctx.models.recent().map<ModelPick>((dir) => ({
        label: `$(folder) ${path.basename(dir)}`,
        description: note(dir, !current.bundled && current.dir === dir ? 'current' : ''),
        detail: dir,
        action: 'recent',
        dir,
      })),
      ...cachedHubModels(ctx)
        .filter((m) => !ctx.models.recent().includes(m.dir))
        .map<ModelPick>((m) => ({
          label: `$(cloud) ${m.repo}`,
          description: note(m.dir, !current.bundled && current.dir === m.dir ? 'current' : 'downloaded'),
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
      { label: 'Graph cache', kind: vscode.QuickPickItemKind.Separator, action: 'clearCache' },
      cacheItem(ctx, cached),
    ];
    const pick = await vscode.window.showQuickPick(items, {
      title: 'Transformer Dynamics: Select Model',
      placeHolder: `Current: ${current.name}`,
    });
    if (!pick) return;
    if (pick.action === 'clearCache') return clearGraphCache(ctx)();
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
    if (!(await loadSelected(ctx))) return;
    void vscode.window.showInformationMessage(`Transformer Dynamics: now using ${ctx.loadedModel()}.`);
    if (ctx.last) await ctx.rerunLast();
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
    } else void ctx.showRunError(e);
    return false;
  }
}

/** Removes every built graph and says how much disk it freed. */
export function clearGraphCache(ctx: Ctx): Cmd {
  return () => {
    const r = clearCache(ctx.graphCacheDir());
    const failed = r.failed ? ` ${r.failed} could not be removed (in use, or no permission).` : '';
    if (r.entries === 0 && r.freedBytes === 0) {
      void vscode.window.showInformationMessage(`Transformer Dynamics: the graph cache is already empty.${failed}`);
      return;
    }
    ctx.log.info(`graph cache cleared: ${r.entries} entries, ${r.freedBytes} bytes freed, ${r.failed} failed`);
    void vscode.window.showInformationMessage(
      `Transformer Dynamics: cleared the graph cache — freed ${formatBytes(r.freedBytes)} (${r.entries} graph${r.entries === 1 ? '' : 's'}). ` +
        `The next load of each model converts it again.${failed}`,
    );
  };
}

export function exportAnalysis(ctx: Ctx): Cmd {
  return () => ctx.exportAnalysis();
}

export function toggleOverlay(ctx: Ctx): Cmd {
  return async () => {
    const on = !ctx.config.overlayEnabled;
    await ctx.config.setOverlayEnabled(on);
    // nothing else may show the change yet (no analysis): say it where the model is shown
    vscode.window.setStatusBarMessage(`Transformer Dynamics: surprisal overlay ${on ? 'on' : 'off'}`, 5000);
  };
}

/** Opens the sample document shipped with the extension (prose and code). */
export function openSample(ctx: Ctx): Cmd {
  return async () => {
    const doc = await vscode.workspace.openTextDocument(vscode.Uri.joinPath(ctx.context.extensionUri, 'media', 'sample.md'));
    // not in the panel's column (its button runs this with the panel focused): the panel stays on show
    const panelAt = ctx.panel.viewColumn;
    const column = panelAt === undefined ? undefined : panelAt === vscode.ViewColumn.One ? vscode.ViewColumn.Beside : vscode.ViewColumn.One;
    await vscode.window.showTextDocument(doc, { preview: false, ...(column === undefined ? {} : { viewColumn: column }) });
  };
}

/** Download a model from the Hugging Face Hub and switch to it. */
export function downloadModel(ctx: Ctx): Cmd {
  return async (repo?: unknown) => {
    const dir = await downloadFromHub(ctx, typeof repo === 'string' ? repo : undefined);
    if (!dir) return;
    await ctx.config.setModelPath(dir);
    if (!(await loadSelected(ctx))) return;
    void vscode.window.showInformationMessage(`Transformer Dynamics: now using ${ctx.loadedModel()}.`);
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
