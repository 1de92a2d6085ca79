// The suffix graph: the model from a chosen layer upwards, for activation patching. A patch
// at (layer L, position p) changes nothing below L and nothing before p, so a patched run only
// recomputes layers L.. for positions p.. — the clean run's KV cache stands in for the
// positions before. Several patched runs go through one call: each row of the batch (a *bin*)
// holds whole runs back to back, and each run's rows attend to the clean prefix before its own
// patched position and to its own rows, as the attention bias says. Bins keep the attention
// small: a row's keys are the prefix and its bin, not every run of the call (one sequence of
// 384 packed rows spent 4× more on Softmax and the attention products than on useful keys).
//
// Inputs (B bins of S rows; padding rows attend to themselves only)
//   resid                        [B, S, d_model]        resid_pre[start_layer] of every run's positions
//   positions                    [B, S] int64           each row's position in its run (RoPE)
//   attn_bias[.window_W]         [B, S, past+S]         0 where a row may attend, −inf elsewhere; one per
//                                                        attention window of the model's layers (W, or none)
//   run_length                   [] int64                the runs' length T (LongRoPE / dynamic NTK choose by it)
//   last_rows                    [B, Q] int64           the row of each run's last position in its bin (Q slots
//                                                        per bin; a bin with fewer runs repeats one)
//   start_layer                  [] int64                layers below it are skipped (If nodes)
//   clean_cache.{L}.key|value    [1, n_kv, T, d_head]   the clean run's keys/values (its KV cache, fed as it is)
//   past_length                  [1] int64              every bin sees its positions 0..past_length−1
//   blocks.{L}.attn.head_scale|head_bias  as in the forward graph (interventions.ts)
//   readout_ids                  [k] int64              the tokens whose logits `readout` gives
//   logit_rows                   [1] int64              how many slots get full logits (gates.ts; default all)
//   half.resid_pre, half.attn_out [N, d_model]           rows of one layer's input and attention output …
//   half.layer                   [] int64                … of this layer (no layer: half.resid_post = half.resid_pre)
// Outputs (one row per slot, B·Q: slot b·Q + j is the j-th run of bin b)
//   readout                      [B·Q, k]               each run's logits of readout_ids at its last position
//   logits                       [logit_rows, d_vocab]  full logits at the last position of the first slots
//   lse                          [logit_rows]           their log-sum-exp
//   last_resid                   [B·Q, d_model]         the last layer's output at those positions
//   half.resid_post              [N, d_model]           the rest of layer half.layer run on those rows: resid_mid
//                                                        = resid_pre + attn_out, the MLP, resid_post. Patching an
//                                                        attention output at (L, p) is patching resid_pre[L+1] at
//                                                        p with this row (the MLP is position-wise)
// A logit difference needs two logits: with logit_rows 0 a call never multiplies by the whole
// unembedding (W_U is read only at the read-out ids' rows). A log-probability needs them all:
// the patching code collects last_resid of every call and reads them out together (a call with
// start_layer = n_layers skips every block), one product with W_U for many runs instead of a
// few rows per call.
//
// Each block is the forward graph's own block code (forward.ts) written into the then-branch
// of an If; onnxruntime runs only the branch taken, so layers below start_layer cost nothing.
// The weights are outer-scope initializers: with a graph cache they are the same bytes of the
// same external data file as the forward graph's.
import { GraphBuilder, type WeightSink } from '../onnx/builder';
import { BranchBuilder } from '../onnx/branch';
import type { ModelSpec, RopeSpec } from '../arch/spec';
import type { BlockWeights, GlobalWeights } from '../arch/weights';
import { block, blockAfterAttention, gatherRows, hook, normNode, ropeTables, softcap, unembed, weightInit, type Shared } from './forward';
import { gated, LOGIT_ROWS } from './gates';

export const SUFFIX_INPUT = {
  resid: 'resid',
  readoutIds: 'readout_ids',
  positions: 'positions',
  attnBias: (window: number | null) => (window === null ? 'attn_bias' : `attn_bias.window_${window}`),
  runLength: 'run_length',
  lastRows: 'last_rows',
  startLayer: 'start_layer',
  pastLength: 'past_length',
  cacheKey: (L: number) => `clean_cache.${L}.key`,
  cacheValue: (L: number) => `clean_cache.${L}.value`,
  halfPre: 'half.resid_pre',
  halfAttn: 'half.attn_out',
  halfLayer: 'half.layer',
};
export const HALF_OUTPUT = 'half.resid_post';

/** Built layer by layer next to the forward graph, reading the same weight arrays (written once). */
export class SuffixGraphBuilder {
  private readonly g: GraphBuilder;
  private readonly shared: Shared;
  private x: string;
  private next = 0;
  /** [B, S, …] bias and RoPE tables as they come, before the heads axis (picked at the last rows). */
  private readonly rawMasks = new Map<number | null, string>();
  private readonly rawRopes = new Map<RopeSpec, { cos: string; sin: string }>();
  private readonly lastIdx: string;
  /** half.resid_post as far as the layers added so far (graph/suffix.ts header). */
  private half: string;

  constructor(
    private readonly spec: ModelSpec,
    sink: WeightSink | null,
    halfWeights: boolean,
  ) {
    const g = (this.g = new GraphBuilder(`${spec.modelType}-suffix`, sink, halfWeights));
    this.x = g.input(SUFFIX_INPUT.resid, 'float32', ['bins', 'bin_rows', spec.dModel]);
    const positions = g.input(SUFFIX_INPUT.positions, 'int64', ['bins', 'bin_rows']);
    const total = g.input(SUFFIX_INPUT.runLength, 'int64', []);
    const lastRows = g.input(SUFFIX_INPUT.lastRows, 'int64', ['bins', 'slots']);
    g.input(SUFFIX_INPUT.startLayer, 'int64', []);
    const shape = g.op('Shape', [this.x]);
    const batch = g.op('Gather', [shape, g.ints([0], true)], { axis: 0 });
    // every bin's past: the clean cache's first past_length positions, the same for all bins
    const pastLength = g.input(SUFFIX_INPUT.pastLength, 'int64', [1]);
    const perBinShape = g.op('Concat', [g.op('Unsqueeze', [batch, g.ints([0])]), g.ints([1, 1, 1])], { axis: 0 });
    const cacheDims = [1, spec.nKvHeads, 'cache', spec.headDim];
    for (let L = 0; L < spec.nLayers; L++) {
      for (const [name, past] of [
        [SUFFIX_INPUT.cacheKey(L), hook.pastKey(L)],
        [SUFFIX_INPUT.cacheValue(L), hook.pastValue(L)],
      ] as const) {
        const prefix = g.op('Slice', [g.input(name, 'float32', cacheDims), g.ints([0]), pastLength, g.ints([2])]);
        g.op('Expand', [prefix, perBinShape], {}, past); // [B, n_kv, past, d_head], read by the blocks by that name
      }
    }
    const seq = g.op('Gather', [shape, g.ints([1], true)], { axis: 0 });
    const past = g.op('Gather', [g.op('Shape', [hook.pastKey(0)]), g.ints([2], true)], { axis: 0 });
    const qCol = g.op('Unsqueeze', [positions, g.ints([2])]); // [B, S, 1]: each row's own position
    const kRow = g.op('Unsqueeze', [g.op('Range', [g.ints([0], true), g.op('Add', [past, seq]), g.ints([1], true)]), g.ints([0])]); // key slots
    const sh: Shared = { batch, seq, past, total, qCol, kRow, masks: new Map(), ropes: new Map() };
    // per bin [B, S, …] tables: the heads axis goes in at 1 for the block code ([B, 1, S, …])
    const perBin = (t: string) => g.op('Unsqueeze', [t, g.ints([1])]);
    // the masks come in (each bin's runs see different keys); RoPE tables as the forward graph makes them
    for (const layer of spec.layers) {
      if (!this.rawMasks.has(layer.window)) {
        const bias = g.input(SUFFIX_INPUT.attnBias(layer.window), 'float32', ['bins', 'bin_rows', 'keys']);
        this.rawMasks.set(layer.window, bias);
        sh.masks.set(layer.window, perBin(bias));
      }
      if (layer.rope && !this.rawRopes.has(layer.rope)) {
        const t = ropeTables(g, sh, layer.rope, this.rawRopes.size); // [B, S, rotary_dim]
        this.rawRopes.set(layer.rope, t);
        sh.ropes.set(layer.rope, { cos: perBin(t.cos), sin: perBin(t.sin) });
      }
    }
    this.lastIdx = g.op('Unsqueeze', [lastRows, g.ints([2])]); // [B, Q, 1]
    this.shared = sh;
    this.half = g.input(SUFFIX_INPUT.halfPre, 'float32', ['half_rows', spec.dModel]);
    g.input(SUFFIX_INPUT.halfAttn, 'float32', ['half_rows', spec.dModel]);
    g.input(SUFFIX_INPUT.halfLayer, 'int64', []);
  }

  /**
   * Adds layer L (layers come in order): x = start_layer ≤ L ? block_L(x) : x. The last layer
   * is read at each run's last row only, so there it computes keys and values for every row
   * but queries, attention and the MLP for those rows alone, and x becomes [B, Q, d_model].
   */
  addLayer(L: number, w: BlockWeights): void {
    if (L !== this.next) throw new Error(`suffix graph: layer ${L} added after layer ${this.next - 1}`);
    this.next++;
    const { g, spec } = this;
    const last = L === spec.nLayers - 1;
    const dims = ['bins', last ? 'slots' : 'bin_rows', spec.dModel];
    const run = new BranchBuilder(g, `block_${L}`);
    const only = last ? { pick: (bg: GraphBuilder, t: string) => this.pickLast(bg, t), sh: this.lastRowsShared() } : undefined;
    const b = { w, L, layer: spec.layers[L]!, ...(only ? { only } : {}) };
    run.branchOutput(
      `resid_post_${L}`,
      block(run, spec, this.shared, b, this.x, { patterns: false, sublayerPatches: false }),
      'float32',
      dims,
    );
    const skip = new BranchBuilder(g, `skip_${L}`);
    skip.branchOutput(`resid_skip_${L}`, last ? this.pickLast(skip, this.x) : this.x, 'float32', dims);
    const taken = g.op('GreaterOrEqual', [g.ints([L], true), SUFFIX_INPUT.startLayer]);
    this.x = g.op('If', [taken], { then_branch: { graph: run.graph() }, else_branch: { graph: skip.graph() } });
    // the half block: this layer's MLP half on the half.* rows when half.layer = L
    const halfDims = ['half_rows', spec.dModel];
    const rest = new BranchBuilder(g, `half_${L}`);
    rest.branchOutput(
      `half_post_${L}`,
      blockAfterAttention(rest, spec, w, L, SUFFIX_INPUT.halfPre, SUFFIX_INPUT.halfAttn, { sublayerPatches: false }),
      'float32',
      halfDims,
    );
    const keep = new BranchBuilder(g, `half_keep_${L}`);
    keep.branchOutput(`half_keep_${L}`, this.half, 'float32', halfDims);
    const mine = g.op('Equal', [g.ints([L], true), SUFFIX_INPUT.halfLayer]);
    this.half = g.op('If', [mine], { then_branch: { graph: rest.graph() }, else_branch: { graph: keep.graph() } });
  }

  /** [B, S, …] → [B, Q, …]: each bin's rows at its last_rows. */
  private pickLast(g: GraphBuilder, t: string): string {
    return g.op('GatherND', [t, this.lastIdx], { batch_dims: 1 });
  }

  /** The shared values at each run's last row: its RoPE tables and attention-bias rows ([B, 1, Q, …]). */
  private lastRowsShared(): Shared {
    const { g, shared: sh } = this;
    const perBin = (t: string) => g.op('Unsqueeze', [this.pickLast(g, t), g.ints([1])]);
    return {
      ...sh,
      qCol: this.pickLast(g, sh.qCol),
      masks: new Map([...this.rawMasks].map(([w, m]) => [w, perBin(m)])),
      ropes: new Map([...this.rawRopes].map(([r, t]) => [r, { cos: perBin(t.cos), sin: perBin(t.sin) }])),
    };
  }

  /** Final norm and unembedding at each run's last row → readout [B·Q, k], logits [logit_rows, d_vocab], lse, last_resid. */
  finish(globals: GlobalWeights): GraphBuilder {
    const { g, spec } = this;
    if (this.next !== spec.nLayers) throw new Error(`suffix graph: ${this.next} of ${spec.nLayers} layers added`);
    const last = g.op('Reshape', [this.x, g.ints([-1, spec.dModel])]); // [B·Q, d_model]: the last layer kept each run's last row
    const normed = normNode(g, spec, last, globals.lnFinal, 'ln_final');
    const wU = weightInit(g, 'W_U', globals.unembed, [spec.dVocab, spec.dModel]);
    const full = softcap(g, unembed(g, spec, globals, gated(g, LOGIT_ROWS, normed, 0), wU), spec.finalSoftcap);
    g.output('logits', full, 'float32', ['logit_rows', spec.dVocab]);
    g.output('lse', g.op('ReduceLogSumExp', [full], { axes: [1], keepdims: 0 }), 'float32', ['logit_rows']);
    // the last rows before the read-out: a caller may read them all out in one later call
    g.output('last_resid', last, 'float32', ['slots_all', spec.dModel]);
    // the same read-out at the read-out ids' rows of W_U (and b_U) only
    const ids = g.input(SUFFIX_INPUT.readoutIds, 'int64', ['k']);
    let picked = g.op('MatMul', [normed, g.op('Transpose', [gatherRows(g, wU, ids)], { perm: [1, 0] })]); // [runs, k]
    if (globals.unembedBias)
      picked = g.op('Add', [picked, g.op('Gather', [g.initializer('b_U', globals.unembedBias, [spec.dVocab]), ids])]);
    g.output('readout', softcap(g, picked, spec.finalSoftcap), 'float32', ['slots_all', 'k']);
    g.output(HALF_OUTPUT, this.half, 'float32', ['half_rows', spec.dModel]);
    return g;
  }
}
