// The engine: one loaded model at a time, analyses on it, cancellation. Used in-process by
// the CLI and inside the worker process by the extension host.
import { analyze, type AnalyzeRequest } from './analyze';
import { EngineError } from './errors';
import { loadModel, type LoadedModel, type LoadOptions } from './model';
import type { Analysis, ModelInfo } from '../shared/analysis';
import { similarityMatrix } from './analysis/walk';
import { generate } from './generate';
import type { Completion, GenerateRequest, GenStep } from '../shared/generation';

/** Questions about the last analysis, answered from the activation cache the engine keeps. */
export type CacheQuery = { type: 'similarity'; row: number };
export type CacheQueryResult = Float32Array;

export interface EngineLoadRequest extends LoadOptions {
  dir: string;
}

export class Engine {
  private model: LoadedModel | null = null;
  private loading: Promise<LoadedModel> | null = null;
  private key = '';
  private last: Analysis | null = null;

  get current(): LoadedModel | null {
    return this.model;
  }

  /** Loads a model (a no-op when the same folder and options are already loaded). */
  async load(req: EngineLoadRequest): Promise<ModelInfo> {
    const key = JSON.stringify([req.dir, req.threads, req.executionProvider, req.patterns ?? true, req.name ?? '']);
    if (this.model && this.key === key) return this.model.info;
    if (this.loading) await this.loading.catch(() => undefined);
    const previous = this.model;
    this.model = null;
    this.last = null;
    this.key = '';
    if (previous) await previous.release();
    this.loading = loadModel(req.dir, req);
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

  async analyze(req: AnalyzeRequest, signal?: AbortSignal): Promise<Analysis> {
    const a = await analyze(this.requireModel(), req, signal);
    this.last = a;
    return a;
  }

  generate(req: GenerateRequest, onStep?: (step: GenStep, index: number) => void, signal?: AbortSignal): Promise<Completion> {
    return generate(this.requireModel(), req, onStep, signal);
  }

  /** Answers a query about the last analysis (on-demand views). */
  query(q: CacheQuery): CacheQueryResult {
    const a = this.last;
    if (!a) throw new EngineError('BAD_REQUEST', 'No analysis has been run yet.');
    const c = a.cache;
    switch (q.type) {
      case 'similarity':
        if (!Number.isInteger(q.row) || q.row < 0 || q.row > c.n_layers)
          throw new EngineError('BAD_REQUEST', `row ${q.row} is outside 0..${c.n_layers}`);
        return similarityMatrix(c.resid, { rows: c.n_layers + 1, pos: c.pos, d: c.d_model }, q.row);
    }
  }

  async dispose(): Promise<void> {
    const m = this.model;
    this.model = null;
    this.last = null;
    if (m) await m.release();
  }
}
