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
//   blocks.{L}.hook_resid_pre.patch_index  [n, 2] int64: (batch row, position) of each patched
//                                          cell                            default [0, 2]
//   blocks.{L}.hook_resid_pre.patch_value  [n, d_model] the cells' values    default [0, d_model]
//        resid_pre[L]' = resid_pre[L] with those rows replaced (ScatterND: patched values are
//        exact, and onnxruntime scatters in place, so no patch costs nothing, where a select
//        copies the whole stream: docs/performance.md). Layer 0 patches the embeddings;
//        resid_post[L−1] is reported as the patched value.
//   blocks.{L}.hook_attn_out.patch_index|patch_value, blocks.{L}.hook_mlp_out.patch_index|patch_value
//        the same for what block L's attention or MLP adds to the residual stream (after any
//        post-norm); hook_attn_out / hook_mlp_out and what follows report the patched value.
//   output blocks.{L}.attn.hook_z_mean  [batch, n_heads, d_head]: mean over the run's positions
//        of z before the intervention (mean ablation takes it from a clean run).
//   output blocks.{L}.attn.hook_z  [batch, n_heads, seq, d_head]: z before the intervention
//        (patching a head takes it from the other run).
import type { GraphBuilder } from '../onnx/builder';
import type { ModelSpec } from '../arch/spec';
import type { NamedTensor } from '../runtime/ort';
import { POSITION_SITES, type PositionSite } from '../../shared/interventions';

/** Graphs without interventions (tests that mimic plain exports) turn the hooks off. */
export interface HookOptions {
  interventions?: boolean;
  /** false: no attn_out / mlp_out patch inputs (the suffix graph patches through its own inputs). */
  sublayerPatches?: boolean;
}

export const interventionName = {
  headScale: (L: number) => `blocks.${L}.attn.head_scale`,
  headBias: (L: number) => `blocks.${L}.attn.head_bias`,
  patchIndex: (L: number, site: PositionSite = 'resid_pre') => `blocks.${L}.hook_${site}.patch_index`,
  patchValue: (L: number, site: PositionSite = 'resid_pre') => `blocks.${L}.hook_${site}.patch_value`,
  zMean: (L: number) => `blocks.${L}.attn.hook_z_mean`,
  z: (L: number) => `blocks.${L}.attn.hook_z`,
};

/** Inputs already declared per graph (a block built inside an If branch declares them on the outer graph). */
const declared = new WeakMap<GraphBuilder, Set<string>>();

function interventionInput(g: GraphBuilder, name: string, dims: (number | string)[], type: 'float32' | 'int64' = 'float32'): string {
  const root = g.root;
  let names = declared.get(root);
  if (!names) declared.set(root, (names = new Set()));
  if (!names.has(name)) {
    names.add(name);
    root.input(name, type, dims);
  }
  return name;
}

/** The "no intervention" value of every intervention input a graph of this model can have. */
export function interventionDefaults(spec: ModelSpec): Record<string, NamedTensor> {
  const H = spec.nHeads;
  const dh = spec.headDim;
  const scale = { data: new Float32Array(H).fill(1), dims: [1, H, 1, 1] };
  const bias = { data: new Float32Array(H * dh), dims: [1, H, 1, dh] };
  const noCells = { data: new BigInt64Array(0), dims: [0, 2] };
  const noValues = { data: new Float32Array(0), dims: [0, spec.dModel] };
  const out: Record<string, NamedTensor> = {};
  for (let L = 0; L < spec.nLayers; L++) {
    out[interventionName.headScale(L)] = scale;
    out[interventionName.headBias(L)] = bias;
    for (const site of POSITION_SITES) {
      out[interventionName.patchIndex(L, site)] = noCells;
      out[interventionName.patchValue(L, site)] = noValues;
    }
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
  // dimension names of their own per layer: a fed layer and a defaulted one differ in size
  // (onnxruntime plans its buffers as if inputs with one dimension name had one size)
  const scale = interventionInput(g, interventionName.headScale(L), [`head_batch_${L}`, H, `head_seq_${L}`, 1]);
  const bias = interventionInput(g, interventionName.headBias(L), [`head_batch_${L}`, H, `head_seq_${L}`, dh]);
  return g.op('Add', [g.op('Mul', [z, scale]), bias]);
}

/** resid_pre[L] (or block L's attn_out / mlp_out) [batch, seq, d_model] with the fed cells replaced. */
export function patchHook(
  g: GraphBuilder,
  spec: ModelSpec,
  L: number,
  x: string,
  opts: HookOptions,
  site: PositionSite = 'resid_pre',
): string {
  if (opts.interventions === false || (site !== 'resid_pre' && opts.sublayerPatches === false)) return x;
  const n = `${site}_cells_${L}`; // per layer and site (headHook)
  const index = interventionInput(g, interventionName.patchIndex(L, site), [n, 2], 'int64');
  const value = interventionInput(g, interventionName.patchValue(L, site), [n, spec.dModel]);
  return g.op('ScatterND', [x, index, value]);
}
