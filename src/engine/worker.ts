// Entry point of the engine worker process (forked by EngineClient). It owns the
// onnxruntime sessions, so a crash or a runaway allocation never takes the editor down.
import { Engine } from './engine';
import { serializeError } from './errors';
import { isWorkerRequest, type WorkerReply, type WorkerRequest } from './ipc';
import { liveSessionCount } from './runtime/ort';

// The worker sends copies of each analysis to the host, so it may recycle the buffers of
// analyses it no longer keeps.
const engine = new Engine({ recycleBuffers: true });
const running = new Map<number, AbortController>();
let queue: Promise<void> = Promise.resolve();

function send(msg: WorkerReply): void {
  process.send?.(msg);
}

/** Runs a request that a `cancel` message can stop (its controller was made when it arrived). */
async function cancellable(id: number, work: (signal: AbortSignal) => Promise<void>): Promise<void> {
  const ctl = running.get(id) ?? new AbortController();
  try {
    await work(ctl.signal);
  } finally {
    running.delete(id);
  }
}

async function handle(msg: WorkerRequest): Promise<void> {
  switch (msg.kind) {
    case 'load':
      return cancellable(msg.id, async (signal) => {
        const info = await engine.load(msg.request, {
          onProgress: (message, fraction) => send({ kind: 'loadProgress', id: msg.id, message, fraction }),
          signal,
        });
        send({ kind: 'loaded', id: msg.id, info, loadMs: engine.current?.loadMs ?? 0 });
      });
    case 'analyze':
      return cancellable(msg.id, async (signal) => {
        // resid_mid only travels with the cache: kept for a caller that asked for it (analyze.ts)
        const analysis = await engine.analyze({ ...msg.request, keepResidMid: msg.returnCache }, signal, msg.runId);
        // The host rarely needs the activation cache itself: the engine keeps it for queries.
        const empty = new Float32Array(0);
        const cache = msg.returnCache ? analysis.cache : { ...analysis.cache, resid: empty, residMid: empty, patterns: null };
        send({ kind: 'analysis', id: msg.id, analysis: { ...analysis, cache } });
      });
    case 'generate':
      return cancellable(msg.id, async (signal) => {
        const completion = await engine.generate(msg.request, (step, index) => send({ kind: 'genStep', id: msg.id, step, index }), signal);
        send({ kind: 'completion', id: msg.id, completion });
      });
    case 'query':
      return cancellable(msg.id, async (signal) => {
        send({ kind: 'queryResult', id: msg.id, value: await engine.query(msg.query, signal) });
      });
    case 'stats': {
      // Measure after a full collection when available, so soak runs see live memory only.
      (globalThis as { gc?: () => void }).gc?.();
      const mem = process.memoryUsage();
      send({
        kind: 'stats',
        id: msg.id,
        stats: { rssBytes: mem.rss, heapUsedBytes: mem.heapUsed, liveSessions: liveSessionCount(), model: engine.current?.info ?? null },
      });
      return;
    }
    case 'retain':
      engine.retain(msg.runIds);
      send({ kind: 'done', id: msg.id });
      return;
    case 'shutdown':
      await engine.dispose();
      send({ kind: 'done', id: msg.id });
      process.exit(0);
    // eslint-disable-next-line no-fallthrough
    case 'cancel':
      return;
  }
}

process.on('message', (raw: unknown) => {
  if (!isWorkerRequest(raw)) {
    process.stderr.write(`engine worker: dropped malformed message\n`);
    return;
  }
  const msg = raw;
  if (msg.kind === 'cancel') {
    // Cancels a running or still-queued analysis, generation or model load.
    running.get(msg.id)?.abort();
    return;
  }
  if (msg.kind === 'analyze' || msg.kind === 'generate' || msg.kind === 'load' || msg.kind === 'query')
    running.set(msg.id, running.get(msg.id) ?? new AbortController());
  queue = queue.then(() =>
    handle(msg).catch((e: unknown) => {
      running.delete(msg.id);
      send({ kind: 'error', id: msg.id, error: serializeError(e) });
    }),
  );
});

process.on('disconnect', () => process.exit(0));
send({ kind: 'ready' });
