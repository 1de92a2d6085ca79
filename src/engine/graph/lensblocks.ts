// The logit lens in vocabulary blocks (the CPU's graph-cache path; lens.ts is the whole-vocabulary
// lens everywhere else). The unembedding is not a graph weight here: the engine reads W_U from the
// graph cache's weights file a block of tokens at a time (lensblocked.ts) and feeds each block to
// the block graph below, which reduces [chunk, rows, block] to partial sums that the engine
// merges across blocks (log-sum-exp style, with the running maximum as the reference point).
// So onnxruntime never holds W_U whole: 154 MB less for GPT-2-small (its pre-packed copy lived
// in the lens session for the life of the model), at the cost of reading W_U once per analysis.
//
// Prep graph: resid [chunk, rows, d] → normed = ln_final(resid) [chunk, rows, d], its dot products
// with the actual next token's rows of W_U and W_E, and the walk's per-position measures (walkstats.ts).
//
// Block graph, for one block of B tokens starting at token b0:
//   Inputs
//     normed       [chunk, rows, d]   from the prep graph; the LAST row is the final layer
//     w            [B, d]             W_U[b0 : b0 + B]
//     threshold    [chunk, rows]      the logit of the actual next token (computed by the engine)
//     next_local   [chunk] int64      next token − b0, clamped into [0, B)
//     next_in      [chunk]            1 when the next token lies in this block, else 0
//     context_local [n] int64         the context's distinct tokens that lie in this block, − b0
//     first_seen   [n]                the position where each first occurs
//     positions    [chunk]            the position of each chunk row
//     k            [1] int64
//   Outputs, [chunk, rows] unless noted, x = the logits of the block and p = softmax(x) over the block:
//     blk_max      max x
//     blk_ptop     p at the maximum (= 1 / Σ e^(x − max x))
//     blk_pdotx    Σ p·x                                   (entropy)
//     blk_pfdotx   Σ p_F·x, F = the last row               (KL to the final row)
//     blk_copy     Σ p over the context tokens the position has seen   (copy mass)
//     blk_rank     #{v ≠ next : x_v > threshold}
//     top_vals [chunk, rows, k], top_ids [chunk, rows, k] (block-local ids as floats; ties: lower id first)
import { GraphBuilder } from '../onnx/builder';
import type { ModelSpec } from '../arch/spec';
import type { Norm } from '../arch/weights';
import { normNode, softcap } from './forward';
import { walkOutputs } from './walkstats';

export const BLOCK_OUTPUTS = ['blk_max', 'blk_ptop', 'blk_pdotx', 'blk_pfdotx', 'blk_copy', 'blk_rank', 'top_vals', 'top_ids'] as const;

/**
 * resid [chunk, rows, d] → normed, the walk's measures, and `dots` [chunk, rows, 2]: normed · each
 * of the two vectors `next_rows` [chunk, 2, d] gives for its position (W_U and W_E at the actual
 * next token).
 */
export function buildLensPrepGraph(spec: ModelSpec, lnFinal: Norm): GraphBuilder {
  const g = new GraphBuilder(`${spec.modelType}-lens-prep`, null, false);
  const resid = g.input('resid', 'float32', ['chunk', 'rows', spec.dModel]);
  const nextRows = g.input('next_rows', 'float32', ['chunk', 2, spec.dModel]);
  const normed = normNode(g, spec, resid, lnFinal, 'ln_final');
  g.output('normed', normed, 'float32', ['chunk', 'rows', spec.dModel]);
  g.output('dots', g.op('MatMul', [normed, g.op('Transpose', [nextRows], { perm: [0, 2, 1] })]), 'float32', ['chunk', 'rows', 2]);
  walkOutputs(g, resid, normed);
  return g;
}

/** The block graph, for models without an unembedding bias (model.ts falls back to lens.ts for one). */
export function buildLensBlockGraph(spec: ModelSpec): GraphBuilder {
  const g = new GraphBuilder(`${spec.modelType}-lens-block`, null, false);
  const d = spec.dModel;
  const BIG = 2 ** 31 - 1;
  const normed = g.input('normed', 'float32', ['chunk', 'rows', d]);
  const w = g.input('w', 'float32', ['block', d]);
  const threshold = g.input('threshold', 'float32', ['chunk', 'rows']);
  const nextLocal = g.input('next_local', 'int64', ['chunk']);
  const nextIn = g.input('next_in', 'float32', ['chunk']);
  const contextLocal = g.input('context_local', 'int64', ['n']);
  const firstSeen = g.input('first_seen', 'float32', ['n']);
  const positions = g.input('positions', 'float32', ['chunk']);
  const k = g.input('k', 'int64', [1]);

  const flat = g.op('Reshape', [normed, g.ints([-1, d])]);
  const raw = g.op('Gemm', [flat, w], { transB: 1 }); // [C·R, B]
  const cr = g.op('Slice', [g.op('Shape', [normed]), g.ints([0]), g.ints([2])]); // [C, R]
  const blockLen = g.op('Slice', [g.op('Shape', [w]), g.ints([0]), g.ints([1])]); // [B]
  const logits = g.op('Reshape', [softcap(g, raw, spec.finalSoftcap), g.op('Concat', [cr, blockLen], { axis: 0 })]); // [C, R, B]

  const [topVals, topIds] = g.opN('TopK', [logits, k], 2, { axis: -1, largest: 1, sorted: 1 }) as [string, string];
  const squeeze = (x: string) => g.op('Squeeze', [x, g.ints([2])]);
  const first = (t: string) => g.op('Slice', [t, g.ints([0]), g.ints([1]), g.ints([2])]); // [C, R, 1]
  // One softmax over the block, p = e^(x − m)/s; s from the top-1 token: p_top = 1/s (lens.ts's lse trick)
  const p = g.op('Softmax', [logits], { axis: -1 }); // [C, R, B]
  const pTop = g.op('GatherElements', [p, first(topIds)], { axis: 2 }); // [C, R, 1]
  // Every Σ_v x_r(v)·p_s(v) of a position in one batched product (lens.ts): its diagonal is Σ p·x
  // (entropy), its last column Σ p_F·x_r (KL to the final row)
  const Mx = g.op('MatMul', [logits, g.op('Transpose', [p], { perm: [0, 2, 1] })]); // [C, R, R]
  const r = g.op('Slice', [cr, g.ints([1]), g.ints([2])]); // [R]
  const eye = g.op('EyeLike', [g.op('ConstantOfShape', [g.op('Concat', [r, r], { axis: 0 })])]); // [R, R]
  const pDotX = g.op('ReduceSum', [g.op('Mul', [Mx, eye]), g.ints([-1])], { keepdims: 0 }); // [C, R]
  const pFinalDotX = squeeze(g.op('Slice', [Mx, g.ints([-1]), g.ints([BIG]), g.ints([2])])); // [C, R]

  // rank: the comparison as bytes counted by an integer product with a column of ones (lens.ts),
  // less the next token's own column (its logit here and the threshold are two roundings of one number)
  const thr = g.op('Unsqueeze', [threshold, g.ints([2])]); // [C, R, 1]
  const above = g.op('Reshape', [g.cast(g.op('Greater', [logits, thr]), 'uint8'), g.op('Concat', [g.ints([-1]), blockLen], { axis: 0 })]);
  const ones = g.cast(g.op('Add', [g.op('ConstantOfShape', [g.op('Concat', [blockLen, g.ints([1])], { axis: 0 })]), g.float(1)]), 'uint8'); // [B, 1]
  const count = g.op('Reshape', [g.cast(g.op('MatMulInteger', [above, ones]), 'float32'), cr]); // [C, R]
  const at = g.op('Expand', [g.op('Reshape', [nextLocal, g.ints([-1, 1, 1])]), g.op('Concat', [cr, g.ints([1])], { axis: 0 })]);
  const selfAbove = g.cast(g.op('Greater', [g.op('GatherElements', [logits, at], { axis: 2 }), thr]), 'float32'); // [C, R, 1]
  const rank = g.op('Sub', [count, g.op('Mul', [squeeze(selfAbove), g.op('Unsqueeze', [nextIn, g.ints([1])])])]);

  // copy mass: p at the context's tokens [C, R, n] times the 0/1 mask of those seen by each position
  const pContext = g.op('Gather', [p, contextLocal], { axis: 2 });
  const lag = g.op('Sub', [g.op('Unsqueeze', [positions, g.ints([1])]), g.op('Unsqueeze', [firstSeen, g.ints([0])])]); // [C, n]
  const seen = g.op('Clip', [g.op('Add', [lag, g.float(1)]), g.float(0), g.float(1)]);
  const copy = squeeze(g.op('MatMul', [pContext, g.op('Unsqueeze', [seen, g.ints([2])])]));

  const CR = ['chunk', 'rows'];
  g.output('blk_max', squeeze(first(topVals)), 'float32', CR);
  g.output('blk_ptop', squeeze(pTop), 'float32', CR);
  g.output('blk_pdotx', pDotX, 'float32', CR);
  g.output('blk_pfdotx', pFinalDotX, 'float32', CR);
  g.output('blk_copy', copy, 'float32', CR);
  g.output('blk_rank', rank, 'float32', CR);
  g.output('top_vals', topVals, 'float32', [...CR, 'k']);
  g.output('top_ids', g.cast(topIds, 'float32'), 'float32', [...CR, 'k']); // block-local: exact in float32
  return g;
}
