// Where a model runs, in one line for the status bar, the CLI and the panel:
// "cpu", "cuda fp16", "webgpu · NVIDIA H200", "webgpu fp16 · SwiftShader Device (Subzero), software".
import type { ModelInfo } from './analysis';

export function runsOn(info: Pick<ModelInfo, 'provider' | 'weights' | 'adapter'>): string {
  const precision = info.weights === 'float16' ? ' fp16' : '';
  return `${info.provider}${precision}${info.adapter ? ` · ${info.adapter}` : ''}`;
}
