// The logit-lens graph: for a chunk of positions and a stack of residual streams it applies
// ln_final and W_U and reduces [chunk, rows, d_vocab] to a few numbers per cell inside
// onnxruntime, so the vocabulary-sized tensor never reaches JavaScript.
//
// Inputs
//   resid        [chunk, rows, d_model]  the LAST row must be the final layer's resid_post
//   next_ids     [chunk] int64           the actual next token (any id at the last position)
//   context_ids  [n] int64               the distinct tokens at positions ≤ the chunk's last
//   first_seen   [n] float               the position where each of them first occurs
//   positions    [chunk] float           the position of each chunk row
//   k            [1] int64               how many top tokens to return
// (context_ids/first_seen instead of a [chunk, d_vocab] mask of seen tokens: n ≤ positions, and
// nothing vocabulary-sized is built in JavaScript or copied to a GPU per chunk.)
// Outputs (all [chunk, rows] unless noted; rows = layers of the walk)
//   top_ids [chunk, rows, k] int64, top_probs [chunk, rows, k], entropy (nats),
//   next_logprob, next_rank (number of tokens with a strictly larger logit),
//   kl_to_final = KL(p_final || p_L), copy_mass = Σ p_L over the tokens seen so far,
//   cos_next = cos(ln_final(x), W_E[next]), cos_pred = cos(ln_final(x), W_E[final top-1])
//   (`embedNorms`: ‖W_E[t]‖ for every t when the caller has them; computed here otherwise),
//   (no full logits: onnxruntime would copy that [chunk, rows, d_vocab] output on every run)
//   and the walk's per-position measures (graph/walkstats.ts: norms, steps, cosines)
import { GraphBuilder, type WeightSink } from '../onnx/builder';
import type { ModelSpec } from '../arch/spec';
import { rowNorms, type GlobalWeights } from '../arch/weights';
import { gatherRows, normNode, softcap, unembed, weightInit } from './forward';
import { walkOutputs } from './walkstats';

export const LENS_OUTPUTS = [
  'top_ids',
  'top_probs',
  'entropy',
  'next_logprob',
  'next_rank',
  'kl_to_final',
  'copy_mass',
  'cos_next',
  'cos_pred',
] as const;

/**
 * Builds the lens graph (its own session: see model.ts). `gpuTopK`: the top-k of a GPU provider
 * (gpuTopK below) instead of onnxruntime's TopK over the whole vocabulary.
 */
export function buildLensGraph(
  spec: ModelSpec,
  globals: GlobalWeights,
  sink: WeightSink | null = null,
  halfWeights = false,
  gpuTopK = false,
  embedNorms?: Float32Array,
): GraphBuilder {
  const g = new GraphBuilder(`${spec.modelType}-lens`, sink, halfWeights);
  const V = spec.dVocab;
  // Position-major layout [chunk, rows, …]: the per-position reductions below become batched
  // matrix products over the vocabulary instead of several elementwise passes.
  const resid = g.input('resid', 'float32', ['chunk', 'rows', spec.dModel]);
  const nextIds = g.input('next_ids', 'int64', ['chunk']);
  const contextIds = g.input('context_ids', 'int64', ['n']);
  const firstSeen = g.input('first_seen', 'float32', ['n']);
  const positions = g.input('positions', 'float32', ['chunk']);
  const k = g.input('k', 'int64', [1]);
  const BIG = 2 ** 31 - 1;

  const normed = normNode(g, spec, resid, globals.lnFinal, 'ln_final'); // [C, R, d]
  const flat = g.op('Reshape', [normed, g.ints([-1, spec.dModel])]);
  const wE = weightInit(g, 'W_E', globals.embed, [V, spec.dModel]);
  // the model's own read-out, final soft-capping included (Gemma 2/3), so the last row equals its logits
  const tied = globals.unembed === globals.embed;
  const raw2d = unembed(g, spec, globals, flat, tied ? wE : null);
  const logits2d = softcap(g, raw2d, spec.finalSoftcap);
  const cr = g.op('Slice', [g.op('Shape', [resid]), g.ints([0]), g.ints([2])]); // [C, R]
  const crV = g.op('Concat', [cr, g.ints([V])], { axis: 0 });
  const logits = g.op('Reshape', [logits2d, crV]); // [C, R, V]

  // One softmax; everything else from logits, p and the log-sum-exp. lse is recovered exactly
  // from the top-1 token: p_top = exp(x_top − lse) ⇒ lse = x_top − log p_top (p_top ≥ 1/V, no underflow).
  const p = g.op('Softmax', [logits], { axis: -1 }); // [C, R, V]
  const first = (t: string) => g.op('Slice', [t, g.ints([0]), g.ints([1]), g.ints([2])]); // [C, R, 1]
  let topIds: string;
  let topProbs: string;
  let lse: string;
  if (gpuTopK) {
    let topLogits: string;
    [topLogits, topIds] = blockTopK(g, logits, k, V);
    // p at the top-1 is the largest p; the other top probabilities from the logits and lse
    // (topIds stay off the GPU's critical path: int64 arithmetic runs on the CPU there)
    lse = g.op('Sub', [first(topLogits), g.op('Log', [g.op('ReduceMax', [p], { axes: [-1], keepdims: 1 })])]);
    topProbs = g.op('Exp', [g.op('Sub', [topLogits, lse])]); // [C, R, k]
  } else {
    let topLogits: string;
    [topLogits, topIds] = g.opN('TopK', [logits, k], 2, { axis: -1, largest: 1, sorted: 1 }) as [string, string];
    topProbs = g.op('GatherElements', [p, topIds], { axis: 2 }); // [C, R, k]
    lse = g.op('Sub', [first(topLogits), g.op('Log', [first(topProbs)])]); // [C, R, 1]
  }
  // Every sum over the vocabulary of a logit times a probability at the same position, in one
  // batched matrix product: M[c, r, s] = Σ_v x[c, r, v]·p[c, s, v] ([C, R, R]). Its diagonal
  // gives the entropy H = lse − Σ p·x, its last column KL's cross term Σ p_F·x_L (F = the last
  // row). R× the multiply-adds of the two sums alone (R/d_model of the unembedding's), but one
  // pass over x and p instead of three: 42 → 16 ms per 192 MiB chunk of GPT-2-small (2 threads).
  const M = g.op('MatMul', [logits, g.op('Transpose', [p], { perm: [0, 2, 1] })]); // [C, R, R]
  const r = g.op('Slice', [cr, g.ints([1]), g.ints([2])]); // [R]
  const rr = g.op('Concat', [r, r], { axis: 0 });
  const eye = g.op('EyeLike', [g.op('ConstantOfShape', [rr])]); // [R, R] float (ConstantOfShape's default is float 0)
  const pDotX = g.op('ReduceSum', [g.op('Mul', [M, eye]), g.ints([-1])], { keepdims: 1 }); // [C, R, 1]
  const entropy = g.op('Squeeze', [g.op('Sub', [lse, pDotX]), g.ints([2])]);

  // log-prob and rank of the actual next token: gather along the vocabulary axis.
  const nextIdx = g.op('Expand', [
    g.op('Unsqueeze', [nextIds, g.ints([1, 2])]), // [C, 1, 1]
    g.op('Concat', [cr, g.ints([1])], { axis: 0 }),
  ]);
  const nextLogit = g.op('GatherElements', [logits, nextIdx], { axis: 2 }); // [C, R, 1]
  const nextLogp = g.op('Sub', [nextLogit, lse]);
  // rank = #{v : x_v > x_next}. On the CPU the comparison as bytes, counted by an integer matrix
  // product with a column of ones: 1 + 1 + 1 bytes per logit after the comparison's read, against
  // 4 + 4 + 4 for a cast to float and a ReduceSum (43 → 24 ms per 192 MiB chunk of GPT-2-small,
  // 2 threads; exact: int32 sums, cast to float exactly below 2^24).
  // For a GPU (no integer matrix product there): clip((x − x_next)·1e30, 0, 1) is 1 when
  // x_v > x_next (differences above 1e-30), vectorised arithmetic with no bool tensor.
  let nextRank: string;
  if (gpuTopK) {
    const step = g.op('Clip', [g.op('Mul', [g.op('Sub', [logits, nextLogit]), g.float(1e30)]), g.float(0), g.float(1)]);
    nextRank = g.op('ReduceSum', [step, g.ints([-1])], { keepdims: 0 });
  } else {
    const above = g.op('Reshape', [g.cast(g.op('Greater', [logits, nextLogit]), 'uint8'), g.ints([-1, V])]); // [C·R, V]
    const ones = g.initializer('rank_ones', new Uint8Array(V).fill(1), [V, 1]);
    nextRank = g.op('Reshape', [g.cast(g.op('MatMulInteger', [above, ones]), 'float32'), cr]); // [C, R]
  }

  // KL(p_F || p_L) = (Σ p_F·x_F − lse_F) − (Σ p_F·x_L − lse_L), F = the last row: the sums are M's last column.
  const cross = g.op('Sub', [g.op('Slice', [M, g.ints([-1]), g.ints([BIG]), g.ints([2])]), lse]); // [C, R, 1]
  const crossFinal = g.op('Slice', [cross, g.ints([-1]), g.ints([BIG]), g.ints([1])]); // [C, 1, 1]
  const kl = g.op('Squeeze', [g.op('Sub', [crossFinal, cross]), g.ints([2])]);

  // Copy mass Σ_j p_L[context_ids[j]]·[first_seen[j] ≤ position]: the probabilities of the context's
  // tokens [C, R, n] times a 0/1 mask [C, n, 1] (positions are integers, so clip(pos − first + 1, 0, 1)
  // is the comparison, in arithmetic that stays on a GPU provider).
  const pContext = g.op('Gather', [p, contextIds], { axis: 2 }); // [C, R, n]
  const lag = g.op('Sub', [g.op('Unsqueeze', [positions, g.ints([1])]), g.op('Unsqueeze', [firstSeen, g.ints([0])])]); // [C, n]
  const seenMask = g.op('Clip', [g.op('Add', [lag, g.float(1)]), g.float(0), g.float(1)]);
  const copyMass = g.op('Squeeze', [g.op('MatMul', [pContext, g.op('Unsqueeze', [seenMask, g.ints([2])])]), g.ints([2])]);

  // Angular proximity: cos(ln_final(x_L), W_E[t]) for t = next token and final top-1.
  // The final row's top-1 by ArgMax on its logits, not by slicing top_ids: int64 slicing runs on the
  // CPU under a GPU provider, and would fetch top_ids back in the middle of the graph.
  const finalLogits = g.op('Slice', [logits, g.ints([-1]), g.ints([BIG]), g.ints([1])]); // [C, 1, V]
  const finalTop1 = g.op('ArgMax', [finalLogits], { axis: 2, keepdims: 0 }); // [C, 1]
  let cosNext: string;
  let cosPred: string;
  if (tied && !globals.unembedBias && !g.halfWeights) {
    // Tied read-out: ln_final(x)·W_E[t] is the raw logit of t (before soft-capping), so
    // cos = raw[t] / (‖ln_final(x)‖·‖W_E[t]‖) with the rows' norms precomputed. Nothing but the
    // unembedding product reads W_E here, so onnxruntime can pre-pack it for that product and drop
    // the mapped original (runtime/ort.ts: lensPrepack).
    const raw = spec.finalSoftcap === null ? logits : g.op('Reshape', [raw2d, crV]); // [C, R, V]
    const eNorms = g.initializer('W_E_row_norms', embedNorms ?? rowNorms(globals.embed, V, spec.dModel), [V]);
    const len = g.op('Sqrt', [g.op('ReduceSum', [g.op('Mul', [normed, normed]), g.ints([-1])], { keepdims: 0 })]); // [C, R]
    const cosOf = (ids: string /* [C] or [C, 1] */, norms: string /* [C, 1] */) => {
      const at = g.op('Expand', [g.op('Reshape', [ids, g.ints([-1, 1, 1])]), g.op('Concat', [cr, g.ints([1])], { axis: 0 })]); // [C, R, 1]
      const dot = g.op('Squeeze', [g.op('GatherElements', [raw, at], { axis: 2 }), g.ints([2])]); // [C, R]
      return g.op('Div', [dot, g.op('Mul', [len, norms])]);
    };
    cosNext = cosOf(nextIds, g.op('Unsqueeze', [g.op('Gather', [eNorms, nextIds], { axis: 0 }), g.ints([1])]));
    cosPred = cosOf(finalTop1, g.op('Gather', [eNorms, finalTop1], { axis: 0 }));
  } else {
    const unit = (x: string) => g.op('Div', [x, g.op('Sqrt', [g.op('ReduceSum', [g.op('Mul', [x, x]), g.ints([-1])], { keepdims: 1 })])]);
    const normedUnit = unit(normed); // [C, R, d]
    const eNext = g.op('Unsqueeze', [unit(gatherRows(g, wE, nextIds)), g.ints([1])]); // [C, 1, d]
    const ePred = unit(gatherRows(g, wE, finalTop1)); // [C, 1, d]
    cosNext = g.op('ReduceSum', [g.op('Mul', [normedUnit, eNext]), g.ints([-1])], { keepdims: 0 });
    cosPred = g.op('ReduceSum', [g.op('Mul', [normedUnit, ePred]), g.ints([-1])], { keepdims: 0 });
  }

  const CR = ['chunk', 'rows'];
  g.output('top_ids', topIds, 'int64', [...CR, 'k']);
  g.output('top_probs', topProbs, 'float32', [...CR, 'k']);
  g.output('entropy', entropy, 'float32', CR);
  g.output('next_logprob', g.op('Squeeze', [nextLogp, g.ints([2])]), 'float32', CR);
  g.output('next_rank', nextRank, 'float32', CR);
  g.output('kl_to_final', kl, 'float32', CR);
  g.output('copy_mass', copyMass, 'float32', CR);
  g.output('cos_next', cosNext, 'float32', CR);
  g.output('cos_pred', cosPred, 'float32', CR);
  walkOutputs(g, resid, normed); // the walk's per-position measures on the same chunk (walkstats.ts)
  return g;
}

/** Vocabulary block of the GPU top-k: the largest row onnxruntime's WebGPU TopK sorts in one workgroup. */
const TOPK_BLOCK = 2048;

/**
 * Exact top-k over the last axis in two stages, for a GPU provider: onnxruntime's WebGPU TopK
 * bitonic-sorts the whole padded row in global memory (65,536 elements, 136 dispatches for a
 * 50,257-token vocabulary), while rows of ≤ 2048 sort in one workgroup's shared memory. So: the
 * top-k of each block of TOPK_BLOCK tokens, then the top-k of those candidates. Same order as
 * TopK, ties included (lower index first: blocks are in index order and each sort is stable).
 * x [C, R, V] → values [C, R, k], ids [C, R, k] int64.
 */
export function blockTopK(g: GraphBuilder, x: string, k: string, V: number): [string, string] {
  if (V <= TOPK_BLOCK) return g.opN('TopK', [x, k], 2, { axis: -1, largest: 1, sorted: 1 }) as [string, string];
  const B = Math.ceil(V / TOPK_BLOCK);
  const padded = g.op('Pad', [x, g.ints([0, 0, 0, 0, 0, B * TOPK_BLOCK - V]), g.float(-Infinity)]); // [C, R, B·S]
  const blocks = g.op('Reshape', [padded, g.ints([0, 0, B, TOPK_BLOCK])]);
  const [v1, i1] = g.opN('TopK', [blocks, k], 2, { axis: -1, largest: 1, sorted: 1 }) as [string, string]; // [C, R, B, k]
  const offsets = g.initializer(
    'topk_block_offsets',
    BigInt64Array.from({ length: B }, (_, b) => BigInt(b * TOPK_BLOCK)),
    [B, 1],
  );
  const candidates = g.op('Reshape', [g.op('Add', [i1, offsets]), g.ints([0, 0, -1])]); // [C, R, B·k] token ids
  const [values, pick] = g.opN('TopK', [g.op('Reshape', [v1, g.ints([0, 0, -1])]), k], 2, { axis: -1, largest: 1, sorted: 1 }) as [
    string,
    string,
  ];
  return [values, g.op('GatherElements', [candidates, pick], { axis: 2 })];
}
