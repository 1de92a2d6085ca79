// Logits processors, samplers and stopping criteria: small composable pieces applied in
// order (the transformers.js `generation/` idea, complete). Processors work in place on a
// Float32Array of logits [d_vocab]; -Infinity removes a token.

/** The sequence so far: prompt + generated ids. */
export interface SeqContext {
  ids: readonly number[];
  promptLength: number;
}

export interface LogitsProcessor {
  readonly name: string;
  apply(logits: Float32Array, ctx: SeqContext): void;
}

export function temperature(t: number): LogitsProcessor {
  if (!(t > 0) || !Number.isFinite(t)) throw new RangeError(`temperature must be > 0, got ${t}`);
  return {
    name: `temperature(${t})`,
    apply(logits) {
      if (t === 1) return;
      for (let i = 0; i < logits.length; i++) logits[i] = logits[i]! / t;
    },
  };
}

/** Index bits of argsortDesc's packed keys: vocabularies up to 2^18 = 262,144 tokens (Gemma 3's). */
const INDEX_BITS = 18;

/**
 * Indices sorted by descending logit (stable for ties: lower id first). Each entry is packed into
 * one integer-valued double — the logit's bits turned into an unsigned key that sorts descending
 * (−0 as +0, so the two tie as the comparison does), times 2^18, plus the index — and sorted by
 * the engine's native numeric sort: the same order as comparing logits then indices, without a
 * JavaScript comparator call per comparison (50 k tokens: ~5× faster).
 */
export function argsortDesc(logits: Float32Array): Int32Array {
  const n = logits.length;
  if (n > 2 ** INDEX_BITS) {
    const idx = new Int32Array(n);
    for (let i = 0; i < n; i++) idx[i] = i;
    idx.sort((a, b) => logits[b]! - logits[a]! || a - b);
    return idx;
  }
  const keys = new Float64Array(n);
  for (let i = 0; i < n; i++) keys[i] = packedKey(ascendingKey(logits[i]!), i);
  return sortedIndices(keys);
}

const keyFloat = new Float32Array(1);
const keyBits = new Uint32Array(keyFloat.buffer);

/** A float32's bits as an unsigned integer in the floats' order, −0 as +0 (the two tie as the comparison does). */
function ascendingKey(x: number): number {
  keyFloat[0] = x === 0 ? 0 : x;
  const bits = keyBits[0]!;
  return bits & 0x80000000 ? ~bits >>> 0 : (bits | 0x80000000) >>> 0;
}

/** argsortDesc's packed entry: descending key × 2^18 + index, < 2^50 (exact in a double). */
function packedKey(ascending: number, i: number): number {
  return (0xffffffff - ascending) * 2 ** INDEX_BITS + i;
}

/** The indices of packed entries, sorted (by the engine's native numeric sort). */
function sortedIndices(keys: Float64Array): Int32Array {
  keys.sort();
  const idx = new Int32Array(keys.length);
  for (let i = 0; i < keys.length; i++) idx[i] = keys[i]! % 2 ** INDEX_BITS;
  return idx;
}

/** Above this many, topIndices' insertion costs more than sorting everything. */
const SELECT_MAX = 256;

/**
 * The indices of the m largest values, in argsortDesc's order (descending, ties: lower index
 * first), -Infinity left out: one pass with a small sorted buffer instead of sorting the whole
 * vocabulary at every step. Fewer than m when fewer are finite.
 */
export function topIndices(values: ArrayLike<number>, m: number): number[] {
  const out: number[] = [];
  if (m <= 0) return out;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v === -Infinity) continue;
    // scanning upward, a value equal to the buffer's last never outranks it (lower index first)
    if (out.length === m && !(v > values[out[m - 1]!]!)) continue;
    let j = out.length === m ? m - 1 : out.length;
    while (j > 0 && v > values[out[j - 1]!]!) {
      out[j] = out[j - 1]!;
      j--;
    }
    out[j] = i;
  }
  return out;
}

/** The k-th largest finite value (1-based); -Infinity when k is at least the number of finite values. */
function kthLargest(logits: Float32Array, k: number): number {
  if (k < SELECT_MAX) {
    const top = topIndices(logits, k + 1);
    return top.length <= k ? -Infinity : logits[top[k - 1]!]!;
  }
  const finite: number[] = [];
  for (const v of logits) if (v !== -Infinity) finite.push(v);
  if (k >= finite.length) return -Infinity;
  finite.sort((a, b) => b - a);
  return finite[k - 1]!;
}

/** Keeps the k highest logits (ties at the boundary are kept, as in HF). */
export function topK(k: number): LogitsProcessor {
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`top-k must be a positive integer, got ${k}`);
  return {
    name: `top_k(${k})`,
    apply(logits) {
      const threshold = kthLargest(logits, k);
      for (let i = 0; i < logits.length; i++) if (logits[i]! < threshold) logits[i] = -Infinity;
    },
  };
}

/**
 * The probabilities of `logits`, in float64: into `out` when given (its length), else a new array.
 * All -Infinity gives all zeros.
 */
export function softmax(logits: Float32Array, out?: Float64Array): Float64Array {
  let max = -Infinity;
  for (const v of logits) if (v > max) max = v;
  const p = out ?? new Float64Array(logits.length);
  if (max === -Infinity) return p.fill(0);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    const e = logits[i] === -Infinity ? 0 : Math.exp(logits[i]! - max);
    p[i] = e;
    sum += e;
  }
  for (let i = 0; i < p.length; i++) p[i] = p[i]! / sum;
  return p;
}

let probsScratch = new Float64Array(0);

/**
 * One float64 array reused for a step's probabilities (a vocabulary's worth per processor and
 * per draw, every step, would be garbage for the collector): valid until the next call, so only
 * for probabilities used and dropped within one function that calls no other user of it.
 */
function scratchProbs(n: number): Float64Array {
  if (probsScratch.length !== n) probsScratch = new Float64Array(n);
  return probsScratch;
}

/** Buckets of nucleusOrder: the top 16 bits of a logit's order key (sign, exponent, 7 mantissa bits). */
const BUCKET_SHIFT = 16;
let buckets: { mass: Float64Array; count: Int32Array } | null = null;

/**
 * A prefix of argsortDesc's order that holds the top-p nucleus, without sorting the whole
 * vocabulary: the probability mass is summed per bucket of the logits' order keys (argsortDesc's,
 * top 16 bits), the buckets are walked from the largest logits down until they hold p with room
 * to spare for rounding, and only the tokens in those buckets are sorted. Every token above the
 * last bucket's lower edge is in it, so the result is exactly argsortDesc's order cut there (the
 * whole order when the buckets cannot hold p with that room: p within 1e-9 of the total).
 */
export function nucleusOrder(logits: Float32Array, probs: Float64Array, p: number): Int32Array {
  const n = logits.length;
  if (n > 2 ** INDEX_BITS) return argsortDesc(logits);
  buckets ??= { mass: new Float64Array(2 ** (32 - BUCKET_SHIFT)), count: new Int32Array(2 ** (32 - BUCKET_SHIFT)) };
  const { mass, count } = buckets;
  mass.fill(0);
  count.fill(0);
  const asc = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const key = ascendingKey(logits[i]!);
    asc[i] = key;
    mass[key >>> BUCKET_SHIFT]! += probs[i]!;
    count[key >>> BUCKET_SHIFT]!++;
  }
  // the sequential sum over the same tokens differs from the buckets' by rounding (≤ n·2⁻⁵² ≈ 1e-11)
  let cum = 0;
  let m = 0;
  let edge = mass.length;
  while (edge > 0 && cum < p + 1e-9) {
    cum += mass[--edge]!;
    m += count[edge]!;
  }
  const lowest = cum >= p + 1e-9 ? edge * 2 ** BUCKET_SHIFT : 0;
  const keys = new Float64Array(lowest === 0 ? n : m);
  for (let i = 0, j = 0; i < n; i++) if (asc[i]! >= lowest) keys[j++] = packedKey(asc[i]!, i);
  return sortedIndices(keys);
}

/** Nucleus: keeps the smallest set of most-probable tokens whose mass reaches p. */
export function topP(p: number): LogitsProcessor {
  if (!(p > 0 && p <= 1)) throw new RangeError(`top-p must be in (0, 1], got ${p}`);
  return {
    name: `top_p(${p})`,
    apply(logits) {
      if (p >= 1) return;
      const probs = softmax(logits, scratchProbs(logits.length));
      // the nucleus is a prefix of argsortDesc's order, summed in that order: how much of `order` it takes
      const reach = (order: ArrayLike<number>) => {
        let mass = 0;
        let keep = 0;
        while (keep < order.length) {
          mass += probs[order[keep]!]!;
          keep++;
          if (mass >= p - 1e-12) return keep;
        }
        return null;
      };
      const cut = (order: ArrayLike<number>, keep: number) => {
        const kept = new Uint8Array(logits.length);
        for (let r = 0; r < keep; r++) kept[order[r]!] = 1;
        for (let i = 0; i < logits.length; i++) if (!kept[i]) logits[i] = -Infinity;
      };
      // look for it among the largest few first, then among the buckets that hold it (the same prefix)
      for (let m = 32; m < SELECT_MAX; m *= 2) {
        const order = topIndices(logits, m);
        const keep = reach(order);
        if (keep !== null || order.length < m) return cut(order, keep ?? order.length);
      }
      const order = nucleusOrder(logits, probs, p);
      const keep = reach(order);
      if (keep !== null || order.length === logits.length) return cut(order, keep ?? order.length);
      const all = argsortDesc(logits); // not reached: never expected (the buckets keep room for rounding)
      cut(all, reach(all) ?? all.length);
    },
  };
}

/** min-p: drops tokens whose probability is below min_p × the top probability. */
export function minP(minProb: number): LogitsProcessor {
  if (!(minProb >= 0 && minProb <= 1)) throw new RangeError(`min-p must be in [0, 1], got ${minProb}`);
  return {
    name: `min_p(${minProb})`,
    apply(logits) {
      const probs = softmax(logits, scratchProbs(logits.length));
      let top = 0;
      for (const v of probs) if (v > top) top = v;
      const cut = minProb * top;
      for (let i = 0; i < logits.length; i++) if (probs[i]! < cut) logits[i] = -Infinity;
    },
  };
}

/** CTRL-style repetition penalty on every token already in the sequence (prompt included). */
export function repetitionPenalty(penalty: number): LogitsProcessor {
  if (!(penalty > 0)) throw new RangeError(`repetition penalty must be > 0, got ${penalty}`);
  return {
    name: `repetition_penalty(${penalty})`,
    apply(logits, ctx) {
      for (const id of new Set(ctx.ids)) {
        const v = logits[id]!;
        logits[id] = v > 0 ? v / penalty : v * penalty;
      }
    },
  };
}

/** OpenAI-style: logit −= frequency × count + presence × [count > 0], over generated tokens. */
export function frequencyPresencePenalty(frequency: number, presence: number): LogitsProcessor {
  return {
    name: `frequency_presence(${frequency}, ${presence})`,
    apply(logits, ctx) {
      const counts = new Map<number, number>();
      for (let i = ctx.promptLength; i < ctx.ids.length; i++) counts.set(ctx.ids[i]!, (counts.get(ctx.ids[i]!) ?? 0) + 1);
      for (const [id, c] of counts) logits[id] = logits[id]! - frequency * c - (c > 0 ? presence : 0);
    },
  };
}

/** Bans any token that would complete an n-gram already present in the sequence. */
export function noRepeatNgram(n: number): LogitsProcessor {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`no-repeat n-gram size must be a positive integer, got ${n}`);
  return {
    name: `no_repeat_ngram(${n})`,
    apply(logits, ctx) {
      const ids = ctx.ids;
      if (ids.length + 1 < n) return;
      const prefix = ids.slice(ids.length - n + 1).join(',');
      for (let i = 0; i + n <= ids.length; i++) {
        if (n === 1 || ids.slice(i, i + n - 1).join(',') === prefix) logits[ids[i + n - 1]!] = -Infinity;
      }
    },
  };
}

// ---- samplers ----------------------------------------------------------------------

/** A seeded PRNG (xoshiro128**) so a seed always gives the same completion. */
export class Rng {
  private s: Uint32Array;
  constructor(seed: number) {
    // splitmix32 to spread the seed over the state
    let x = seed >>> 0;
    const next = () => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s = Uint32Array.of(next(), next(), next(), next());
  }

  /** Uniform in [0, 1). */
  next(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1]! << 9) >>> 0;
    s[2] = s[2]! ^ s[0]!;
    s[3] = s[3]! ^ s[1]!;
    s[1] = s[1]! ^ s[2]!;
    s[0] = s[0]! ^ s[3]!;
    s[2] = s[2]! ^ t;
    s[3] = rotl(s[3]!, 11);
    return result / 4294967296;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

export function argmax(logits: Float32Array): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  return best;
}

/** Draws from softmax(logits) with the given RNG. */
export function sampleMultinomial(logits: Float32Array, rng: Rng): number {
  const p = softmax(logits, scratchProbs(logits.length));
  let u = rng.next();
  let last = -1;
  for (let i = 0; i < p.length; i++) {
    if (p[i]! <= 0) continue;
    last = i;
    u -= p[i]!;
    if (u < 0) return i;
  }
  return last >= 0 ? last : argmax(logits);
}

// ---- stopping ----------------------------------------------------------------------

export interface StopContext {
  newIds: readonly number[];
  /** Decoded text of the new tokens. */
  text: string;
}

export type StopReason = 'max_new_tokens' | 'eos' | 'stop_string' | 'cancelled';

export interface StoppingCriteria {
  maxNewTokens: number;
  eosIds: readonly number[];
  stopStrings: readonly string[];
}

export function shouldStop(c: StoppingCriteria, ctx: StopContext): StopReason | null {
  const lastId = ctx.newIds[ctx.newIds.length - 1];
  if (lastId !== undefined && c.eosIds.includes(lastId)) return 'eos';
  if (c.stopStrings.some((s) => s.length > 0 && ctx.text.includes(s))) return 'stop_string';
  if (ctx.newIds.length >= c.maxNewTokens) return 'max_new_tokens';
  return null;
}
