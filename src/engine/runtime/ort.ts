// The only module that talks to onnxruntime-node. Everything above it deals in plain
// typed arrays with shapes.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { adapterLabel, chooseProvider, type ProviderEnvironment, type ProviderRequest } from './providers';
import { gpuDeviceVisible, webGpuProbe } from './adapter';

export { chooseProvider, PROVIDERS, type ProviderEnvironment, type ProviderRequest } from './providers';

import { EngineError } from '../errors';
import { GraphBuilder } from '../onnx/builder';

export interface RuntimeOptions {
  threads: number;
  executionProvider: ProviderRequest;
  /**
   * What this machine offers (onnxruntime backends, CUDA library, GPU); probed when absent.
   * Tests pass one to exercise a GPU provider that fails to start on a CPU-only machine.
   */
  environment?: ProviderEnvironment;
  /**
   * Outputs that stay in the device's memory on WebGPU (the KV cache between generation steps):
   * runKeeping() returns them as DeviceTensors, which feed the next run without a copy. On the
   * CPU they come back as ordinary arrays. onnxruntime-node 1.30 then wants every output of the
   * graph fetched by every run ("Output count mismatch" otherwise): see Session.fetchAll.
   */
  deviceOutputs?: readonly string[];
  /** Nodes (by name) that run on the CPU even on a GPU provider (WebGPU only: forceCpuNodeNames). */
  cpuNodes?: readonly string[];
  /** Pre-pack weight matrices at load (off by default: see sessionOptions); TD_ORT_PREPACK=1 for every session. */
  prepack?: boolean;
  /**
   * false: this session's worker threads sleep as soon as a run ends instead of spinning (see
   * sessionOptions). For sessions that run in quick alternation with others (linalg.ts).
   */
  spin?: boolean;
  /** true: this session keeps onnxruntime's CPU arena (off by default: see sessionOptions). */
  arena?: boolean;
}

export type Feed = Float32Array | BigInt64Array;

export interface NamedTensor<T extends Float32Array | BigInt64Array = Float32Array | BigInt64Array> {
  data: T;
  dims: number[];
}

/**
 * A tensor that lives in GPU memory (onnxruntime's 'gpu-buffer' location). onnxruntime-node 1.30
 * cannot copy it back to JavaScript, only feed it to another run of a session on the same
 * device; dispose() frees the memory (nothing else does).
 */
export interface DeviceTensor {
  readonly onDevice: true;
  readonly dims: number[];
  dispose(): void;
}

export type AnyTensor = NamedTensor | DeviceTensor;

export function isDeviceTensor(t: AnyTensor): t is DeviceTensor {
  return 'onDevice' in t;
}

/** Disposes the device tensors among these (host arrays need nothing). */
export function disposeAll(tensors: Iterable<AnyTensor>): void {
  for (const t of tensors) if (isDeviceTensor(t)) t.dispose();
}

class OrtDeviceTensor implements DeviceTensor {
  readonly onDevice = true;
  private disposed = false;
  constructor(
    readonly tensor: ort.Tensor,
    readonly dims: number[],
  ) {}
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.tensor.dispose();
  }
  get live(): boolean {
    return !this.disposed;
  }
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

/**
 * The environment with the WebGPU adapter probed when the request may use it: by name, or
 * `auto` on a machine where a GPU device is visible (the probe costs a child process).
 */
export async function providerEnvironmentFor(req: ProviderRequest, given?: ProviderEnvironment): Promise<ProviderEnvironment> {
  const env = given ?? providerEnvironment();
  if (env.webgpu !== undefined || !env.backends.some((b) => b.name === 'webgpu')) return env;
  if (req === 'webgpu' || (req === 'auto' && gpuDeviceVisible(env.platform))) return { ...env, webgpu: await webGpuProbe() };
  return env;
}

export interface Session {
  /** The execution provider this session runs on. */
  readonly provider: string;
  /** Set when the requested provider could not be used. */
  readonly providerNote: string | null;
  /** The WebGPU adapter the session runs on ("NVIDIA H200"); null on other providers. */
  readonly adapter: string | null;
  /** Every run must fetch every output (a session with device outputs on WebGPU). */
  readonly fetchAll: boolean;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  /**
   * Runs the graph. `into` gives preallocated buffers (views into a larger array are fine) for
   * some of the fetched outputs: onnxruntime writes them in place, with no copy.
   */
  run(
    feeds: Record<string, AnyTensor>,
    fetches: readonly string[],
    into?: Record<string, NamedTensor>,
  ): Promise<Record<string, NamedTensor>>;
  /** Like run(), but the session's deviceOutputs among the fetches come back as DeviceTensors. */
  runKeeping(feeds: Record<string, AnyTensor>, fetches: readonly string[]): Promise<Record<string, AnyTensor>>;
  /**
   * Rows of each device tensor along axis 0, in the order `from` (beam search reorders its KV
   * cache so), as new device tensors; the inputs stay valid.
   */
  gatherBatch(tensors: readonly DeviceTensor[], from: readonly number[]): Promise<DeviceTensor[]>;
  release(): Promise<void>;
}

/**
 * Whether the lens session pre-packs its unembedding (MLAS's layout, once at load) instead of
 * packing W_U again for every chunk. The lens graph reads W_U through that product alone
 * (graph/lens.ts), so onnxruntime drops the original after packing: one copy either way.
 * Measured on 2 threads, GPT-2-small at 512 tokens: lens −8%, peak RSS unchanged, load +0.15 s.
 * TD_LENS_PREPACK=0 packs per chunk as before.
 */
export function lensPrepack(): boolean {
  return process.env.TD_LENS_PREPACK !== '0';
}

let liveSessions = 0;
let profiled = 0;
/** Number of sessions created and not yet released (leak checks in tests and soak runs). */
export function liveSessionCount(): number {
  return liveSessions;
}

let runtimeMs = 0;
/**
 * Milliseconds this process has spent so far inside onnxruntime's runs, each from the call to
 * its result (runs that overlap each count). The difference between two readings, against the
 * wall time between them, splits a phase into onnxruntime's part, which spreads over the
 * intra-op threads, and the rest: JavaScript on one thread, which more cores do not shorten.
 */
export function runtimeClock(): number {
  return runtimeMs;
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

export function sessionOptions(
  provider: string,
  threads: number,
  opts: Pick<RuntimeOptions, 'deviceOutputs' | 'cpuNodes' | 'prepack' | 'spin' | 'arena'>,
): ort.InferenceSession.SessionOptions {
  const deviceOutputs = opts.deviceOutputs ?? [];
  const onDevice = provider === 'webgpu' && deviceOutputs.length > 0;
  const cpuNodes = opts.cpuNodes ?? [];
  return {
    executionProviders: [provider === 'webgpu' && cpuNodes.length > 0 ? { name: 'webgpu', forceCpuNodeNames: [...cpuNodes] } : provider],
    ...(onDevice ? { preferredOutputLocation: Object.fromEntries(deviceOutputs.map((n) => [n, 'gpu-buffer' as const])) } : {}),
    intraOpNumThreads: threads,
    ...interOp(),
    graphOptimizationLevel: 'all',
    // No CPU memory arena: each session's arena keeps the most its runs ever needed, grown in
    // doubling regions (a 1.5 MB request after a 32 MB region reserves 64 MB more), so the forward
    // pass's, the lens's and the linear algebra's peaks sat side by side for the life of the model.
    // Without arenas they share the C heap: the lens reuses what the forward pass freed. Our
    // outputs are written into our own arrays, so no run allocates a fresh output each time.
    // Measured (bench child, GPT-2-small, 2 threads, 4 runs each): peak RSS 969-988 → 867-921 MB
    // at 512 tokens, 1252-1307 → 1114-1255 MB at 1024; forward, lens and generation step times
    // within their run-to-run noise. TD_ORT_ARENA=1 turns the arenas back on (`arena: true`, one session's).
    enableCpuMemArena: opts.arena === true || process.env.TD_ORT_ARENA === '1',
    // Memory patterns: onnxruntime records a run's allocations and, on the next run of the same
    // shapes, allocates them as one planned block. Measured here that block is fresh memory (page
    // faults: the second analysis after a load took as long as the first, 1.1-1.7 s vs 0.6 s for
    // 16 tokens on GPT-2-small) and raised peak RSS by 10%; the arena already reuses buffers, and
    // the panel's inputs change shape with every selection. TD_ORT_MEMPATTERN=1 turns it back on.
    enableMemPattern: process.env.TD_ORT_MEMPATTERN === '1',
    // TD_ORT_LOG=0 shows onnxruntime's verbose session log, with the node placements (which
    // nodes a GPU provider left to the CPU, and the copies between them): tools/gpu-placement.ts.
    logSeverityLevel: process.env.TD_ORT_LOG === '0' ? 0 : 3,
    logVerbosityLevel: 0,
    // TD_ORT_PROFILE=<folder>: onnxruntime's profile of every session (each node's time and the
    // provider it ran on; on WebGPU also the GPU time of each kernel), written when the session is
    // released. tools/gpu-profile.ts sums one up.
    ...(process.env.TD_ORT_PROFILE
      ? { enableProfiling: true, profileFilePrefix: path.join(process.env.TD_ORT_PROFILE, `${provider}-${++profiled}`) }
      : {}),
    // Spinning worker threads are faster on an idle machine and slower on an overloaded one;
    // TD_ORT_SPIN=0 turns spinning off. Every session has its own pool, so a session that runs
    // right after another competes with the other's still-spinning workers: the analysis's
    // linear algebra (covariance, 45 subspace-iteration products, cosines, projection, four
    // sessions in turn) took 250–310 ms with spinning and 180–240 ms without at 1024 tokens of
    // GPT-2-small (2 cores), so those sessions never spin (`spin: false`). The forward pass and
    // the lens run many times in a row on one session, where spinning keeps the workers warm.
    extra: {
      session: {
        intra_op: { allow_spinning: opts.spin === false || process.env.TD_ORT_SPIN === '0' ? '0' : '1' },
        // Pre-packing copies every weight matrix into MLAS's layout at load: measured here it
        // tripled the load time and added a second copy of the weights without making runs
        // faster, and it defeats the memory-mapped external data of cached graphs.
        // TD_ORT_PREPACK=1 turns it back on.
        ...(process.env.TD_ORT_PREPACK === '1' || opts.prepack ? {} : { disable_prepacking: '1' }),
      },
    },
  };
}

export async function createSession(model: Uint8Array | string, opts: RuntimeOptions): Promise<Session> {
  const env = await providerEnvironmentFor(opts.executionProvider, opts.environment);
  const choice = chooseProvider(opts.executionProvider, env);
  let provider: string = choice.provider;
  let note = choice.note;
  const create = (p: string) =>
    typeof model === 'string'
      ? ort.InferenceSession.create(model, sessionOptions(p, opts.threads, opts))
      : ort.InferenceSession.create(model, sessionOptions(p, opts.threads, opts));
  let session: ort.InferenceSession;
  try {
    session = await create(provider);
  } catch (e) {
    if (provider === 'cpu') throw new EngineError('RUNTIME', `onnxruntime could not create a session: ${(e as Error).message}`);
    note = `The ${provider === 'webgpu' ? 'WebGPU' : provider.toUpperCase()} execution provider failed to start (${firstLine(e)}); running on CPU.`;
    provider = 'cpu';
    try {
      session = await create('cpu');
    } catch (e2) {
      throw new EngineError('RUNTIME', `onnxruntime could not create a session: ${(e2 as Error).message}`);
    }
  }
  const adapter = provider === 'webgpu' && env.webgpu?.adapter ? adapterLabel(env.webgpu.adapter) : null;
  return wrapSession(session, provider, note, adapter, opts);
}

/** The useful line of an onnxruntime error (its first line holds a source path and the check). */
function firstLine(e: unknown): string {
  const msg = (e as Error).message.split('\n')[0] ?? '';
  return msg.replace(/^\/onnxruntime_src\/\S+ \S+.*? was false\. /, '');
}

function copyInto(dst: Float32Array | BigInt64Array, src: Float32Array | BigInt64Array): void {
  if (dst instanceof Float32Array && src instanceof Float32Array) dst.set(src);
  else if (dst instanceof BigInt64Array && src instanceof BigInt64Array) dst.set(src);
  else throw new EngineError('RUNTIME', 'an output came back with another element type than its buffer');
}

function hostTensor(t: NamedTensor): ort.Tensor {
  return new ort.Tensor(t.data instanceof BigInt64Array ? 'int64' : 'float32', t.data, t.dims);
}

function feedTensor(t: AnyTensor): ort.Tensor {
  if (!isDeviceTensor(t)) return hostTensor(t);
  if (!(t instanceof OrtDeviceTensor) || !t.live) throw new EngineError('RUNTIME', 'a device tensor was fed after it was disposed');
  return t.tensor;
}

function wrapSession(
  session: ort.InferenceSession,
  provider: string,
  note: string | null,
  adapter: string | null,
  opts: RuntimeOptions,
): Session {
  liveSessions++;
  let released = false;
  let gather: Promise<Session> | null = null;
  const runOrt = async (feeds: Record<string, AnyTensor>, fetches: readonly string[], into?: Record<string, NamedTensor>) => {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(feeds)) ortFeeds[name] = feedTensor(t);
    let out: ort.InferenceSession.ReturnType;
    const started = performance.now();
    try {
      if (into) {
        const outs: Record<string, ort.Tensor | null> = {};
        for (const name of fetches) outs[name] = into[name] ? hostTensor(into[name]!) : null;
        out = await session.run(ortFeeds, outs);
      } else out = await session.run(ortFeeds, fetches);
    } catch (e) {
      throw new EngineError('RUNTIME', `onnxruntime failed while running the model: ${(e as Error).message}`);
    } finally {
      runtimeMs += performance.now() - started;
    }
    return outputs(out, fetches, into, provider === 'cpu');
  };
  return {
    provider,
    providerNote: note,
    adapter,
    fetchAll: provider === 'webgpu' && (opts.deviceOutputs?.length ?? 0) > 0,
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    async run(feeds, fetches, into) {
      const out = await runOrt(feeds, fetches, into);
      const host: Record<string, NamedTensor> = {};
      for (const [name, t] of Object.entries(out)) {
        if (isDeviceTensor(t)) {
          disposeAll(Object.values(out));
          throw new EngineError('RUNTIME', `"${name}" stays on the device: fetch it with runKeeping()`);
        }
        host[name] = t;
      }
      return host;
    },
    runKeeping: (feeds, fetches) => runOrt(feeds, fetches),
    async gatherBatch(tensors, from) {
      gather ??= createSession(gatherBatchGraph(), { ...opts, executionProvider: provider as ProviderRequest, deviceOutputs: ['y'] });
      const g = await gather;
      const idx: NamedTensor = { data: BigInt64Array.from(from, (b) => BigInt(b)), dims: [from.length] };
      const out: DeviceTensor[] = [];
      for (const x of tensors) {
        const y = (await g.runKeeping({ x, idx }, ['y'])).y!;
        if (!isDeviceTensor(y)) throw new EngineError('RUNTIME', 'the batch gather did not stay on the device');
        out.push(y);
      }
      return out;
    },
    async release() {
      if (released) return;
      released = true;
      liveSessions--;
      if (gather) await (await gather).release();
      if (process.env.TD_ORT_PROFILE) session.endProfiling();
      await session.release();
    },
  };
}

/** A run's fetched outputs: device tensors wrapped, host arrays checked (and put where `into` wanted them). */
function outputs(
  out: ort.InferenceSession.ReturnType,
  fetches: readonly string[],
  into: Record<string, NamedTensor> | undefined,
  filledInPlace: boolean,
): Record<string, AnyTensor> {
  const named: Record<string, AnyTensor> = {};
  for (const name of fetches) {
    const t = out[name] as ort.Tensor | undefined;
    if (!t) throw new EngineError('RUNTIME', `onnxruntime returned no "${name}"`);
    if (t.location === 'gpu-buffer') {
      named[name] = new OrtDeviceTensor(t, [...t.dims]);
      continue;
    }
    const data = t.data;
    if (!(data instanceof Float32Array) && !(data instanceof BigInt64Array)) {
      throw new EngineError('RUNTIME', `unexpected tensor type ${t.type} for "${name}"`);
    }
    // onnxruntime may hand back its own buffer instead of filling a preallocated one (an output
    // produced on another device than the one it was asked for): copy it where it was wanted.
    // On the CPU it always filled the preallocated one; what onnxruntime-node hands back then is
    // a copy of it (every fetched output is copied into a fresh JS buffer), so nothing to do.
    const want = into?.[name];
    if (want && !filledInPlace && (data.buffer !== want.data.buffer || data.byteOffset !== want.data.byteOffset)) copyInto(want.data, data);
    named[name] = want ?? { data, dims: [...t.dims] };
  }
  return named;
}

/** y = x[idx] along axis 0, any trailing shape (float32): beam reordering of a device KV cache. */
function gatherBatchGraph(): Uint8Array {
  const g = new GraphBuilder('gather-batch');
  const x = g.input('x', 'float32', ['batch', 'a', 'b', 'c']);
  const idx = g.input('idx', 'int64', ['n']);
  g.output('y', g.op('Gather', [x, idx], { axis: 0 }), 'float32', ['n', 'a', 'b', 'c']);
  return g.encode();
}
