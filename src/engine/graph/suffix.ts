// The suffix graph: the model from a chosen layer upwards, for activation patching. A patch
// at (layer L, position p) changes nothing below L and nothing before p, so a patched run only
// recomputes layers L.. for positions p.. — the clean run's KV cache stands in for the
// positions before — and several patched runs go through in one batch.
//
// Inputs
//   resid                        [batch, seq, d_model]   resid_pre[start_layer] at positions past..past+seq-1
//   start_layer                  [] int64                 layers below it are skipped (If nodes)
//   clean_past.{L}.key|value     [1, n_kv, past, d_head]  the clean run's keys/values before `past`,
//                                                          shared by every batch row
//   blocks.{L}.attn.head_scale|head_bias  as in the forward graph (interventions.ts)
// Output
//   logits                       [batch, d_vocab]         at the last position
//
// Each block is the forward graph's own block code (forward.ts) written into the then-branch
// of an If; onnxruntime runs only the branch taken, so layers below start_layer cost nothing.
// The weights are outer-scope initializers: with a graph cache they are the same bytes of the
// same external data file as the forward graph's.
import { GraphBuilder, type WeightSink } from '../onnx/builder';
import { BranchBuilder } from '../onnx/branch';
import type { ModelSpec } from '../arch/spec';
import type { BlockWeights, GlobalWeights } from '../arch/weights';
import { block, hook, normNode, sharedValues, unembed, type Shared } from './forward';

export const SUFFIX_INPUT = {
  resid: 'resid',
  startLayer: 'start_layer',
  cleanKey: (L: number) => `clean_past.${L}.key`,
  cleanValue: (L: number) => `clean_past.${L}.value`,
};

/** Built layer by layer next to the forward graph, reading the same weight arrays (written once). */
export class SuffixGraphBuilder {
  private readonly g: GraphBuilder;
  private readonly shared: Shared;
  private x: string;
  private next = 0;

  constructor(
    private readonly spec: ModelSpec,
    sink: WeightSink | null,
    halfWeights: boolean,
  ) {
    const g = (this.g = new GraphBuilder(`${spec.modelType}-suffix`, sink, halfWeights));
    this.x = g.input(SUFFIX_INPUT.resid, 'float32', ['batch', 'seq', spec.dModel]);
    g.input(SUFFIX_INPUT.startLayer, 'int64', []);
    // every batch row shares the clean prefix: one copy fed, expanded here to the batch
    const batchOnes = g.op('Concat', [g.op('Slice', [g.op('Shape', [this.x]), g.ints([0]), g.ints([1])]), g.ints([1, 1, 1])], { axis: 0 });
    const kvDims = [1, spec.nKvHeads, 'past', spec.headDim];
    for (let L = 0; L < spec.nLayers; L++) {
      g.op('Expand', [g.input(SUFFIX_INPUT.cleanKey(L), 'float32', kvDims), batchOnes], {}, hook.pastKey(L));
      g.op('Expand', [g.input(SUFFIX_INPUT.cleanValue(L), 'float32', kvDims), batchOnes], {}, hook.pastValue(L));
    }
    // positions, RoPE tables and the causal mask from resid's [batch, seq] and the past length
    this.shared = sharedValues(g, spec, this.x);
  }

  /** Adds layer L (layers come in order): x = start_layer ≤ L ? block_L(x) : x. */
  addLayer(L: number, w: BlockWeights): void {
    if (L !== this.next) throw new Error(`suffix graph: layer ${L} added after layer ${this.next - 1}`);
    this.next++;
    const { g, spec } = this;
    const dims = ['batch', 'seq', spec.dModel];
    const run = new BranchBuilder(g, `block_${L}`);
    run.branchOutput(`resid_post_${L}`, block(run, spec, this.shared, w, L, this.x, { patterns: false }), 'float32', dims);
    const skip = new BranchBuilder(g, `skip_${L}`);
    skip.branchOutput(`resid_skip_${L}`, this.x, 'float32', dims);
    const taken = g.op('GreaterOrEqual', [g.ints([L], true), SUFFIX_INPUT.startLayer]);
    this.x = g.op('If', [taken], { then_branch: { graph: run.graph() }, else_branch: { graph: skip.graph() } });
  }

  /** Final norm and unembedding at the last position → logits [batch, d_vocab]. */
  finish(globals: GlobalWeights): GraphBuilder {
    const { g, spec } = this;
    if (this.next !== spec.nLayers) throw new Error(`suffix graph: ${this.next} of ${spec.nLayers} layers added`);
    const lastIdx = g.op('Sub', [this.shared.seq, g.ints([1], true)]);
    const last = g.op('Gather', [this.x, lastIdx], { axis: 1 });
    const logits = unembed(g, spec, globals, normNode(g, spec, last, globals.lnFinal, 'ln_final'), null);
    g.output('logits', logits, 'float32', ['batch', spec.dVocab]);
    return g;
  }
}
