// Attention statistics computed where the patterns are produced, inside the forward graph
// (METRICS.md "Attention"; the same definitions as analysis/attention.ts headStats):
//   kernel K(d) = mean over q ≥ d of pattern[q][q−d], d = 0..min(64, T−1)
//   kernel_norm = mean over q ≥ d of pattern[q][q−d]·(q+1)   (÷ the uniform baseline)
//   self_bias   = K(0) − mean_q 1/(q+1)
//   induction   = Σ pattern[i][j+1] over earlier occurrences j of token i, ÷ #queries that have one
// Why in the graph: onnxruntime-node copies every fetched output into a fresh JS buffer, so
// fetching n_layers·n_heads·T² floats of patterns holds them twice (151 MB → 302 MB at 512
// tokens of GPT-2-small, 1.2 GB at 1024). These outputs are n_layers·n_heads·67 floats; a
// head's full pattern is fetched on demand, one layer at a time.
//
// Positions are absolute (past + q) and the induction targets are found among this call's
// tokens, so the statistics are those of analyze() (past = 0); during KV-cache generation they
// are computed on one row and never fetched.
import type { GraphBuilder } from '../onnx/builder';
import { gated, PATTERN_ROWS } from './gates';

/** The parts of a whole pattern [batch, n_heads, seq, total] (`g` may be an If branch: the shared values live in its root). */
export function patternParts(g: GraphBuilder, s: StatsShared, pattern: string): PatternParts {
  return {
    diagonals: patternDiagonals(g, pattern, s.keyIdx),
    hits: inductionHits(g, pattern, s.inductionMask),
    cut: gated(g, PATTERN_ROWS, pattern, 2),
  };
}

/** What the statistics need of a layer's pattern, however it was computed (forward.ts: one block or query blocks). */
export interface PatternParts {
  /** [batch, n_heads, seq, D+1]: patternDiagonals of every query row */
  diagonals: string;
  /** [batch, n_heads]: inductionHits over every query row */
  hits: string;
  /** [batch, n_heads, pattern_rows, total]: the pattern cut to the gate (gates.ts) */
  cut: string;
}

/**
 * Layer L's attention outputs, from the parts of its pattern (the pattern itself need not exist
 * outside an If branch): the pattern (`name`, cut to pattern_rows) and its statistics.
 * Returns a float scalar that is exactly 0 and depends on every reader of the pattern; the
 * caller adds it to the layer's output. onnxruntime orders nodes by a depth-first walk back
 * from the last graph output, so outputs that nothing downstream depends on run after the last
 * layer, and every layer's pattern (n_heads·T² floats) stays alive until then (measured: +250 MB
 * of arena at 512 tokens of GPT-2-small).
 */
export function attentionOutputsFrom(
  g: GraphBuilder,
  s: StatsShared,
  parts: PatternParts,
  name: string,
  L: number,
  nHeads: number,
): string {
  g.output(name, parts.cut, 'float32', ['batch', nHeads, 'rows', 'total']);
  const kernel = statsOutputs(g, s, parts.diagonals, parts.hits, L);
  // finite sums (probabilities; an empty cut sums to 0), so 0·(their sum) is exactly 0
  const sum = (x: string) => g.op('ReduceSum', [x], { keepdims: 0 });
  return g.op('Mul', [g.op('Add', [g.op('Add', [sum(kernel), sum(parts.hits)]), sum(parts.cut)]), g.float(0)]);
}

/** Kernels are computed for offsets 0..ATTN_STATS_MAX_OFFSET (capped at T−1). */
export const ATTN_STATS_MAX_OFFSET = 64;

export const statsHook = {
  /** [batch, n_heads, min(65, T)] */
  kernel: (L: number) => `blocks.${L}.attn.stats.kernel`,
  /** [batch, n_heads, min(65, T)] */
  kernelNorm: (L: number) => `blocks.${L}.attn.stats.kernel_norm`,
  /** [batch, n_heads] */
  selfBias: (L: number) => `blocks.${L}.attn.stats.self_bias`,
  /** [batch, n_heads] (NaN when no token repeats) */
  induction: (L: number) => `blocks.${L}.attn.stats.induction`,
};

/** The values every layer's statistics share: built once per graph. */
export interface StatsShared {
  /** [seq, D+1] int64: the key q−d (clamped at 0) for query q and offset d. */
  keyIdx: string;
  /** [seq, D+1] float: 1 where q ≥ d. */
  mask: string;
  /** [seq, D+1] float: (q+1) where q ≥ d. */
  maskNorm: string;
  /** [D+1] float: the number of queries at each offset. */
  count: string;
  /** scalar float: mean_q 1/(q+1). */
  uniformSelf: string;
  /** [batch, seq, total] float: 1 at (query i, key j+1) for earlier occurrences j of token i. */
  targets: string;
  /** targets as [batch, seq·total, 1] */
  inductionMask: string;
  /** [batch, 1] float: queries with at least one induction target. */
  inductionQueries: string;
}

const shared = new WeakMap<GraphBuilder, StatsShared>();

/**
 * The shared values, built in the graph's root (If branches read them there).
 * `ids`: input_ids [batch, seq]; `past` and `seq` are int64 scalars.
 */
export function statsShared(builder: GraphBuilder, sh: { ids?: string; past: string; seq: string }): StatsShared {
  const g = builder.root;
  const hit = shared.get(g);
  if (hit) return hit;
  if (!sh.ids) throw new Error("attention statistics need the graph's input_ids");
  const { ids, past, seq } = sh;
  const one = g.ints([1], true);
  const zero = g.ints([0], true);
  const total = g.op('Add', [past, seq]);
  const q = g.op('Range', [zero, seq, one]); // [seq] within this call
  const qAbs = g.op('Add', [q, past]);
  const offsets = g.op('Range', [zero, g.op('Min', [total, g.ints([ATTN_STATS_MAX_OFFSET + 1], true)]), one]); // [D+1]
  const key = g.op('Sub', [g.op('Unsqueeze', [qAbs, g.ints([1])]), g.op('Unsqueeze', [offsets, g.ints([0])])]); // [seq, D+1]
  const mask = g.cast(g.op('GreaterOrEqual', [key, zero]), 'float32');
  const qPlus1 = g.cast(g.op('Add', [qAbs, one]), 'float32'); // [seq]
  const maskNorm = g.op('Mul', [mask, g.op('Unsqueeze', [qPlus1, g.ints([1])])]);
  const count = g.op('ReduceSum', [mask, g.ints([0])], { keepdims: 0 });
  const uniformSelf = g.op('ReduceMean', [g.op('Reciprocal', [qPlus1])], { axes: [0], keepdims: 0 });

  // earlier[b, i, j] = ids[b, i] == ids[b, j] and j < i; the target key is j+1 (≤ i), shifted
  // right by past+1 columns so that the mask lines up with the pattern's key axis (past + seq).
  const same = g.op('Equal', [g.op('Unsqueeze', [ids, g.ints([2])]), g.op('Unsqueeze', [ids, g.ints([1])])]);
  const before = g.op('Less', [g.op('Unsqueeze', [q, g.ints([0])]), g.op('Unsqueeze', [q, g.ints([1])])]);
  const earlier = g.cast(g.op('And', [same, before]), 'float32'); // [b, seq, seq]
  const pads = g.op('Concat', [g.ints([0, 0]), g.op('Unsqueeze', [g.op('Add', [past, one]), g.ints([0])]), g.ints([0, 0, 0])], {
    axis: 0,
  });
  const shifted = g.op('Pad', [earlier, pads]); // [b, seq, past + 1 + seq]
  const targets = g.op('Slice', [shifted, g.ints([0]), g.op('Unsqueeze', [total, g.ints([0])]), g.ints([2])]); // [b, seq, total]
  const inductionQueries = g.op('ReduceSum', [g.op('ReduceMax', [targets], { axes: [2], keepdims: 0 }), g.ints([1])], { keepdims: 1 });
  const value: StatsShared = {
    keyIdx: g.op('Max', [key, zero]),
    mask,
    maskNorm,
    count,
    uniformSelf,
    targets,
    inductionMask: g.op('Reshape', [targets, g.ints([0, -1, 1])]),
    inductionQueries,
  };
  shared.set(g, value);
  return value;
}

/**
 * The pattern's diagonal band [batch, n_heads, rows, D+1]: entry (q, d) is pattern[q][q−d] for
 * the query rows whose key indices q−d (clamped at 0) are `keyIdx` [rows, D+1]. One gather of
 * rows·(D+1) entries.
 */
export function patternDiagonals(g: GraphBuilder, pattern: string, keyIdx: string): string {
  const shape = g.op('Shape', [pattern]);
  const idxShape = g.op('Concat', [g.op('Slice', [shape, g.ints([0]), g.ints([3])]), g.op('Shape', [keyIdx], { start: 1 })], { axis: 0 });
  return g.op('GatherElements', [pattern, g.op('Expand', [keyIdx, idxShape])], { axis: 3 });
}

/** Σ pattern·targets per head [batch, n_heads] (`targets` [batch, rows·keys, 1], the pattern's layout): one matrix-vector product. */
export function inductionHits(g: GraphBuilder, pattern: string, targets: string): string {
  const flat = g.op('Reshape', [pattern, g.ints([0, 0, -1])]); // [b, h, rows·keys]
  return g.op('Squeeze', [g.op('MatMul', [flat, targets]), g.ints([2])]);
}

/** Adds layer L's statistics as graph outputs, from the diagonals and hits of its whole pattern; returns the kernel. */
function statsOutputs(g: GraphBuilder, s: StatsShared, diagonals: string, hits: string, L: number): string {
  const over = (w: string) => g.op('Div', [g.op('ReduceSum', [g.op('Mul', [diagonals, w]), g.ints([2])], { keepdims: 0 }), s.count]);
  const kernel = over(s.mask); // [b, h, D+1]
  const first = g.op('Squeeze', [g.op('Slice', [kernel, g.ints([0]), g.ints([1]), g.ints([2])]), g.ints([2])]); // [b, h]
  const dims = ['batch', 'n_heads'];
  g.output(statsHook.kernel(L), kernel, 'float32', [...dims, 'offsets']);
  g.output(statsHook.kernelNorm(L), over(s.maskNorm), 'float32', [...dims, 'offsets']);
  g.output(statsHook.selfBias(L), g.op('Sub', [first, s.uniformSelf]), 'float32', dims);
  g.output(statsHook.induction(L), g.op('Div', [hits, s.inductionQueries]), 'float32', dims);
  return kernel;
}
