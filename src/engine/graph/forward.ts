// The instrumented forward graph, one builder for every family (differences live in
// ModelSpec and the canonical weights). Inputs and outputs:
//   input_ids                      [batch, seq]            int64
//   input_embeds                   [batch, seq, d_model]   W_E[input_ids] (option embedsInput)
//   past_key_values.{L}.key|value  [batch, n_kv, past, d_head]  (past may be 0)
//   past_cache.{L}.key|value       [batch, n_kv, capacity, d_head] the CPU's KV cache (option
//                                  stepCache), read where it lies: its first past_cache_length
//                                  positions come before the new ones, the rest are masked
//   past_cache_length              [1] int64 (option stepCache); never fed with past_key_values.*
//   pattern_rows, logit_rows       [1] int64 row gates (graph/gates.ts)
//   logits                         [logit_rows, d_vocab]   (last position only)
//   present.{L}.key|value          [batch, n_kv, past+seq, d_head]
//   new_key_values.{L}.key|value   [batch, n_kv, kv_rows, d_head]  this run's own keys and values
//                                  (option stepCache; kv_rows: a row gate, graph/gates.ts)
//   blocks.0.hook_resid_pre, blocks.{L}.hook_resid_mid|hook_resid_post  [batch, seq, d_model]
//   blocks.{L}.hook_attn_out|hook_mlp_out  [batch, seq, d_model] each sublayer's output as it is
//                                  added to the residual stream (after Gemma 2/3's and OLMo 2's
//                                  post-norms): resid_mid = resid_pre + attn_out,
//                                  resid_post = resid_mid + mlp_out (patched values when
//                                  fed, graph/interventions.ts)
//   blocks.{L}.attn.hook_pattern   [batch, n_heads, pattern_rows, past+seq]
//   blocks.{L}.attn.stats.*        head statistics (graph/attnstats.ts)
// One graph serves analysis (past = 0) and generation (past = KV cache).
import { GraphBuilder, type WeightSink } from '../onnx/builder';
import { BranchBuilder } from '../onnx/branch';
import type { LayerSpec, ModelSpec, RopeSpec } from '../arch/spec';
import type { BlockWeights, GlobalWeights, Linear, Norm, WeightReader } from '../arch/weights';
import { f32ToF16 } from '../checkpoint/safetensors';
import { EngineError } from '../errors';
import {
  attentionOutputsFrom,
  inductionHits,
  patternDiagonals,
  patternParts,
  statsShared,
  type PatternParts,
  type StatsShared,
} from './attnstats';
import { gated, gateInput, KV_ROWS, LOGIT_ROWS, PATTERN_ROWS } from './gates';
import { headHook, patchHook, type HookOptions } from './interventions';

export const hook = {
  residPre: (L: number) => `blocks.${L}.hook_resid_pre`,
  residMid: (L: number) => `blocks.${L}.hook_resid_mid`,
  residPost: (L: number) => `blocks.${L}.hook_resid_post`,
  attnOut: (L: number) => `blocks.${L}.hook_attn_out`,
  mlpOut: (L: number) => `blocks.${L}.hook_mlp_out`,
  pattern: (L: number) => `blocks.${L}.attn.hook_pattern`,
  pastKey: (L: number) => `past_key_values.${L}.key`,
  pastValue: (L: number) => `past_key_values.${L}.value`,
  presentKey: (L: number) => `present.${L}.key`,
  presentValue: (L: number) => `present.${L}.value`,
  pastCacheKey: (L: number) => `past_cache.${L}.key`,
  pastCacheValue: (L: number) => `past_cache.${L}.value`,
  pastCacheLength: 'past_cache_length',
  newKey: (L: number) => `new_key_values.${L}.key`,
  newValue: (L: number) => `new_key_values.${L}.value`,
};

export interface ForwardGraphOptions {
  /** Also output attention patterns (memory grows as n_layers·n_heads·seq²). */
  patterns: boolean;
  /**
   * Keep the weight matrices (W_E, W_pos, W_U and every linear layer) in float16: half the
   * memory, and native half-precision GEMMs on GPU providers. Activations, norms, softmax, the
   * residual stream and every output stay float32: each product casts its input down and its
   * result back up, as mixed-precision inference in PyTorch does.
   */
  halfWeights?: boolean;
  /**
   * 'all': `logits` holds every position [batch, seq, d_vocab] (tests compare whole sequences
   * with a reference); default 'last': only the last position [batch, d_vocab], all that
   * generation and analysis read.
   */
  logits?: 'last' | 'all';
  /** Intervention inputs and the z-mean outputs (graph/interventions.ts); default on. */
  interventions?: boolean;
  /** attn_out / mlp_out patch inputs (graph/interventions.ts); default on with `interventions`. */
  sublayerPatches?: boolean;
  /**
   * Attention of long inputs in causal query blocks (blockedAttention below); default off.
   * On for the CPU only (model.ts): WebGPU's node placement was measured and tuned on the
   * one-block graph (tools/gpu-placement.ts), and the blocks' gain was measured on the CPU.
   */
  blockedAttention?: boolean;
  /**
   * The token embeddings come in as `input_embeds` [batch, seq, d_model] (W_E[input_ids], read
   * by the caller: embedrows.ts) instead of a Gather on W_E; input_ids still give the shapes
   * and the head statistics. float32 weights only; default off.
   */
  embedsInput?: boolean;
  /**
   * The KV cache also comes in as past_cache.* (kept by the caller with room to grow and
   * appended to in place: generate/kvcache.ts), and each run's own keys and values go out
   * (new_key_values.*), instead of the whole cache going out as present.* each step:
   * onnxruntime-node copies every fetched output into a fresh JavaScript array, so fetching
   * present.* cost a copy of the whole cache per token and its garbage. A run with a cache
   * attends to it where it lies (stepAttention: no copy of the cache, which at 1000 positions
   * of GPT-2-small was a third of a step) and to its new positions, as two products summed.
   * CPU graphs only (model.ts; onnx/surgery.ts gives an export the same inputs and outputs):
   * WebGPU keeps its cache on the device (present → past). Default off.
   */
  stepCache?: boolean;
}

/** A weight beyond float16's range (bfloat16 checkpoints can hold up to 3e38). */
export class HalfRangeError extends EngineError {
  constructor(name: string, value: number) {
    super(
      'BAD_WEIGHTS',
      `Weight ${name} holds ${value.toExponential(3)}, beyond float16's range (±65504), so it cannot be kept in half precision. ` +
        'Set transformerDynamics.weightPrecision (CLI: --weights) to float32.',
    );
  }
}

const HALF_MAX = 65504;

/** One float16 copy per float32 array (W_E is shared by the forward and lens graphs). */
const halves = new WeakMap<Float32Array, Uint16Array>();
function halfOf(a: Float32Array, name: string): Uint16Array {
  let h = halves.get(a);
  if (!h) {
    for (let i = 0; i < a.length; i++) if (Math.abs(a[i]!) > HALF_MAX) throw new HalfRangeError(name, a[i]!);
    h = f32ToF16(a);
    halves.set(a, h);
  }
  return h;
}

/** A weight matrix: float16 when the graph keeps weights in half precision. */
export function weightInit(g: GraphBuilder, name: string, data: Float32Array, dims: number[]): string {
  return g.initializer(name, g.halfWeights ? halfOf(data, name) : data, dims);
}

/** Rows of a weight table (embedding lookup), always returned as float32. */
export function gatherRows(g: GraphBuilder, table: string, ids: string): string {
  const rows = g.op('Gather', [table, ids], { axis: 0 });
  return g.halfWeights ? g.cast(rows, 'float32') : rows;
}

/** A product with a weight matrix (MatMul, or Gemm with attributes) on float32 activations. */
function weightProduct(g: GraphBuilder, op: 'MatMul' | 'Gemm', x: string, w: string, attrs: Record<string, number> = {}): string {
  if (!g.halfWeights) return g.op(op, [x, w], attrs);
  return g.cast(g.op(op, [g.cast(x, 'float16'), w], attrs), 'float32');
}

/** The names of a rope's table nodes (`rope{index}/{suffix}`): see ropeCpuNodes. */
const ROPE_NODES = [
  'positions',
  'freqs',
  'angles',
  'cos',
  'sin',
  'cos_scaled',
  'sin_scaled',
  'long',
  'n_max',
  'n',
  'ratio_num',
  'ratio',
  'growth',
  'ln_growth',
  'ln_base_scaled',
  'ln_base',
  'inv_exponent',
  'inv_freq',
] as const;

/**
 * The rotary tables' nodes, which the forward sessions keep on the CPU on every provider:
 * WGSL's sin and cos are only accurate to 2^-11 absolute on [-π, π] (the WGSL spec's bound;
 * measured 4.8e-4 on resid_mid[0] of tiny-llama on WebGPU), and an angle is position ×
 * frequency, far outside that range. Computing the frequencies there too keeps the chain on
 * one side (no readback mid-graph). On the CPU they cost [seq, rotary_dim] operations and one
 * small upload per run. Names of absent nodes are harmless.
 */
export function ropeCpuNodes(spec: ModelSpec): string[] {
  const ropes = new Set(spec.layers.map((l) => l.rope).filter((r) => r !== null)).size;
  return Array.from({ length: ropes }, (_, i) => ROPE_NODES.map((n) => `rope${i}/${n}`)).flat();
}

/** Per-graph shared values: positions, one causal mask per window size, RoPE tables per rope. */
export interface Shared {
  /** input_ids (the head statistics need them); absent in graphs fed residual streams (suffix.ts) */
  ids?: string;
  batch: string;
  seq: string;
  past: string;
  /** past + seq: the sequence length the new positions see (LongRoPE and dynamic NTK choose by it). */
  total: string;
  /** [seq, 1] int64 positions of the new tokens, and [1, past+seq] of every key. */
  qCol: string;
  kRow: string;
  masks: Map<number | null, string>; // [seq, past+seq], 0 or -inf
  ropes: Map<RopeSpec, { cos: string; sin: string }>; // [seq, rotary_dim]
  /** The query blocks of blockedAttention, when the graph has them. */
  blocks?: AttentionBlocks;
  /** The graph takes past_cache.* and gives each run's new keys and values (stepCache). */
  cache?: StepCache;
}

/**
 * Long inputs (≥ ATTN_BLOCKED_MIN_SEQ new positions, no patterns asked for) attend in
 * ATTN_BLOCKS blocks of query rows, each against the keys up to its last row only: the [heads,
 * rows, keys] scores, their softmax and the statistics' reads cover about (B+1)/(2B) of the
 * causal square instead of all of it, and each block's buffers are 1/B of a layer's pattern, so
 * the arena no longer holds several [heads, T, T] tensors (GPT-2-small, 1024 tokens, 2 threads:
 * forward 1.15-1.21 → 1.02-1.04 s, its arena −70 MB). Shorter inputs (generation steps) and runs
 * that fetch patterns take the one-block path; both are the same arithmetic on the same keys
 * (masked keys contribute exact zeros): residual streams come out bit-identical here, the
 * statistics equal to rounding (test/unit/attention-stats.test.ts).
 */
export const ATTN_BLOCKS = 8;
export const ATTN_BLOCKED_MIN_SEQ = 256;

interface StepCache {
  /** [1] bool: the run feeds a cache (past_cache_length > 0) */
  cond: string;
  /** past_cache_length as an int64 scalar */
  length: string;
}

interface AttentionBlocks {
  /** [1] bool: this run takes the blocked path */
  cond: string;
  /** ATTN_BLOCKS + 1 row bounds [1] int64 (⌊k·seq/B⌋), and each block's key count past + its end row */
  bounds: string[];
  keyEnds: string[];
}

export function buildForwardGraph(
  spec: ModelSpec,
  reader: WeightReader,
  opts: ForwardGraphOptions,
  sink: WeightSink | null = null,
): GraphBuilder {
  const layers = forwardGraphLayers(spec, reader, opts, sink);
  for (;;) {
    const step = layers.next();
    if (step.done) return step.value;
  }
}

/**
 * The forward graph, built layer by layer: yields each layer's index once its weights are in
 * the graph (a caller converting a big checkpoint reports progress, lets messages in, or stops
 * there) and returns the finished builder.
 */
export function* forwardGraphLayers(
  spec: ModelSpec,
  reader: WeightReader,
  opts: ForwardGraphOptions,
  sink: WeightSink | null = null,
): Generator<number, GraphBuilder, void> {
  const g = new GraphBuilder(`${spec.modelType}-forward`, sink, opts.halfWeights ?? false);
  if (opts.embedsInput && g.halfWeights) throw new Error('input_embeds are read as float32 rows: not with float16 weights');
  const ids = g.input('input_ids', 'int64', ['batch', 'seq']);
  const kvDims = ['batch', spec.nKvHeads, 'past', spec.headDim];
  for (let L = 0; L < spec.nLayers; L++) {
    g.input(hook.pastKey(L), 'float32', kvDims);
    g.input(hook.pastValue(L), 'float32', kvDims);
  }
  if (opts.stepCache) {
    const cacheDims = ['batch', spec.nKvHeads, 'capacity', spec.headDim];
    for (let L = 0; L < spec.nLayers; L++) {
      g.input(hook.pastCacheKey(L), 'float32', cacheDims);
      g.input(hook.pastCacheValue(L), 'float32', cacheDims);
    }
    g.input(hook.pastCacheLength, 'int64', [1]);
  }
  const globals = reader.globals();
  const shared = sharedValues(g, spec, ids, opts);
  const wE = weightInit(g, 'W_E', globals.embed, [spec.dVocab, spec.dModel]);

  let x = opts.embedsInput ? g.input('input_embeds', 'float32', ['batch', 'seq', spec.dModel]) : gatherRows(g, wE, ids); // [batch, seq, d_model]
  if (spec.embedScale !== 1) x = g.op('Mul', [x, g.float(spec.embedScale)]); // Gemma: × √d_model
  if (globals.posEmbed) {
    const posIds = g.op('Range', [shared.past, g.op('Add', [shared.past, shared.seq]), g.ints([1], true)]);
    const wPos = weightInit(g, 'W_pos', globals.posEmbed, [spec.maxPositions, spec.dModel]);
    x = g.op('Add', [x, gatherRows(g, wPos, posIds)]);
  }
  const residDims = ['batch', 'seq', spec.dModel];
  x = patchHook(g, spec, 0, x, opts); // interventions.ts: patched resid_pre cells
  g.output(hook.residPre(0), x, 'float32', residDims);

  for (let L = 0; L < spec.nLayers; L++) {
    const w = reader.block(L);
    x = block(g, spec, shared, { w, L, layer: spec.layers[L]! }, x, opts);
    if (L + 1 < spec.nLayers) x = patchHook(g, spec, L + 1, x, opts); // interventions.ts
    g.output(hook.residPost(L), x, 'float32', residDims);
    yield L;
  }

  finalLogits(g, spec, globals, wE, shared, x, opts.logits ?? 'last');
  return g;
}

/**
 * `logits`: ln_final, W_U (+ b_U) and the final soft-capping — at the last position
 * [batch, d_vocab] (all generation and analysis read), or at every one [batch, seq, d_vocab].
 */
function finalLogits(
  g: GraphBuilder,
  spec: ModelSpec,
  globals: GlobalWeights,
  wE: string,
  sh: Shared,
  x: string,
  positions: 'last' | 'all',
): void {
  const readOut = (h: string) =>
    softcap(
      g,
      unembed(g, spec, globals, norm(g, spec, h, globals.lnFinal, 'ln_final'), globals.unembed === globals.embed ? wE : null),
      spec.finalSoftcap,
    );
  if (positions === 'all') {
    const flat = readOut(g.op('Reshape', [x, g.ints([-1, spec.dModel])])); // [batch·seq, d_vocab]
    const shape = g.op(
      'Concat',
      [g.op('Unsqueeze', [sh.batch, g.ints([0])]), g.op('Unsqueeze', [sh.seq, g.ints([0])]), g.ints([spec.dVocab])],
      {
        axis: 0,
      },
    );
    g.output('logits', g.op('Reshape', [flat, shape]), 'float32', ['batch', 'seq', spec.dVocab]);
    return;
  }
  // Final logits at the last position only: [batch, d_model] → [batch, d_vocab].
  const last = g.op('Gather', [x, g.op('Sub', [sh.seq, g.ints([1], true)])], { axis: 1 });
  g.output('logits', readOut(gated(g, LOGIT_ROWS, last, 0)), 'float32', ['batch', spec.dVocab]); // analyses: none (gates.ts)
}

/** cap·tanh(x/cap) (Gemma 2/3's soft-capping of attention scores and final logits); x when cap is null. */
export function softcap(g: GraphBuilder, x: string, cap: number | null): string {
  if (cap === null) return x;
  return g.op('Mul', [g.op('Tanh', [g.op('Div', [x, g.float(cap)])]), g.float(cap)]);
}

/** logits = x @ W_U (+ b_U) with W_U stored [d_vocab, d_model] (Gemm with transB). */
export function unembed(g: GraphBuilder, spec: ModelSpec, globals: GlobalWeights, x2d: string, wUName: string | null): string {
  const wU = wUName ?? weightInit(g, 'W_U', globals.unembed, [spec.dVocab, spec.dModel]);
  const bias = globals.unembedBias ? g.initializer('b_U', globals.unembedBias, [spec.dVocab]) : null;
  if (!g.halfWeights) return g.op('Gemm', bias ? [x2d, wU, bias] : [x2d, wU], { transB: 1 });
  const logits = weightProduct(g, 'Gemm', x2d, wU, { transB: 1 });
  return bias ? g.op('Add', [logits, bias]) : logits;
}

function sharedValues(g: GraphBuilder, spec: ModelSpec, ids: string, opts: ForwardGraphOptions): Shared {
  const idShape = g.op('Shape', [ids]);
  const batch = g.op('Gather', [idShape, g.ints([0], true)], { axis: 0 });
  const seq = g.op('Gather', [idShape, g.ints([1], true)], { axis: 0 });
  let past = g.op('Gather', [g.op('Shape', [hook.pastKey(0)]), g.ints([2], true)], { axis: 0 });
  let cache: StepCache | undefined;
  if (opts.stepCache) {
    const length = g.op('Gather', [hook.pastCacheLength, g.ints([0], true)], { axis: 0 });
    cache = { cond: g.op('Greater', [hook.pastCacheLength, g.ints([0])]), length };
    past = g.op('Add', [past, length]);
  }
  const total = g.op('Add', [past, seq]);
  const one = g.ints([1], true);
  const qPos = g.op('Range', [past, total, one]); // [seq]
  const kPos = g.op('Range', [g.ints([0], true), total, one]); // [past+seq]
  const qCol = g.op('Unsqueeze', [qPos, g.ints([1])]); // [seq, 1]
  const kRow = g.op('Unsqueeze', [kPos, g.ints([0])]); // [1, past+seq]
  const sh: Shared = {
    ids,
    batch,
    seq,
    past,
    total,
    qCol,
    kRow,
    masks: new Map(),
    ropes: new Map(),
    cache,
  };
  for (const layer of spec.layers) {
    if (!sh.masks.has(layer.window)) sh.masks.set(layer.window, causalMask(g, sh, layer.window));
    if (layer.rope && !sh.ropes.has(layer.rope)) sh.ropes.set(layer.rope, ropeTables(g, sh, layer.rope, sh.ropes.size));
  }
  if (opts.blockedAttention) sh.blocks = attentionBlocks(g, sh, opts.patterns);
  return sh;
}

function attentionBlocks(g: GraphBuilder, sh: Shared, patterns: boolean): AttentionBlocks {
  const seq1 = g.op('Unsqueeze', [sh.seq, g.ints([0])]); // [1]
  const past1 = g.op('Unsqueeze', [sh.past, g.ints([0])]);
  const bounds = [g.ints([0])];
  for (let k = 1; k < ATTN_BLOCKS; k++) bounds.push(g.op('Div', [g.op('Mul', [seq1, g.ints([k])]), g.ints([ATTN_BLOCKS])]));
  bounds.push(seq1);
  const keyEnds = bounds.slice(1).map((b) => g.op('Add', [past1, b]));
  let cond = g.op('GreaterOrEqual', [seq1, g.ints([ATTN_BLOCKED_MIN_SEQ])]);
  if (patterns) cond = g.op('And', [cond, g.op('Equal', [gateInput(g, PATTERN_ROWS), g.ints([0])])]);
  return { cond, bounds, keyEnds };
}

/** 0 where a query may attend, -inf elsewhere: future keys, and keys `window` or more positions back. */
function causalMask(g: GraphBuilder, sh: { kRow: string; qCol: string }, window: number | null): string {
  let blocked = g.op('Greater', [sh.kRow, sh.qCol]); // future keys
  if (window !== null) {
    const tooOld = g.op('LessOrEqual', [sh.kRow, g.op('Sub', [sh.qCol, g.ints([window], true)])]);
    blocked = g.op('Or', [blocked, tooOld]);
  }
  return g.op('Where', [blocked, g.float(-Infinity), g.float(0)]);
}

/**
 * cos and sin of the new positions [seq, rotary_dim] (× the rope's attention factor). The
 * frequencies may depend on the whole sequence length past + seq (LongRoPE, dynamic NTK): in
 * the graph, so one generation step sees what transformers computes for it. Keys already in
 * the KV cache keep the rotation they were given, as in transformers.
 */
export function ropeTables(g: GraphBuilder, sh: Shared, rope: RopeSpec, index: number): { cos: string; sin: string } {
  // every node named, to be kept on the CPU (ropeCpuNodes)
  const op: RopeOp = (node, type, inputs, attrs) => g.namedOp(`rope${index}/${node}`, type, inputs, attrs);
  const inv = invFreq(g, op, sh, rope, `rope${index}`); // [1, rotary_dim/2]
  const freqs = op('freqs', 'Mul', [op('positions', 'Cast', [sh.qCol], { to: 1 }), inv]); // [seq, rotary_dim/2] (Cast to float32)
  const emb = op('angles', 'Concat', [freqs, freqs], { axis: -1 }); // [seq, rotary_dim]
  const scaled = (t: string, node: (typeof ROPE_NODES)[number]) =>
    rope.attentionFactor === 1 ? t : op(node, 'Mul', [t, g.float(rope.attentionFactor)]);
  return { cos: scaled(op('cos', 'Cos', [emb]), 'cos_scaled'), sin: scaled(op('sin', 'Sin', [emb]), 'sin_scaled') };
}

type RopeOp = (node: (typeof ROPE_NODES)[number], type: string, inputs: string[], attrs?: Record<string, number>) => string;

function invFreq(g: GraphBuilder, op: RopeOp, sh: Shared, rope: RopeSpec, name: string): string {
  const half = rope.rotaryDim / 2;
  const f = rope.freq;
  if (f.kind === 'fixed') return g.initializer(`${name}.inv_freq`, f.invFreq, [1, half]);
  if (f.kind === 'longrope') {
    const long = op('long', 'Greater', [sh.total, g.ints([f.originalMax], true)]);
    return op('inv_freq', 'Where', [
      long,
      g.initializer(`${name}.inv_freq_long`, f.long, [1, half]),
      g.initializer(`${name}.inv_freq_short`, f.short, [1, half]),
    ]);
  }
  // dynamic NTK: ln base = ln θ + d/(d−2)·ln(factor·n/max − (factor−1)), n = max(past + seq, max); inv_i = base^(−2i/d)
  const n = op('n', 'Cast', [op('n_max', 'Max', [sh.total, g.ints([f.maxPositions], true)])], { to: 1 }); // float32
  const ratio = op('ratio', 'Div', [op('ratio_num', 'Mul', [n, g.float(f.factor)]), g.float(f.maxPositions)]);
  const lnGrowth = op('ln_growth', 'Log', [op('growth', 'Sub', [ratio, g.float(f.factor - 1)])]);
  const lnBase = op('ln_base', 'Add', [
    op('ln_base_scaled', 'Mul', [lnGrowth, g.float(rope.rotaryDim / (rope.rotaryDim - 2))]),
    g.float(Math.log(f.theta)),
  ]);
  const exponents = g.initializer(
    `${name}.exponents`,
    Float32Array.from({ length: half }, (_, i) => (-2 * i) / rope.rotaryDim),
    [1, half],
  );
  return op('inv_freq', 'Exp', [op('inv_exponent', 'Mul', [exponents, lnBase])]);
}

/** A LayerNorm without a bias gets zeros: one array per norm, so a norm written twice (suffix.ts) shares it. */
const zeroBias = new WeakMap<Norm, Float32Array>();

function norm(g: GraphBuilder, spec: ModelSpec, x: string, n: Norm, name: string): string {
  if (spec.norm === 'layernorm') {
    const w = g.initializer(`${name}.w`, n.w, [n.w.length]);
    let zeros = zeroBias.get(n);
    if (!n.b && !zeros) zeroBias.set(n, (zeros = new Float32Array(n.w.length)));
    const b = g.initializer(`${name}.b`, n.b ?? zeros!, [n.w.length]);
    return g.op('LayerNormalization', [x, w, b], { axis: -1, epsilon: { float: spec.normEps } });
  }
  return rmsNorm(g, x, n, spec.normEps, name);
}

/** RMSNorm over the last axis, written in the pattern onnxruntime fuses (SimplifiedLayerNormalization). */
function rmsNorm(g: GraphBuilder, x: string, n: Norm, eps: number, name: string): string {
  const w = g.initializer(`${name}.w`, n.w, [n.w.length]);
  const ms = g.op('ReduceMean', [g.op('Pow', [x, g.float(2)])], { axes: [-1], keepdims: 1 });
  const rms = g.op('Sqrt', [g.op('Add', [ms, g.float(eps)])]);
  return g.op('Mul', [g.op('Div', [x, rms]), w]);
}

function linear(g: GraphBuilder, x: string, lin: Linear, name: string): string {
  const w = weightInit(g, `${name}.w`, lin.w, [lin.dIn, lin.dOut]);
  const y = weightProduct(g, 'MatMul', x, w);
  return lin.b ? g.op('Add', [y, g.initializer(`${name}.b`, lin.b, [lin.dOut])]) : y;
}

export function activation(g: GraphBuilder, spec: Pick<ModelSpec, 'act'>, x: string): string {
  switch (spec.act) {
    case 'silu':
      return g.op('Mul', [x, g.op('Sigmoid', [x])]);
    case 'relu':
      return g.op('Relu', [x]);
    case 'gelu': {
      // x/√2 (not x·(1/√2)): the form onnxruntime's GeluFusion matches (one Gelu kernel on the CPU)
      const erf = g.op('Erf', [g.op('Div', [x, g.float(Math.SQRT2)])]);
      return g.op('Mul', [g.op('Mul', [x, g.float(0.5)]), g.op('Add', [erf, g.float(1)])]);
    }
    case 'gelu_tanh': {
      // 0.5·x·(1 + tanh(√(2/π)·x·(1 + 0.044715·x·x))): transformers' √(2/π)·(x + 0.044715·x³)
      // factored, in the node order onnxruntime's FastGeluFusion matches, so the CPU runs one
      // FastGelu kernel instead of eight passes over [T, d_mlp] (GPT-2-small, 512 tokens: forward 4% faster);
      // where it does not fuse, the same formula runs as plain Mul/Add/Tanh nodes
      const inner = g.op('Add', [g.op('Mul', [g.op('Mul', [x, g.float(0.044715)]), x]), g.float(1)]);
      const arg = g.op('Mul', [g.op('Mul', [x, g.float(Math.sqrt(2 / Math.PI))]), inner]);
      return g.op('Mul', [g.op('Mul', [x, g.float(0.5)]), g.op('Add', [g.op('Tanh', [arg]), g.float(1)])]);
    }
  }
}

/** Rotary embedding (rotate_half convention) of the first rotary_dim dims of [batch, heads, seq, d_head]. */
function rope(g: GraphBuilder, spec: ModelSpec, sh: Shared, r: RopeSpec | null, x: string): string {
  if (!r) return x;
  const { cos, sin } = sh.ropes.get(r)!;
  const rd = r.rotaryDim;
  const axis3 = g.ints([3]);
  const sl = (t: string, a: number, b: number) => g.op('Slice', [t, g.ints([a]), g.ints([b]), axis3]);
  const xr = rd < spec.headDim ? sl(x, 0, rd) : x;
  const x1 = sl(xr, 0, rd / 2);
  const x2 = sl(xr, rd / 2, rd);
  const rotated = g.op('Concat', [g.op('Neg', [x2]), x1], { axis: -1 });
  const out = g.op('Add', [g.op('Mul', [xr, cos]), g.op('Mul', [rotated, sin])]);
  return rd < spec.headDim ? g.op('Concat', [out, sl(x, rd, spec.headDim)], { axis: -1 }) : out;
}

/** [batch, seq, heads·d_head] → [batch, heads, seq, d_head] */
function splitHeads(g: GraphBuilder, x: string, heads: number, dHead: number): string {
  return g.op('Transpose', [g.op('Reshape', [x, g.ints([0, 0, heads, dHead])])], { perm: [0, 2, 1, 3] });
}

/** Repeat KV heads for grouped-query attention: [b, kv, s, d] → [b, kv·groups, s, d]. */
function repeatKv(g: GraphBuilder, spec: ModelSpec, x: string): string {
  const groups = spec.nHeads / spec.nKvHeads;
  if (groups === 1) return x;
  const expanded = g.op('Expand', [g.op('Unsqueeze', [x, g.ints([2])]), g.ints([1, 1, groups, 1, 1])]);
  return g.op('Reshape', [expanded, g.ints([0, spec.nHeads, -1, spec.headDim])]);
}

/** What one block of the graph is built from. */
export interface BlockInput {
  w: BlockWeights;
  L: number;
  layer: LayerSpec;
  /**
   * Only the rows `pick` takes from a [batch, seq, …] value get queries and outputs; keys and
   * values still come from every row (suffix.ts: the last layer, read at each run's last row).
   * `sh` holds those rows' RoPE tables and mask rows.
   */
  only?: { pick: (g: GraphBuilder, x: string) => string; sh: Shared };
}

/** Queries or keys: projection, q/k norm (OLMo 2: over the projection; Qwen3/Gemma 3: per head), heads, RoPE. */
function queriesOrKeys(g: GraphBuilder, spec: ModelSpec, sh: Shared, b: BlockInput, h: string, which: 'q' | 'k'): string {
  const p = `blocks.${b.L}.attn`;
  const heads = which === 'q' ? spec.nHeads : spec.nKvHeads;
  const n = which === 'q' ? b.w.qNorm : b.w.kNorm;
  const lnName = `${p}.${which}_ln`;
  let x = linear(g, h, which === 'q' ? b.w.q : b.w.k, `${p}.W_${which.toUpperCase()}`);
  if (n && spec.qkNorm === 'projection') x = rmsNorm(g, x, n, spec.normEps, lnName);
  x = splitHeads(g, x, heads, spec.headDim);
  if (n && spec.qkNorm === 'head') x = rmsNorm(g, x, n, spec.normEps, lnName);
  return rope(g, spec, sh, b.layer.rope, x);
}

function attention(g: GraphBuilder, spec: ModelSpec, sh: Shared, b: BlockInput, h: string, opts: ForwardGraphOptions): string {
  const { w, L } = b;
  const p = `blocks.${L}.attn`;
  const shQ = b.only?.sh ?? sh;
  const q = queriesOrKeys(g, spec, shQ, b, b.only ? b.only.pick(g, h) : h, 'q');
  const kNew = queriesOrKeys(g, spec, sh, b, h, 'k');
  const vNew = splitHeads(g, linear(g, h, w.v, `${p}.W_V`), spec.nKvHeads, spec.headDim);
  // past_key_values.* come before the new positions (past_cache.* is read where it lies: stepAttention)
  const k = g.op('Concat', [hook.pastKey(L), kNew], { axis: 2 });
  const v = g.op('Concat', [hook.pastValue(L), vNew], { axis: 2 });
  const kvDims = ['batch', spec.nKvHeads, 'total', spec.headDim];
  g.output(hook.presentKey(L), k, 'float32', kvDims);
  g.output(hook.presentValue(L), v, 'float32', kvDims);
  if (sh.cache) {
    // gated (default 0 rows): an analysis, which never reads them, holds no second copy of its keys
    const newDims = ['batch', spec.nKvHeads, 'kv_rows', spec.headDim];
    g.output(hook.newKey(L), gated(g, KV_ROWS, kNew, 2), 'float32', newDims);
    g.output(hook.newValue(L), gated(g, KV_ROWS, vNew, 2), 'float32', newDims);
  }

  const mask = shQ.masks.get(b.layer.window)!;
  const st = opts.patterns ? statsShared(g, sh) : null;
  // outside the If, as they were before it: in a step (past_key_values.* empty) they are the new positions' alone
  const kT = g.op('Transpose', [repeatKv(g, spec, k)], { perm: [0, 1, 3, 2] });
  const vAll = repeatKv(g, spec, v);
  const whole = (t: GraphBuilder): Attended => {
    // only the forward graph's own Shared has blocks (suffix.ts builds its blocks in If branches, without them)
    if (sh.blocks) return blockedAttention(t, spec, sh, sh.blocks, L, q, kT, vAll, mask, st);
    const pattern = attentionWeights(t, spec, q, kT, mask); // [b, h, seq, total]
    return { z: t.op('MatMul', [pattern, vAll]), parts: st ? patternParts(t, st, pattern) : null };
  };
  let attended: Attended;
  if (sh.cache) {
    if (b.only) throw new Error('a block reading some rows only takes no step cache');
    const [steps, runs] = [new BranchBuilder(g, `blocks_${L}_attn_step`), new BranchBuilder(g, `blocks_${L}_attn_full`)];
    const step = { q, kT, v: vAll, window: b.layer.window };
    attended = branches(g, spec, sh.cache.cond, [steps, stepAttention(steps, spec, sh, sh.cache, L, step, st)], [runs, whole(runs)]);
  } else attended = whole(g);
  // the pattern output (empty unless pattern_rows asks) and the head statistics (graph/attnstats.ts)
  const zero = attended.parts ? attentionOutputsFrom(g, st!, attended.parts, hook.pattern(L), L, spec.nHeads) : null;
  const z = headHook(g, spec, L, attended.z, opts); // [b, h, seq, d_head], interventions.ts
  const merged = g.op('Reshape', [g.op('Transpose', [z], { perm: [0, 2, 1, 3] }), g.ints([0, 0, spec.nHeads * spec.headDim])]);
  const out = linear(g, merged, w.o, `${p}.W_O`);
  return zero ? g.op('Add', [out, zero]) : out; // + 0: those outputs are computed before the next layer
}

/** What attention gives: z [b, h, seq, d_head], and the parts of the pattern the statistics need (null without them). */
interface Attended {
  z: string;
  parts: PatternParts | null;
}

/** An If between two ways of attending, each built into its branch; the statistics' parts come out with z. */
function branches(
  g: GraphBuilder,
  spec: ModelSpec,
  cond: string,
  then: [BranchBuilder, Attended],
  otherwise: [BranchBuilder, Attended],
): Attended {
  const H = spec.nHeads;
  for (const [t, a] of [then, otherwise]) {
    t.branchOutput('z', a.z, 'float32', ['batch', H, 'seq', spec.headDim]);
    if (!a.parts) continue;
    t.branchOutput('diagonals', a.parts.diagonals, 'float32', ['batch', H, 'seq', 'offsets']);
    t.branchOutput('hits', a.parts.hits, 'float32', ['batch', H]);
    t.branchOutput('cut', a.parts.cut, 'float32', ['batch', H, 'rows', 'total']);
  }
  const stats = then[1].parts !== null;
  const outs = g.opN('If', [cond], stats ? 4 : 1, {
    then_branch: { graph: then[0].graph() },
    else_branch: { graph: otherwise[0].graph() },
  });
  return { z: outs[0]!, parts: stats ? { diagonals: outs[1]!, hits: outs[2]!, cut: outs[3]! } : null };
}

/**
 * Attention of a run that feeds past_cache.* (a generation step): the cache is read where it
 * lies, [batch, n_kv, capacity, d_head] with its first `length` positions filled, instead of
 * being copied into one key tensor with the new positions (at 1000 positions of GPT-2-small
 * that copy, twice per layer and step, was a third of a step: docs/performance.md). The scores
 * against the cache and against the new positions are computed apart and softmaxed together;
 * the unfilled capacity is masked like a future key (probability exactly 0); z is the sum of
 * the two products. Grouped-query heads read their shared cache head through a reshape of the
 * queries ([b, n_kv, groups·seq, d]), not a repeated copy of the cache. The same keys, values
 * and masks as the whole path; the sums are grouped differently, so the numbers agree to
 * rounding (test/unit/kvcache.test.ts).
 */
function stepAttention(
  t: GraphBuilder,
  spec: ModelSpec,
  sh: Shared,
  cache: StepCache,
  L: number,
  x: { q: string; kT: string; v: string; window: number | null },
  st: StatsShared | null,
): Attended {
  const [cacheK, cacheV] = [hook.pastCacheKey(L), hook.pastCacheValue(L)];
  const groups = spec.nHeads / spec.nKvHeads;
  const qShape = t.op('Shape', [x.q]); // [b, h, seq, d]
  const byKvHead = (y: string) => (groups === 1 ? y : t.op('Reshape', [y, t.ints([0, spec.nKvHeads, -1, 0])]));
  const byHead = (y: string) =>
    groups === 1 ? y : t.op('Reshape', [y, t.op('Concat', [t.op('Slice', [qShape, t.ints([0]), t.ints([3])]), t.ints([-1])], { axis: 0 })]);
  const transposed = (y: string) => t.op('Transpose', [y], { perm: [0, 1, 3, 2] });
  const cached = scaledScores(t, spec, byHead(t.op('MatMul', [byKvHead(x.q), transposed(cacheK)]))); // [b, h, seq, capacity]
  const fresh = scaledScores(t, spec, t.op('MatMul', [x.q, x.kT])); // [b, h, seq, seq]: the new keys, transposed outside the If

  // key positions: the cache's filled ones, its unfilled capacity past any query (masked), then the new ones
  const [zero, one] = [t.ints([0], true), t.ints([1], true)];
  const capacity = t.op('Gather', [t.op('Shape', [cacheK]), t.ints([2], true)], { axis: 0 });
  const slots = t.op('Range', [zero, capacity, one]);
  const filled = t.op('Where', [t.op('Less', [slots, cache.length]), slots, t.ints([2 ** 62], true)]);
  const keys = t.op('Concat', [filled, t.op('Range', [sh.past, sh.total, one])], { axis: 0 });
  const mask = causalMask(t, { kRow: t.op('Unsqueeze', [keys, t.ints([0])]), qCol: sh.qCol }, x.window);
  const pattern = t.op('Softmax', [t.op('Add', [t.op('Concat', [cached, fresh], { axis: 3 }), mask])], { axis: -1 });
  const cap1 = t.op('Unsqueeze', [capacity, t.ints([0])]);
  const pCached = t.op('Slice', [pattern, t.ints([0]), cap1, t.ints([3])]);
  const pFresh = t.op('Slice', [pattern, cap1, t.ints([2 ** 62]), t.ints([3])]);
  const z = t.op('Add', [byHead(t.op('MatMul', [byKvHead(pCached), cacheV])), t.op('MatMul', [pFresh, x.v])]);
  if (!st) return { z, parts: null };
  // the statistics read the pattern over the keys a query sees: the filled cache, then the new positions
  const past1 = t.op('Unsqueeze', [sh.past, t.ints([0])]);
  const seen = t.op('Concat', [t.op('Slice', [pattern, t.ints([0]), past1, t.ints([3])]), pFresh], { axis: 3 }); // [b, h, seq, total]
  return { z, parts: patternParts(t, st, seen) };
}

/** q·kᵀ products scaled (attnScale) and soft-capped (attnSoftcap, Gemma 2): the scores before the mask */
function scaledScores(g: GraphBuilder, spec: ModelSpec, products: string): string {
  return softcap(g, g.op('Mul', [products, g.float(spec.attnScale)]), spec.attnSoftcap);
}

/** softmax(q·kᵀ·scale (soft-capped) + mask) [b, h, rows, keys] */
function attentionWeights(g: GraphBuilder, spec: ModelSpec, q: string, kT: string, mask: string): string {
  const scores = scaledScores(g, spec, g.op('MatMul', [q, kT]));
  return g.op('Softmax', [g.op('Add', [scores, mask])], { axis: -1 });
}

/**
 * Attention as an If: the query blocks of ATTN_BLOCKS (Shared.blocks) when the run takes them,
 * else one block. The pattern lives inside the branch: the statistics read its diagonals and
 * induction hits there, and the pattern output (pattern_rows rows) comes from the one-block
 * branch, the only one taken when patterns are asked for.
 */
function blockedAttention(
  g: GraphBuilder,
  spec: ModelSpec,
  sh: Shared,
  blocks: AttentionBlocks,
  L: number,
  q: string,
  kT: string,
  v: string,
  mask: string,
  st: StatsShared | null,
): Attended {
  const slice = (t: BranchBuilder, x: string, start: string, end: string, axis: number) => t.op('Slice', [x, start, end, g.ints([axis])]);
  const whole = new BranchBuilder(g, `blocks_${L}_attn_whole`);
  const parts = new BranchBuilder(g, `blocks_${L}_attn_blocks`);
  const pattern = attentionWeights(whole, spec, q, kT, mask);
  const oneBlock: Attended = { z: whole.op('MatMul', [pattern, v]), parts: st ? patternParts(whole, st, pattern) : null };
  const zs: string[] = [];
  const diagonals: string[] = [];
  const hits: string[] = [];
  const zero = g.ints([0]);
  for (let k = 0; k < ATTN_BLOCKS; k++) {
    const [r0, r1, keys] = [blocks.bounds[k]!, blocks.bounds[k + 1]!, blocks.keyEnds[k]!];
    const maskK = slice(parts, slice(parts, mask, r0, r1, 0), zero, keys, 1); // [rows, keys]
    const pattern = attentionWeights(parts, spec, slice(parts, q, r0, r1, 2), slice(parts, kT, zero, keys, 3), maskK);
    zs.push(parts.op('MatMul', [pattern, slice(parts, v, zero, keys, 2)]));
    if (st) {
      diagonals.push(patternDiagonals(parts, pattern, slice(parts, st.keyIdx, r0, r1, 0)));
      const targets = slice(parts, slice(parts, st.targets, r0, r1, 1), zero, keys, 2); // [b, rows, keys]
      hits.push(inductionHits(parts, pattern, parts.op('Reshape', [targets, g.ints([0, -1, 1])])));
    }
  }
  const z = parts.op('Concat', zs, { axis: 2 });
  let blocked: Attended = { z, parts: null };
  if (st) {
    // no pattern rows on this path (its condition): an empty [b, h, 0, total]
    const shape = parts.op(
      'Concat',
      [parts.op('Slice', [parts.op('Shape', [q]), g.ints([0]), g.ints([2])]), zero, parts.op('Unsqueeze', [sh.total, g.ints([0])])],
      { axis: 0 },
    );
    const cut = parts.op('ConstantOfShape', [shape]);
    blocked = { z, parts: { diagonals: parts.op('Concat', diagonals, { axis: 2 }), hits: parts.op('Sum', hits), cut } };
  }
  return branches(g, spec, blocks.cond, [parts, blocked], [whole, oneBlock]);
}

function mlp(g: GraphBuilder, spec: ModelSpec, w: BlockWeights, L: number, h: string): string {
  const p = `blocks.${L}.mlp`;
  const up = linear(g, h, w.up, `${p}.W_in`);
  const hidden = w.gate ? g.op('Mul', [activation(g, spec, linear(g, h, w.gate, `${p}.W_gate`)), up]) : activation(g, spec, up);
  return linear(g, hidden, w.down, `${p}.W_out`);
}

/** norm(x) when the block has that norm, else x (TransformerLens names: ln1, ln2, ln1_post, ln2_post). */
function optNorm(g: GraphBuilder, spec: ModelSpec, x: string, n: Norm | null, name: string): string {
  return n ? norm(g, spec, x, n, name) : x;
}

/**
 * One block. resid_mid is the residual stream between the two sublayers: resid_pre + the
 * attention output as it is added (after Gemma 2/3's and OLMo 2's post-attention norm).
 */
export function block(g: GraphBuilder, spec: ModelSpec, sh: Shared, b: BlockInput, x: string, opts: ForwardGraphOptions): string {
  const { w, L } = b;
  const residDims = ['batch', 'seq', spec.dModel];
  const attnOut = patchHook(
    g,
    spec,
    L,
    optNorm(g, spec, attention(g, spec, sh, b, optNorm(g, spec, x, w.ln1, `blocks.${L}.ln1`), opts), w.lnAttnOut, `blocks.${L}.ln1_post`),
    opts,
    'attn_out',
  );
  g.output(hook.attnOut(L), attnOut, 'float32', residDims);
  const xOut = b.only ? b.only.pick(g, x) : x; // the rows this block outputs
  return blockAfterAttention(g, spec, w, L, xOut, attnOut, opts);
}

/**
 * The rest of a block once its attention output is known: resid_mid = x + attn_out, then the
 * MLP and resid_post (the suffix graph runs it alone to patch attn_out, graph/suffix.ts).
 */
export function blockAfterAttention(
  g: GraphBuilder,
  spec: ModelSpec,
  w: BlockWeights,
  L: number,
  x: string,
  attnOut: string,
  opts: HookOptions,
): string {
  const residDims = ['batch', 'seq', spec.dModel];
  const mid = g.op('Add', [x, attnOut]);
  g.output(hook.residMid(L), mid, 'float32', residDims);
  // Parallel blocks (GPT-NeoX): the MLP reads the block input, not resid_mid.
  const mlpIn = spec.parallelResidual ? x : mid;
  const mlpOut = patchHook(
    g,
    spec,
    L,
    optNorm(g, spec, mlp(g, spec, w, L, optNorm(g, spec, mlpIn, w.ln2, `blocks.${L}.ln2`)), w.lnMlpOut, `blocks.${L}.ln2_post`),
    opts,
    'mlp_out',
  );
  g.output(hook.mlpOut(L), mlpOut, 'float32', residDims);
  return g.op('Add', [mid, mlpOut]);
}

export { norm as normNode };
