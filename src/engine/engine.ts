// The engine: one loaded model at a time, analyses on it, cancellation. Used in-process by
// the CLI and inside the worker process by the extension host.
import { analyze, similarityAt, type AnalyzeContext, type AnalyzeRequest } from './analyze';
import { patchingHeatmap } from './interventions/patching';
import type { PatchingRequest, PatchingResult } from '../shared/interventions';
import { BufferPool } from './pool';
import { EngineError } from './errors';
import { loadModel, type LoadControl, type LoadedModel, type LoadOptions } from './model';
import type { Analysis, ClustersResult, DiffResult, HeadStatsResult, ModelInfo, ProximityResult } from '../shared/analysis';
import { attentionStats, clusters, headPattern, promptDiff, proximity } from './queries';
import { generate } from './generate';
import { forgetPromptState } from './generate/generator';
import type { Completion, GenerateRequest, GenStep } from '../shared/generation';

/** Questions about a recent analysis (by runId), answered from the activation cache the engine keeps. */
export type CacheQuery =
  | { type: 'similarity'; runId: number; row: number }
  | { type: 'headStats'; runId: number; maxOffset?: number }
  | { type: 'pattern'; runId: number; layer: number; head: number }
  | { type: 'proximity'; runId: number; pos: number }
  | { type: 'clusters'; runId: number; row: number }
  | { type: 'diff'; runId: number; otherRunId: number }
  /** Activation patching between two kept runs (clean and corrupted prompts). */
  | ({ type: 'patching'; cleanRunId: number; corruptedRunId: number } & Omit<PatchingRequest, 'cleanIds' | 'corruptedIds'>);

export interface CacheQueryResults {
  similarity: Float32Array;
  headStats: HeadStatsResult;
  pattern: Float32Array;
  proximity: ProximityResult;
  clusters: ClustersResult;
  diff: DiffResult;
  patching: PatchingResult;
}
export type CacheQueryResult = CacheQueryResults[keyof CacheQueryResults];

/**
 * At most this many analyses are kept for on-demand views; the host's retain() frees the ones
 * it no longer shows (all but the panel's current run and a prompt diff's two) sooner.
 */
const KEEP_ANALYSES = 4;

export interface EngineLoadRequest extends LoadOptions {
  dir: string;
  /** Changes when the model's files change on disk (sizes, times): a new value reloads. */
  fingerprint?: string;
}

export interface EngineOptions {
  /** Recycle the buffers of analyses the engine no longer keeps (only where nobody else holds them: the worker). */
  recycleBuffers?: boolean;
}

export class Engine {
  private readonly pool: BufferPool | undefined;

  constructor(opts: EngineOptions = {}) {
    this.pool = opts.recycleBuffers ? new BufferPool() : undefined;
  }

  private model: LoadedModel | null = null;
  private loading: Promise<LoadedModel> | null = null;
  private key = '';
  private readonly kept = new Map<number, Analysis>();

  get current(): LoadedModel | null {
    return this.model;
  }

  /** Loads a model (a no-op when the same folder and options are already loaded). */
  async load(req: EngineLoadRequest, control: LoadControl = {}): Promise<ModelInfo> {
    const key = JSON.stringify([
      req.dir,
      req.threads,
      req.executionProvider,
      req.weightPrecision ?? 'auto',
      req.patterns ?? true,
      req.name ?? '',
      req.cacheDir ?? '',
      req.fingerprint ?? '',
    ]);
    if (this.model && this.key === key) return this.model.info;
    if (this.loading) await this.loading.catch(() => undefined);
    const previous = this.model;
    this.model = null;
    this.kept.clear();
    this.pool?.clear();
    this.key = '';
    if (previous) {
      forgetPromptState(previous); // its KV arrays go now, not when the model object is collected
      await previous.release();
    }
    this.loading = loadModel(req.dir, req, control);
    try {
      this.model = await this.loading;
      this.key = key;
      return this.model.info;
    } finally {
      this.loading = null;
    }
  }

  requireModel(): LoadedModel {
    if (!this.model) throw new EngineError('BAD_REQUEST', 'No model is loaded.');
    return this.model;
  }

  async analyze(req: AnalyzeRequest, signal?: AbortSignal, runId = 0): Promise<Analysis> {
    const model = this.requireModel();
    forgetPromptState(model); // a completion's kept prompt cache gives way to the analysis's buffers
    const a = await analyze(model, req, signal, this.pool, this.context());
    this.forget(runId);
    this.kept.set(runId, a);
    while (this.kept.size > KEEP_ANALYSES) this.forget(this.kept.keys().next().value!);
    return a;
  }

  /**
   * Forgets the kept analyses the host no longer shows: every run up to the newest of `runIds`
   * that is not listed. Run ids only grow, so a newer run (still on its way to the host) stays.
   */
  retain(runIds: number[]): void {
    const newest = Math.max(-Infinity, ...runIds);
    for (const id of [...this.kept.keys()]) if (id <= newest && !runIds.includes(id)) this.forget(id);
  }

  /** Run ids of the analyses kept for queries (tests, stats). */
  keptRuns(): number[] {
    return [...this.kept.keys()];
  }

  private forget(runId: number): void {
    const old = this.kept.get(runId);
    this.kept.delete(runId);
    if (old && this.pool && ![...this.kept.values()].includes(old)) this.pool.give(old.cache.resid, old.cache.residMid, old.cache.patterns);
  }

  /** A kept analysis by run id. */
  analysis(runId: number): Analysis {
    const a = this.kept.get(runId);
    if (!a) throw new EngineError('BAD_REQUEST', 'That analysis is no longer in memory; run it again.');
    return a;
  }

  generate(req: GenerateRequest, onStep?: (step: GenStep, index: number) => void, signal?: AbortSignal): Promise<Completion> {
    return generate(this.requireModel(), req, onStep, signal, undefined, this.context());
  }

  /** What kept analyses offer a new run: the clean z means of the same ids (mean ablation without an extra pass). */
  private context(): AnalyzeContext {
    return {
      zMeanOf: (ids) => {
        for (const a of this.kept.values()) {
          const c = a.cache;
          if (c.zMean && !c.interventions && a.tokens.length === ids.length && a.tokens.every((t, i) => t.id === ids[i])) return c.zMean;
        }
        return null;
      },
      pcaAxesOf: (runId) => this.kept.get(runId)?.cache.pcaAxes ?? null,
    };
  }

  /** Answers a query about a kept analysis (on-demand views). */
  async query(q: CacheQuery, signal?: AbortSignal): Promise<CacheQueryResult> {
    if (q.type === 'patching') return this.patching(q, signal);
    const a = this.analysis(q.runId);
    const c = a.cache;
    switch (q.type) {
      case 'similarity':
        if (!Number.isInteger(q.row) || q.row < 0 || q.row > c.n_layers)
          throw new EngineError('BAD_REQUEST', `row ${q.row} is outside 0..${c.n_layers}`);
        return similarityAt(c, q.row, this.requireModel().linalg);
      case 'headStats':
        return attentionStats(this.requireModel(), a, q.maxOffset);
      case 'pattern':
        return headPattern(this.requireModel(), a, q.layer, q.head);
      case 'proximity':
        return proximity(this.requireModel(), a, q.pos);
      case 'clusters':
        return clusters(this.requireModel(), a, q.row);
      case 'diff':
        return promptDiff(a, this.analysis(q.otherRunId));
    }
  }

  /** Activation patching between two kept runs (their own interventions are not carried over). */
  patching(q: Extract<CacheQuery, { type: 'patching' }>, signal?: AbortSignal): Promise<PatchingResult> {
    const ids = (runId: number) => this.analysis(runId).tokens.map((t) => t.id);
    const { type: _type, cleanRunId, corruptedRunId, ...rest } = q;
    return patchingHeatmap(this.requireModel(), { ...rest, cleanIds: ids(cleanRunId), corruptedIds: ids(corruptedRunId) }, signal);
  }

  async dispose(): Promise<void> {
    const m = this.model;
    this.model = null;
    this.kept.clear();
    if (m) {
      forgetPromptState(m);
      await m.release();
    }
  }
}
