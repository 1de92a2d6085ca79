// The only module that talks to onnxruntime-node. Everything above it deals in plain
// typed arrays with shapes.
import * as ort from 'onnxruntime-node';
import { EngineError } from '../errors';

export type Feed = Float32Array | BigInt64Array;

export interface NamedTensor<T extends Float32Array | BigInt64Array = Float32Array | BigInt64Array> {
  data: T;
  dims: number[];
}

export interface RuntimeOptions {
  threads: number;
  executionProvider: 'cpu' | 'cuda';
}

export interface Session {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  run(feeds: Record<string, NamedTensor>, fetches: readonly string[]): Promise<Record<string, NamedTensor>>;
  release(): Promise<void>;
}

let liveSessions = 0;
/** Number of sessions created and not yet released (leak checks in tests and soak runs). */
export function liveSessionCount(): number {
  return liveSessions;
}

export async function createSession(model: Uint8Array | string, opts: RuntimeOptions): Promise<Session> {
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: [opts.executionProvider],
    intraOpNumThreads: opts.threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    enableCpuMemArena: process.env.TD_ORT_ARENA === '1',
    enableMemPattern: true,
    logSeverityLevel: 3,
  };
  let session: ort.InferenceSession;
  try {
    session =
      typeof model === 'string' ? await ort.InferenceSession.create(model, options) : await ort.InferenceSession.create(model, options);
  } catch (e) {
    throw new EngineError('RUNTIME', `onnxruntime could not create a session: ${(e as Error).message}`);
  }
  liveSessions++;
  let released = false;
  return {
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    async run(feeds, fetches) {
      const ortFeeds: Record<string, ort.Tensor> = {};
      for (const [name, t] of Object.entries(feeds)) {
        ortFeeds[name] = new ort.Tensor(t.data instanceof BigInt64Array ? 'int64' : 'float32', t.data, t.dims);
      }
      let out: ort.InferenceSession.ReturnType;
      try {
        out = await session.run(ortFeeds, fetches);
      } catch (e) {
        throw new EngineError('RUNTIME', `onnxruntime failed while running the model: ${(e as Error).message}`);
      }
      const result: Record<string, NamedTensor> = {};
      for (const name of fetches) {
        const t = out[name] as ort.Tensor | undefined;
        if (!t) throw new EngineError('RUNTIME', `onnxruntime returned no "${name}"`);
        const data = t.data;
        if (!(data instanceof Float32Array) && !(data instanceof BigInt64Array)) {
          throw new EngineError('RUNTIME', `unexpected tensor type ${t.type} for "${name}"`);
        }
        result[name] = { data, dims: [...t.dims] };
      }
      return result;
    },
    async release() {
      if (released) return;
      released = true;
      liveSessions--;
      await session.release();
    },
  };
}
