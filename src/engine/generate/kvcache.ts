// The CPU's KV cache for generation, kept in our own arrays (graph/forward.ts, stepCache): per
// layer, keys and values [batch, n_kv, capacity, d_head], of which the first `length` positions
// of every head are filled. A step feeds the arrays whole with their length (onnxruntime-node
// reads a fed array in place, and the graph reads the cache where it lies, masking the unfilled
// capacity) and writes the step's new keys and values after the filled positions, so a token
// costs no copy of the cache: none out of onnxruntime, none inside the graph. Only the
// capacity's growth (every GROW positions) and beam search's reorders copy.
//
// Before: each step fetched present.* (the whole cache again, copied by onnxruntime-node into
// fresh arrays: at 512 positions of GPT-2-small 38 MB and a third of the step); then a
// time-major cache was fed as a view and the graph copied it twice per layer and step into one
// head-major key tensor with the new positions (a third of a step at 1000 positions).
// docs/performance.md.
import type { ModelSpec } from '../arch/spec';
import { hook } from '../graph/forward';
import { isDeviceTensor, type AnyTensor, type NamedTensor, type Session } from '../runtime/ort';

/** Positions of room added when the cache grows: each step reads (masked) up to this many unfilled ones. */
export const GROW = 64;

/** A copy of a cache's filled positions, compact: per layer [batch, n_kv, length, d_head] (a kept prompt state: never written). */
export interface StepKvState {
  readonly length: number;
  readonly batch: number;
  readonly keys: readonly Float32Array[];
  readonly values: readonly Float32Array[];
}

export class StepKvCache {
  /** Positions filled. */
  length = 0;
  /** Sequences (beams). */
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

  /** Heads of one layer: every sequence's. */
  private get heads(): number {
    return this.batch * this.nKv;
  }

  /** Positions each head has room for. */
  get capacity(): number {
    return this.keys.length > 0 ? Math.floor(this.keys[0]!.length / (this.heads * this.dHead)) : 0;
  }

  /** Bytes of the filled positions (keys and values, every layer). */
  get bytes(): number {
    return 2 * this.layers * this.length * this.heads * this.dHead * 4;
  }

  /**
   * Empties the cache for `batch` sequences. Its arrays go too: every step reads the whole
   * capacity (masked past the filled positions), so a generation must not inherit the room of a
   * longer or wider one before it; the next append allocates what it needs, zeroed (the graph
   * multiplies the unfilled capacity by probabilities of exactly 0, which keeps it out of every
   * sum only while it holds finite numbers).
   */
  clear(batch: number): void {
    this.release();
    this.batch = batch;
  }

  /** Frees the arrays. */
  release(): void {
    this.keys = [];
    this.values = [];
    this.length = 0;
    this.uniform = 0;
  }

  /**
   * Copies `positions` positions of heads: for each pair [h, k], head h of `src` from position
   * `src.at` to head k of `dst` from position `dst.at` (each laid out with room for `cap`
   * positions per head).
   */
  private copyHeads(
    src: { a: Float32Array; cap: number; at: number },
    dst: { a: Float32Array; cap: number; at: number },
    pairs: readonly (readonly [number, number])[],
    positions: number,
  ): void {
    const d = this.dHead;
    for (const [h, k] of pairs) {
      const from = (h * src.cap + src.at) * d;
      dst.a.set(src.a.subarray(from, from + positions * d), (k * dst.cap + dst.at) * d);
    }
  }

  /** [h, h] for every head of the batch. */
  private same(): [number, number][] {
    return Array.from({ length: this.heads }, (_, h) => [h, h]);
  }

  /** Room for `n` more positions: GROW more than needed when it grows. */
  private reserve(n: number): void {
    const positions = this.length + n;
    const old = this.capacity;
    if (positions <= old) return;
    const cap = positions + GROW;
    const grow = (a: Float32Array | undefined) => {
      const out = new Float32Array(this.heads * cap * this.dHead);
      if (a && this.length > 0) this.copyHeads({ a, cap: old, at: 0 }, { a: out, cap, at: 0 }, this.same(), this.length);
      return out;
    };
    this.keys = Array.from({ length: this.layers }, (_, L) => grow(this.keys[L]));
    this.values = Array.from({ length: this.layers }, (_, L) => grow(this.values[L]));
  }

  /**
   * Appends `seq` positions: a run's new keys and values per layer, head-major as the graph
   * gives them ([batch, n_kv, seq, d_head]).
   */
  append(newKeys: readonly Float32Array[], newValues: readonly Float32Array[], seq: number): void {
    const want = this.heads * seq * this.dHead;
    for (const a of [...newKeys, ...newValues])
      if (a.length !== want) throw new Error(`KV cache: ${a.length} new floats for ${seq} positions of ${this.heads} heads`);
    if (newKeys.length !== this.layers || newValues.length !== this.layers)
      throw new Error('KV cache: new keys or values missing for a layer');
    this.reserve(seq);
    const cap = this.capacity;
    for (let L = 0; L < this.layers; L++)
      for (const [src, dst] of [
        [newKeys[L]!, this.keys[L]!],
        [newValues[L]!, this.values[L]!],
      ] as const)
        // the run's [batch, n_kv, seq, d_head] is a cache of `seq` positions per head
        this.copyHeads({ a: src, cap: seq, at: 0 }, { a: dst, cap, at: this.length }, this.same(), seq);
    this.length += seq;
    if (this.batch === 1) this.uniform = this.length; // one sequence is the same as itself
  }

  /** The cache as the graph's past_cache.* feeds: the arrays whole (no copy) and the filled length. */
  feeds(): Record<string, NamedTensor> {
    const dims = [this.batch, this.nKv, this.capacity, this.dHead];
    const out: Record<string, NamedTensor> = { [hook.pastCacheLength]: { data: BigInt64Array.of(BigInt(this.length)), dims: [1] } };
    for (let L = 0; L < this.layers; L++) {
      out[hook.pastCacheKey(L)] = { data: this.keys[L] ?? new Float32Array(0), dims };
      out[hook.pastCacheValue(L)] = { data: this.values[L] ?? new Float32Array(0), dims };
    }
    return out;
  }

  /** Beams: new sequence i continues old sequence `from[i]` (in place when the batch keeps its size). */
  reorder(from: readonly number[]): void {
    for (const b of from)
      if (!Number.isInteger(b) || b < 0 || b >= this.batch) throw new Error(`KV cache: no sequence ${b} of ${this.batch}`);
    // when every new sequence continues the same old one, all their positions are the same
    const uniform = from.every((b) => b === from[0]) ? this.length : this.uniform;
    const nKv = this.nKv;
    // the heads of sequence b are b·n_kv … b·n_kv + n_kv − 1
    const seqPairs = (b: number, i: number) => Array.from({ length: nKv }, (_, k) => [b * nKv + k, i * nKv + k] as const);
    if (from.length === this.batch) {
      const moved = from.flatMap((b, i) => (b !== i ? [i] : []));
      if (moved.length === 0) return;
      // a source that is itself overwritten is put aside first (only those: beams mostly keep their rows)
      const aside = [...new Set(moved.map((i) => from[i]!))].filter((b) => from[b] !== b);
      const slot = new Map(aside.map((b, j) => [b, j]));
      const [at, n, cap] = [this.uniform, this.length - this.uniform, this.capacity];
      const tmp = new Float32Array(aside.length * nKv * n * this.dHead); // positions [at, length) of each
      for (const a of [...this.keys, ...this.values]) {
        const cache = { a, cap, at };
        const put = { a: tmp, cap: n, at: 0 };
        this.copyHeads(
          cache,
          put,
          aside.flatMap((b, j) => seqPairs(b, j)),
          n,
        );
        for (const i of moved) {
          const j = slot.get(from[i]!);
          if (j === undefined) this.copyHeads(cache, cache, seqPairs(from[i]!, i), n);
          else this.copyHeads(put, cache, seqPairs(j, i), n);
        }
      }
      this.uniform = uniform;
      return;
    }
    const [old, length] = [this.capacity, this.length];
    const cap = length + GROW;
    const regroup = (a: Float32Array) => {
      const out = new Float32Array(from.length * nKv * cap * this.dHead);
      this.copyHeads({ a, cap: old, at: 0 }, { a: out, cap, at: 0 }, from.flatMap(seqPairs), length);
      return out;
    };
    this.keys = this.keys.map(regroup);
    this.values = this.values.map(regroup);
    this.batch = from.length;
    this.uniform = uniform;
  }

  /** A copy of the filled positions. */
  snapshot(): StepKvState {
    const [cap, n] = [this.capacity, this.length];
    const compact = (a: Float32Array) => {
      const out = new Float32Array(this.heads * n * this.dHead);
      this.copyHeads({ a, cap, at: 0 }, { a: out, cap: n, at: 0 }, this.same(), n);
      return out;
    };
    return { length: n, batch: this.batch, keys: this.keys.map(compact), values: this.values.map(compact) };
  }

  /** The cache as a snapshot left it (copied: the snapshot stays as it is). */
  restore(state: StepKvState): void {
    this.release();
    this.batch = state.batch;
    this.reserve(state.length);
    const [cap, n] = [this.capacity, state.length];
    // an empty state has no arrays to fill (reserve(0) allocates none)
    for (let L = 0; L < this.layers && n > 0; L++)
      for (const [src, dst] of [
        [state.keys[L]!, this.keys[L]!],
        [state.values[L]!, this.values[L]!],
      ] as const)
        this.copyHeads({ a: src, cap: n, at: 0 }, { a: dst, cap, at: 0 }, this.same(), n);
    this.length = n;
    this.uniform = state.batch === 1 ? n : 0;
  }
}

/** The session's graph takes past_cache.* (a CPU graph built with stepCache). */
export function takesStepCache(session: Session): boolean {
  return session.provider === 'cpu' && session.inputNames.includes(hook.pastCacheKey(0));
}

/**
 * A forward session whose callers need not know the step cache's inputs: a run that does not
 * feed them gets them empty ([batch, n_kv, 0, d_head], the batch of its input_ids; length 0).
 */
export function withCacheDefaults(session: Session, spec: ModelSpec): Session {
  if (!session.inputNames.includes(hook.pastCacheKey(0))) return session;
  const empties = new Map<number, Record<string, NamedTensor>>();
  const complete = <T extends AnyTensor>(feeds: Record<string, T>): Record<string, T | NamedTensor> => {
    if (hook.pastCacheKey(0) in feeds) {
      // a step attends to the cache and its new positions only (forward.ts, stepAttention)
      const length = feeds[hook.pastCacheLength];
      const cached = length !== undefined && !isDeviceTensor(length) && length.data[0] !== 0n;
      if (cached && (feeds[hook.pastKey(0)]?.dims[2] ?? 0) > 0) throw new Error('past_key_values.* and a filled past_cache.* fed together');
      return feeds;
    }
    const batch = feeds.input_ids?.dims[0] ?? 1;
    let empty = empties.get(batch);
    if (!empty) {
      empty = {};
      const dims = [batch, spec.nKvHeads, 0, spec.headDim];
      empty[hook.pastCacheLength] = { data: BigInt64Array.of(0n), dims: [1] };
      for (let L = 0; L < spec.nLayers; L++) {
        empty[hook.pastCacheKey(L)] = { data: new Float32Array(0), dims };
        empty[hook.pastCacheValue(L)] = { data: new Float32Array(0), dims };
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
