// Interventions as graph inputs (ARCHITECTURE.md): the instrumented graphs take them as inputs,
// fed "no intervention" by default (interventions/session.ts adds the defaults to every run that
// does not feed them, so callers of the forward graph need not know), and an experiment never
// rebuilds a graph. (onnxruntime-node cannot feed an input that has an initializer default:
// it only passes the inputs the session reports, which leave such inputs out.)
//
//   blocks.{L}.attn.head_scale   [b, n_heads, s, 1]       default [1, n_heads, 1, 1] of 1
//   blocks.{L}.attn.head_bias    [b, n_heads, s, d_head]  default [1, n_heads, 1, d_head] of 0
//        applied to each head's output z (TransformerLens hook_z, before W_O):
//        z' = z·scale + bias, broadcast over the batch (b = 1) and the positions (s = 1), or
//        per batch row and position. Zero ablation: scale 0, bias 0; mean ablation: scale 0,
//        bias = the head's mean z over a clean run's positions; patching a head: scale 0, bias =
//        another run's z at each position. z·1 + 0 = z exactly.
//   blocks.{L}.hook_resid_pre.patch_mask   [batch, seq, 1] float, 1 = replace   default [1,1,1] 0
//   blocks.{L}.hook_resid_pre.patch_value  [batch, seq, d_model]                  default [1,1,1] 0
//        resid_pre[L]' = mask ? value : resid_pre[L] (a select, so patched values are exact).
//        Layer 0 patches the embeddings; resid_post[L−1] is reported as the patched value.
//   output blocks.{L}.attn.hook_z_mean  [batch, n_heads, d_head]: mean over the run's positions
//        of z before the intervention (mean ablation takes it from a clean run).
//   output blocks.{L}.attn.hook_z  [batch, n_heads, seq, d_head]: z before the intervention
//        (patching a head takes it from the other run).
import type { GraphBuilder } from '../onnx/builder';
import type { ModelSpec } from '../arch/spec';

/** Graphs without interventions (tests that mimic plain exports) turn the hooks off. */
export interface HookOptions {
  interventions?: boolean;
}

export const interventionName = {
  headScale: (L: number) => `blocks.${L}.attn.head_scale`,
  headBias: (L: number) => `blocks.${L}.attn.head_bias`,
  patchMask: (L: number) => `blocks.${L}.hook_resid_pre.patch_mask`,
  patchValue: (L: number) => `blocks.${L}.hook_resid_pre.patch_value`,
  zMean: (L: number) => `blocks.${L}.attn.hook_z_mean`,
  z: (L: number) => `blocks.${L}.attn.hook_z`,
};

/** Inputs already declared per graph (a block built inside an If branch declares them on the outer graph). */
const declared = new WeakMap<GraphBuilder, Set<string>>();

function interventionInput(g: GraphBuilder, name: string, dims: (number | string)[]): string {
  const root = g.root;
  let names = declared.get(root);
  if (!names) declared.set(root, (names = new Set()));
  if (!names.has(name)) {
    names.add(name);
    root.input(name, 'float32', dims);
  }
  return name;
}

/** The "no intervention" value of every intervention input a graph of this model can have. */
export function interventionDefaults(spec: ModelSpec): Record<string, { data: Float32Array; dims: number[] }> {
  const H = spec.nHeads;
  const dh = spec.headDim;
  const scale = { data: new Float32Array(H).fill(1), dims: [1, H, 1, 1] };
  const bias = { data: new Float32Array(H * dh), dims: [1, H, 1, dh] };
  const none = { data: new Float32Array(1), dims: [1, 1, 1] };
  const out: Record<string, { data: Float32Array; dims: number[] }> = {};
  for (let L = 0; L < spec.nLayers; L++) {
    out[interventionName.headScale(L)] = scale;
    out[interventionName.headBias(L)] = bias;
    out[interventionName.patchMask(L)] = none;
    out[interventionName.patchValue(L)] = none;
  }
  return out;
}

/** z [batch, n_heads, seq, d_head] → z·scale + bias per head; also outputs the mean of z over positions. */
export function headHook(g: GraphBuilder, spec: ModelSpec, L: number, z: string, opts: HookOptions): string {
  if (opts.interventions === false) return z;
  const H = spec.nHeads;
  const dh = spec.headDim;
  g.output(interventionName.zMean(L), g.op('ReduceMean', [z], { axes: [2], keepdims: 0 }), 'float32', ['batch', H, dh]);
  g.output(interventionName.z(L), z, 'float32', ['batch', H, 'seq', dh]);
  const scale = interventionInput(g, interventionName.headScale(L), ['head_batch', H, 'head_seq', 1]);
  const bias = interventionInput(g, interventionName.headBias(L), ['head_batch', H, 'head_seq', dh]);
  return g.op('Add', [g.op('Mul', [z, scale]), bias]);
}

/** resid_pre[L] [batch, seq, d_model] with the fed cells replaced. */
export function residPatchHook(g: GraphBuilder, L: number, x: string, opts: HookOptions): string {
  if (opts.interventions === false) return x;
  const mask = interventionInput(g, interventionName.patchMask(L), ['patch_batch', 'patch_seq', 1]);
  const value = interventionInput(g, interventionName.patchValue(L), ['patch_batch', 'patch_seq', 'patch_d']);
  return g.op('Where', [g.cast(mask, 'bool'), value, x]);
}
