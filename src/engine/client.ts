// EngineClient: the extension host's handle on the engine worker process. Requests are
// matched to replies by id; a crashed worker fails its pending requests with a clear
// error and is restarted (with the last model reloaded) on the next request.
import { fork, type ChildProcess } from 'node:child_process';

/**
 * V8's young generation capped at 2 MB semi-spaces (default 16 MB): the worker's JavaScript
 * allocates little besides typed arrays, which live outside that heap, so a smaller nursery
 * costs nothing measurable and the process keeps less idle heap. Measured (npm run bench's
 * child, GPT-2-small, 2 threads, 2-3 runs each): peak RSS 913-925 → 834-889 MB at 512 tokens,
 * 1111-1231 → 1072-1081 MB at 1024 (a measure that varies by up to 190 MB from run to run:
 * README, Performance); forward, lens and metrics times within their run-to-run noise.
 */
export const SEMI_SPACE_FLAG = '--max-semi-space-size=2';

/**
 * GLIBC_TUNABLES for the engine process: glibc (2.35+) asks for transparent huge pages on the
 * memory it maps (`glibc.malloc.hugetlb=1`), where the kernel leaves THP to madvise (Debian,
 * Ubuntu defaults). The engine's buffers are tens to hundreds of MB and every first touch of a
 * 4 KB page is a page fault: measured on this project's 2-core VM, touching 256 MB took 1.4-1.5 s
 * in 4 KB pages and 0.8 s with the tunable. Older glibc and other C libraries ignore it; a value
 * the user set for hugetlb is kept.
 */
export function withHugePages(current: string | undefined): string {
  if (current && /(^|:)glibc\.malloc\.hugetlb=/.test(current)) return current;
  return current ? `${current}:glibc.malloc.hugetlb=1` : 'glibc.malloc.hugetlb=1';
}
import { EngineError, deserializeError } from './errors';
import { isWorkerReply, type WorkerReply, type WorkerRequest, type WorkerStats } from './ipc';
import type { AnalyzeRequest } from './analyze';
import type { CacheQuery, CacheQueryResults, EngineLoadRequest } from './engine';
import type { LoadProgress } from './model';
import type { Analysis, ModelInfo } from '../shared/analysis';
import type { Completion, GenerateRequest, GenStep } from '../shared/generation';

interface Pending {
  resolve: (r: WorkerReply) => void;
  reject: (e: Error) => void;
  /** Streamed partial results (generation steps). */
  onStep?: (step: GenStep, index: number) => void;
  /** What a long model load is doing. */
  onProgress?: LoadProgress;
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

export interface EngineClientOptions {
  workerPath: string;
  /** Extra environment for the worker. */
  env?: NodeJS.ProcessEnv;
  log?: (line: string) => void;
}

export class EngineClient {
  private child: ChildProcess | null = null;
  private ready: Promise<void> | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private lastLoad: EngineLoadRequest | null = null;
  private loadedKey = '';
  private disposed = false;
  /** Called when the worker dies unexpectedly. */
  onCrash: ((why: string) => void) | null = null;

  constructor(private readonly opts: EngineClientOptions) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  private start(): Promise<void> {
    if (this.ready) return this.ready;
    const child = fork(this.opts.workerPath, [], {
      serialization: 'advanced',
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      env: { ...process.env, GLIBC_TUNABLES: withHugePages(process.env.GLIBC_TUNABLES), ...this.opts.env, ELECTRON_RUN_AS_NODE: '1' },
      execArgv: ['--max-old-space-size=8192', '--expose-gc', SEMI_SPACE_FLAG],
    });
    this.child = child;
    this.loadedKey = '';
    // A send to a worker that has just died fails with EPIPE as an 'error' event: without a
    // listener that would be an uncaught exception in the host; the 'exit' handler below fails the runs.
    child.on('error', (e) => this.opts.log?.(`[engine] ${e.message}`));
    child.stdout?.on('data', (d: Buffer) => this.opts.log?.(`[engine] ${d.toString().trimEnd()}`));
    child.stderr?.on('data', (d: Buffer) => this.opts.log?.(`[engine] ${d.toString().trimEnd()}`));
    this.ready = new Promise<void>((resolve, reject) => {
      const onEarlyExit = (code: number | null, signal: string | null) =>
        reject(new EngineError('ENGINE_CRASHED', `The engine process failed to start (exit ${code ?? signal}).`));
      child.once('exit', onEarlyExit);
      child.on('message', (raw: unknown) => {
        if (!isWorkerReply(raw)) {
          this.opts.log?.('dropped a malformed message from the engine');
          return;
        }
        if (raw.kind === 'ready') {
          child.off('exit', onEarlyExit);
          resolve();
          return;
        }
        const p = this.pending.get(raw.id);
        if (!p) return;
        if (raw.kind === 'genStep') {
          p.onStep?.(raw.step, raw.index);
          return;
        }
        if (raw.kind === 'loadProgress') {
          p.onProgress?.(raw.message, raw.fraction);
          return;
        }
        this.pending.delete(raw.id);
        if (raw.kind === 'error') p.reject(deserializeError(raw.error));
        else p.resolve(raw);
      });
    });
    child.on('exit', (code, signal) => this.lost(child, signal ?? `exit code ${code}`));
    return this.ready;
  }

  /**
   * The worker died (its exit, or a request it could no longer read — EPIPE can come before the
   * exit is reported): every run waiting on it fails, and the next request starts a new one.
   */
  private lost(child: ChildProcess, cause: string): void {
    if (this.child !== child) return;
    this.child = null;
    this.ready = null;
    this.loadedKey = '';
    if (child.exitCode === null && child.signalCode === null) child.kill();
    const why = `The engine process stopped unexpectedly (${cause}).`;
    for (const p of this.pending.values()) p.reject(new EngineError('ENGINE_CRASHED', `${why} It will restart on the next run.`));
    this.pending.clear();
    if (!this.disposed) {
      this.opts.log?.(why);
      this.onCrash?.(why);
    }
  }

  /**
   * Sends a request and waits for its reply; streamed messages (generation steps, load progress)
   * go to their callbacks, and aborting `signal` sends the worker a cancel for this request.
   */
  private async request(
    msg: DistributiveOmit<WorkerRequest, 'id'>,
    streams: Pick<Pending, 'onStep' | 'onProgress'> & { signal?: AbortSignal } = {},
  ): Promise<WorkerReply> {
    if (this.disposed) throw new EngineError('BAD_REQUEST', 'The engine has been shut down.');
    const id = this.nextId++;
    const { signal, onStep, onProgress } = streams;
    const onAbort = () => this.child?.send({ kind: 'cancel', id } satisfies WorkerRequest, () => undefined);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await this.start();
      const child = this.child;
      if (!child) throw new EngineError('ENGINE_CRASHED', 'The engine process is not running.');
      return await new Promise<WorkerReply>((resolve, reject) => {
        this.pending.set(id, { resolve, reject, onStep, onProgress });
        child.send({ ...msg, id } as WorkerRequest, (err) => {
          if (err) this.lost(child, err.message);
        });
      });
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Loads a model; `onProgress` hears what a long load (a first conversion) is doing, and
   * aborting `signal` stops it (the load then rejects with CANCELLED).
   */
  async load(req: EngineLoadRequest, onProgress?: LoadProgress, signal?: AbortSignal): Promise<{ info: ModelInfo; loadMs: number }> {
    this.lastLoad = req;
    if (signal?.aborted) throw new EngineError('CANCELLED', 'The model load was cancelled.');
    const reply = await this.request({ kind: 'load', request: req }, { onProgress, signal });
    if (reply.kind !== 'loaded') throw new EngineError('RUNTIME', `unexpected reply ${reply.kind}`);
    this.loadedKey = JSON.stringify(req);
    return { info: reply.info, loadMs: reply.loadMs };
  }

  /** Ensures the last requested model is loaded (after a crash/restart). */
  private async ensureLoaded(): Promise<void> {
    if (!this.lastLoad) throw new EngineError('BAD_REQUEST', 'No model has been selected.');
    if (this.child && this.loadedKey === JSON.stringify(this.lastLoad)) return;
    await this.load(this.lastLoad);
  }

  /** Runs an analysis; with returnCache false the residual streams stay in the worker. */
  async analyze(req: AnalyzeRequest, signal?: AbortSignal, returnCache = true, runId = 0): Promise<Analysis> {
    await this.ensureLoaded();
    if (signal?.aborted) throw new EngineError('CANCELLED', 'The analysis was cancelled.');
    const reply = await this.request({ kind: 'analyze', request: req, returnCache, runId }, { signal });
    if (reply.kind !== 'analysis') throw new EngineError('RUNTIME', `unexpected reply ${reply.kind}`);
    return reply.analysis;
  }

  /** Generates a completion, streaming each step to onStep; cancellable. */
  async generate(req: GenerateRequest, onStep?: (step: GenStep, index: number) => void, signal?: AbortSignal): Promise<Completion> {
    await this.ensureLoaded();
    if (signal?.aborted) throw new EngineError('CANCELLED', 'The generation was cancelled.');
    const reply = await this.request({ kind: 'generate', request: req }, { onStep, signal });
    if (reply.kind !== 'completion') throw new EngineError('RUNTIME', `unexpected reply ${reply.kind}`);
    return reply.completion;
  }

  /** A question about kept analyses; `signal` cancels a long one (activation patching). */
  async query<Q extends CacheQuery>(q: Q, signal?: AbortSignal): Promise<CacheQueryResults[Q['type']]> {
    const reply = await this.request({ kind: 'query', query: q }, { signal });
    if (reply.kind !== 'queryResult') throw new EngineError('RUNTIME', `unexpected reply ${reply.kind}`);
    return reply.value as CacheQueryResults[Q['type']];
  }

  /** Lets the engine free every analysis except these runs (and newer ones). */
  async retain(runIds: number[]): Promise<void> {
    const reply = await this.request({ kind: 'retain', runIds });
    if (reply.kind !== 'done') throw new EngineError('RUNTIME', `unexpected reply ${reply.kind}`);
  }

  async stats(): Promise<WorkerStats> {
    const reply = await this.request({ kind: 'stats' });
    if (reply.kind !== 'stats') throw new EngineError('RUNTIME', `unexpected reply ${reply.kind}`);
    return reply.stats;
  }

  /** Kills the worker (tests of crash recovery; a stuck run). */
  kill(): void {
    this.child?.kill('SIGKILL');
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    const child = this.child;
    if (!child) return;
    await Promise.race([
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.send({ kind: 'shutdown', id: 0 } satisfies WorkerRequest, () => undefined);
      }),
      new Promise<void>((resolve) => setTimeout(resolve, 2000)),
    ]);
    if (child.exitCode === null) child.kill('SIGKILL');
    this.child = null;
  }
}
