// Hugging Face Hub in the editor: download with progress, speed and Cancel into the
// extension's global storage; the access token lives in SecretStorage (never in settings or
// logs); memory is checked before weights are fetched and before a model is loaded.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { downloadModel, listCachedModels, parseRepoInput, type DownloadProgress } from '../engine/hub/download';
import { SUGGESTED_MODELS, suggestionSummary } from '../engine/hub/suggested';
import { checkMemory, estimateMemory } from '../engine/memory';
import { specFromConfig } from '../engine/arch/spec';
import { EngineError } from '../engine/errors';
import type { Ctx } from './ctx';

const TOKEN_KEY = 'transformerDynamics.huggingFaceToken';

export function hubCacheDir(ctx: Ctx): string {
  return vscode.Uri.joinPath(ctx.context.globalStorageUri, 'hub').fsPath;
}

export function cachedHubModels(ctx: Ctx): { repo: string; dir: string; size: number }[] {
  try {
    return listCachedModels(hubCacheDir(ctx)).map((m) => ({ repo: m.repo, dir: m.path, size: m.size }));
  } catch {
    return [];
  }
}

function formatBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  return `${Math.round(n / 1e3)} kB`;
}

/**
 * Estimates the memory an analysis with the current settings needs for the model in `dir`
 * (or described by `config`) and throws TOO_LARGE when it does not fit.
 */
export function guardMemory(ctx: Ctx, config: Record<string, unknown>, weightBytes: number, name: string): void {
  const spec = specFromConfig(config);
  const tokens = Math.min(ctx.config.maxTokens, spec.maxPositions);
  const est = estimateMemory(spec, weightBytes, tokens, { patterns: ctx.config.attentionPatterns, graphCache: ctx.config.graphCache });
  const capGb = ctx.config.memoryCapGb;
  checkMemory(est, {
    freeBytes: os.freemem(),
    capBytes: capGb > 0 ? capGb * 1e9 : null,
    modelName: name,
    capSetting: 'transformerDynamics.memoryCapGB',
  });
}

/** Memory check for a local folder before it is loaded. */
export function guardFolder(ctx: Ctx, dir: string, name: string): void {
  const cfgPath = path.join(dir, 'config.json');
  if (!fs.existsSync(cfgPath)) return; // the loader reports the missing file
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(fs.readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
  } catch {
    return;
  }
  let bytes = 0;
  for (const f of fs.readdirSync(dir)) if (f.endsWith('.safetensors')) bytes += fs.statSync(path.join(dir, f)).size;
  try {
    guardMemory(ctx, config, bytes, name);
  } catch (e) {
    if (e instanceof EngineError && e.code === 'UNSUPPORTED_ARCHITECTURE') return; // reported by the loader
    throw e;
  }
}

export async function setToken(ctx: Ctx): Promise<void> {
  const value = await vscode.window.showInputBox({
    title: 'Hugging Face Access Token',
    prompt: "Needed only for gated or private models. Stored in VS Code's secret storage, never in settings. Leave empty to remove it.",
    password: true,
    ignoreFocusOut: true,
    placeHolder: 'hf_…',
    validateInput: (v) =>
      v === '' || /^hf_[A-Za-z0-9]{10,}$/.test(v.trim()) ? null : 'A token looks like hf_ followed by letters and digits.',
  });
  if (value === undefined) return;
  if (value.trim() === '') {
    await ctx.context.secrets.delete(TOKEN_KEY);
    void vscode.window.showInformationMessage('Transformer Dynamics: Hugging Face token removed.');
  } else {
    await ctx.context.secrets.store(TOKEN_KEY, value.trim());
    void vscode.window.showInformationMessage('Transformer Dynamics: Hugging Face token saved in secret storage.');
  }
}

interface RepoPick extends vscode.QuickPickItem {
  repo?: string;
}

/** Asks for a repo (suggested models or any id) and downloads it. Returns the model folder. */
export async function downloadFromHub(ctx: Ctx, preset?: string): Promise<string | null> {
  // the address (and the memory estimate's settings) as the user set them, or a refusal naming them
  try {
    ctx.config.requireValid(['hubEndpoint', 'maxTokens', 'attentionPatterns', 'graphCache', 'memoryCapGB']);
  } catch (e) {
    await ctx.showRunError(e);
    return null;
  }
  let input = preset;
  if (!input) {
    const items: RepoPick[] = [
      ...SUGGESTED_MODELS.map<RepoPick>((m) => ({
        label: m.label,
        description: `${m.repo} · ${suggestionSummary(m, {
          tokens: ctx.config.maxTokens,
          patterns: ctx.config.attentionPatterns,
          graphCache: ctx.config.graphCache,
        })}`,
        detail: m.description,
        repo: m.repo,
      })),
      { label: '$(edit) Enter a repository id…', detail: 'owner/name, optionally @revision (branch, tag or commit)' },
    ];
    const pick = await vscode.window.showQuickPick(items, {
      title: 'Download a Model from Hugging Face',
      placeHolder: 'A suggested small model, or any repository',
    });
    if (!pick) return null;
    input =
      pick.repo ??
      (await vscode.window.showInputBox({
        title: 'Hugging Face repository',
        prompt: 'owner/name or owner/name@revision (a URL works too)',
        placeHolder: 'HuggingFaceTB/SmolLM2-135M',
        validateInput: (v) => {
          try {
            parseRepoInput(v.trim());
            return null;
          } catch (e) {
            return (e as Error).message;
          }
        },
      }));
    if (!input) return null;
  }
  const { repo, revision } = parseRepoInput(input.trim());
  const token = await ctx.context.secrets.get(TOKEN_KEY);
  const ctl = new AbortController();
  try {
    const result = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `Downloading ${repo}`, cancellable: true },
      async (progress, cancel) => {
        cancel.onCancellationRequested(() => ctl.abort());
        let reported = 0;
        return downloadModel({
          repo,
          revision,
          cacheDir: hubCacheDir(ctx),
          token,
          endpoint: ctx.config.hubEndpoint,
          signal: ctl.signal,
          log: (line) => ctx.log.debug(`hub: ${line}`),
          beforeWeights: (plan) => {
            if (plan.layout === 'safetensors') guardMemory(ctx, plan.config, plan.weightBytes, repo);
          },
          onProgress: (p: DownloadProgress) => {
            const pct = p.total > 0 ? (p.bytes / p.total) * 100 : 0;
            progress.report({
              increment: pct - reported,
              message: `${formatBytes(p.bytes)} of ${formatBytes(p.total)} · ${formatBytes(p.bytesPerSecond)}/s · ${path.basename(p.file)}`,
            });
            reported = pct;
          },
        });
      },
    );
    ctx.log.info(
      `hub: ${repo}@${result.sha.slice(0, 8)} ${result.fromCache ? 'from the cache' : `downloaded ${formatBytes(result.bytesDownloaded)}`} → ${result.dir}`,
    );
    if (result.offline)
      void vscode.window.showWarningMessage(`Transformer Dynamics: the Hub is unreachable; using the cached copy of ${repo}.`);
    return result.dir;
  } catch (e) {
    const err = e as EngineError;
    if (err.code === 'CANCELLED') {
      void vscode.window.showInformationMessage(
        `Transformer Dynamics: download of ${repo} cancelled; it resumes where it stopped next time.`,
      );
      return null;
    }
    const actions = err.message.includes('Set Hugging Face Token') ? ['Set Hugging Face Token'] : [];
    const pick = await vscode.window.showErrorMessage(`Transformer Dynamics: ${err.message}`, ...actions);
    if (pick) await setToken(ctx);
    return null;
  }
}
