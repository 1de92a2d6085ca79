// The extension's context object: every long-lived part (engine client, panel, overlay,
// status bar, model registry) and the analysis runner that ties them together.
import * as fs from 'node:fs';
import * as vscode from 'vscode';
import { EngineClient } from '../engine/client';
import { EngineError } from '../engine/errors';
import { folderFingerprint } from '../engine/fingerprint';
import { truncationText, type ModelInfo } from '../shared/analysis';
import { analysisToCsv, analysisToJson } from '../shared/export';
import { analysisToPayload } from '../shared/payload';
import type { AnalysisPayload, PersistedState, RequestMap, RequestMethod, RunState } from '../shared/protocol';
import { Config, RUN_SETTINGS, SECTION } from './config';
import type { SettingSchema } from './settingsCheck';
import { ModelRegistry, type ModelChoice } from './models';
import { Overlay } from './overlay';
import { AnalysisPanel } from './panel';
import { StatusBar } from './statusbar';
import { guardFolder } from './hub';
import { Completions } from './completions';
import { LatestOnly } from '../shared/latest';
import { runsOn } from '../shared/runs-on';
import { formatLag, LagProbe } from './lag';
import { WhatIf, type KeptRun } from './whatif';
import type { AnalyzeRequest } from '../engine/analyze';
import { noteOtherSelections, selectionSource } from './source';
import { targetEditor, trackEditors } from './editors';

/** Errors that say the selected model cannot be used: their message offers Select Model…. */
const MODEL_ERRORS: readonly string[] = [
  'TOO_LARGE',
  'NOT_FOUND',
  'BAD_CONFIG',
  'UNSUPPORTED_ARCHITECTURE',
  'PICKLE_REFUSED',
  'MISSING_TOKENIZER',
  'BAD_TOKENIZER',
  'BAD_SAFETENSORS',
  'BAD_WEIGHTS',
];

/** Above this many characters the text is cut before tokenizing (a document can be huge). */
const MAX_CHARS = 2_000_000;

export interface AnalysisSource {
  text: string;
  source: AnalysisPayload['source'];
}

export class Ctx implements vscode.Disposable {
  readonly config: Config;
  readonly log: vscode.LogOutputChannel;
  readonly engine: EngineClient;
  readonly models: ModelRegistry;
  readonly panel: AnalysisPanel;
  readonly overlay: Overlay;
  readonly status = new StatusBar();
  readonly completions: Completions;
  private readonly disposables: vscode.Disposable[] = [];
  private runSeq = 0;
  private readonly runs = new LatestOnly();
  private runState: RunState = { kind: 'idle' };
  private loaded: { key: string; info: ModelInfo } | null = null;
  last: KeptRun | null = null;
  /** What-if: the shown run's intervened twin, and activation patching (whatif.ts). */
  readonly whatIf: WhatIf;
  /** The source of the last run (kept so a revived panel can re-run it). */
  private lastSource: AnalysisSource | null = null;

  constructor(readonly context: vscode.ExtensionContext) {
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the what-if host reads live fields
    const self = this;
    const pkg = context.extension.packageJSON as { contributes?: { configuration?: { properties?: Record<string, SettingSchema> } } };
    this.config = new Config(pkg.contributes?.configuration?.properties ?? {});
    this.log = vscode.window.createOutputChannel('Transformer Dynamics', { log: true });
    this.models = new ModelRegistry(context, this.config);
    this.engine = new EngineClient({
      workerPath: context.asAbsolutePath('dist/engine-worker.js'),
      log: (line) => this.log.info(line),
    });
    this.engine.onCrash = (why) => {
      this.loaded = null;
      void vscode.window.showErrorMessage(`Transformer Dynamics: ${why} It will restart on the next run.`);
    };
    this.overlay = new Overlay(this.config.overlayEnabled);
    this.panel = new AnalysisPanel(
      context.extensionUri,
      {
        onSelectPosition: (runId, pos) => this.revealToken(runId, pos),
        onRequest: (method, params) => this.onPanelRequest(method, params),
        onLog: (level, message) => this.log[level](`webview: ${message}`),
        onRevive: (state) => this.onRevive(state),
      },
      this.log,
    );
    this.status.setModel(this.models.current().name);
    // what a panel shows before anything ran (the panel keeps it for a webview that is not ready yet)
    this.panel.post({ type: 'runState', state: this.runState });
    this.panel.post({ type: 'settings', settings: this.settings() });
    this.panel.post({ type: 'modelChanged', model: null, modelName: this.models.current().name });
    this.completions = new Completions(this);
    this.whatIf = new WhatIf({
      get last() {
        return self.last;
      },
      get diffRuns() {
        return self.diffRuns;
      },
      diffRun: (runId) => this.diffKept.find((r) => r.payload.runId === runId) ?? null,
      analysisRequest: (text) => this.analysisRequest(text),
      adopt: (run) => {
        this.last = run;
        this.panel.post({ type: 'analysis', payload: run.payload });
        this.overlay.show(run.payload);
        this.status.setLastRun(run.payload.tokens.length, run.analysis.timings.totalMs);
      },
      nextRunId: () => this.nextRunId(),
      retainRuns: () => this.retainRuns(),
      analyzeRun: (req, runId, signal) => this.engine.analyze(req, signal, false, runId),
      postPair: (pair) => this.panel.post({ type: 'whatIf', pair }),
      showOverlay: (shown, compareTo) => this.overlay.show(shown, compareTo),
      patching: (p, signal) => this.engine.query({ type: 'patching', ...p }, signal),
      log: (line) => this.log.info(line),
    });
    this.disposables.push(
      trackEditors(), // (commands run with the panel focused work on the editor beside it)
      this.log,
      this.overlay,
      this.status,
      this.completions,
      this.panel,
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (
          this.config.affects(e, 'modelPath') ||
          this.config.affects(e, 'executionProvider') ||
          this.config.affects(e, 'weightPrecision') ||
          this.config.affects(e, 'threads') ||
          this.config.affects(e, 'attentionPatterns')
        ) {
          this.loaded = null;
          this.status.setModel(this.models.current().name);
          this.panel.post({ type: 'modelChanged', model: null, modelName: this.models.current().name });
        }
        if (this.config.affects(e, 'overlay.enabled')) this.overlay.setEnabled(this.config.overlayEnabled);
        if (this.config.affects(e)) this.panel.post({ type: 'settings', settings: this.settings() });
      }),
      vscode.window.onDidChangeTextEditorSelection((e) => this.onEditorSelection(e)),
    );
  }

  settings() {
    return { lensTopK: this.config.lensTopK, overlayEnabled: this.config.overlayEnabled };
  }

  private setRunState(s: RunState): void {
    this.runState = s;
    this.panel.post({ type: 'runState', state: s });
  }

  private onRevive(state: PersistedState | null): void {
    if (!state || this.last || !state.text) return;
    void this.analyze({ text: state.text, source: state.source }, { reveal: false });
  }

  /**
   * Loads the selected model if it is not loaded; `onProgress` hears what a long first load is
   * doing and `signal` cancels it.
   */
  async ensureModel(onProgress?: (message: string) => void, signal?: AbortSignal): Promise<{ choice: ModelChoice; info: ModelInfo }> {
    // a setting outside its schema would fall back to a default: refuse, naming it
    this.config.requireValid(RUN_SETTINGS);
    const choice = this.models.current();
    const req = {
      dir: choice.dir,
      name: choice.name,
      threads: this.config.threads,
      executionProvider: this.config.executionProvider,
      weightPrecision: this.config.weightPrecision,
      patterns: this.config.attentionPatterns,
      cacheDir: this.config.graphCache ? this.graphCacheDir() : undefined,
      // a model whose files change on disk is reloaded on the next run
      fingerprint: folderFingerprint(choice.dir),
    };
    const key = JSON.stringify(req);
    const limited = { ...req, cacheMaxBytes: this.config.graphCacheLimitBytes }; // a new limit needs no reload
    if (this.loaded?.key === key) return { choice, info: this.loaded.info };
    if (!choice.bundled) guardFolder(this, choice.dir, choice.name);
    if (choice.bundled && !fs.existsSync(choice.dir)) {
      throw new EngineError(
        'NOT_FOUND',
        `The bundled model is missing from the extension (${choice.dir}). Reinstall the extension or select a model folder.`,
      );
    }
    const { info, loadMs } = await this.engine.load(limited, (message) => onProgress?.(message), signal);
    this.log.info(
      `loaded ${choice.name} (${info.architecture}, ${info.n_layers} layers, ${info.weights ?? 'float32'} weights) on ${runsOn(info)} in ${loadMs.toFixed(0)} ms`,
    );
    if (info.provider_note) void vscode.window.showWarningMessage(`Transformer Dynamics: ${info.provider_note}`);
    this.loaded = { key, info };
    // the engine forgot every run of the old model: the prompt comparison's too (its heatmap
    // cells can no longer be opened against the model that computed them)
    this.diffRuns = [];
    this.diffKept = [];
    if (!choice.bundled) await this.models.remember(choice.dir);
    // "cuda fp16", "webgpu · NVIDIA H200": the provider, the precision and the GPU adapter that ran
    this.status.setModel(choice.name, runsOn(info));
    this.panel.post({ type: 'modelChanged', model: info, modelName: choice.name });
    return { choice, info };
  }

  /** Runs one analysis; a new run cancels the one in progress. */
  async analyze(input: AnalysisSource, opts: { reveal: boolean } = { reveal: true }): Promise<AnalysisPayload | null> {
    const ticket = this.runs.begin(++this.runSeq);
    const id = ticket.id;
    const ctl = { signal: ticket.signal, abort: () => this.runs.cancel() };
    const lag = new LagProbe();
    this.lastSource = input;
    if (opts.reveal) this.panel.show(true);
    let text = input.text;
    const cut = text.length > MAX_CHARS;
    if (cut) text = text.slice(0, MAX_CHARS);
    try {
      return await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: 'Transformer Dynamics', cancellable: true },
        async (progress, token) => {
          token.onCancellationRequested(() => ctl.abort());
          const step = (message: string) => {
            progress.report({ message });
            this.status.setRunning(message);
            this.setRunState({ kind: 'running', message });
          };
          const name = this.models.current().name;
          step(`loading ${name}…`);
          const { choice } = await this.ensureModel((message) => step(`loading ${name}: ${message}…`), ctl.signal);
          if (ctl.signal.aborted) throw new EngineError('CANCELLED', 'cancelled');
          step(`analysing with ${choice.name}…`);
          const request = this.analysisRequest(text);
          const analysis = await this.engine.analyze(request, ctl.signal, false, id);
          if (!ticket.isCurrent()) throw new EngineError('CANCELLED', 'superseded');
          const payload = analysisToPayload({ ...analysis, model: { ...analysis.model, name: choice.name } }, id, input.source);
          // a text cut here (MAX_CHARS) had more tokens than were counted
          if (cut) payload.truncation = { kept: payload.tokens.length, total: null, chars: input.text.length };
          this.last = { analysis, payload, request };
          this.whatIf.reset();
          this.retainRuns();
          this.panel.post({ type: 'analysis', payload });
          this.overlay.show(payload);
          this.setRunState({ kind: 'idle' });
          this.status.setLastRun(payload.tokens.length, analysis.timings.totalMs);
          this.log.info(
            `run ${id}: ${payload.tokens.length} tokens in ${analysis.timings.totalMs.toFixed(0)} ms; ${formatLag(lag.stop())}`,
          );
          if (payload.truncation) {
            void vscode.window.showInformationMessage(
              `Transformer Dynamics analysed ${truncationText(payload.truncation)}` +
                ` (limit: ${Math.min(this.config.maxTokens, this.loaded?.info.max_positions ?? Infinity)} tokens — the model's context window or transformerDynamics.maxTokens).`,
            );
          }
          return payload;
        },
      );
    } catch (e) {
      const err = e instanceof EngineError ? e : new EngineError('RUNTIME', e instanceof Error ? e.message : String(e));
      if (!ticket.isCurrent()) return null; // superseded by a newer run: stay quiet
      if (err.code === 'CANCELLED') {
        this.setRunState({ kind: 'cancelled' });
        this.status.setIdle();
        return null;
      }
      this.setRunState({ kind: 'error', message: err.message });
      this.status.setIdle();
      this.log.error(`run ${id} failed: ${err.code}: ${err.message}`);
      await this.showRunError(err);
      return null;
    } finally {
      lag.stop();
      ticket.end();
    }
  }

  /**
   * A failed run's message, with the way out: **Select Model…** when the model cannot be used,
   * **Open Settings** on the setting a BAD_SETTING names.
   */
  async showRunError(e: unknown): Promise<void> {
    const err = e instanceof EngineError ? e : new EngineError('RUNTIME', e instanceof Error ? e.message : String(e));
    if (err.code === 'CANCELLED') return;
    const text = `Transformer Dynamics: ${err.message}`;
    if (MODEL_ERRORS.includes(err.code)) {
      this.loaded = null;
      const pick = await vscode.window.showErrorMessage(text, 'Select Model…');
      if (pick) void vscode.commands.executeCommand('transformerDynamics.selectModel');
    } else if (err.code === 'BAD_SETTING') {
      const pick = await vscode.window.showErrorMessage(text, 'Open Settings');
      const named = /\b(transformerDynamics\.[\w.]+) =/.exec(err.message)?.[1] ?? SECTION;
      if (pick) void vscode.commands.executeCommand('workbench.action.openSettings', named);
    } else {
      void vscode.window.showErrorMessage(text);
    }
  }

  /** What Analyze Selection asks the engine for a text (the settings' top-k, token limit and patterns). */
  analysisRequest(text: string): AnalyzeRequest {
    return {
      text,
      topK: this.config.lensTopK,
      maxTokens: this.config.maxTokens,
      patterns: this.config.attentionPatterns ? 'auto' : false,
    };
  }

  rerunLast(): Promise<AnalysisPayload | null> {
    if (!this.lastSource) return Promise.resolve(null);
    return this.analyze(this.lastSource);
  }

  /** Panel click → select the token in the editor. */
  private revealToken(runId: number, pos: number): void {
    const p = this.last?.payload;
    if (!p || (p.runId !== runId && !this.whatIf.keptIds().includes(runId)) || !p.source) return;
    const editor = vscode.window.visibleTextEditors.find((e) => e.document.uri.toString() === p.source!.uri);
    if (!editor) return;
    const range = this.overlay.rangeOf(editor.document, pos);
    if (!range) return;
    this.suppressSelectionEcho = pos;
    editor.selection = new vscode.Selection(range.start, range.end);
    editor.revealRange(range, vscode.TextEditorRevealType.InCenterIfOutsideViewport);
  }

  private suppressSelectionEcho: number | null = null;

  /** Editor cursor → select the token in the panel. */
  private onEditorSelection(e: vscode.TextEditorSelectionChangeEvent): void {
    const p = this.last?.payload;
    if (!p || !this.panel.visible) return;
    const j = this.overlay.tokenAt(e.textEditor.document, e.selections[0]!.active);
    if (j === null) return;
    if (this.suppressSelectionEcho === j) {
      this.suppressSelectionEcho = null;
      return;
    }
    this.panel.post({ type: 'selectPosition', runId: p.runId, pos: j });
  }

  /** One handler per request method (typed by RequestMap). */
  private readonly handlers: { [M in RequestMethod]: (p: RequestMap[M]['params']) => Promise<RequestMap[M]['result']> } = {
    similarity: async (q) => this.engine.query({ type: 'similarity', runId: this.keptRun(q.runId), row: q.row }),
    exportAnalysis: (q) => this.exportAnalysis(q.format),
    saveImage: (q) => this.saveImage(q.name, q.format, q.data),
    headStats: async (q) => this.engine.query({ type: 'headStats', runId: this.keptRun(q.runId) }),
    pattern: async (q) => this.engine.query({ type: 'pattern', runId: this.keptRun(q.runId), layer: q.layer, head: q.head }),
    proximity: async (q) => this.engine.query({ type: 'proximity', runId: this.keptRun(q.runId), pos: q.pos }),
    clusters: async (q) => this.engine.query({ type: 'clusters', runId: this.keptRun(q.runId), row: q.row }),
    runCommand: async (q) => {
      void vscode.commands.executeCommand(`transformerDynamics.${q.command}`); // (a picker may stay open a while)
      return null;
    },
    showClusters: async (q) => {
      if (this.last?.payload.runId === q.runId) this.overlay.showClusters(q.labels);
      return null;
    },
    generate: (q) => this.completions.start(q),
    stopGeneration: async (q) => {
      this.completions.stop(q.batchId);
      return null;
    },
    insertText: (q) => this.completions.insertText(q.text),
    analyzeText: async (q) => {
      void this.analyze({ text: q.text, source: null });
      return null;
    },
    ablate: (q) => this.whatIf.ablate(q.runId, q.ablation),
    patching: (q) => this.whatIf.patching(q),
    showRun: async (q) => this.whatIf.show(q.runId, q.compareTo),
    openPatched: (q) => this.whatIf.openPatched(q),
  };

  /** The run id of a request, if the engine still keeps that analysis. */
  private keptRun(runId: number): number {
    if (!this.last || (this.last.payload.runId !== runId && !this.diffRuns.includes(runId) && !this.whatIf.keptIds().includes(runId)))
      throw new Error('That analysis is no longer loaded; run it again.');
    return runId;
  }

  /** Run ids of the current prompt diff (kept by the engine next to the main run). */
  diffRuns: number[] = [];
  /** The prompt diff's two runs, as the host keeps them (a heatmap cell opens one of them patched). */
  diffKept: KeptRun[] = [];

  /**
   * Tells the engine which analyses the panel still uses (the shown run and the prompt diff's
   * two), so it frees the rest: with attention patterns an analysis of 1024 tokens on GPT-2-small
   * holds 0.6 GB.
   */
  retainRuns(): void {
    const keep = [...(this.last ? [this.last.payload.runId] : []), ...this.whatIf.keptIds(), ...this.diffRuns];
    this.engine.retain(keep).catch((e: unknown) => this.log.warn(`could not release old analyses: ${(e as Error).message}`));
  }

  private onPanelRequest<M extends RequestMethod>(method: M, params: RequestMap[M]['params']): Promise<RequestMap[M]['result']> {
    const h = this.handlers[method] as ((p: RequestMap[M]['params']) => Promise<RequestMap[M]['result']>) | undefined;
    if (!h) return Promise.reject(new Error(`unknown request ${String(method)}`));
    return h(params);
  }

  /** A fresh run id (analyses, prompt-diff runs). */
  nextRunId(): number {
    return ++this.runSeq;
  }

  /** Where the engine keeps built graphs (transformerDynamics.graphCache). */
  graphCacheDir(): string {
    return vscode.Uri.joinPath(this.context.globalStorageUri, 'graphs').fsPath;
  }

  /** The selected model and where it runs once loaded ("td-mini (bundled) on cpu"), for messages. */
  loadedModel(): string {
    const name = this.models.current().name;
    const info = this.loaded?.info;
    return info ? `${name} on ${info.provider}${info.weights === 'float16' ? ' (float16 weights)' : ''}` : name;
  }

  async exportAnalysis(format?: 'json' | 'csv'): Promise<string | null> {
    if (!this.last) {
      // Export as the first command: export what Analyze Selection would show
      const input = selectionSource();
      if (typeof input === 'string') {
        void vscode.window.showWarningMessage(`Transformer Dynamics: nothing to export yet — ${input}`);
        return null;
      }
      noteOtherSelections(targetEditor(), 'analysing');
      if (!(await this.analyze(input))) return null;
    }
    // the run the panel shows: the clean one or its intervened twin (what-if)
    const shown = this.whatIf.shown();
    if (!shown) return null;
    const fmt =
      format ??
      (
        await vscode.window.showQuickPick(
          [
            { label: 'JSON', description: 'every measure (documented schema)', value: 'json' as const },
            { label: 'CSV', description: 'the lens table, one row per layer × position', value: 'csv' as const },
          ],
          { title: 'Export Analysis' },
        )
      )?.value ??
      null;
    if (!fmt) return null;
    const uri = await vscode.window.showSaveDialog({
      title: 'Export Analysis',
      defaultUri: vscode.Uri.file(`${defaultDir()}/transformer-dynamics-analysis.${fmt}`),
      filters: fmt === 'json' ? { JSON: ['json'] } : { CSV: ['csv'] },
    });
    if (!uri) return null;
    const a = { ...shown.analysis, model: shown.payload.model };
    let body: string;
    if (fmt === 'json') {
      // the measures computed on demand come from the engine, which keeps this run
      const runId = shown.payload.runId;
      const last = a.lens.pos - 1;
      const ask = async <T>(f: () => Promise<T>): Promise<T | null> => f().catch(() => null);
      const extras = {
        headStats: await ask(() => this.engine.query({ type: 'headStats', runId })),
        proximityLast: last >= 0 ? await ask(() => this.engine.query({ type: 'proximity', runId, pos: last })) : null,
        clustersLast: last >= 0 ? await ask(() => this.engine.query({ type: 'clusters', runId, row: a.lens.rows - 1 })) : null,
      };
      body = JSON.stringify(analysisToJson(a, extras), null, 1);
    } else body = analysisToCsv(a);
    await vscode.workspace.fs.writeFile(uri, new TextEncoder().encode(body));
    void vscode.window.showInformationMessage(`Transformer Dynamics: analysis saved to ${uri.fsPath}`);
    return uri.fsPath;
  }

  private async saveImage(name: string, format: 'png' | 'svg', data: string): Promise<string | null> {
    const safe = name.replace(/[^\w.-]+/g, '-').slice(0, 80) || 'chart';
    const uri = await vscode.window.showSaveDialog({
      title: 'Save Chart',
      defaultUri: vscode.Uri.file(`${defaultDir()}/${safe}.${format}`),
      filters: format === 'png' ? { PNG: ['png'] } : { SVG: ['svg'] },
    });
    if (!uri) return null;
    let bytes: Uint8Array;
    if (format === 'png') {
      const m = /^data:image\/png;base64,([A-Za-z0-9+/=]+)$/.exec(data);
      if (!m) throw new Error('The chart image is not a PNG data URL.');
      bytes = Buffer.from(m[1]!, 'base64');
    } else {
      const svg = data.startsWith('data:image/svg+xml,') ? decodeURIComponent(data.slice('data:image/svg+xml,'.length)) : data;
      if (!svg.trimStart().startsWith('<svg')) throw new Error('The chart image is not SVG markup.');
      bytes = new TextEncoder().encode(svg);
    }
    await vscode.workspace.fs.writeFile(uri, bytes);
    return uri.fsPath;
  }

  dispose(): void {
    this.runs.cancel();
    this.disposables.forEach((d) => d.dispose());
    void this.engine.dispose();
  }
}

function defaultDir(): string {
  return vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? process.env.HOME ?? '.';
}
