// The host's side of the host → webview handshake, without VS Code: what the panel has been
// told, kept so that no message can be lost to a webview that is not listening.
//
// A webview document listens only once its script has run and posted `ready`. It can be
// replaced at any time (the panel is created or revived, its webview reloads, the panel is
// closed and opened again), and a message posted to a document that is not listening is gone.
// So the outbox keeps, in the order they were posted, the messages that make up what the
// panel shows, minus those a later message makes irrelevant (an older run state, an analysis
// that was replaced, the streamed steps of a completion that has finished), and on every
// `ready` replays them to the new document before anything else. A document that is ready gets
// each message as it is posted. Replaying the kept messages leaves a fresh webview showing the
// same analysis, run state, settings, model, completions and prompt diff as one that heard
// every message live (test/unit/outbox.test.ts checks this with the webview's own reducer).
import type { HostToWebview } from './protocol';

type Message = Exclude<HostToWebview, { type: 'response' }>;
type Response = Extract<HostToWebview, { type: 'response' }>;

/** Message types where only the newest matters: each replaces the view's whole value. */
const LATEST_ONLY = new Set<HostToWebview['type']>(['runState', 'settings', 'modelChanged', 'analysis', 'promptDiff']);

const COMPLETION = new Set<HostToWebview['type']>(['completionBatch', 'completionStep', 'completionDone', 'completionError']);

export type OutboxPhase = 'closed' | 'loading' | 'ready';

export class Outbox {
  /** Kept messages by sequence number (a Map iterates in insertion = posting order). */
  private readonly kept = new Map<number, Message>();
  private seq = 0;
  /** The kept message of each latest-only type. */
  private readonly latest = new Map<HostToWebview['type'], number>();
  /** The kept selected position of each run (the webview applies one only to the analysis it shows). */
  private readonly positions = new Map<number, number>();
  /** Kept streamed steps by completion (`batchId.index`), dropped when it finishes. */
  private readonly steps = new Map<string, number[]>();
  private phase: OutboxPhase = 'closed';

  /** `deliver` hands one message to the current webview document. */
  constructor(private readonly deliver: (m: HostToWebview) => void) {}

  get state(): OutboxPhase {
    return this.phase;
  }

  /** How many messages a new webview document would be sent. */
  get size(): number {
    return this.kept.size;
  }

  /** A new webview document is loading (panel created or revived): hold messages until it is ready. */
  loading(): void {
    this.phase = 'loading';
  }

  /** The panel is gone. What it showed is kept for the next one. */
  closed(): void {
    this.phase = 'closed';
  }

  /**
   * The document listening now said `ready` (the first time, or again after its webview was
   * reloaded): it starts empty, so it gets every kept message, in order.
   */
  ready(): void {
    this.phase = 'ready';
    for (const m of [...this.kept.values()]) this.deliver(m);
  }

  /** Keeps `m` (minus what it makes irrelevant) and delivers it when a document is listening. */
  post(m: HostToWebview): void {
    if (m.type === 'response') {
      // a response answers a request of the listening document; a new document never asked
      if (this.phase === 'ready') this.deliver(m satisfies Response);
      return;
    }
    this.keep(m);
    if (this.phase === 'ready') this.deliver(m);
  }

  private keep(m: Message): void {
    const id = ++this.seq;
    if (LATEST_ONLY.has(m.type)) {
      this.drop(this.latest.get(m.type));
      this.latest.set(m.type, id);
      if (m.type === 'analysis') {
        // positions in the analyses this one replaces can never apply again
        for (const [runId, k] of this.positions) {
          if (runId === m.payload.runId) continue;
          this.drop(k);
          this.positions.delete(runId);
        }
      }
    } else if (m.type === 'selectPosition') {
      this.drop(this.positions.get(m.runId));
      this.positions.set(m.runId, id);
    } else if (m.type === 'completionBatch' && !m.batch.forkOf) {
      // a new comparison replaces every column and fork of the previous ones
      for (const [k, old] of this.kept) if (COMPLETION.has(old.type)) this.kept.delete(k);
      this.steps.clear();
    } else if (m.type === 'completionStep') {
      const key = `${m.batchId}.${m.index}`;
      const ids = this.steps.get(key);
      if (ids) ids.push(id);
      else this.steps.set(key, [id]);
    } else if (m.type === 'completionDone') {
      // the finished completion carries all of its steps
      const key = `${m.batchId}.${m.index}`;
      for (const k of this.steps.get(key) ?? []) this.kept.delete(k);
      this.steps.delete(key);
    }
    this.kept.set(id, m);
  }

  private drop(id: number | undefined): void {
    if (id !== undefined) this.kept.delete(id);
  }
}
