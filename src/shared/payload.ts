// Analysis → what the panel receives: everything but the activation cache.
import type { Analysis } from './analysis';
import type { AnalysisPayload } from './protocol';

export function analysisToPayload(a: Analysis, runId: number, source: AnalysisPayload['source']): AnalysisPayload {
  const { cache, ...rest } = a;
  return {
    ...rest,
    runId,
    source,
    interventions: cache.interventions ?? null,
    dims: { n_layers: cache.n_layers, pos: cache.pos, d_model: cache.d_model, n_heads: cache.n_heads },
  };
}
