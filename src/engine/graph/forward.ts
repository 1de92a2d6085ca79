// The instrumented forward graph, one builder for every family (differences live in
// ModelSpec and the canonical weights). Inputs and outputs:
//   input_ids                      [batch, seq]            int64
//   past_key_values.{L}.key|value  [batch, n_kv, past, d_head]  (past may be 0)
//   logits                         [batch, d_vocab]        (last position only)
//   present.{L}.key|value          [batch, n_kv, past+seq, d_head]
//   blocks.0.hook_resid_pre, blocks.{L}.hook_resid_mid|hook_resid_post  [batch, seq, d_model]
//   blocks.{L}.attn.hook_pattern   [batch, n_heads, seq, past+seq]
// One graph serves analysis (past = 0) and generation (past = KV cache).
import { GraphBuilder, type WeightSink } from '../onnx/builder';
import type { ModelSpec } from '../arch/spec';
import type { BlockWeights, GlobalWeights, Linear, Norm, WeightReader } from '../arch/weights';
import { f32ToF16 } from '../checkpoint/safetensors';
import { EngineError } from '../errors';
import { headHook, residPatchHook } from './interventions';

export const hook = {
  residPre: (L: number) => `blocks.${L}.hook_resid_pre`,
  residMid: (L: number) => `blocks.${L}.hook_resid_mid`,
  residPost: (L: number) => `blocks.${L}.hook_resid_post`,
  pattern: (L: number) => `blocks.${L}.attn.hook_pattern`,
  pastKey: (L: number) => `past_key_values.${L}.key`,
  pastValue: (L: number) => `past_key_values.${L}.value`,
  presentKey: (L: number) => `present.${L}.key`,
  presentValue: (L: number) => `present.${L}.value`,
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
  /** Intervention inputs and the z-mean outputs (graph/interventions.ts); default on. */
  interventions?: boolean;
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

/** Per-graph shared values: positions, RoPE tables, causal mask. */
export interface Shared {
  batch: string;
  seq: string;
  past: string;
  cos: string | null; // [seq, rotary_dim]
  sin: string | null;
  mask: string; // [seq, past+seq], 0 or -inf
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
  const ids = g.input('input_ids', 'int64', ['batch', 'seq']);
  const kvDims = ['batch', spec.nKvHeads, 'past', spec.headDim];
  for (let L = 0; L < spec.nLayers; L++) {
    g.input(hook.pastKey(L), 'float32', kvDims);
    g.input(hook.pastValue(L), 'float32', kvDims);
  }
  const globals = reader.globals();
  const shared = sharedValues(g, spec, ids);
  const wE = weightInit(g, 'W_E', globals.embed, [spec.dVocab, spec.dModel]);

  let x = gatherRows(g, wE, ids); // [batch, seq, d_model]
  if (globals.posEmbed) {
    const posIds = g.op('Range', [shared.past, g.op('Add', [shared.past, shared.seq]), g.ints([1], true)]);
    const wPos = weightInit(g, 'W_pos', globals.posEmbed, [spec.maxPositions, spec.dModel]);
    x = g.op('Add', [x, gatherRows(g, wPos, posIds)]);
  }
  const residDims = ['batch', 'seq', spec.dModel];
  x = residPatchHook(g, 0, x, opts); // interventions.ts: patched resid_pre cells
  g.output(hook.residPre(0), x, 'float32', residDims);

  for (let L = 0; L < spec.nLayers; L++) {
    const w = reader.block(L);
    x = block(g, spec, shared, w, L, x, opts);
    if (L + 1 < spec.nLayers) x = residPatchHook(g, L + 1, x, opts); // interventions.ts
    g.output(hook.residPost(L), x, 'float32', residDims);
    yield L;
  }

  // Final logits at the last position only: [batch, d_model] → [batch, d_vocab].
  const lastIdx = g.op('Sub', [shared.seq, g.ints([1], true)]);
  const last = g.op('Gather', [x, lastIdx], { axis: 1 });
  const normed = norm(g, spec, last, globals.lnFinal, 'ln_final');
  const logits = unembed(g, spec, globals, normed, globals.unembed === globals.embed ? wE : null);
  g.output('logits', logits, 'float32', ['batch', spec.dVocab]);
  return g;
}

/** logits = x @ W_U (+ b_U) with W_U stored [d_vocab, d_model] (Gemm with transB). */
export function unembed(g: GraphBuilder, spec: ModelSpec, globals: GlobalWeights, x2d: string, wUName: string | null): string {
  const wU = wUName ?? weightInit(g, 'W_U', globals.unembed, [spec.dVocab, spec.dModel]);
  const bias = globals.unembedBias ? g.initializer('b_U', globals.unembedBias, [spec.dVocab]) : null;
  if (!g.halfWeights) return g.op('Gemm', bias ? [x2d, wU, bias] : [x2d, wU], { transB: 1 });
  const logits = weightProduct(g, 'Gemm', x2d, wU, { transB: 1 });
  return bias ? g.op('Add', [logits, bias]) : logits;
}

export function sharedValues(g: GraphBuilder, spec: ModelSpec, ids: string): Shared {
  const idShape = g.op('Shape', [ids]);
  const batch = g.op('Gather', [idShape, g.ints([0], true)], { axis: 0 });
  const seq = g.op('Gather', [idShape, g.ints([1], true)], { axis: 0 });
  const past = g.op('Gather', [g.op('Shape', [hook.pastKey(0)]), g.ints([2], true)], { axis: 0 });
  const total = g.op('Add', [past, seq]);
  const one = g.ints([1], true);
  const qPos = g.op('Range', [past, total, one]); // [seq]
  const kPos = g.op('Range', [g.ints([0], true), total, one]); // [past+seq]
  const qCol = g.op('Unsqueeze', [qPos, g.ints([1])]); // [seq, 1]
  const kRow = g.op('Unsqueeze', [kPos, g.ints([0])]); // [1, past+seq]
  let blocked = g.op('Greater', [kRow, qCol]); // future keys
  if (spec.slidingWindow !== null) {
    const tooOld = g.op('LessOrEqual', [kRow, g.op('Sub', [qCol, g.ints([spec.slidingWindow], true)])]);
    blocked = g.op('Or', [blocked, tooOld]);
  }
  const mask = g.op('Where', [blocked, g.float(-Infinity), g.float(0)]);
  return { batch, seq, past, ...ropeTables(g, spec, qCol), mask };
}

/** RoPE cos/sin tables [seq, rotary_dim] for the query positions qCol [seq, 1] (int64); null without RoPE. */
export function ropeTables(g: GraphBuilder, spec: ModelSpec, qCol: string): { cos: string | null; sin: string | null } {
  if (!spec.rope) return { cos: null, sin: null };
  const posF = g.cast(qCol, 'float32'); // [seq, 1]
  const inv = g.initializer('rope_inv_freq', spec.rope.invFreq, [1, spec.rope.rotaryDim / 2]);
  const freqs = g.op('Mul', [posF, inv]); // [seq, rotary_dim/2]
  const emb = g.op('Concat', [freqs, freqs], { axis: -1 }); // [seq, rotary_dim]
  return { cos: g.op('Cos', [emb]), sin: g.op('Sin', [emb]) };
}

function norm(g: GraphBuilder, spec: ModelSpec, x: string, n: Norm, name: string): string {
  const w = g.initializer(`${name}.w`, n.w, [n.w.length]);
  if (spec.norm === 'layernorm') {
    const b = n.b ? g.initializer(`${name}.b`, n.b, [n.b.length]) : g.initializer(`${name}.b`, new Float32Array(n.w.length), [n.w.length]);
    return g.op('LayerNormalization', [x, w, b], { axis: -1, epsilon: { float: spec.normEps } });
  }
  // RMSNorm written in the pattern onnxruntime fuses (SimplifiedLayerNormalization).
  const ms = g.op('ReduceMean', [g.op('Pow', [x, g.float(2)])], { axes: [-1], keepdims: 1 });
  const rms = g.op('Sqrt', [g.op('Add', [ms, g.float(spec.normEps)])]);
  return g.op('Mul', [g.op('Div', [x, rms]), w]);
}

function linear(g: GraphBuilder, x: string, lin: Linear, name: string): string {
  const w = weightInit(g, `${name}.w`, lin.w, [lin.dIn, lin.dOut]);
  const y = weightProduct(g, 'MatMul', x, w);
  return lin.b ? g.op('Add', [y, g.initializer(`${name}.b`, lin.b, [lin.dOut])]) : y;
}

function activation(g: GraphBuilder, spec: ModelSpec, x: string): string {
  switch (spec.act) {
    case 'silu':
      return g.op('Mul', [x, g.op('Sigmoid', [x])]);
    case 'relu':
      return g.op('Relu', [x]);
    case 'gelu': {
      const erf = g.op('Erf', [g.op('Mul', [x, g.float(Math.SQRT1_2)])]);
      return g.op('Mul', [g.op('Mul', [x, g.float(0.5)]), g.op('Add', [erf, g.float(1)])]);
    }
    case 'gelu_tanh': {
      const cube = g.op('Mul', [g.op('Mul', [x, x]), x]);
      const inner = g.op('Mul', [g.op('Add', [x, g.op('Mul', [cube, g.float(0.044715)])]), g.float(Math.sqrt(2 / Math.PI))]);
      return g.op('Mul', [g.op('Mul', [x, g.float(0.5)]), g.op('Add', [g.op('Tanh', [inner]), g.float(1)])]);
    }
  }
}

/** Rotary embedding (rotate_half convention) on [batch, heads, seq, d_head]. */
function rope(g: GraphBuilder, spec: ModelSpec, sh: Shared, x: string): string {
  if (!spec.rope || !sh.cos || !sh.sin) return x;
  const rd = spec.rope.rotaryDim;
  const axis3 = g.ints([3]);
  const sl = (t: string, a: number, b: number) => g.op('Slice', [t, g.ints([a]), g.ints([b]), axis3]);
  const xr = rd < spec.headDim ? sl(x, 0, rd) : x;
  const x1 = sl(xr, 0, rd / 2);
  const x2 = sl(xr, rd / 2, rd);
  const rotated = g.op('Concat', [g.op('Neg', [x2]), x1], { axis: -1 });
  const out = g.op('Add', [g.op('Mul', [xr, sh.cos]), g.op('Mul', [rotated, sh.sin])]);
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

function attention(g: GraphBuilder, spec: ModelSpec, sh: Shared, w: BlockWeights, L: number, h: string, opts: ForwardGraphOptions): string {
  const p = `blocks.${L}.attn`;
  const q = rope(g, spec, sh, splitHeads(g, linear(g, h, w.q, `${p}.W_Q`), spec.nHeads, spec.headDim));
  const kNew = rope(g, spec, sh, splitHeads(g, linear(g, h, w.k, `${p}.W_K`), spec.nKvHeads, spec.headDim));
  const vNew = splitHeads(g, linear(g, h, w.v, `${p}.W_V`), spec.nKvHeads, spec.headDim);
  const k = g.op('Concat', [hook.pastKey(L), kNew], { axis: 2 });
  const v = g.op('Concat', [hook.pastValue(L), vNew], { axis: 2 });
  const kvDims = ['batch', spec.nKvHeads, 'total', spec.headDim];
  g.output(hook.presentKey(L), k, 'float32', kvDims);
  g.output(hook.presentValue(L), v, 'float32', kvDims);

  const kT = g.op('Transpose', [repeatKv(g, spec, k)], { perm: [0, 1, 3, 2] });
  const scores = g.op('Mul', [g.op('MatMul', [q, kT]), g.float(1 / Math.sqrt(spec.headDim))]);
  const pattern = g.op('Softmax', [g.op('Add', [scores, sh.mask])], { axis: -1 }); // [b, h, seq, total]
  if (opts.patterns) g.output(hook.pattern(L), pattern, 'float32', ['batch', spec.nHeads, 'seq', 'total']);
  const z = headHook(g, spec, L, g.op('MatMul', [pattern, repeatKv(g, spec, v)]), opts); // [b, h, seq, d_head], interventions.ts
  const merged = g.op('Reshape', [g.op('Transpose', [z], { perm: [0, 2, 1, 3] }), g.ints([0, 0, spec.nHeads * spec.headDim])]);
  return linear(g, merged, w.o, `${p}.W_O`);
}

function mlp(g: GraphBuilder, spec: ModelSpec, w: BlockWeights, L: number, h: string): string {
  const p = `blocks.${L}.mlp`;
  const up = linear(g, h, w.up, `${p}.W_in`);
  const hidden = w.gate ? g.op('Mul', [activation(g, spec, linear(g, h, w.gate, `${p}.W_gate`)), up]) : activation(g, spec, up);
  return linear(g, hidden, w.down, `${p}.W_out`);
}

export function block(
  g: GraphBuilder,
  spec: ModelSpec,
  sh: Shared,
  w: BlockWeights,
  L: number,
  x: string,
  opts: ForwardGraphOptions,
): string {
  const residDims = ['batch', 'seq', spec.dModel];
  const attnOut = attention(g, spec, sh, w, L, norm(g, spec, x, w.ln1, `blocks.${L}.ln1`), opts);
  const mid = g.op('Add', [x, attnOut]);
  g.output(hook.residMid(L), mid, 'float32', residDims);
  // Parallel blocks (GPT-NeoX): the MLP reads the block input, not resid_mid.
  const mlpIn = spec.parallelResidual ? x : mid;
  const mlpOut = mlp(g, spec, w, L, norm(g, spec, mlpIn, w.ln2, `blocks.${L}.ln2`));
  return g.op('Add', [mid, mlpOut]);
}

export { norm as normNode };
