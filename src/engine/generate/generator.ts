// Decoding: greedy, multinomial and beam search over a StepModel. The ORT-backed StepModel
// keeps a KV cache (past/present key-values) so each new token costs one incremental step;
// a full-recompute StepModel exists for tests and benchmarks.
import { createHash } from 'node:crypto';
import { assertFiniteStep } from '../analysis/finite';
import { EngineError } from '../errors';
import { hook } from '../graph/forward';
import type { LoadedModel } from '../model';
import { emptyPast } from '../analyze';
import { disposeAll, isDeviceTensor, type AnyTensor, type NamedTensor, type Session } from '../runtime/ort';
import { ALL_ROWS, KV_ROWS } from '../graph/gates';
import { takesStepCache, StepKvCache, type StepKvState } from './kvcache';
import { distinctN, loopStart, repetitionRate } from '../analysis/repetition';
import type { Completion, CompletionMetrics, GenStep, Strategy, StopReason } from '../../shared/generation';
import {
  argmax,
  frequencyPresencePenalty,
  minP,
  noRepeatNgram,
  repetitionPenalty,
  Rng,
  sampleMultinomial,
  shouldStop,
  temperature,
  topK,
  topIndices,
  topP,
  type LogitsProcessor,
  type SeqContext,
} from './processors';

/** A model seen one token step at a time, for a batch of beams. */
export interface StepModel {
  readonly vocabSize: number;
  /** Runs the prompt (batch 1); returns the logits after its last token. */
  prefill(promptIds: readonly number[]): Promise<Float32Array>;
  /** Replicates the batch-1 state into n beams. */
  expand(n: number): void | Promise<void>;
  /** Reorders beams: new beam i continues old beam `from[i]`. */
  reorder(from: readonly number[]): void | Promise<void>;
  /** Feeds one token per beam; returns logits per beam. */
  step(tokens: readonly number[]): Promise<Float32Array[]>;
  /** Tokens in the context so far (prompt + fed tokens). */
  readonly length: number;
  /** Frees what the model holds between steps (a KV cache in GPU memory). */
  release?(): void;
}

/**
 * The state after the last prompt a model ran (CPU: arrays): Compare Completions decodes the
 * same prompt once per column, and each column after the first starts from here instead of
 * running the prompt again. A kept state is never written (a step cache's is copied into the
 * column's cache; present.* arrays are replaced, not written, by a step), so every column gets
 * the bits a fresh prefill would. Two entries per model, the latest
 * first (with what-if's ablated copies the columns alternate between a clean prompt and an
 * ablated one), at most PROMPT_STATE_BYTES together; an analysis or a model switch frees them.
 */
interface PromptState {
  key: string;
  logits: Float32Array;
  /** The cache: a step-cache copy (the CPU), or arrays of present.* (an export on a GPU provider). */
  past: { named: Record<string, NamedTensor> } | { step: StepKvState };
  bytes: number;
}
const promptStates = new WeakMap<LoadedModel, PromptState[]>();
export const PROMPT_STATE_BYTES = 128 << 20;
const PROMPT_STATES = 2;

/** Forgets a model's kept prompt state (its memory goes with the arrays). */
export function forgetPromptState(model: LoadedModel): void {
  promptStates.delete(model);
}

/** The prompt and the fed interventions (names, shapes and bytes), as the key of a kept prompt state. */
function promptKey(promptIds: readonly number[], feeds: Record<string, NamedTensor>): string {
  const h = createHash('sha256');
  for (const name of Object.keys(feeds).sort()) {
    const t = feeds[name]!;
    h.update(`${name}:${t.dims.join('x')};`).update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return `${promptIds.join(',')}|${h.digest('hex')}`;
}

/**
 * The instrumented forward graph with its KV cache. On the CPU the cache is a StepKvCache
 * (kvcache.ts): our own arrays, fed in place and appended to. On a GPU provider it stays in
 * device memory between steps (present → past; only the logits come back); an ONNX export on a
 * GPU provider passes present.* back as past through host memory. Call release() when done:
 * device memory is freed only then.
 */
export class KvStepModel implements StepModel {
  /** Whether the last prefill reused the state a previous one left (promptStates). */
  reusedPrompt = false;
  /** present → past: the device's cache, or the host's for an export on a GPU provider */
  private past: Record<string, AnyTensor> = {};
  /** the CPU's cache, when the graph takes it (decided at the prefill) */
  private kv: StepKvCache | null = null;
  private batch = 1;
  /** Each beam's tokens so far: the cache is rebuilt from them where the model requires it. */
  private seqs: number[][] = [];
  length = 0;

  /** `feeds`: interventions (head ablation) fed on every step; they broadcast over the beams. */
  constructor(
    private readonly model: LoadedModel,
    private readonly feeds: Record<string, NamedTensor> = {},
  ) {}

  get vocabSize(): number {
    return this.model.spec.dVocab;
  }

  private async run(ids: BigInt64Array, batch: number, seq: number): Promise<Float32Array> {
    const session = await this.model.generation();
    const input_ids: NamedTensor = { data: ids, dims: [batch, seq] };
    return this.kv ? this.runStepCache(session, this.kv, input_ids, batch, seq) : this.runPresent(session, input_ids);
  }

  /** A run on the step cache: its arrays fed in place, the run's own keys and values appended. */
  private async runStepCache(session: Session, kv: StepKvCache, input_ids: NamedTensor, batch: number, seq: number): Promise<Float32Array> {
    const s = this.model.spec;
    const fetches = ['logits'];
    for (let L = 0; L < s.nLayers; L++) fetches.push(hook.newKey(L), hook.newValue(L));
    const out = await session.run(
      { input_ids, ...emptyPast(this.model, batch), ...kv.feeds(), [KV_ROWS]: ALL_ROWS, ...this.feeds },
      fetches,
    );
    const f = (name: string) => out[name]!.data as Float32Array;
    kv.append(
      Array.from({ length: s.nLayers }, (_, L) => f(hook.newKey(L))),
      Array.from({ length: s.nLayers }, (_, L) => f(hook.newValue(L))),
      seq,
    );
    return f('logits');
  }

  private async runPresent(session: Session, input_ids: NamedTensor): Promise<Float32Array> {
    const s = this.model.spec;
    const kv: string[] = [];
    for (let L = 0; L < s.nLayers; L++) kv.push(hook.presentKey(L), hook.presentValue(L));
    const fetches = session.fetchAll ? session.outputNames : ['logits', ...kv];
    const out = await session.runKeeping({ input_ids, ...this.past, ...this.feeds }, fetches);
    const next: Record<string, AnyTensor> = {};
    for (let L = 0; L < s.nLayers; L++) {
      next[hook.pastKey(L)] = out[hook.presentKey(L)]!;
      next[hook.pastValue(L)] = out[hook.presentValue(L)]!;
    }
    const kept = new Set(['logits', ...kv]);
    disposeAll(Object.entries(out).flatMap(([name, t]) => (kept.has(name) ? [] : [t]))); // hooks fetched only because all must be
    this.setPast(next);
    const logits = out.logits!;
    if (isDeviceTensor(logits)) throw new EngineError('RUNTIME', 'the logits stayed on the device');
    return logits.data as Float32Array;
  }

  private setPast(next: Record<string, AnyTensor>): void {
    disposeAll(Object.values(this.past));
    this.past = next;
  }

  /** An empty cache for `batch` sequences. */
  private clear(batch: number): void {
    if (this.kv) this.kv.clear(batch);
    else this.setPast(emptyPast(this.model, batch));
  }

  async prefill(promptIds: readonly number[]): Promise<Float32Array> {
    this.batch = 1;
    this.seqs = [[...promptIds]];
    this.length = promptIds.length;
    const s = this.model.spec;
    if (takesStepCache(await this.model.generation())) this.kv ??= new StepKvCache(s.nLayers, s.nKvHeads, s.headDim);
    else {
      this.kv?.release();
      this.kv = null;
    }
    const key = promptKey(promptIds, this.feeds);
    const states = promptStates.get(this.model) ?? [];
    const kept = states.find((st) => st.key === key);
    if (kept) {
      promptStates.set(this.model, [kept, ...states.filter((st) => st !== kept)]);
      if ('step' in kept.past) {
        if (!this.kv) throw new Error('a step-cache prompt state for a graph without the step cache');
        this.kv.restore(kept.past.step); // a copy: the kept state is never written
      } else this.setPast({ ...kept.past.named }); // never written: a step makes new arrays
      this.reusedPrompt = true;
      return kept.logits.slice(); // the decoder's processors write into the logits they get
    }
    this.reusedPrompt = false;
    this.clear(1);
    const logits = await this.run(
      BigInt64Array.from(promptIds, (i) => BigInt(i)),
      1,
      promptIds.length,
    );
    const bytes = this.kv
      ? this.kv.bytes
      : Object.values(this.past).reduce((n, t) => n + (isDeviceTensor(t) ? Infinity : t.data.byteLength), 0);
    if (bytes <= PROMPT_STATE_BYTES) {
      const past = this.kv ? { step: this.kv.snapshot() } : { named: { ...(this.past as Record<string, NamedTensor>) } };
      const next: PromptState[] = [{ key, logits: logits.slice(), past, bytes }];
      let total = bytes;
      for (const st of states)
        if (next.length < PROMPT_STATES && total + st.bytes <= PROMPT_STATE_BYTES) {
          next.push(st);
          total += st.bytes;
        }
      promptStates.set(this.model, next);
    }
    return logits;
  }

  expand(n: number): Promise<void> {
    return this.reorder(Array.from({ length: n }, () => 0));
  }

  async reorder(from: readonly number[]): Promise<void> {
    const same = from.length === this.batch && from.every((b, i) => b === i);
    if (same) return;
    if (this.kv) this.kv.reorder(from);
    else {
      const names = Object.keys(this.past);
      const tensors = names.map((n) => this.past[n]!);
      const device = tensors.filter(isDeviceTensor);
      const moved = device.length > 0 ? await (await this.model.generation()).gatherBatch(device, from) : [];
      const next: Record<string, AnyTensor> = {};
      names.forEach((name, i) => {
        const t = tensors[i]!;
        next[name] = isDeviceTensor(t) ? moved[device.indexOf(t)]! : gatherHostBatch(t, this.batch, from);
      });
      this.setPast(next);
    }
    this.seqs = from.map((b) => [...this.seqs[b]!]);
    this.batch = from.length;
  }

  async step(tokens: readonly number[]): Promise<Float32Array[]> {
    if (tokens.length !== this.batch) throw new Error(`step: ${tokens.length} tokens for ${this.batch} beams`);
    tokens.forEach((t, b) => this.seqs[b]!.push(t));
    const logits =
      this.length === this.model.spec.cacheRecomputeAt
        ? await this.rebuild()
        : await this.run(
            BigInt64Array.from(tokens, (i) => BigInt(i)),
            this.batch,
            1,
          );
    this.length++;
    const V = this.vocabSize;
    return tokens.map((_, b) => logits.subarray(b * V, (b + 1) * V));
  }

  /**
   * The whole sequences again, from an empty cache: Phi-3's LongRoPE switches to its long
   * factors once the sequence passes its original context, and transformers then recomputes
   * the cache so every key has the long rotation (Phi3ForCausalLM.prepare_inputs_for_generation).
   */
  private async rebuild(): Promise<Float32Array> {
    this.clear(this.batch);
    const n = this.seqs[0]!.length;
    return this.run(
      BigInt64Array.from(this.seqs.flat(), (i) => BigInt(i)),
      this.batch,
      n,
    );
  }

  release(): void {
    this.setPast({});
    this.kv?.release();
  }
}

/** Rows of a host KV tensor along the batch axis, in the order `from`. */
function gatherHostBatch(t: NamedTensor, batch: number, from: readonly number[]): NamedTensor {
  const per = t.data.length / batch;
  const data = new Float32Array(per * from.length);
  from.forEach((b, i) => data.set((t.data as Float32Array).subarray(b * per, (b + 1) * per), i * per));
  return { data, dims: [from.length, ...t.dims.slice(1)] };
}

/** Recomputes the whole sequence at every step (no cache): the reference for KV-cache tests. */
export class RecomputeStepModel implements StepModel {
  private seqs: number[][] = [];

  constructor(
    private readonly model: LoadedModel,
    private readonly feeds: Record<string, NamedTensor> = {},
  ) {}

  get vocabSize(): number {
    return this.model.spec.dVocab;
  }

  get length(): number {
    return this.seqs[0]?.length ?? 0;
  }

  private async last(seq: number[]): Promise<Float32Array> {
    const out = await this.model.forward.run(
      {
        input_ids: { data: BigInt64Array.from(seq, (i) => BigInt(i)), dims: [1, seq.length] },
        ...emptyPast(this.model),
        ...this.feeds,
      },
      ['logits'],
    );
    return out.logits!.data as Float32Array;
  }

  async prefill(promptIds: readonly number[]): Promise<Float32Array> {
    this.seqs = [[...promptIds]];
    return this.last(this.seqs[0]!);
  }

  expand(n: number): void {
    this.seqs = Array.from({ length: n }, () => [...this.seqs[0]!]);
  }

  reorder(from: readonly number[]): void {
    this.seqs = from.map((b) => [...this.seqs[b]!]);
  }

  async step(tokens: readonly number[]): Promise<Float32Array[]> {
    tokens.forEach((t, b) => this.seqs[b]!.push(t));
    const out: Float32Array[] = [];
    for (const s of this.seqs) out.push(await this.last(s));
    return out;
  }
}

// ---- strategy → processors -------------------------------------------------------

export function processorsFor(s: Strategy): LogitsProcessor[] {
  const ps: LogitsProcessor[] = [];
  if (s.repetitionPenalty !== undefined && s.repetitionPenalty !== 1) ps.push(repetitionPenalty(s.repetitionPenalty));
  if (s.frequencyPenalty || s.presencePenalty) ps.push(frequencyPresencePenalty(s.frequencyPenalty ?? 0, s.presencePenalty ?? 0));
  if (s.noRepeatNgram) ps.push(noRepeatNgram(s.noRepeatNgram));
  if (s.kind === 'sample') {
    if (s.temperature !== undefined && s.temperature !== 1) ps.push(temperature(s.temperature));
    if (s.topK) ps.push(topK(s.topK));
    if (s.topP !== undefined && s.topP < 1) ps.push(topP(s.topP));
    if (s.minP) ps.push(minP(s.minP));
  }
  return ps;
}

export function validateStrategy(s: Strategy): void {
  const bad = (why: string) => new EngineError('BAD_REQUEST', `Strategy "${s.label}": ${why}`);
  if (!['greedy', 'sample', 'beam'].includes(s.kind)) throw bad(`unknown kind ${String(s.kind)}`);
  if (s.kind === 'beam' && (!Number.isInteger(s.beams) || s.beams! < 1 || s.beams! > 16))
    throw bad('beams must be an integer from 1 to 16');
  try {
    processorsFor(s);
  } catch (e) {
    throw bad((e as Error).message);
  }
}

// ---- per-step records and metrics ------------------------------------------------------

/** Raw (unprocessed) statistics of a step's distribution. */
export function stepStats(
  raw: Float32Array,
  chosen: number,
  k: number,
): { prob: number; entropy: number; top: { id: number; prob: number }[]; lse: number } {
  let max = -Infinity;
  for (let i = 0; i < raw.length; i++) if (raw[i]! > max) max = raw[i]!;
  // one pass of exponentials: with d = x − max, sum = Σ e^d and H = ln sum − Σ e^d·d / sum
  // (−Σ p·ln p with ln p = d − ln sum); d ≤ 0, so a peaked step's small entropy does not come
  // from the difference of two large numbers
  let sum = 0;
  let weighted = 0;
  for (let i = 0; i < raw.length; i++) {
    const d = raw[i]! - max;
    if (d === -Infinity) continue;
    const e = Math.exp(d);
    sum += e;
    weighted += e * d;
  }
  const lse = max + Math.log(sum);
  const entropy = Math.log(sum) - weighted / sum;
  const top = topIndices(raw, k).map((id) => ({ id, prob: Math.exp(raw[id]! - lse) }));
  return { prob: Math.exp(raw[chosen]! - lse), entropy, top, lse };
}

export function completionMetrics(steps: readonly GenStep[]): CompletionMetrics {
  const ids = steps.map((s) => s.id);
  const bits = steps.reduce((a, s) => a - Math.log2(Math.max(s.prob, 1e-300)), 0);
  return {
    distinct: [distinctN(ids, 1), distinctN(ids, 2), distinctN(ids, 3), distinctN(ids, 4)],
    repetitionRate: repetitionRate(ids, 4),
    meanSurprisalBits: steps.length ? bits / steps.length : 0,
    loopStart: loopStart(ids),
  };
}

export interface DecodeOptions {
  strategy: Strategy;
  promptIds: readonly number[];
  forcedIds?: readonly number[];
  maxNewTokens: number;
  eosIds: readonly number[];
  stopStrings: readonly string[];
  topAlternatives: number;
  /** The weights' precision, for the message when the logits are not finite. */
  weights?: 'float32' | 'float16';
  /** Decodes ids to text (for stop strings and step text). */
  decode: (ids: readonly number[]) => string;
  tokenText: (id: number) => string;
  onStep?: (step: GenStep, index: number) => void;
  signal?: AbortSignal;
}

/**
 * The statistics of `raw`, the logits before generated token `step` (0: after the prompt),
 * computed once per `seen`; refused when they are not finite. Their `prob` is of token 0:
 * records read their own.
 */
function statsOf(
  o: DecodeOptions,
  raw: Float32Array,
  step: number,
  seen: Map<Float32Array, ReturnType<typeof stepStats>>,
): ReturnType<typeof stepStats> {
  let st = seen.get(raw);
  if (!st) {
    st = stepStats(raw, 0, o.topAlternatives);
    assertFiniteStep(st.lse, step, o.weights);
    seen.set(raw, st);
  }
  return st;
}

/**
 * A step's record. `seen`: the statistics of logits already recorded this step (beam search
 * takes several continuations of one beam: its entropy and alternatives are computed once).
 */
function record(
  o: DecodeOptions,
  raw: Float32Array,
  id: number,
  step: number,
  seen: Map<Float32Array, ReturnType<typeof stepStats>>,
): GenStep {
  const st = statsOf(o, raw, step, seen);
  const lse = st.lse;
  return {
    id,
    text: o.tokenText(id),
    prob: Math.exp(raw[id]! - lse),
    entropy: st.entropy,
    top: st.top.map((t) => ({ ...t, text: o.tokenText(t.id) })),
  };
}

/** Greedy or multinomial decoding (one sequence). */
export async function decodeSingle(
  model: StepModel,
  o: DecodeOptions,
): Promise<Omit<Completion, 'timings' | 'strategy'> & { firstStepMs: number }> {
  const procs = processorsFor(o.strategy);
  const rng = new Rng(o.strategy.seed ?? 0);
  const t0 = performance.now();
  let logits = await model.prefill(o.promptIds);
  const firstStepMs = performance.now() - t0;
  const ids = [...o.promptIds];
  const steps: GenStep[] = [];
  const forced = o.forcedIds ?? [];
  const work = new Float32Array(logits.length); // the processed logits, rewritten every step
  let stop: StopReason | null = null;
  while (!stop) {
    if (o.signal?.aborted) {
      stop = 'cancelled';
      break;
    }
    const raw = logits;
    // its statistics first: logits that are not finite are refused before anything reads them
    const seen = new Map<Float32Array, ReturnType<typeof stepStats>>();
    statsOf(o, raw, steps.length, seen);
    let id: number;
    if (steps.length < forced.length) id = forced[steps.length]!;
    else {
      work.set(raw);
      const ctx: SeqContext = { ids, promptLength: o.promptIds.length };
      for (const p of procs) p.apply(work, ctx);
      id = o.strategy.kind === 'sample' ? sampleMultinomial(work, rng) : argmax(work);
    }
    const step = record(o, raw, id, steps.length, seen);
    ids.push(id);
    steps.push(step);
    o.onStep?.(step, steps.length - 1);
    const newIds = ids.slice(o.promptIds.length);
    stop = shouldStop({ maxNewTokens: o.maxNewTokens, eosIds: o.eosIds, stopStrings: o.stopStrings }, { newIds, text: o.decode(newIds) });
    if (!stop) logits = (await model.step([id]))[0]!;
  }
  const newIds = ids.slice(o.promptIds.length);
  return {
    promptIds: [...o.promptIds],
    steps,
    text: o.decode(newIds),
    stopReason: stop,
    metrics: completionMetrics(steps),
    score: null,
    firstStepMs,
  };
}

interface Beam {
  ids: number[]; // generated ids
  steps: GenStep[];
  logprob: number; // sum of processed log-probs
}

/** log Σ exp(x): a token's log-probability is x[id] − this (the log-softmax, read only where needed). */
function logSumExp(x: Float32Array): number {
  let max = -Infinity;
  for (const v of x) if (v > max) max = v;
  let sum = 0;
  for (const v of x) if (v !== -Infinity) sum += Math.exp(v - max);
  return max + Math.log(sum);
}

/**
 * Beam search (width B) with a length penalty: a finished hypothesis scores
 * sum(log p) / length^lengthPenalty. Every step scores all B × V continuations, keeps the
 * best 2B, moves those ending in EOS to the finished set and continues with the best B.
 * earlyStopping: stop as soon as B hypotheses are finished; otherwise stop when no running
 * beam can still beat the worst finished one.
 */
export async function beamSearch(
  model: StepModel,
  o: DecodeOptions,
): Promise<Omit<Completion, 'timings' | 'strategy'> & { firstStepMs: number }> {
  const B = o.strategy.beams ?? 4;
  const lp = o.strategy.lengthPenalty ?? 1;
  const early = o.strategy.earlyStopping ?? true;
  const procs = processorsFor(o.strategy);
  const forced = o.forcedIds ?? [];
  const t0 = performance.now();
  let logits: Float32Array[] = [await model.prefill(o.promptIds)];
  const firstStepMs = performance.now() - t0;
  let beams: Beam[] = [{ ids: [], steps: [], logprob: 0 }];
  const work = new Float32Array(logits[0]!.length); // a beam's processed logits, rewritten for each
  const finished: { beam: Beam; score: number }[] = [];
  const norm = (logprob: number, len: number) => logprob / Math.max(1, len) ** lp;
  const worstFinished = () => (finished.length < B ? -Infinity : Math.min(...finished.map((f) => f.score)));
  const addFinished = (beam: Beam) => {
    const score = norm(beam.logprob, beam.ids.length);
    if (finished.length < B || score > worstFinished()) {
      finished.push({ beam, score });
      finished.sort((a, b) => b.score - a.score);
      if (finished.length > B) finished.pop();
    }
  };
  let stop: StopReason | null = null;
  for (;;) {
    if (o.signal?.aborted) {
      stop = 'cancelled';
      break;
    }
    const t = beams[0]!.ids.length; // tokens generated so far
    const candidates: { beam: number; id: number; logprob: number; raw: Float32Array }[] = [];
    // each distribution's statistics, computed once: its records, and its normaliser where nothing processes the logits
    const seen = new Map<Float32Array, ReturnType<typeof stepStats>>();
    if (t < forced.length) {
      // forced prefix: every beam is the same single path
      const id = forced[t]!;
      const raw = logits[0]!;
      candidates.push({ beam: 0, id, logprob: beams[0]!.logprob + (raw[id]! - statsOf(o, raw, t, seen).lse), raw });
    } else {
      beams.forEach((beam, b) => {
        const st = statsOf(o, logits[b]!, t, seen); // logits that are not finite are refused here
        work.set(logits[b]!);
        const ctx: SeqContext = { ids: [...o.promptIds, ...beam.ids], promptLength: o.promptIds.length };
        for (const p of procs) p.apply(work, ctx);
        // unprocessed, work is the raw logits: their statistics' log Σ exp is the same sum, summed the same way
        const lse = procs.length === 0 ? st.lse : logSumExp(work);
        // the best 2B of this beam are enough to form the global best 2B (the log-softmax keeps the logits' order)
        for (const id of topIndices(work, 2 * B))
          candidates.push({ beam: b, id, logprob: beam.logprob + (work[id]! - lse), raw: logits[b]! });
      });
      candidates.sort((x, y) => y.logprob - x.logprob || x.beam - y.beam || x.id - y.id);
    }
    const next: Beam[] = [];
    const from: number[] = [];
    for (let rank = 0; rank < candidates.length && next.length < B; rank++) {
      const c = candidates[rank]!;
      const parent = beams[c.beam]!;
      const beam: Beam = { ids: [...parent.ids, c.id], steps: [...parent.steps, record(o, c.raw, c.id, t, seen)], logprob: c.logprob };
      const ends =
        beam.ids.length > forced.length &&
        (o.eosIds.includes(c.id) || o.stopStrings.some((x) => x.length > 0 && o.decode(beam.ids).includes(x)));
      if (ends) {
        // as in HF: a hypothesis that ends is kept only if it ranks among the best B
        if (rank < B) addFinished(beam);
        continue;
      }
      next.push(beam);
      from.push(c.beam);
    }
    if (next.length === 0) {
      stop = 'eos';
      break;
    }
    beams = next;
    o.onStep?.(beams[0]!.steps[beams[0]!.steps.length - 1]!, beams[0]!.ids.length - 1);
    const len = beams[0]!.ids.length;
    if (finished.length >= B) {
      const bestRunning = norm(beams[0]!.logprob, len);
      if (early || bestRunning <= worstFinished()) {
        stop = 'eos';
        break;
      }
    }
    if (len >= o.maxNewTokens) {
      stop = 'max_new_tokens';
      break;
    }
    await model.reorder(from); // the first step replicates the prompt's state into the beams
    logits = await model.step(beams.map((b) => b.ids[b.ids.length - 1]!));
  }
  if (stop !== 'cancelled') for (const b of beams) addFinished(b);
  const best = finished[0] ?? { beam: beams[0]!, score: norm(beams[0]!.logprob, beams[0]!.ids.length) };
  const text = o.decode(best.beam.ids);
  const lastId = best.beam.ids[best.beam.ids.length - 1];
  const reason: StopReason =
    stop === 'cancelled'
      ? 'cancelled'
      : lastId !== undefined && o.eosIds.includes(lastId)
        ? 'eos'
        : o.stopStrings.some((x) => x.length > 0 && text.includes(x))
          ? 'stop_string'
          : 'max_new_tokens';
  return {
    promptIds: [...o.promptIds],
    steps: best.beam.steps,
    text,
    stopReason: reason,
    metrics: completionMetrics(best.beam.steps),
    score: best.score,
    firstStepMs,
  };
}
