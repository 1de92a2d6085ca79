// The walk's per-position measures (METRICS.md "Per-layer measures"; the definitions of
// analysis/walk.ts, and ‖ln_final(x)‖ with queries.ts applyLnFinal), computed by the lens graph on the chunk of
// residual streams it already has: a few [chunk, rows, d_model] passes next to its
// [chunk, rows, d_vocab] work, multi-threaded in onnxruntime instead of JavaScript loops over
// the whole walk after the lens (about a fifth of an analysis of GPT-2-small on 2 cores).
//
// Outputs, [chunk, rows] unless noted (rows = the walk: resid_pre[0], resid_post[0..L−1]):
//   norm          ‖x‖
//   norm_final    ‖ln_final(x)‖ ("the ball")
//   cos_to_final  cos(x, x_last row)
//   step_size     ‖x_{r+1} − x_r‖      [chunk, rows−1]
//   step_cos      cos(x_r, x_{r+1})     [chunk, rows−1]
// A zero vector has cosine 0 with anything (as in walk.ts).
import type { GraphBuilder } from '../onnx/builder';

export const WALK_OUTPUTS = ['norm', 'norm_final', 'cos_to_final', 'step_size', 'step_cos'] as const;

/** @param resid [C, R, d]; @param normed ln_final(resid) [C, R, d] */
export function walkOutputs(g: GraphBuilder, resid: string, normed: string): void {
  const BIG = 2 ** 31 - 1;
  const lastAxis = g.ints([-1]);
  const rows = (x: string, from: number, to: number) => g.op('Slice', [x, g.ints([from]), g.ints([to]), g.ints([1])]);
  const length = (x: string) => g.op('Sqrt', [g.op('ReduceSumSquare', [x], { axes: [-1], keepdims: 0 })]);
  const dot = (a: string, b: string) => g.op('ReduceSum', [g.op('Mul', [a, b]), lastAxis], { keepdims: 0 });
  // cos = a·b / max(‖a‖‖b‖, tiny): a zero vector gives 0·(1/tiny) = 0
  const cos = (ab: string, na: string, nb: string) => g.op('Div', [ab, g.op('Max', [g.op('Mul', [na, nb]), g.float(1e-30)])]);

  const norm = length(resid); // [C, R]
  const last = rows(resid, -1, BIG); // [C, 1, d]
  const before = rows(resid, 0, -1); // rows 0..R−2
  const after = rows(resid, 1, BIG); // rows 1..R−1
  const normRows = (from: number, to: number) => g.op('Slice', [norm, g.ints([from]), g.ints([to]), g.ints([1])]);
  const CR = ['chunk', 'rows'];
  const CS = ['chunk', 'steps'];
  g.output('norm', norm, 'float32', CR);
  g.output('norm_final', length(normed), 'float32', CR);
  g.output('cos_to_final', cos(dot(resid, last), norm, normRows(-1, BIG)), 'float32', CR);
  g.output('step_size', length(g.op('Sub', [after, before])), 'float32', CS);
  g.output('step_cos', cos(dot(before, after), normRows(0, -1), normRows(1, BIG)), 'float32', CS);
}
