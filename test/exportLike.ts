// Exports shaped like Optimum's, made from our own forward graph of a checkpoint: the plain
// names, logits of every position from a MatMul on a [d_model, vocab] initializer, and the
// attention_mask / position_ids inputs an export takes (shared by the ONNX surgery tests).
import { onnx } from 'onnx-proto';
import { openCheckpoint } from '../src/engine/checkpoint/hf';
import { specFromConfig } from '../src/engine/arch/spec';
import { transpose, weightReader } from '../src/engine/arch/weights';
import { buildForwardGraph } from '../src/engine/graph/forward';
import { LOGIT_ROWS } from '../src/engine/graph/gates';

export const roundTrip = (m: onnx.IModelProto) => onnx.ModelProto.decode(onnx.ModelProto.encode(onnx.ModelProto.create(m)).finish());
export const vi = (name: string, elemType: number, dims: (number | string)[]): onnx.IValueInfoProto => ({
  name,
  type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
});

/**
 * Our forward graph of a fixture, reshaped into what Optimum exports: only logits/present
 * outputs, logits for every position from a MatMul on a [d_model, vocab] initializer, extra
 * attention_mask and position_ids inputs.
 */
export function exportLikeOf(dir: string): onnx.IModelProto {
  const ckpt = openCheckpoint(dir);
  const spec = specFromConfig(ckpt.config);
  const proto = buildForwardGraph(spec, weightReader(spec, ckpt.weights), { patterns: false, interventions: false }).toModelProto();
  const g = proto.graph!;
  g.output = g.output!.filter((o) => !o.name!.startsWith('blocks.'));
  g.node = g.node!.filter((n) => !(n.opType === 'Identity' && n.output![0]!.startsWith('blocks.')));
  // our builder names the hooked tensors themselves; an export has plain names
  const hooked = new Set(g.node.flatMap((n) => n.output!).filter((s) => s.startsWith('blocks.')));
  const plain = (s: string) => (hooked.has(s) ? `plain_${s.replace(/\./g, '_')}` : s);
  for (const n of g.node) {
    n.input = n.input!.map(plain);
    n.output = n.output!.map(plain);
  }
  // all positions: the last-position Gather becomes an Identity, and so does our logit_rows gate
  const last = g.node.find((n) => n.opType === 'Gather' && n.attribute!.some((a) => a.name === 'axis' && Number(a.i) === 1))!;
  Object.assign(last, { opType: 'Identity', input: [last.input![0]!], attribute: [] });
  const gate = g.node.find((n) => n.opType === 'Slice' && n.input!.includes(LOGIT_ROWS))!;
  Object.assign(gate, { opType: 'Identity', input: [gate.input![0]!], attribute: [] });
  g.input = g.input!.filter((i) => i.name !== LOGIT_ROWS);
  // Gemm(x, W_U, transB) → MatMul(x, W_U^T)
  const gemm = g.node.find((n) => n.opType === 'Gemm')!;
  const w = g.initializer!.find((t) => t.name === gemm.input![1])!;
  const [V, d] = w.dims!.map(Number) as [number, number];
  const f = new Float32Array(w.rawData!.slice().buffer);
  g.initializer!.push({ name: 'lm_head.weight.T', dataType: 1, dims: [d, V], rawData: new Uint8Array(transpose(f, V, d).buffer) });
  Object.assign(gemm, { opType: 'MatMul', input: [gemm.input![0]!, 'lm_head.weight.T'], attribute: [] });
  g.output = g.output.map((o) => (o.name === 'logits' ? vi('logits', 1, ['batch', 'seq', V]) : o));
  g.input = [
    g.input![0]!,
    vi('attention_mask', onnx.TensorProto.DataType.INT64, ['batch', 'total']),
    vi('position_ids', onnx.TensorProto.DataType.INT64, ['batch', 'seq']),
    ...g.input!.slice(1),
  ];
  return proto;
}
