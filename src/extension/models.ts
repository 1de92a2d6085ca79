// Which model the extension uses: the bundled one, or a local folder in Hugging Face layout
// (from the setting or "Select Model…"), and a short list of recently used folders.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { Config } from './config';
import { readManifest } from '../engine/hub/cache';

export const BUNDLED_MODEL_NAME = 'td-mini';
const RECENT_KEY = 'transformerDynamics.recentModels';
const MAX_RECENT = 8;

export interface ModelChoice {
  /** Folder with config.json, model.safetensors, tokenizer.json. */
  dir: string;
  /** Short display name. */
  name: string;
  bundled: boolean;
}

export class ModelRegistry {
  constructor(
    private readonly context: vscode.ExtensionContext,
    private readonly config: Config,
  ) {}

  get bundledDir(): string {
    return path.join(this.context.extensionUri.fsPath, 'media', 'models', BUNDLED_MODEL_NAME);
  }

  bundled(): ModelChoice {
    return { dir: this.bundledDir, name: `${BUNDLED_MODEL_NAME} (bundled)`, bundled: true };
  }

  /** The model in effect now. */
  current(): ModelChoice {
    const p = this.config.modelPath;
    if (!p) return this.bundled();
    const dir = path.resolve(expandHome(p));
    return { dir, name: displayName(dir), bundled: false };
  }

  recent(): string[] {
    const list = this.context.globalState.get<string[]>(RECENT_KEY, []);
    return list.filter((d) => typeof d === 'string' && fs.existsSync(path.join(d, 'config.json')));
  }

  async remember(dir: string): Promise<void> {
    const list = [dir, ...this.recent().filter((d) => d !== dir)].slice(0, MAX_RECENT);
    await this.context.globalState.update(RECENT_KEY, list);
  }
}

function expandHome(p: string): string {
  if (p === '~' || p.startsWith('~/')) return path.join(process.env.HOME ?? '', p.slice(1));
  return p;
}

/** A Hub snapshot is named by its repository; a folder by its name. */
export function displayName(dir: string): string {
  try {
    const m = readManifest(dir);
    if (m?.repo) return m.repo;
  } catch {
    /* not a Hub snapshot */
  }
  return path.basename(dir);
}
