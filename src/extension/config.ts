// Typed access to the `transformerDynamics.*` settings (one getter per setting).
import * as vscode from 'vscode';
import { resolveThreads } from '../engine/cores';
import { EngineError } from '../engine/errors';
import { PROVIDERS, WEIGHT_PRECISIONS, type ProviderRequest, type WeightPrecisionRequest } from '../engine/runtime/providers';
import { settingProblems, type SettingSchema } from './settingsCheck';

export { RUN_SETTINGS } from './settingsCheck';

export const SECTION = 'transformerDynamics';

export class Config {
  /** `properties`: package.json's `contributes.configuration.properties` (the settings' schema). */
  constructor(private readonly properties: Readonly<Record<string, SettingSchema>> = {}) {}

  /**
   * The values among `keys` (e.g. RUN_SETTINGS) that their schema does not allow, each in a
   * sentence naming the setting. The getters below fall back to a default for such a value, so a
   * caller that would run with them refuses instead (never a silent default).
   */
  problems(keys: readonly string[]): string[] {
    return settingProblems(
      this.properties,
      keys.map((k) => `${SECTION}.${k}`),
      (full) => this.cfg.get(full.slice(SECTION.length + 1)),
    );
  }

  /** Throws BAD_SETTING naming every value among `keys` that its schema does not allow. */
  requireValid(keys: readonly string[]): void {
    const problems = this.problems(keys);
    if (problems.length > 0) throw new EngineError('BAD_SETTING', `${problems.join(' ')} Fix it in Settings.`);
  }

  private get cfg(): vscode.WorkspaceConfiguration {
    return vscode.workspace.getConfiguration(SECTION);
  }

  /**
   * Model folder ("" = the bundled model). A value from workspace settings is used only in a
   * trusted workspace: a repository must not be able to point the engine at arbitrary files.
   */
  get modelPath(): string {
    const inspected = this.cfg.inspect<string>('modelPath');
    const workspaceValue = inspected?.workspaceFolderValue ?? inspected?.workspaceValue;
    if (workspaceValue !== undefined && !vscode.workspace.isTrusted) return (inspected?.globalValue ?? '').trim();
    return (this.cfg.get<string>('modelPath') ?? '').trim();
  }

  async setModelPath(value: string): Promise<void> {
    await this.cfg.update('modelPath', value, vscode.ConfigurationTarget.Global);
  }

  /** Most tokens analysed per run (the model's context window is a cap too). */
  get maxTokens(): number {
    return clampInt(this.cfg.get<number>('maxTokens'), 1, 1 << 20, 1024);
  }

  /** onnxruntime intra-op threads; 0 = one per physical core (no upper cap). */
  get threads(): number {
    return resolveThreads(clampInt(this.cfg.get<number>('threads'), 0, 1024, 0));
  }

  get lensTopK(): number {
    return clampInt(this.cfg.get<number>('lensTopK'), 1, 20, 5);
  }

  get overlayEnabled(): boolean {
    return this.cfg.get<boolean>('overlay.enabled') ?? true;
  }

  async setOverlayEnabled(v: boolean): Promise<void> {
    await this.cfg.update('overlay.enabled', v, vscode.ConfigurationTarget.Global);
  }

  /** Compute attention patterns (memory grows with tokens²). */
  get attentionPatterns(): boolean {
    return this.cfg.get<boolean>('attentionPatterns') ?? true;
  }

  /** onnxruntime execution provider: auto picks WebGPU on a hardware adapter, then CUDA when installed. */
  get executionProvider(): ProviderRequest {
    const v = this.cfg.get<string>('executionProvider') ?? 'auto';
    return (PROVIDERS as readonly string[]).includes(v) ? (v as ProviderRequest) : 'auto';
  }

  /** Precision of the weight matrices: auto = float16 for half checkpoints on a GPU provider. */
  get weightPrecision(): WeightPrecisionRequest {
    const v = this.cfg.get<string>('weightPrecision') ?? 'auto';
    return (WEIGHT_PRECISIONS as readonly string[]).includes(v) ? (v as WeightPrecisionRequest) : 'auto';
  }

  /** Keep built graphs (weights as external data) in the extension's storage for faster loads. */
  get graphCache(): boolean {
    return this.cfg.get<boolean>('graphCache') ?? true;
  }

  /** Most bytes the graph cache keeps (least recently used graphs go first); 0: automatic. */
  get graphCacheLimitBytes(): number {
    const v = this.cfg.get<number>('graphCacheLimitGB') ?? 0;
    return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v * 1e9 : 0;
  }

  /** Cap on the engine's memory in GB (0 = only the free memory limits). */
  get memoryCapGb(): number {
    const v = this.cfg.get<number>('memoryCapGB') ?? 0;
    return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : 0;
  }

  /** Hugging Face Hub address (a mirror, or the Hub itself). */
  get hubEndpoint(): string {
    const v = (this.cfg.get<string>('hubEndpoint') ?? '').trim();
    return /^https?:\/\//.test(v) ? v.replace(/\/+$/, '') : 'https://huggingface.co';
  }

  affects(e: vscode.ConfigurationChangeEvent, key?: string): boolean {
    return e.affectsConfiguration(key ? `${SECTION}.${key}` : SECTION);
  }
}

function clampInt(v: unknown, min: number, max: number, fallback: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) return fallback;
  return Math.min(max, Math.max(min, Math.round(v)));
}
