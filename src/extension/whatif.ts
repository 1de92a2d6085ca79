// What-if experiments in the extension host: the shown text re-run with heads ablated (its
// "intervened twin", kept by the engine next to the clean run), which of the two the panel
// shows (the editor tint and Export Analysis follow), activation patching between the two
// prompts of Compare Prompts, and one cell of its heatmap opened as a whole patched run (the
// patched prompt becomes the shown analysis, the patched run its twin).
import { EngineError } from '../engine/errors';
import type { AnalyzeRequest } from '../engine/analyze';
import type { Analysis } from '../shared/analysis';
import type { ActivationPatch, HeadAblation, PatchingResult } from '../shared/interventions';
import { describeAblation, describePatch } from '../shared/interventions';
import { analysisToPayload } from '../shared/payload';
import type { AnalysisPayload, OpenPatchedParams, PatchingParams } from '../shared/protocol';

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
  /** A run of the prompt comparison, as the host keeps it. */
  diffRun(runId: number): KeptRun | null;
  /** The request Analyze Selection would make for this text (the settings' top-k, limit, patterns). */
  analysisRequest(text: string): AnalyzeRequest;
  /** Makes `run` the shown analysis (the panel and the editor show it; its twin comes next). */
  adopt(run: KeptRun): void;
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
    // drawn in the clean run's PCA axes, so the Trajectories tab can put the two walks side by side
    const request: AnalyzeRequest = { ...clean.request, interventions: { ablation }, pcaAxesOf: runId };
    const analysis = await this.host.analyzeRun(request, id, ctl.signal);
    if (ctl.signal.aborted || this.host.last !== clean) throw new EngineError('CANCELLED', 'superseded');
    if (!sameTokens(analysis, clean)) throw new Error('The re-run tokenized the text differently; analyse it again.');
    const payload = analysisToPayload({ ...analysis, model: clean.payload.model }, id, clean.payload.source);
    payload.truncation = clean.payload.truncation;
    this.twin = { analysis, payload, request };
    this.shownId = id;
    this.host.retainRuns();
    this.host.postPair({ clean: clean.payload, intervened: payload });
    this.host.log(`what-if run ${id}: ${describeAblation(ablation)} in ${analysis.timings.totalMs.toFixed(0)} ms`);
    return null;
  }

  /**
   * Heatmap cells as a whole run: the patched prompt (the corrupted one when denoising, the
   * clean one when noising) analysed as Analyze Selection would, then again with those cells
   * (one, or several of one site) patched from the other prompt; the panel shows them as a
   * what-if pair.
   */
  async openPatched(p: OpenPatchedParams): Promise<null> {
    const clean = this.host.diffRun(p.cleanRunId);
    const corrupted = this.host.diffRun(p.corruptedRunId);
    if (!clean || !corrupted || !this.host.diffRuns.includes(p.cleanRunId) || !this.host.diffRuns.includes(p.corruptedRunId))
      throw new Error('Those prompts are no longer compared; run Compare Prompts again.');
    const [base, source] = p.direction === 'denoise' ? [corrupted, clean] : [clean, corrupted];
    const patch: ActivationPatch =
      p.site === 'z'
        ? { sourceIds: idsOf(source), site: 'z', cells: [], heads: p.cells.map((c) => ({ layer: c.layer, head: c.col })) }
        : { sourceIds: idsOf(source), site: p.site, cells: p.cells.map((c) => ({ layer: c.layer, pos: c.col })) };
    this.running?.abort();
    const ctl = new AbortController();
    this.running = ctl;
    const request = this.host.analysisRequest(base.analysis.text);
    const baseId = this.host.nextRunId();
    const unpatched = await this.host.analyzeRun(request, baseId, ctl.signal);
    const twinId = this.host.nextRunId();
    const patched = await this.host.analyzeRun({ ...request, interventions: { patch }, pcaAxesOf: baseId }, twinId, ctl.signal);
    if (ctl.signal.aborted) throw new EngineError('CANCELLED', 'superseded');
    if (!sameTokens(unpatched, base) || !sameTokens(patched, base))
      throw new Error('The prompt tokenized differently when analysed again; run Compare Prompts again.');
    const model = base.payload.model;
    const basePayload = analysisToPayload({ ...unpatched, model }, baseId, null);
    const payload = analysisToPayload({ ...patched, model }, twinId, null);
    this.host.adopt({ analysis: unpatched, payload: basePayload, request });
    this.twin = { analysis: patched, payload, request: { ...request, interventions: { patch } } };
    this.shownId = twinId;
    this.host.retainRuns();
    this.host.postPair({ clean: basePayload, intervened: payload });
    const rec = patched.cache.interventions?.patch;
    this.host.log(`what-if run ${twinId}: ${rec ? describePatch(rec) : 'patched'} in ${patched.timings.totalMs.toFixed(0)} ms`);
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

const idsOf = (r: KeptRun) => r.payload.tokens.map((t) => t.id);

/** A re-run of a kept run's text tokenized it the same way. */
const sameTokens = (a: Analysis, r: KeptRun) =>
  a.tokens.length === r.payload.tokens.length && a.tokens.every((t, i) => t.id === r.payload.tokens[i]!.id);
