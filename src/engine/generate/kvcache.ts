// The CPU's KV cache for generation, kept time-major in our own arrays (graph/forward.ts,
// timeMajorCache): per layer, keys and values [capacity, batch, n_kv, d_head], of which the
// first `length` positions are filled. A step feeds views of the filled positions
// (onnxruntime-node reads a fed array in place) and appends the step's new keys and values at
// the end, so a token costs no copy of the cache out of onnxruntime and no new array the size
// of the cache; only the capacity's occasional growth allocates. Before, each step fetched
// present.* — the whole cache again, copied by onnxruntime-node into fresh arrays — which at
// 512 positions of GPT-2-small was 38 MB and a third of the step (docs/performance.md).
import type { ModelSpec } from '../arch/spec';
import { hook } from '../graph/forward';
import type { AnyTensor, NamedTensor, Session } from '../runtime/ort';

/** A copy of a cache's filled positions (a kept prompt state: never written). */
export interface TimeMajorKvState {
  readonly length: number;
  readonly batch: number;
  readonly keys: readonly Float32Array[];
  readonly values: readonly Float32Array[];
}

export class TimeMajorKv {
  /** Positions filled. */
  length = 0;
  /** Sequences (beams) per position. */
  batch = 1;
  /**
   * Positions [0, uniform) hold the same keys and values in every sequence: the prompt, which
   * beam search copies into every beam. A reorder within the batch leaves them where they are
   * (at a 512-token prompt and 24 new tokens, a beam step's reorder then moves ≤ 24 positions, not ~530).
   */
  private uniform = 0;
  private keys: Float32Array[] = [];
  private values: Float32Array[] = [];

  constructor(
    private readonly layers: number,
    private readonly nKv: number,
    private readonly dHead: number,
  ) {}

  /** Floats per position: every sequence's keys (or values) of one layer. */
  private get width(): number {
    return this.batch * this.nKv * this.dHead;
  }

  /** Positions the arrays hold at the current batch. */
  get capacity(): number {
    return this.keys.length > 0 ? Math.floor(this.keys[0]!.length / this.width) : 0;
  }

  /** Bytes of the filled positions (keys and values, every layer). */
  get bytes(): number {
    return 2 * this.layers * this.length * this.width * 4;
  }

  /** Empties the cache for `batch` sequences (its arrays are kept for the next positions). */
  clear(batch: number): void {
    this.batch = batch;
    this.length = 0;
    this.uniform = 0;
  }

  /** Frees the arrays. */
  release(): void {
    this.keys = [];
    this.values = [];
    this.length = 0;
    this.uniform = 0;
  }

  /** Room for `n` more positions: a quarter more than needed (at least 32) when it grows. */
  private reserve(n: number): void {
    const positions = this.length + n;
    if (positions <= this.capacity) return;
    const size = (positions + Math.max(32, positions >> 2)) * this.width;
    const filled = this.length * this.width;
    const grow = (old: Float32Array | undefined) => {
      const a = new Float32Array(size);
      if (old && filled > 0) a.set(old.subarray(0, filled));
      return a;
    };
    this.keys = Array.from({ length: this.layers }, (_, L) => grow(this.keys[L]));
    this.values = Array.from({ length: this.layers }, (_, L) => grow(this.values[L]));
  }

  /**
   * Appends `seq` positions: a run's new keys and values per layer, head-major as the graph
   * gives them ([batch, n_kv, seq, d_head]).
   */
  append(newKeys: readonly Float32Array[], newValues: readonly Float32Array[], seq: number): void {
    const want = this.width * seq;
    for (const a of [...newKeys, ...newValues])
      if (a.length !== want) throw new Error(`KV cache: ${a.length} new floats for ${seq} positions of ${this.width}`);
    if (newKeys.length !== this.layers || newValues.length !== this.layers)
      throw new Error('KV cache: new keys or values missing for a layer');
    this.reserve(seq);
    for (let L = 0; L < this.layers; L++) {
      this.write(this.keys[L]!, newKeys[L]!, seq);
      this.write(this.values[L]!, newValues[L]!, seq);
    }
    this.length += seq;
    if (this.batch === 1) this.uniform = this.length; // one sequence is the same as itself
  }

  private write(dst: Float32Array, src: Float32Array, seq: number): void {
    const base = this.length * this.width;
    if (seq === 1) {
      dst.set(src, base); // [batch, n_kv, 1, d_head] is already [1, batch, n_kv, d_head]
      return;
    }
    const { nKv, dHead, width } = this;
    for (let head = 0; head < this.batch * nKv; head++) {
      const from = head * seq * dHead;
      for (let t = 0; t < seq; t++) dst.set(src.subarray(from + t * dHead, from + (t + 1) * dHead), base + t * width + head * dHead);
    }
  }

  /** The filled positions as the graph's past_time_major.* feeds (views: no copy). */
  feeds(): Record<string, NamedTensor> {
    const n = this.length * this.width;
    const dims = [this.length, this.batch, this.nKv, this.dHead];
    const out: Record<string, NamedTensor> = {};
    for (let L = 0; L < this.layers; L++) {
      out[hook.pastTimeMajorKey(L)] = { data: this.keys[L]?.subarray(0, n) ?? new Float32Array(0), dims };
      out[hook.pastTimeMajorValue(L)] = { data: this.values[L]?.subarray(0, n) ?? new Float32Array(0), dims };
    }
    return out;
  }

  /** Beams: new sequence i continues old sequence `from[i]` (in place when the batch keeps its size). */
  reorder(from: readonly number[]): void {
    const block = this.nKv * this.dHead;
    for (const b of from)
      if (!Number.isInteger(b) || b < 0 || b >= this.batch) throw new Error(`KV cache: no sequence ${b} of ${this.batch}`);
    // when every new sequence continues the same old one, all their positions are the same
    const uniform = from.every((b) => b === from[0]) ? this.length : this.uniform;
    if (from.length === this.batch) {
      const moved = from.flatMap((b, i) => (b !== i ? [i] : []));
      if (moved.length === 0) return;
      // a source that is itself overwritten is put aside first (only those: beams mostly keep their rows)
      const aside = [...new Set(moved.map((i) => from[i]!))].filter((b) => from[b] !== b);
      const slot = new Map(aside.map((b, j) => [b, j]));
      const tmp = new Float32Array(aside.length * block);
      for (const a of [...this.keys, ...this.values])
        for (let t = this.uniform; t < this.length; t++) {
          const at = t * this.width;
          aside.forEach((b, j) => tmp.set(a.subarray(at + b * block, at + (b + 1) * block), j * block));
          for (const i of moved) {
            const b = from[i]!;
            const j = slot.get(b);
            a.set(
              j === undefined ? a.subarray(at + b * block, at + (b + 1) * block) : tmp.subarray(j * block, (j + 1) * block),
              at + i * block,
            );
          }
        }
      this.uniform = uniform;
      return;
    }
    const oldWidth = this.width;
    const length = this.length;
    const regroup = (a: Float32Array) => {
      const out = new Float32Array((length + 32) * from.length * block);
      for (let t = 0; t < length; t++)
        from.forEach((b, i) =>
          out.set(a.subarray(t * oldWidth + b * block, t * oldWidth + (b + 1) * block), (t * from.length + i) * block),
        );
      return out;
    };
    this.keys = this.keys.map(regroup);
    this.values = this.values.map(regroup);
    this.batch = from.length;
    this.uniform = uniform;
  }

  /** A copy of the filled positions. */
  snapshot(): TimeMajorKvState {
    const n = this.length * this.width;
    return {
      length: this.length,
      batch: this.batch,
      keys: this.keys.map((a) => a.slice(0, n)),
      values: this.values.map((a) => a.slice(0, n)),
    };
  }

  /** The cache as a snapshot left it (copied: the snapshot stays as it is). */
  restore(state: TimeMajorKvState): void {
    this.release();
    this.batch = state.batch;
    this.reserve(state.length);
    const n = state.length * this.width;
    // an empty state has no arrays to fill (reserve(0) allocates none)
    for (let L = 0; L < this.layers && n > 0; L++) {
      this.keys[L]!.set(state.keys[L]!.subarray(0, n));
      this.values[L]!.set(state.values[L]!.subarray(0, n));
    }
    this.length = state.length;
    this.uniform = state.batch === 1 ? state.length : 0;
  }
}

/** The session's graph takes the time-major cache (a CPU graph built with timeMajorCache). */
export function takesTimeMajorCache(session: Session): boolean {
  return session.provider === 'cpu' && session.inputNames.includes(hook.pastTimeMajorKey(0));
}

/**
 * A forward session whose callers need not know the time-major cache inputs: a run that does
 * not feed them gets them empty ([0, batch, n_kv, d_head], the batch of its input_ids).
 */
export function withCacheDefaults(session: Session, spec: ModelSpec): Session {
  if (!session.inputNames.includes(hook.pastTimeMajorKey(0))) return session;
  const empties = new Map<number, Record<string, NamedTensor>>();
  const complete = <T extends AnyTensor>(feeds: Record<string, T>): Record<string, T | NamedTensor> => {
    if (hook.pastTimeMajorKey(0) in feeds) return feeds;
    const batch = feeds.input_ids?.dims[0] ?? 1;
    let empty = empties.get(batch);
    if (!empty) {
      empty = {};
      const dims = [0, batch, spec.nKvHeads, spec.headDim];
      for (let L = 0; L < spec.nLayers; L++) {
        empty[hook.pastTimeMajorKey(L)] = { data: new Float32Array(0), dims };
        empty[hook.pastTimeMajorValue(L)] = { data: new Float32Array(0), dims };
      }
      empties.set(batch, empty);
    }
    return { ...empty, ...feeds };
  };
  return {
    ...session,
    run: (feeds, fetches, into) => session.run(complete(feeds), fetches, into),
    runKeeping: (feeds, fetches) => session.runKeeping(complete(feeds), fetches),
  };
}
