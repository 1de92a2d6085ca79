// Messages between the extension host (EngineClient) and the engine worker process.
// Sent with Node's "advanced" serialization, so typed arrays cross intact.
import type { AnalyzeRequest } from './analyze';
import type { CacheQuery, CacheQueryResult, EngineLoadRequest } from './engine';
import type { SerializedError } from './errors';
import type { Analysis, ModelInfo } from '../shared/analysis';
import type { Completion, GenerateRequest, GenStep } from '../shared/generation';

export type WorkerRequest =
  | { kind: 'load'; id: number; request: EngineLoadRequest }
  | { kind: 'analyze'; id: number; request: AnalyzeRequest; returnCache: boolean; runId: number }
  | { kind: 'query'; id: number; query: CacheQuery }
  | { kind: 'generate'; id: number; request: GenerateRequest }
  | { kind: 'cancel'; id: number }
  | { kind: 'stats'; id: number }
  | { kind: 'retain'; id: number; runIds: number[] }
  | { kind: 'shutdown'; id: number };

export interface WorkerStats {
  rssBytes: number;
  heapUsedBytes: number;
  liveSessions: number;
  model: ModelInfo | null;
}

export type WorkerReply =
  | { kind: 'ready' }
  | { kind: 'loaded'; id: number; info: ModelInfo; loadMs: number }
  | { kind: 'analysis'; id: number; analysis: Analysis }
  | { kind: 'stats'; id: number; stats: WorkerStats }
  | { kind: 'queryResult'; id: number; value: CacheQueryResult }
  | { kind: 'genStep'; id: number; step: GenStep; index: number }
  | { kind: 'loadProgress'; id: number; message: string; fraction: number }
  | { kind: 'completion'; id: number; completion: Completion }
  | { kind: 'done'; id: number }
  | { kind: 'error'; id: number; error: SerializedError };

const REQUEST_KINDS = new Set(['load', 'analyze', 'query', 'generate', 'cancel', 'stats', 'retain', 'shutdown']);
const REPLY_KINDS = new Set([
  'ready',
  'loaded',
  'loadProgress',
  'analysis',
  'stats',
  'queryResult',
  'genStep',
  'completion',
  'done',
  'error',
]);

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}

export function isWorkerRequest(v: unknown): v is WorkerRequest {
  if (!isObj(v) || typeof v.kind !== 'string' || !REQUEST_KINDS.has(v.kind) || typeof v.id !== 'number') return false;
  if (v.kind === 'load' || v.kind === 'analyze' || v.kind === 'generate') return isObj(v.request);
  if (v.kind === 'query') return isObj(v.query);
  if (v.kind === 'retain') return Array.isArray(v.runIds) && v.runIds.every((r) => typeof r === 'number');
  return true;
}

export function isWorkerReply(v: unknown): v is WorkerReply {
  if (!isObj(v) || typeof v.kind !== 'string' || !REPLY_KINDS.has(v.kind)) return false;
  return v.kind === 'ready' || typeof v.id === 'number';
}
