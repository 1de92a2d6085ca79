// The only module that talks to onnxruntime-node. Everything above it deals in plain
// typed arrays with shapes.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { chooseProvider, type ProviderEnvironment, type ProviderRequest } from './providers';

export { chooseProvider, PROVIDERS, type ProviderEnvironment, type ProviderRequest } from './providers';

import { EngineError } from '../errors';

export interface RuntimeOptions {
  threads: number;
  executionProvider: ProviderRequest;
  /**
   * What this machine offers (onnxruntime backends, CUDA library, GPU); probed when absent.
   * Tests pass one to exercise a GPU provider that fails to start on a CPU-only machine.
   */
  environment?: ProviderEnvironment;
}

export type Feed = Float32Array | BigInt64Array;

export interface NamedTensor<T extends Float32Array | BigInt64Array = Float32Array | BigInt64Array> {
  data: T;
  dims: number[];
}

export function providerEnvironment(): ProviderEnvironment {
  let bindingDir = '';
  try {
    bindingDir = path.join(
      path.dirname(require.resolve('onnxruntime-node/package.json')),
      'bin',
      'napi-v6',
      process.platform,
      process.arch,
    );
  } catch {
    /* not resolvable: no CUDA library */
  }
  const cudaLibrary =
    bindingDir !== '' && fs.existsSync(bindingDir) && fs.readdirSync(bindingDir).some((f) => /onnxruntime_providers_cuda/.test(f));
  return {
    backends: ort.listSupportedBackends?.() ?? [{ name: 'cpu', bundled: true }],
    cudaLibrary,
    nvidiaGpu: fs.existsSync('/dev/nvidia0') || fs.existsSync('/proc/driver/nvidia'),
    platform: process.platform,
  };
}

export interface Session {
  /** The execution provider this session runs on. */
  readonly provider: string;
  /** Set when the requested provider could not be used. */
  readonly providerNote: string | null;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  /**
   * Runs the graph. `into` gives preallocated buffers (views into a larger array are fine) for
   * some of the fetched outputs: onnxruntime writes them in place, with no copy.
   */
  run(
    feeds: Record<string, NamedTensor>,
    fetches: readonly string[],
    into?: Record<string, NamedTensor>,
  ): Promise<Record<string, NamedTensor>>;
  release(): Promise<void>;
}

let liveSessions = 0;
/** Number of sessions created and not yet released (leak checks in tests and soak runs). */
export function liveSessionCount(): number {
  return liveSessions;
}

/**
 * Threads: intra-op parallelism is the `threads` setting. TD_ORT_INTEROP=n (n > 1) also runs
 * independent nodes side by side (onnxruntime's parallel executor, n inter-op threads): for
 * measuring whether the lens's reductions, which scale worse than its matrix product, gain
 * from it on many cores (bench/scaling.ts variants). Default: sequential.
 */
function interOp(): Pick<ort.InferenceSession.SessionOptions, 'interOpNumThreads' | 'executionMode'> {
  const n = Number(process.env.TD_ORT_INTEROP);
  return Number.isInteger(n) && n > 1 ? { interOpNumThreads: n, executionMode: 'parallel' } : { interOpNumThreads: 1 };
}

function sessionOptions(provider: string, threads: number): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: [provider],
    intraOpNumThreads: threads,
    ...interOp(),
    graphOptimizationLevel: 'all',
    // The arena reuses buffers across runs: fresh 100 MB outputs would otherwise pay page faults every run.
    enableCpuMemArena: process.env.TD_ORT_ARENA !== '0',
    // Memory patterns: onnxruntime records a run's allocations and, on the next run of the same
    // shapes, allocates them as one planned block. Measured here that block is fresh memory (page
    // faults: the second analysis after a load took as long as the first, 1.1-1.7 s vs 0.6 s for
    // 16 tokens on GPT-2-small) and raised peak RSS by 10%; the arena already reuses buffers, and
    // the panel's inputs change shape with every selection. TD_ORT_MEMPATTERN=1 turns it back on.
    enableMemPattern: process.env.TD_ORT_MEMPATTERN === '1',
    logSeverityLevel: 3,
    // Spinning worker threads are faster on an idle machine and slower on an overloaded one;
    // TD_ORT_SPIN=0 turns spinning off.
    extra: {
      session: {
        intra_op: { allow_spinning: process.env.TD_ORT_SPIN === '0' ? '0' : '1' },
        // Pre-packing copies every weight matrix into MLAS's layout at load: measured here it
        // tripled the load time and added a second copy of the weights without making runs
        // faster, and it defeats the memory-mapped external data of cached graphs.
        // TD_ORT_PREPACK=1 turns it back on.
        ...(process.env.TD_ORT_PREPACK === '1' ? {} : { disable_prepacking: '1' }),
      },
    },
  };
}

export async function createSession(model: Uint8Array | string, opts: RuntimeOptions): Promise<Session> {
  const choice = chooseProvider(opts.executionProvider, opts.environment ?? providerEnvironment());
  let provider: string = choice.provider;
  let note = choice.note;
  const create = (p: string) =>
    typeof model === 'string'
      ? ort.InferenceSession.create(model, sessionOptions(p, opts.threads))
      : ort.InferenceSession.create(model, sessionOptions(p, opts.threads));
  let session: ort.InferenceSession;
  try {
    session = await create(provider);
  } catch (e) {
    if (provider === 'cpu') throw new EngineError('RUNTIME', `onnxruntime could not create a session: ${(e as Error).message}`);
    note = `The ${provider.toUpperCase()} execution provider failed to start (${(e as Error).message.split('\n')[0]}); running on CPU.`;
    provider = 'cpu';
    try {
      session = await create('cpu');
    } catch (e2) {
      throw new EngineError('RUNTIME', `onnxruntime could not create a session: ${(e2 as Error).message}`);
    }
  }
  liveSessions++;
  let released = false;
  return {
    provider,
    providerNote: note,
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    async run(feeds, fetches, into) {
      const tensor = (t: NamedTensor) => new ort.Tensor(t.data instanceof BigInt64Array ? 'int64' : 'float32', t.data, t.dims);
      const ortFeeds: Record<string, ort.Tensor> = {};
      for (const [name, t] of Object.entries(feeds)) ortFeeds[name] = tensor(t);
      let out: ort.InferenceSession.ReturnType;
      try {
        if (into) {
          const outs: Record<string, ort.Tensor | null> = {};
          for (const name of fetches) outs[name] = into[name] ? tensor(into[name]!) : null;
          out = await session.run(ortFeeds, outs);
        } else out = await session.run(ortFeeds, fetches);
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
