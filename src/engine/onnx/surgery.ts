// Graph surgery on an existing causal-LM ONNX export (Optimum / transformers.js layout):
// ModelProto in → instrumented ModelProto out, plus a description and the model's own
// embedding / final-norm / unembedding weights for the lens graph. Pure: no files, no ORT
// (external tensor data is read through a callback).
//
// How the structure is found (docs: ARCHITECTURE.md "Existing ONNX exports"):
//   1. token embedding  — a Gather on a [vocab, d_model] float initializer indexed by input_ids
//   2. LM head          — walking back from the `logits` output through Identity/Cast/bias/
//                         scale/Reshape nodes to a MatMul/Gemm whose weight is an initializer
//   3. final norm       — the head's input: LayerNormalization, SimplifiedLayerNormalization,
//                         RMSNormalization, SkipLayerNormalization, SkipSimplifiedLayerNormalization,
//                         or decomposed RMSNorm/LayerNorm (Pow→ReduceMean→Add→Sqrt→Div|Reciprocal→Mul)
//   4. residual stream  — from the final norm's input back through the chain of residual
//                         additions (Add(stream, branch) where the branch depends on the stream
//                         and contains a MatMul/attention; or the sum output of a fused
//                         SkipLayerNormalization) to the embedding (+ position embedding)
//   5. blocks           — 2 additions per layer → resid_mid, resid_post; 1 per layer → parallel
//                         attention/MLP (GPT-NeoX, GPT-J, Phi, Falcon): resid_mid is synthesised as
//                         resid_pre + the attention branch (the branch holding the Softmax)
//   6. patterns         — the one Softmax over the last axis in each block's attention branch;
//                         none when attention is fused (com.microsoft Attention/MultiHeadAttention/
//                         GroupQueryAttention…): everything else still works
// The instrumented graph follows the engine's forward-graph contract (graph/forward.ts):
// inputs input_ids + past_key_values.{L}.key|value, the step cache past_cache.* (its filled
// positions sliced and put after past_key_values.*), past_cache_length and the kv_rows gate
// (attention_mask = all ones and position_ids = past..past+seq−1 are computed
// inside the graph), outputs logits [batch, vocab] at the last position, present.*,
// new_key_values.*, blocks.0.hook_resid_pre, blocks.{L}.hook_resid_mid|post and (when found)
// blocks.{L}.attn.hook_pattern.
import { onnx } from 'onnx-proto';
import { EngineError } from '../errors';
import { hook } from '../graph/forward';
import { KV_ROWS } from '../graph/gates';
import type { ModelSpec } from '../arch/spec';
import {
  DT,
  attrFloat,
  attrInt,
  attrInts,
  constantNodeTensor,
  dimsOf,
  int64Tensor,
  isFloatType,
  readFloats,
  readInts,
  toNum,
  type ExternalReader,
} from './tensors';

export interface SurgeryOptions {
  /** Reads external tensor data (location relative to the model file). */
  readExternal?: ExternalReader | null;
  /** Expose attention patterns when they can be found (default true). */
  patterns?: boolean;
}

/** The export's own weights, in the layout of arch/weights.ts GlobalWeights. */
export interface ExportWeights {
  /** W_E [d_vocab, d_model] */
  embed: Float32Array;
  posEmbed: null;
  lnFinal: { w: Float32Array; b: Float32Array | null };
  /** W_U [d_vocab, d_model]; the same array as `embed` when the export's values are tied. */
  unembed: Float32Array;
  unembedBias: Float32Array | null;
}

export interface SurgeryDescription {
  nLayers: number;
  dModel: number;
  dVocab: number;
  /** From the past_key_values input shape; null when the export leaves them symbolic. */
  nKvHeads: number | null;
  headDim: number | null;
  norm: 'layernorm' | 'rmsnorm';
  normEps: number;
  /** How the final norm appears in the graph, e.g. "LayerNormalization", "decomposed RMSNorm". */
  finalNorm: string;
  /** Rows of a learned position-embedding table added to the token embedding (GPT-2), or null. */
  positionRows: number | null;
  parallelResidual: boolean;
  residMid: 'graph' | 'synthesized';
  tiedEmbeddings: boolean;
  patterns: boolean;
  /** Why patterns are off (empty when on). */
  patternsNote: string;
  /** Where the last position is selected: before the LM head (cheap) or on the full logits. */
  logits: 'before-head' | 'after-head';
  /** cap of a final logit soft-capping cap·tanh(logits/cap) after the LM head (Gemma 2/3), or null. */
  finalSoftcap: number | null;
  /** Every residual addition adds a normalised sublayer output (Gemma 2/3, OLMo 2 post-norms); null for parallel blocks. */
  postNorms: boolean | null;
  /** q/k norms found in each layer's attention (RMSNorm of the projected queries and keys before the scores); null when unknown. */
  qkNorms: boolean | null;
  /** Export inputs now computed inside the graph. */
  computedInputs: string[];
  /** Graph outputs added. */
  hooks: string[];
  notes: string[];
}

export interface SurgeryResult {
  model: onnx.IModelProto;
  description: SurgeryDescription;
  weights: ExportWeights;
}

const FUSED_ATTENTION = new Set([
  'Attention',
  'MultiHeadAttention',
  'GroupQueryAttention',
  'PackedAttention',
  'PackedMultiHeadAttention',
  'DecoderMaskedMultiHeadAttention',
  'DecoderMaskedSelfAttention',
  'DecoderAttention',
  'SparseAttention',
  'PagedAttention',
  'LongformerAttention',
  'QAttention',
]);
const SKIP_NORMS = new Set(['SkipLayerNormalization', 'SkipSimplifiedLayerNormalization']);
const MATMULS = new Set(['MatMul', 'Gemm', 'MatMulNBits', 'MatMulInteger', 'QLinearMatMul', 'FusedMatMul', 'MatMulIntegerToFloat']);
const PASS = new Set(['Cast', 'Identity']);
const NO_DATA_EDGE = new Set(['Shape', 'Size']); // their input's values do not flow through

function bad(what: string): EngineError {
  return new EngineError('BAD_ONNX', `ONNX export not recognised: ${what}`);
}

/** Producers, consumers, constants and dependency queries over one graph. */
class GraphIndex {
  readonly nodes: onnx.INodeProto[];
  readonly producer = new Map<string, number>();
  readonly slot = new Map<string, number>();
  readonly inits = new Map<string, onnx.ITensorProto>();
  readonly inputs = new Map<string, onnx.IValueInfoProto>();
  readonly names = new Set<string>();
  /** Topological rank of each node (dependency queries prune by it). */
  readonly rank: Int32Array;

  constructor(
    graph: onnx.IGraphProto,
    private readonly readExternal: ExternalReader | null,
  ) {
    this.nodes = graph.node ?? [];
    for (const t of graph.initializer ?? []) {
      this.inits.set(t.name ?? '', t);
      this.names.add(t.name ?? '');
    }
    for (const i of graph.input ?? []) {
      this.names.add(i.name ?? '');
      if (!this.inits.has(i.name ?? '')) this.inputs.set(i.name ?? '', i);
    }
    this.nodes.forEach((n, i) => {
      if (n.name) this.names.add(n.name);
      (n.output ?? []).forEach((o, k) => {
        if (!o) return;
        this.producer.set(o, i);
        this.slot.set(o, k);
        this.names.add(o);
      });
      for (const x of n.input ?? []) if (x) this.names.add(x);
    });
    // Kahn's order (exports are normally sorted already; this does not rely on it)
    const rank = new Int32Array(this.nodes.length).fill(this.nodes.length);
    const pending = new Int32Array(this.nodes.length);
    const users = new Map<number, number[]>();
    this.nodes.forEach((n, i) => {
      const deps = new Set<number>();
      for (const x of n.input ?? []) {
        const p = x ? this.producer.get(x) : undefined;
        if (p !== undefined && p !== i) deps.add(p);
      }
      pending[i] = deps.size;
      for (const p of deps) {
        const u = users.get(p);
        if (u) u.push(i);
        else users.set(p, [i]);
      }
    });
    const queue: number[] = [];
    this.nodes.forEach((_, i) => {
      if (pending[i] === 0) queue.push(i);
    });
    let r = 0;
    for (let q = 0; q < queue.length; q++) {
      const i = queue[q]!;
      rank[i] = r++;
      for (const u of users.get(i) ?? []) if (--pending[u]! === 0) queue.push(u);
    }
    this.rank = rank;
  }

  prod(name: string): onnx.INodeProto | undefined {
    const i = this.producer.get(name);
    return i === undefined ? undefined : this.nodes[i];
  }

  /** Follows Cast/Identity producers back to the tensor they copy. */
  skip(name: string): string {
    let t = name;
    for (let guard = 0; guard < 64; guard++) {
      const p = this.prod(t);
      if (!p || !PASS.has(p.opType ?? '') || !p.input?.[0]) return t;
      t = p.input[0];
    }
    return t;
  }

  /** The constant tensor behind a name (initializer or Constant, through Cast/Identity). */
  constTensor(name: string): onnx.ITensorProto | null {
    const t = this.skip(name);
    const init = this.inits.get(t);
    if (init && !this.inputs.has(t)) return init;
    const p = this.prod(t);
    if (p?.opType === 'Constant') return constantNodeTensor(p);
    return null;
  }

  isConst(name: string): boolean {
    return this.constTensor(name) !== null;
  }

  floats(name: string): Float32Array | null {
    const t = this.constTensor(name);
    if (t) return isFloatType(t.dataType) ? readFloats(t, this.readExternal) : null;
    return this.foldedFloats(name);
  }

  /**
   * A float constant an export computes at run time from constants, e.g. Gemma's RMSNorm
   * weight 1 + w when the exporter did not fold it: Add/Sub/Mul of a constant and a scalar.
   */
  private foldedFloats(name: string): Float32Array | null {
    const p = this.prod(this.skip(name));
    const op = p?.opType ?? '';
    if (!p || !['Add', 'Sub', 'Mul'].includes(op) || (p.input ?? []).length !== 2) return null;
    const [a, b] = (p.input ?? []).map((x) => (x ? this.constTensor(x) : null));
    if (!a || !b || !isFloatType(a.dataType) || !isFloatType(b.dataType)) return null;
    const [x, y] = [readFloats(a, this.readExternal), readFloats(b, this.readExternal)];
    if (x.length !== y.length && x.length !== 1 && y.length !== 1) return null;
    const n = Math.max(x.length, y.length);
    const at = (v: Float32Array, i: number) => v[v.length === 1 ? 0 : i]!;
    const f =
      op === 'Add' ? (u: number, v: number) => u + v : op === 'Sub' ? (u: number, v: number) => u - v : (u: number, v: number) => u * v;
    return Float32Array.from({ length: n }, (_, i) => f(at(x, i), at(y, i)));
  }

  scalar(name: string): number | null {
    const t = this.constTensor(name);
    if (!t) return null;
    const v = isFloatType(t.dataType) ? readFloats(t, this.readExternal) : readInts(t, this.readExternal);
    return v.length === 1 ? Number(v[0]) : null;
  }

  /** Does tensor `from` depend (through data edges) on tensor `target`? */
  dependsOn(from: string, target: string): boolean {
    if (from === target) return true;
    const start = this.producer.get(from);
    if (start === undefined) return false;
    const targetProducer = this.producer.get(target);
    const floor = targetProducer === undefined ? -1 : this.rank[targetProducer]!;
    const seen = new Uint8Array(this.nodes.length);
    const stack = [start];
    seen[start] = 1;
    while (stack.length) {
      const i = stack.pop()!;
      // reaching the node that makes `target` counts (a fused node's other outputs)
      if (i === targetProducer) return true;
      const n = this.nodes[i]!;
      if (NO_DATA_EDGE.has(n.opType ?? '')) continue;
      for (const x of n.input ?? []) {
        if (!x) continue;
        if (x === target) return true;
        const p = this.producer.get(x);
        if (p === undefined || seen[p] || this.rank[p]! < floor) continue;
        seen[p] = 1;
        stack.push(p);
      }
    }
    return false;
  }

  /**
   * The nodes `from` depends on without going through tensor `stop` (a sublayer's nodes).
   * The node making `stop` is not entered either: with a fused SkipLayerNormalization the
   * sublayer reads its normalised output, the stream is its sum output.
   */
  branch(from: string, stop: string): number[] {
    const out: number[] = [];
    const start = from === stop ? undefined : this.producer.get(from);
    const stopProducer = this.producer.get(stop);
    if (start === undefined || start === stopProducer) return out;
    const seen = new Uint8Array(this.nodes.length);
    const stack = [start];
    seen[start] = 1;
    if (stopProducer !== undefined) seen[stopProducer] = 1;
    while (stack.length) {
      const i = stack.pop()!;
      out.push(i);
      const n = this.nodes[i]!;
      if (NO_DATA_EDGE.has(n.opType ?? '')) continue;
      for (const x of n.input ?? []) {
        if (!x || x === stop) continue;
        const p = this.producer.get(x);
        if (p === undefined || seen[p]) continue;
        seen[p] = 1;
        stack.push(p);
      }
    }
    return out;
  }

  opsIn(nodes: number[]): Set<string> {
    return new Set(nodes.map((i) => this.nodes[i]!.opType ?? ''));
  }
}

/** A residual addition: out = stream + branch (fused SkipLayerNormalization: its sum output). */
interface Junction {
  node: number;
  /** The sum's tensor name ('' when a fused node must be given a sum output). */
  out: string;
  stream: string;
  branch: string;
}

interface FinalNorm {
  kind: string;
  norm: 'layernorm' | 'rmsnorm';
  x: string;
  w: string | null;
  b: string | null;
  eps: number;
  /** Set when the final norm is a fused Skip*Normalization (its sum is the last resid_post). */
  junction: Junction | null;
}

export function instrumentExport(model: onnx.IModelProto, opts: SurgeryOptions = {}): SurgeryResult {
  const graph = model.graph;
  if (!graph) throw bad('the file has no graph.');
  const g = new GraphIndex(graph, opts.readExternal ?? null);
  const notes: string[] = [];
  const opset = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  const opsetVersion = toNum(opset?.version, 0);
  if (opsetVersion < 11) throw bad(`opset ${opsetVersion} is too old (11 or newer is needed).`);
  if (g.nodes.some((n) => n.opType === 'If' || n.opType === 'Loop'))
    throw bad(
      'the graph contains If/Loop subgraphs (a "merged" decoder with use_cache_branch?). Export with past key-values ' +
        'as a single graph (Optimum: the model.onnx / decoder_with_past_model.onnx of --task text-generation-with-past).',
    );

  // ---- inputs ---------------------------------------------------------------------------
  if (!g.inputs.has('input_ids')) throw bad(`no "input_ids" input (inputs: ${[...g.inputs.keys()].join(', ') || 'none'}).`);
  const pastRe = /^past_key_values\.(\d+)\.(key|value)$/;
  let nLayers = 0;
  for (const name of g.inputs.keys()) {
    const m = pastRe.exec(name);
    if (m) nLayers = Math.max(nLayers, Number(m[1]) + 1);
  }
  if (nLayers === 0)
    throw bad(
      'no past_key_values.{L}.key/value inputs: export the model "with past" (Optimum --task text-generation-with-past) so generation can use a KV cache.',
    );
  let nKvHeads: number | null = null;
  let headDim: number | null = null;
  for (let L = 0; L < nLayers; L++) {
    for (const name of [hook.pastKey(L), hook.pastValue(L)]) {
      const vi = g.inputs.get(name);
      if (!vi) throw bad(`input "${name}" is missing (layers 0..${nLayers - 1} expected).`);
      const tt = vi.type?.tensorType;
      if (tt?.elemType !== DT.FLOAT)
        throw bad(
          `input "${name}" is not float32 (element type ${tt?.elemType}); float16/quantised KV caches are not supported, use the float32 model.onnx.`,
        );
      const dims = tt.shape?.dim ?? [];
      if (dims.length !== 4) throw bad(`input "${name}" has rank ${dims.length}; [batch, kv_heads, past, head_dim] is expected.`);
      const kv = dims[1]?.dimValue !== undefined && dims[1]?.dimValue !== null ? toNum(dims[1].dimValue) : null;
      const hd = dims[3]?.dimValue !== undefined && dims[3]?.dimValue !== null ? toNum(dims[3].dimValue) : null;
      if (L === 0 && name.endsWith('key')) {
        nKvHeads = kv;
        headDim = hd;
      }
    }
  }
  const outputs = new Map((graph.output ?? []).map((o) => [o.name ?? '', o]));
  for (let L = 0; L < nLayers; L++)
    for (const name of [hook.presentKey(L), hook.presentValue(L)])
      if (!outputs.has(name)) throw bad(`output "${name}" is missing (present.{L}.key/value expected for every layer).`);
  if (!outputs.has('logits')) throw bad(`no "logits" output (outputs: ${[...outputs.keys()].slice(0, 8).join(', ')}).`);
  const known = new Set(['input_ids', 'attention_mask', 'position_ids', 'cache_position']);
  for (const name of g.inputs.keys())
    if (!known.has(name) && !pastRe.test(name)) throw bad(`input "${name}" is not one the engine knows how to feed.`);
  for (let L = 0; L < nLayers; L++)
    for (const name of [
      hook.residPre(L),
      hook.residMid(L),
      hook.residPost(L),
      hook.pattern(L),
      hook.pastCacheKey(L),
      hook.pastCacheValue(L),
      hook.newKey(L),
      hook.newValue(L),
      ...(L === 0 ? [KV_ROWS, hook.pastCacheLength] : []),
    ])
      if (g.names.has(name)) throw bad(`it already has a tensor named "${name}" (an instrumented graph?).`);

  // ---- 1. token embedding ------------------------------------------------------------------
  const embedNode = g.nodes.find(
    (n) =>
      n.opType === 'Gather' &&
      attrInt(n, 'axis', 0) === 0 &&
      g.skip(n.input?.[1] ?? '') === 'input_ids' &&
      g.inits.has(n.input?.[0] ?? '') &&
      dimsOf(g.inits.get(n.input?.[0] ?? '')!).length === 2 &&
      isFloatType(g.inits.get(n.input?.[0] ?? '')!.dataType),
  );
  if (!embedNode) throw bad('no token-embedding Gather (a Gather on a [vocab, d_model] float initializer indexed by input_ids) was found.');
  const wEInit = g.inits.get(embedNode.input![0]!)!;
  const [dVocab, dModel] = dimsOf(wEInit) as [number, number];
  const embedOut = embedNode.output![0]!;
  const streamIsFloat = wEInit.dataType === DT.FLOAT;

  // ---- 2. LM head ----------------------------------------------------------------------------
  let t = 'logits';
  const chain: onnx.INodeProto[] = [];
  let elementwise = true;
  let headBias: Float32Array | null = null;
  let head: onnx.INodeProto | undefined;
  let finalSoftcap: number | null = null;
  for (let guard = 0; guard < 32 && !head; guard++) {
    const p = g.prod(t);
    if (!p) break;
    const op = p.opType ?? '';
    const ins = (p.input ?? []).filter((x) => x);
    if ((op === 'MatMul' || op === 'Gemm') && ins.slice(0, 2).some((x) => g.isConst(x) || g.prod(x)?.opType === 'Transpose')) {
      head = p;
      break;
    }
    const capped: { cap: number; x: string } | null = finalSoftcap === null ? softcapAt(g, t) : null;
    if (capped) {
      finalSoftcap = capped.cap;
      t = capped.x;
      continue;
    }
    chain.push(p);
    if (op === 'Tanh')
      throw bad('the logits pass through a Tanh that is not a soft-capping cap·tanh(logits / cap), so the lens could not reproduce them.');
    if (PASS.has(op)) t = ins[0] ?? '';
    else if (['Add', 'Sub', 'Mul', 'Div'].includes(op) && ins.length === 2 && ins.some((x) => g.isConst(x))) {
      const c = ins.find((x) => g.isConst(x))!;
      if (op === 'Add' && headBias === null && chain.length === 1) {
        const b = g.floats(c);
        if (b && b.length === dVocab) headBias = b;
        else notes.push('the logits have a constant added after the LM head that the lens does not reproduce');
      } else notes.push(`the logits are post-processed (${op} by a constant) after the LM head; the lens uses the plain W_U`);
      t = ins.find((x) => x !== c) ?? '';
    } else if (['Reshape', 'Squeeze', 'Unsqueeze', 'Flatten'].includes(op)) {
      elementwise = false;
      t = ins[0] ?? '';
    } else break;
  }
  if (!head) throw bad('no LM head (a MatMul/Gemm with an initializer weight) was found before the "logits" output.');
  const headIsGemm = head.opType === 'Gemm';
  let wU: Float32Array;
  let wUSameAsWE = false;
  {
    const [a, b] = [head.input?.[0] ?? '', head.input?.[1] ?? ''];
    if (g.isConst(a) || g.prod(a)?.opType === 'Transpose')
      throw bad('the LM head multiplies a constant from the left; expected hidden @ W_U.');
    let transB = headIsGemm ? attrInt(head, 'transB', 0) === 1 : false;
    if (headIsGemm) {
      if (attrInt(head, 'transA', 0) !== 0 || attrFloat(head, 'alpha', 1) !== 1 || attrFloat(head, 'beta', 1) !== 1)
        throw bad('the LM head Gemm uses transA/alpha/beta; expected a plain x·W_U (+ b).');
      const c = head.input?.[2];
      if (c) {
        const bias = g.floats(c);
        if (!bias || bias.length !== dVocab) throw bad('the LM head Gemm has a bias that is not a [vocab] constant.');
        headBias = bias;
      }
    }
    let bName = b;
    const tp = g.prod(g.skip(b));
    if (!g.isConst(b) && tp?.opType === 'Transpose') {
      const perm = attrInts(tp, 'perm');
      if (perm && !(perm.length === 2 && perm[0] === 1 && perm[1] === 0))
        throw bad('the LM head weight is transposed with an unexpected permutation.');
      bName = tp.input?.[0] ?? '';
      transB = !transB;
    }
    const wt = g.constTensor(bName);
    if (!wt || !isFloatType(wt.dataType))
      throw bad('the LM head weight is not a plain float initializer (quantised exports, e.g. MatMulNBits, are not supported).');
    const dims = dimsOf(wt);
    const data = readFloats(wt, opts.readExternal ?? null);
    // W_U laid out [vocab, d_model]
    if (transB) {
      if (dims[0] !== dVocab || dims[1] !== dModel)
        throw bad(`the LM head weight is [${dims.join(', ')}], expected [${dVocab}, ${dModel}] from the embedding.`);
      wU = data;
    } else {
      if (dims[0] !== dModel || dims[1] !== dVocab)
        throw bad(`the LM head weight is [${dims.join(', ')}], expected [${dModel}, ${dVocab}] from the embedding.`);
      wU = transpose(data, dModel, dVocab);
    }
    wUSameAsWE = g.skip(bName) === embedNode.input![0];
  }

  // ---- 3. final norm -------------------------------------------------------------------------
  let headIn = head.input![0]!;
  let normOut = g.skip(headIn);
  for (let guard = 0; guard < 8; guard++) {
    const p = g.prod(normOut);
    if (!p || !['Reshape', 'Flatten'].includes(p.opType ?? '')) break;
    elementwise = false;
    normOut = g.skip(p.input?.[0] ?? '');
  }
  const fn = findFinalNorm(g, normOut);
  if (!fn)
    throw bad(
      `no final norm feeding the LM head (found ${g.prod(normOut)?.opType ?? 'a graph input'}; expected LayerNormalization, ` +
        'SimplifiedLayerNormalization, SkipLayerNormalization or a decomposed RMSNorm/LayerNorm).',
    );
  const lnW = fn.w ? g.floats(fn.w) : new Float32Array(dModel).fill(1);
  const lnB = fn.b ? g.floats(fn.b) : null;
  if (!lnW || lnW.length !== dModel) throw bad(`the final norm's weight is not a [${dModel}] constant.`);
  if (fn.b && (!lnB || lnB.length !== dModel)) throw bad(`the final norm's bias is not a [${dModel}] constant.`);

  // ---- 4. residual chain ---------------------------------------------------------------------
  const junctions: Junction[] = [];
  let x: string;
  if (fn.junction) {
    junctions.push(fn.junction);
    x = fn.junction.stream;
  } else x = fn.x;
  for (let guard = 0; guard < 4 * nLayers + 8; guard++) {
    const s = g.skip(x);
    const j = junctionAt(g, s);
    if (!j) {
      x = s;
      break;
    }
    junctions.push(j);
    x = j.stream;
  }
  junctions.reverse();
  // x is now the embedding stream; check it is the token embedding (+ positions / scale)
  if (!g.dependsOn(x, embedOut))
    throw bad(
      `the residual chain from the final norm stops at "${x}" (${g.prod(x)?.opType ?? 'input'}), which does not come from the token embedding.`,
    );
  const embedBranch = g.branch(x, embedOut);
  const embedOps = g.opsIn(embedBranch);
  for (const op of embedOps) {
    if (MATMULS.has(op) || op === 'Softmax' || FUSED_ATTENTION.has(op))
      throw bad(
        `the residual chain from the final norm breaks at "${x}" (${g.prod(x)?.opType}): ${junctions.length} residual additions were followed, ` +
          `and what lies before contains a ${op}, so it is not the embedding.`,
      );
  }
  let positionRows: number | null = null;
  for (const i of embedBranch) {
    const n = g.nodes[i]!;
    const table = g.inits.get(n.input?.[0] ?? '');
    if (n.opType === 'Gather' && n !== embedNode && table && dimsOf(table).length === 2 && dimsOf(table)[1] === dModel)
      positionRows = dimsOf(table)[0]!;
  }

  // ---- 5. blocks -----------------------------------------------------------------------------
  const perLayer = junctions.length / nLayers;
  if (perLayer !== 1 && perLayer !== 2)
    throw bad(
      `${junctions.length} residual additions lie between the embedding and the final norm, but the export has ${nLayers} layers ` +
        '(expected 2 per layer, or 1 for parallel attention/MLP blocks).',
    );
  const parallel = perLayer === 1;
  const fusedAnywhere = g.nodes.find((n) => FUSED_ATTENTION.has(n.opType ?? ''));

  // ---- build the new graph -------------------------------------------------------------------
  const b = new Rewriter(g, opsetVersion, nLayers);
  const prelude = b.prelude();
  const tail: onnx.INodeProto[] = [];
  const hooks: string[] = [];
  const newOutputs: onnx.IValueInfoProto[] = [];
  const residDims = ['batch', 'seq', dModel];
  const expose = (name: string, tensor: string, dims: (number | string)[], float: boolean) => {
    if (float) tail.push(b.node('Identity', [tensor], [name]));
    else tail.push(b.node('Cast', [tensor], [name], [{ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: DT.FLOAT }]));
    newOutputs.push(valueInfo(name, DT.FLOAT, dims));
    hooks.push(name);
  };
  // fused norms without a sum output get one
  const replaced = new Map<number, onnx.INodeProto>();
  for (const j of junctions) {
    if (j.out) continue;
    const n = g.nodes[j.node]!;
    j.out = b.fresh('resid_sum');
    const outs = [...(n.output ?? [])];
    while (outs.length < 3) outs.push('');
    outs[3] = j.out;
    replaced.set(j.node, { ...n, output: outs });
  }
  expose(hook.residPre(0), x, residDims, streamIsFloat);
  let patternsOn = opts.patterns !== false && !fusedAnywhere;
  let patternsNote = fusedAnywhere
    ? `attention is fused into ${fusedAnywhere.domain ? `${fusedAnywhere.domain}.` : ''}${fusedAnywhere.opType} nodes, so attention patterns are not available`
    : opts.patterns === false
      ? 'patterns were not requested'
      : '';
  const patternTensors: string[] = [];
  let postNormsAll = true;
  let qkNorms: boolean | null = null;
  for (let L = 0; L < nLayers; L++) {
    let mid: string;
    let post: string;
    let attnNodes: number[];
    if (!parallel) {
      const jm = junctions[2 * L]!;
      const jp = junctions[2 * L + 1]!;
      mid = jm.out;
      post = jp.out;
      attnNodes = g.branch(jm.branch, jm.stream);
      const postHere = isNormOutput(g, jm.branch) && isNormOutput(g, jp.branch);
      if (L > 0 && postHere !== postNormsAll)
        throw bad(
          `layer ${L} ${postHere ? 'normalises' : 'does not normalise'} its sublayer outputs before the residual additions, unlike layer 0.`,
        );
      postNormsAll = postHere;
      const qk = qkNormCount(g, attnNodes, jm.stream);
      if (qk !== null) {
        if (qk !== 0 && qk !== 2)
          throw bad(`layer ${L}'s attention normalises ${qk} of its projections before the scores (q/k norms: 2 expected, or none).`);
        if (qkNorms !== null && qkNorms !== (qk === 2)) throw bad(`layer ${L} ${qk === 2 ? 'has' : 'has no'} q/k norms, unlike layer 0.`);
        qkNorms = qk === 2;
      }
    } else {
      const j = junctions[L]!;
      post = j.out;
      const split = splitParallel(g, j);
      if (!split)
        throw bad(
          `layer ${L} has a single residual addition (parallel attention/MLP) but its attention and MLP branches could not be told apart ` +
            '(expected an Add of two branches, exactly one holding the Softmax or fused attention).',
        );
      attnNodes = split.attnNodes;
      mid = b.fresh(`layer${L}_resid_mid`);
      tail.push(b.node('Add', [j.stream, split.attn], [mid]));
    }
    expose(hook.residMid(L), mid, residDims, streamIsFloat);
    expose(hook.residPost(L), post, residDims, streamIsFloat);
    if (patternsOn) {
      const softmaxes = attnNodes
        .map((i) => g.nodes[i]!)
        .filter((n) => n.opType === 'Softmax' && [-1, 3].includes(attrInt(n, 'axis', opsetVersion >= 13 ? -1 : 1)));
      let pick = softmaxes;
      if (pick.length > 1) {
        pick = softmaxes.filter((s) => {
          const out = s.output?.[0] ?? '';
          return g.nodes.some((n) => n.opType === 'MatMul' && g.skip(n.input?.[0] ?? '') === out);
        });
      }
      if (pick.length !== 1) {
        patternsOn = false;
        patternsNote = `layer ${L}'s attention has ${softmaxes.length} candidate Softmax nodes (1 expected), so attention patterns are off`;
      } else patternTensors.push(pick[0]!.output![0]!);
    }
  }
  if (patternsOn) patternTensors.forEach((p, L) => expose(hook.pattern(L), p, ['batch', 'heads', 'seq', 'total'], streamIsFloat));

  // logits [batch, vocab] at the last position
  const logitsInfo = outputs.get('logits')!;
  const logitsFloat = logitsInfo.type?.tensorType?.elemType === DT.FLOAT;
  let beforeHead: onnx.INodeProto | null = null;
  const headIndex = g.nodes.indexOf(head);
  let logitsMode: SurgeryDescription['logits'];
  if (elementwise && !headIsGemm) {
    const lastIn = b.fresh('last_hidden');
    beforeHead = b.node('Gather', [headIn, b.lastIndex], [lastIn], [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 1 }]);
    replaced.set(headIndex, { ...(replaced.get(headIndex) ?? head), input: [lastIn, ...(head.input ?? []).slice(1)] });
    headIn = lastIn;
    if (logitsFloat) {
      // the chain now yields [batch, vocab] under the name "logits"
    } else {
      renameOutput(g, replaced, 'logits', b.fresh('logits_native'), (native) => tail.push(castFloat(b, native, 'logits')));
    }
    logitsMode = 'before-head';
  } else {
    renameOutput(g, replaced, 'logits', b.fresh('logits_all'), (all) => {
      if (logitsFloat)
        tail.push(b.node('Gather', [all, b.lastIndex], ['logits'], [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 1 }]));
      else {
        const last = b.fresh('logits_last');
        tail.push(b.node('Gather', [all, b.lastIndex], [last], [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 1 }]));
        tail.push(castFloat(b, last, 'logits'));
      }
    });
    logitsMode = 'after-head';
  }

  // ---- assemble ------------------------------------------------------------------------------
  // each run's own keys and values (the step cache's appends): present's positions after
  // the past, kv_rows of them (a row gate, graph/gates.ts: 0 unless generation asks)
  const pastVec = b.fresh('past_vec');
  tail.push(b.unsqueeze0(b.past, pastVec));
  const newEnd = b.fresh('new_end');
  tail.push(b.node('Add', [pastVec, KV_ROWS], [newEnd]));
  for (let L = 0; L < nLayers; L++)
    for (const [present, out] of [
      [hook.presentKey(L), hook.newKey(L)],
      [hook.presentValue(L), hook.newValue(L)],
    ] as const) {
      tail.push(b.node('Slice', [present, pastVec, newEnd, b.ints([2], false)], [out]));
      newOutputs.push(valueInfo(out, DT.FLOAT, ['batch', nKvHeads ?? 'kv_heads', 'kv_rows', headDim ?? 'head_dim']));
    }
  const nodes: onnx.INodeProto[] = [...prelude.nodes];
  g.nodes.forEach((n, i) => {
    if (i === headIndex && beforeHead) nodes.push(beforeHead);
    nodes.push(b.rewired(replaced.get(i) ?? n));
  });
  nodes.push(...tail);
  const computed = new Set(prelude.computed);
  const changed = new Set(['logits', ...computed]);
  const outs = (graph.output ?? []).map((o) => (o.name === 'logits' ? valueInfo('logits', DT.FLOAT, ['batch', dVocab]) : o));
  const newGraph: onnx.IGraphProto = {
    ...graph,
    node: nodes,
    input: [
      ...(graph.input ?? []).filter((i) => !computed.has(i.name ?? '')),
      ...Array.from({ length: nLayers }, (_, L) =>
        [hook.pastCacheKey(L), hook.pastCacheValue(L)].map((name) =>
          valueInfo(name, DT.FLOAT, ['batch', nKvHeads ?? 'kv_heads', 'capacity', headDim ?? 'head_dim']),
        ),
      ).flat(),
      valueInfo(hook.pastCacheLength, DT.INT64, [1]),
      valueInfo(KV_ROWS, DT.INT64, [1]),
    ],
    output: [...outs, ...newOutputs],
    initializer: [...(graph.initializer ?? []), ...b.initializers],
    valueInfo: (graph.valueInfo ?? []).filter((v) => !changed.has(v.name ?? '')),
  };

  // ---- weights for the lens ------------------------------------------------------------------
  const embed = readFloats(wEInit, opts.readExternal ?? null);
  const tied = wUSameAsWE || sameValues(embed, wU);
  return {
    model: { ...model, graph: newGraph },
    description: {
      nLayers,
      dModel,
      dVocab,
      nKvHeads,
      headDim,
      norm: fn.norm,
      normEps: fn.eps,
      finalNorm: fn.kind,
      positionRows,
      parallelResidual: parallel,
      residMid: parallel ? 'synthesized' : 'graph',
      tiedEmbeddings: tied,
      patterns: patternsOn,
      patternsNote,
      logits: logitsMode,
      finalSoftcap,
      postNorms: parallel ? null : postNormsAll,
      qkNorms,
      computedInputs: prelude.computed,
      hooks,
      notes,
    },
    weights: {
      embed,
      posEmbed: null,
      lnFinal: { w: lnW, b: lnB },
      unembed: tied ? embed : wU,
      unembedBias: headBias,
    },
  };
}

/**
 * Refuses an export whose graph lacks what config.json's family computes (or has what it does
 * not): final soft-capping, post-norms, q/k norms. A RoPE whose frequencies depend on the
 * sequence length (LongRoPE, dynamic NTK) cannot be checked in a traced graph, which fixes them
 * at the length it was traced with, so such exports are refused.
 */
export function checkExportAgainstConfig(d: SurgeryDescription, s: ModelSpec): void {
  const mismatch = (what: string) => new EngineError('BAD_ONNX', `ONNX export does not match config.json (${s.modelType}): ${what}`);
  if (d.finalSoftcap !== s.finalSoftcap)
    throw mismatch(
      s.finalSoftcap === null
        ? `the graph soft-caps its logits at ${d.finalSoftcap}, config.json has no final_logit_softcapping.`
        : `config.json soft-caps the logits at ${s.finalSoftcap} (final_logit_softcapping), the graph ${d.finalSoftcap === null ? 'does not (no cap·tanh(logits/cap) after the LM head was found)' : `at ${d.finalSoftcap}`}.`,
    );
  const post = s.blockNorms !== 'pre';
  if (d.postNorms !== null && d.postNorms !== post)
    throw mismatch(
      post
        ? 'its blocks normalise each sublayer output before the residual addition, but no such post-norms were found in the graph.'
        : 'the graph normalises its sublayer outputs before the residual additions (post-norms), which this family does not.',
    );
  const qk = s.qkNorm !== 'none';
  if (d.qkNorms !== null && d.qkNorms !== qk)
    throw mismatch(
      qk
        ? 'its attention normalises queries and keys before the scores, but no q/k norms were found in the graph.'
        : 'the graph normalises queries and keys before the attention scores (q/k norms), which this family does not.',
    );
  const lengthDependent = s.layers.find((l) => l.rope && l.rope.freq.kind !== 'fixed')?.rope;
  if (lengthDependent)
    throw new EngineError(
      'BAD_ONNX',
      `This export's RoPE is "${lengthDependent.type}": its frequencies depend on the sequence length. A traced ONNX export usually ` +
        'fixes them at the length it was traced with, and which ones a graph uses cannot be checked here, so its numbers cannot be ' +
        'trusted. Open the safetensors checkpoint instead.',
    );
}

/** Renames a graph tensor's producer output and lets `then` produce the old name again. */
function renameOutput(
  g: GraphIndex,
  replaced: Map<number, onnx.INodeProto>,
  name: string,
  to: string,
  then: (renamed: string) => void,
): void {
  const i = g.producer.get(name);
  if (i === undefined) throw bad(`"${name}" has no producer.`);
  const n = replaced.get(i) ?? g.nodes[i]!;
  replaced.set(i, { ...n, output: (n.output ?? []).map((o) => (o === name ? to : o)) });
  // other consumers of the old name (rare) read the renamed tensor
  g.nodes.forEach((m, k) => {
    if (k === i || !(m.input ?? []).includes(name)) return;
    const cur = replaced.get(k) ?? m;
    replaced.set(k, { ...cur, input: (cur.input ?? []).map((x) => (x === name ? to : x)) });
  });
  then(to);
}

function castFloat(b: Rewriter, from: string, to: string): onnx.INodeProto {
  return b.node('Cast', [from], [to], [{ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: DT.FLOAT }]);
}

/** A residual junction producing tensor `t`, or null. */
function junctionAt(g: GraphIndex, t: string): Junction | null {
  const i = g.producer.get(t);
  if (i === undefined) return null;
  const n = g.nodes[i]!;
  const op = n.opType ?? '';
  if (op === 'Add' && n.output?.[0] === t) return junctionOf(g, i, t);
  if (SKIP_NORMS.has(op) && g.slot.get(t) === 3) return junctionOf(g, i, t);
  return null;
}

function junctionOf(g: GraphIndex, i: number, out: string): Junction | null {
  const n = g.nodes[i]!;
  const a = n.input?.[0] ?? '';
  const c = n.input?.[1] ?? '';
  if (!a || !c || g.isConst(a) || g.isConst(c)) return null;
  let stream: string | null = null;
  if (g.dependsOn(c, a)) stream = a;
  else if (g.dependsOn(a, c)) stream = c;
  else {
    // e.g. x + attn(x) followed by (x + attn(x)) + mlp(x): the stream is the input that is
    // itself a residual sum
    const isSum = (v: string) => {
      const p = g.prod(g.skip(v));
      return !!p && ((p.opType === 'Add' && !(p.input ?? []).some((y) => !y || g.isConst(y))) || SKIP_NORMS.has(p.opType ?? ''));
    };
    const sa = isSum(a);
    const sc = isSum(c);
    if (sa !== sc) stream = sa ? a : c;
  }
  if (!stream) return null;
  const branch = stream === a ? c : a;
  const ops = g.opsIn(g.branch(branch, stream));
  if (![...ops].some((op) => MATMULS.has(op) || FUSED_ATTENTION.has(op))) return null;
  return { node: i, out, stream, branch };
}

/** For a parallel block x + (attn + mlp): the attention branch and its nodes. */
function splitParallel(g: GraphIndex, j: Junction): { attn: string; attnNodes: number[] } | null {
  const hasAttention = (nodes: number[]) => nodes.some((i) => ['Softmax', ...FUSED_ATTENTION].includes(g.nodes[i]!.opType ?? ''));
  const p = g.prod(g.skip(j.branch));
  if (!p || p.opType !== 'Add') return null;
  const [a, c] = [p.input?.[0] ?? '', p.input?.[1] ?? ''];
  const na = g.branch(a, j.stream);
  const nc = g.branch(c, j.stream);
  const ha = hasAttention(na);
  const hc = hasAttention(nc);
  if (ha === hc) return null;
  return ha ? { attn: a, attnNodes: na } : { attn: c, attnNodes: nc };
}

/** cap·tanh(x / cap) (or x · (1/cap)) producing tensor `t`: the final soft-capping of Gemma 2/3. */
function softcapAt(g: GraphIndex, t: string): { cap: number; x: string } | null {
  const mul = g.prod(g.skip(t));
  if (mul?.opType !== 'Mul') return null;
  const [a, c] = mul.input ?? [];
  const k = [a, c].findIndex((v) => !!v && g.scalar(v) !== null);
  if (k < 0) return null;
  const cap = g.scalar([a, c][k]!)!;
  const tanh = g.prod(g.skip([a, c][1 - k] ?? ''));
  if (tanh?.opType !== 'Tanh') return null;
  const scaled = g.prod(g.skip(tanh.input?.[0] ?? ''));
  const [u, v] = scaled?.input ?? [];
  if (!scaled || !u || !v) return null;
  const close = (x: number | null, y: number) => x !== null && Math.abs(x - y) <= 1e-6 * Math.abs(y);
  if (scaled.opType === 'Div' && close(g.scalar(v), cap)) return { cap, x: u };
  if (scaled.opType === 'Mul') {
    if (close(g.scalar(v), 1 / cap)) return { cap, x: u };
    if (close(g.scalar(u), 1 / cap)) return { cap, x: v };
  }
  return null;
}

/** Whether tensor `t` is the output of a norm (a post-norm of a sublayer), fused Skip norms aside. */
function isNormOutput(g: GraphIndex, t: string): boolean {
  const n = findFinalNorm(g, g.skip(t));
  return n !== null && n.junction === null;
}

/**
 * How many distinct tensors a layer's attention normalises after a projection and before its
 * scores (the Softmax or fused attention): q/k norms (Qwen3, Gemma 3: per head; OLMo 2: over the
 * projection). The input norm (it reads the residual stream) and post-norms (after the scores)
 * do not count. null when the scores cannot be found.
 */
function qkNormCount(g: GraphIndex, nodes: number[], stream: string): number | null {
  const scores = nodes.map((i) => g.nodes[i]!).find((n) => n.opType === 'Softmax' || FUSED_ATTENTION.has(n.opType ?? ''));
  const scoresOut = scores?.output?.[0];
  if (!scoresOut) return null;
  const normalised = new Set<string>();
  for (const i of nodes) {
    const n = g.nodes[i]!;
    const out = n.output?.[0];
    if (!out || !['Mul', 'Div', 'LayerNormalization', 'SimplifiedLayerNormalization', 'RMSNormalization'].includes(n.opType ?? ''))
      continue;
    const norm = findFinalNorm(g, out);
    if (!norm || norm.junction || !norm.x || !g.dependsOn(scoresOut, out)) continue;
    const before = g.opsIn(g.branch(norm.x, stream));
    if ([...before].some((op) => MATMULS.has(op))) normalised.add(g.skip(norm.x));
  }
  return normalised.size;
}

function findFinalNorm(g: GraphIndex, y: string): FinalNorm | null {
  const p = g.prod(y);
  if (!p) return null;
  const op = p.opType ?? '';
  const ins = p.input ?? [];
  if (op === 'LayerNormalization') {
    const axis = attrInt(p, 'axis', -1);
    if (axis !== -1) return null;
    return {
      kind: op,
      norm: 'layernorm',
      x: ins[0] ?? '',
      w: ins[1] || null,
      b: ins[2] || null,
      eps: attrFloat(p, 'epsilon', 1e-5),
      junction: null,
    };
  }
  if (op === 'SimplifiedLayerNormalization' || op === 'RMSNormalization') {
    return { kind: op, norm: 'rmsnorm', x: ins[0] ?? '', w: ins[1] || null, b: null, eps: attrFloat(p, 'epsilon', 1e-5), junction: null };
  }
  if (SKIP_NORMS.has(op) && p.output?.[0] === y) {
    const i = g.producer.get(y)!;
    const j = junctionOf(g, i, p.output?.[3] ?? '');
    if (!j) return null;
    const rms = op === 'SkipSimplifiedLayerNormalization';
    return {
      kind: op,
      norm: rms ? 'rmsnorm' : 'layernorm',
      x: '',
      w: ins[2] || null,
      b: rms ? null : ins[3] || null,
      eps: attrFloat(p, 'epsilon', 1e-5),
      junction: j,
    };
  }
  return decomposedNorm(g, y);
}

/** weight·x/sqrt(mean(x²)+eps) or weight·(x−μ)/sqrt(mean((x−μ)²)+eps)+bias, written out. */
function decomposedNorm(g: GraphIndex, y: string): FinalNorm | null {
  let t = y;
  let bias: string | null = null;
  let weight: string | null = null;
  const constVec = (name: string) => (g.floats(name)?.length ?? 0) > 1;
  let p = g.prod(t);
  if (p?.opType === 'Add') {
    const ins = p.input ?? [];
    const k = ins.findIndex((v) => !!v && constVec(v));
    if (k >= 0) {
      bias = ins[k]!;
      t = g.skip(ins[1 - k] ?? '');
      p = g.prod(t);
    }
  }
  if (p?.opType === 'Mul') {
    const ins = p.input ?? [];
    const k = ins.findIndex((v) => !!v && constVec(v));
    if (k >= 0) {
      weight = ins[k]!;
      t = g.skip(ins[1 - k] ?? '');
      p = g.prod(t);
    }
  }
  if (!p) return null;
  // normalised value: Div(x, den) | Mul(x, inv) | Mul(inv, x)
  const sqrtOf = (v: string): string | null => {
    const q = g.prod(g.skip(v));
    return q?.opType === 'Sqrt' ? (q.input?.[0] ?? null) : null;
  };
  const invSqrtOf = (v: string): string | null => {
    const q = g.prod(g.skip(v));
    if (!q) return null;
    if (q.opType === 'Reciprocal') return sqrtOf(q.input?.[0] ?? '');
    if (q.opType === 'Div' && g.scalar(q.input?.[0] ?? '') === 1) return sqrtOf(q.input?.[1] ?? '');
    return null;
  };
  let xs: string | null = null;
  let inner: string | null = null;
  const ins = p.input ?? [];
  if (p.opType === 'Div') {
    xs = ins[0] ?? null;
    inner = sqrtOf(ins[1] ?? '');
  } else if (p.opType === 'Mul') {
    for (const k of [0, 1]) {
      const s = invSqrtOf(ins[1 - k] ?? '');
      if (s) {
        xs = ins[k] ?? null;
        inner = s;
        break;
      }
    }
  }
  if (!xs || !inner) return null;
  // inner = mean(sq) + eps
  const addN = g.prod(g.skip(inner));
  if (addN?.opType !== 'Add') return null;
  const ai = addN.input ?? [];
  const ek = ai.findIndex((v) => !!v && g.scalar(v) !== null);
  if (ek < 0) return null;
  const eps = g.scalar(ai[ek]!)!;
  const mean = g.prod(g.skip(ai[1 - ek] ?? ''));
  if (mean?.opType !== 'ReduceMean') return null;
  const sq = g.prod(g.skip(mean.input?.[0] ?? ''));
  let z: string | null = null;
  if (sq?.opType === 'Pow' && g.scalar(sq.input?.[1] ?? '') === 2) z = sq.input?.[0] ?? null;
  else if (sq?.opType === 'Mul' && g.skip(sq.input?.[0] ?? '') === g.skip(sq.input?.[1] ?? '')) z = sq.input?.[0] ?? null;
  if (!z || g.skip(z) !== g.skip(xs)) return null;
  // LayerNorm: z = x − mean(x)
  const sub = g.prod(g.skip(z));
  if (sub?.opType === 'Sub') {
    const m = g.prod(g.skip(sub.input?.[1] ?? ''));
    if (m?.opType === 'ReduceMean' && g.skip(m.input?.[0] ?? '') === g.skip(sub.input?.[0] ?? ''))
      return { kind: 'decomposed LayerNorm', norm: 'layernorm', x: sub.input?.[0] ?? '', w: weight, b: bias, eps, junction: null };
  }
  if (bias) return null;
  return { kind: 'decomposed RMSNorm', norm: 'rmsnorm', x: xs, w: weight, b: null, eps, junction: null };
}

/** New nodes, names and constants for the instrumented graph. */
class Rewriter {
  readonly initializers: onnx.ITensorProto[] = [];
  private n = 0;
  private readonly consts = new Map<string, string>();
  lastIndex = '';
  /** The prelude's past length (a scalar): the positions before this run's. */
  past = '';
  /** past_key_values.{L}.key|value → the tensor the export's nodes read instead (the whole cache) */
  readonly cache = new Map<string, string>();

  constructor(
    private readonly g: GraphIndex,
    private readonly opset: number,
    private readonly layers: number,
  ) {}

  /** A node reading the whole cache where it read past_key_values.* */
  rewired(n: onnx.INodeProto): onnx.INodeProto {
    const input = n.input ?? [];
    return input.some((i) => this.cache.has(i)) ? { ...n, input: input.map((i) => this.cache.get(i) ?? i) } : n;
  }

  fresh(prefix: string): string {
    let name: string;
    do name = `td_surgery/${prefix}_${this.n++}`;
    while (this.g.names.has(name));
    this.g.names.add(name);
    return name;
  }

  node(opType: string, input: string[], output: string[], attribute: onnx.IAttributeProto[] = []): onnx.INodeProto {
    return { opType, input, output, name: this.fresh(opType), attribute };
  }

  ints(values: number[], scalar: boolean): string {
    const key = `${scalar ? 's' : 'v'}:${values.join(',')}`;
    const hit = this.consts.get(key);
    if (hit) return hit;
    const name = this.fresh('const');
    this.initializers.push(int64Tensor(name, values, scalar));
    this.consts.set(key, name);
    return name;
  }

  unsqueeze0(x: string, out: string): onnx.INodeProto {
    return this.opset >= 13
      ? this.node('Unsqueeze', [x, this.ints([0], false)], [out])
      : this.node('Unsqueeze', [x], [out], [{ name: 'axes', type: onnx.AttributeProto.AttributeType.INTS, ints: [0] }]);
  }

  /** Shared shape values and the inputs the engine does not feed (computed here). */
  prelude(): { nodes: onnx.INodeProto[]; computed: string[] } {
    const nodes: onnx.INodeProto[] = [];
    const op = (type: string, inputs: string[], attrs: onnx.IAttributeProto[] = [], out?: string) => {
      const o = out ?? this.fresh(type.toLowerCase());
      nodes.push(this.node(type, inputs, [o], attrs));
      return o;
    };
    const INT = onnx.AttributeProto.AttributeType.INT;
    const idShape = op('Shape', ['input_ids']);
    const batch = op('Gather', [idShape, this.ints([0], true)], [{ name: 'axis', type: INT, i: 0 }]);
    const seq = op('Gather', [idShape, this.ints([1], true)], [{ name: 'axis', type: INT, i: 0 }]);
    // the cache the export reads: past_key_values.* then the filled positions of the step cache
    // (graph/forward.ts, stepCache), under fresh names that every node reading past_key_values.* now reads
    const start = this.ints([0], false);
    const axis = this.ints([2], false);
    for (let L = 0; L < this.layers; L++)
      for (const [past, cache] of [
        [hook.pastKey(L), hook.pastCacheKey(L)],
        [hook.pastValue(L), hook.pastCacheValue(L)],
      ] as const) {
        const filled = op('Slice', [cache, start, hook.pastCacheLength, axis]);
        this.cache.set(past, op('Concat', [past, filled], [{ name: 'axis', type: INT, i: 2 }]));
      }
    const past = op('Gather', [op('Shape', [this.cache.get(hook.pastKey(0))!]), this.ints([2], true)], [{ name: 'axis', type: INT, i: 0 }]);
    this.past = past;
    const total = op('Add', [past, seq]);
    this.lastIndex = op('Sub', [seq, this.ints([1], true)]);
    const vec = (s: string) => {
      const o = this.fresh('vec');
      nodes.push(this.unsqueeze0(s, o));
      return o;
    };
    const computed: string[] = [];
    const castTo = (value: string, name: string) => {
      const type = this.g.inputs.get(name)?.type?.tensorType?.elemType ?? DT.INT64;
      if (type === DT.INT64) op('Identity', [value], [], name);
      else op('Cast', [value], [{ name: 'to', type: INT, i: type }], name);
    };
    if (this.g.inputs.has('attention_mask')) {
      const shape = op('Concat', [vec(batch), vec(total)], [{ name: 'axis', type: INT, i: 0 }]);
      castTo(op('Expand', [this.ints([1], true), shape]), 'attention_mask');
      computed.push('attention_mask');
    }
    const positions = () => op('Range', [past, total, this.ints([1], true)]);
    if (this.g.inputs.has('position_ids')) {
      const row = this.fresh('pos_row');
      nodes.push(this.unsqueeze0(positions(), row));
      const shape = op('Concat', [vec(batch), vec(seq)], [{ name: 'axis', type: INT, i: 0 }]);
      castTo(op('Expand', [row, shape]), 'position_ids');
      computed.push('position_ids');
    }
    if (this.g.inputs.has('cache_position')) {
      castTo(positions(), 'cache_position');
      computed.push('cache_position');
    }
    return { nodes, computed };
  }
}

function valueInfo(name: string, elemType: number, dims: (number | string)[]): onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } },
    },
  };
}

function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c]!;
  return out;
}

function sameValues(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
