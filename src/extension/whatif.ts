// What-if experiments in the extension host: the shown text re-run with heads ablated (its
// "intervened twin", kept by the engine next to the clean run), which of the two the panel
// shows (the editor tint and Export Analysis follow), and activation patching between the two
// prompts of Compare Prompts.
import { EngineError } from '../engine/errors';
import type { AnalyzeRequest } from '../engine/analyze';
import type { Analysis } from '../shared/analysis';
import type { HeadAblation, PatchingResult } from '../shared/interventions';
import { describeAblation } from '../shared/interventions';
import { analysisToPayload } from '../shared/payload';
import type { AnalysisPayload, PatchingParams } from '../shared/protocol';

/** A run as the host keeps it: the analysis (no activations), what the panel got, and how it was asked for. */
export interface KeptRun {
  analysis: Analysis;
  payload: AnalysisPayload;
  request: AnalyzeRequest;
}

/** What the what-if part needs from the extension's context. */
export interface WhatIfHost {
  readonly last: KeptRun | null;
  readonly diffRuns: number[];
  nextRunId(): number;
  retainRuns(): void;
  analyzeRun(req: AnalyzeRequest, runId: number, signal: AbortSignal): Promise<Analysis>;
  postPair(pair: { clean: AnalysisPayload; intervened: AnalysisPayload } | null): void;
  showOverlay(shown: AnalysisPayload, compareTo: AnalysisPayload | null): void;
  patching(params: PatchingParams, signal: AbortSignal): Promise<PatchingResult>;
  log(line: string): void;
}

export class WhatIf {
  /** The clean run's intervened twin, when there is one. */
  twin: KeptRun | null = null;
  /** The run the panel shows (null: the clean run). */
  private shownId: number | null = null;
  private running: AbortController | null = null;
  private patchRun: AbortController | null = null;

  constructor(private readonly host: WhatIfHost) {}

  /** A new clean run: its twin (if any) belonged to the old one. */
  reset(): void {
    this.running?.abort();
    this.twin = null;
    this.shownId = null;
  }

  /** Run ids the engine must keep for the what-if views. */
  keptIds(): number[] {
    return this.twin ? [this.twin.payload.runId] : [];
  }

  /** The run the panel shows (for Export Analysis). */
  shown(): KeptRun | null {
    const last = this.host.last;
    return this.twin && this.shownId === this.twin.payload.runId ? this.twin : last;
  }

  /** Re-runs the clean run's text with `ablation` (null drops the twin). */
  async ablate(runId: number, ablation: HeadAblation | null): Promise<null> {
    const clean = this.host.last;
    if (!clean || clean.payload.runId !== runId) throw new Error('That analysis is no longer shown; analyse the text again.');
    this.running?.abort();
    if (!ablation || ablation.heads.length === 0) {
      this.reset();
      this.host.retainRuns();
      this.host.postPair(null);
      this.host.showOverlay(clean.payload, null);
      return null;
    }
    const ctl = new AbortController();
    this.running = ctl;
    const id = this.host.nextRunId();
    const request: AnalyzeRequest = { ...clean.request, interventions: { ablation } };
    const analysis = await this.host.analyzeRun(request, id, ctl.signal);
    if (ctl.signal.aborted || this.host.last !== clean) throw new EngineError('CANCELLED', 'superseded');
    if (analysis.tokens.length !== clean.payload.tokens.length || analysis.tokens.some((t, i) => t.id !== clean.payload.tokens[i]!.id))
      throw new Error('The re-run tokenized the text differently; analyse it again.');
    const payload = analysisToPayload({ ...analysis, model: clean.payload.model }, id, clean.payload.source);
    payload.truncation = clean.payload.truncation;
    this.twin = { analysis, payload, request };
    this.shownId = id;
    this.host.retainRuns();
    this.host.postPair({ clean: clean.payload, intervened: payload });
    this.host.log(`what-if run ${id}: ${describeAblation(ablation)} in ${analysis.timings.totalMs.toFixed(0)} ms`);
    return null;
  }

  /** The panel shows `runId` (clean or twin), compared with `compareTo` or not. */
  show(runId: number, compareTo: number | null): null {
    const runs = [this.host.last, this.twin].filter((r): r is KeptRun => r !== null);
    const shown = runs.find((r) => r.payload.runId === runId);
    if (!shown) throw new Error('That analysis is no longer shown; analyse the text again.');
    const other = compareTo === null ? null : (runs.find((r) => r.payload.runId === compareTo) ?? null);
    this.shownId = runId;
    this.host.showOverlay(shown.payload, other?.payload ?? null);
    return null;
  }

  /** Activation patching between the prompt diff's runs; a newer request cancels the one running. */
  async patching(p: PatchingParams): Promise<PatchingResult> {
    const runs = this.host.diffRuns;
    if (!runs.includes(p.cleanRunId) || !runs.includes(p.corruptedRunId))
      throw new Error('Those prompts are no longer compared; run Compare Prompts again.');
    this.patchRun?.abort();
    const ctl = new AbortController();
    this.patchRun = ctl;
    try {
      return await this.host.patching(p, ctl.signal);
    } finally {
      if (this.patchRun === ctl) this.patchRun = null;
    }
  }
}
