// The engine: one loaded model at a time, analyses on it, cancellation. Used in-process by
// the CLI and inside the worker process by the extension host.
import { analyze, type AnalyzeRequest } from './analyze';
import { EngineError } from './errors';
import { loadModel, type LoadedModel, type LoadOptions } from './model';
import type { Analysis, ModelInfo } from '../shared/analysis';

export interface EngineLoadRequest extends LoadOptions {
  dir: string;
}

export class Engine {
  private model: LoadedModel | null = null;
  private loading: Promise<LoadedModel> | null = null;
  private key = '';

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

  analyze(req: AnalyzeRequest, signal?: AbortSignal): Promise<Analysis> {
    return analyze(this.requireModel(), req, signal);
  }

  async dispose(): Promise<void> {
    const m = this.model;
    this.model = null;
    if (m) await m.release();
  }
}
