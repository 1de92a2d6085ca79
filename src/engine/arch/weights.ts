// Checkpoint tensors → canonical weights, one layout for every family:
// linear weights as [d_in, d_out] (ready for MatMul), fused projections split into q/k/v,
// W_E as [d_vocab, d_model] and W_U stored like W_E ([d_vocab, d_model], used with Gemm transB).
import { EngineError } from '../errors';
import type { WeightStore } from '../checkpoint/hf';
import type { ModelSpec } from './spec';
import { transposeToF32 } from '../checkpoint/safetensors';

export interface Linear {
  w: Float32Array; // [d_in, d_out]
  b: Float32Array | null; // [d_out]
  dIn: number;
  dOut: number;
}

export interface Norm {
  w: Float32Array; // [d_model]
  b: Float32Array | null;
}

export interface BlockWeights {
  ln1: Norm;
  ln2: Norm;
  q: Linear;
  k: Linear;
  v: Linear;
  o: Linear;
  up: Linear;
  gate: Linear | null;
  down: Linear;
}

export interface GlobalWeights {
  /** W_E [d_vocab, d_model] */
  embed: Float32Array;
  /** learned absolute positions [n_positions, d_model] (GPT-2) */
  posEmbed: Float32Array | null;
  lnFinal: Norm;
  /** W_U laid out [d_vocab, d_model]; the same array as `embed` when tied */
  unembed: Float32Array;
  unembedBias: Float32Array | null;
}

/** Transpose a row-major [rows, cols] matrix. */
export function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  return transposeToF32(src, 'F32', rows, cols);
}

/** Rows [r0, r1) of a row-major matrix with `cols` columns. */
function rows(src: Float32Array, cols: number, r0: number, r1: number): Float32Array {
  return src.slice(r0 * cols, r1 * cols);
}

/** Columns [c0, c1) of a row-major [nRows, cols] matrix. */
function columns(src: Float32Array, nRows: number, cols: number, c0: number, c1: number): Float32Array {
  const w = c1 - c0;
  const out = new Float32Array(nRows * w);
  for (let r = 0; r < nRows; r++) out.set(src.subarray(r * cols + c0, r * cols + c1), r * w);
  return out;
}

/** A torch Linear weight [out, in] → canonical [in, out]. */
function fromTorch(w: Float32Array, dOut: number, dIn: number, b: Float32Array | null): Linear {
  return { w: transpose(w, dOut, dIn), b, dIn, dOut };
}

/** A torch Linear stored in the checkpoint as [out, in], read straight into canonical [in, out]. */
function torchLinear(st: WeightStore, name: string, dOut: number, dIn: number, bias: Float32Array | null): Linear {
  return { w: st.float32Transposed(`${name}.weight`, [dOut, dIn]), b: bias, dIn, dOut };
}

export interface WeightReader {
  globals(): GlobalWeights;
  block(layer: number): BlockWeights;
}

/** The reader for a spec's family; `globals()` is read once and memoised. */
export function weightReader(spec: ModelSpec, store: WeightStore): WeightReader {
  const inner =
    spec.family === 'gpt2' ? gpt2Reader(spec, store) : spec.family === 'llama' ? llamaReader(spec, store) : neoxReader(spec, store);
  let globals: GlobalWeights | null = null;
  return {
    globals: () => (globals ??= inner.globals()),
    block: (L) => inner.block(L),
  };
}

/** Finds the first of several candidate names that exists (checkpoints differ in prefixes). */
function pick(store: WeightStore, candidates: string[]): string {
  for (const c of candidates) if (store.has(c)) return c;
  throw new EngineError(
    'BAD_WEIGHTS',
    `The checkpoint has none of the tensors ${candidates.map((c) => `"${c}"`).join(', ')}; it does not look like the architecture config.json names.`,
  );
}

function gpt2Reader(s: ModelSpec, st: WeightStore): WeightReader {
  const pre = st.has('transformer.wte.weight') ? 'transformer.' : '';
  const d = s.dModel;
  const f = (n: string, shape: number[]) => st.float32(pre + n, shape);
  const conv = (n: string, dIn: number, dOut: number): Linear => ({
    w: f(`${n}.weight`, [dIn, dOut]),
    b: f(`${n}.bias`, [dOut]),
    dIn,
    dOut,
  });
  return {
    globals() {
      const embed = f('wte.weight', [s.dVocab, d]);
      const head = st.has('lm_head.weight') && !s.tiedEmbeddings ? st.float32('lm_head.weight', [s.dVocab, d]) : embed;
      return {
        embed,
        posEmbed: f('wpe.weight', [s.maxPositions, d]),
        lnFinal: { w: f('ln_f.weight', [d]), b: f('ln_f.bias', [d]) },
        unembed: head,
        unembedBias: null,
      };
    },
    block(L) {
      const p = `h.${L}.`;
      const qkv = conv(`${p}attn.c_attn`, d, 3 * d);
      const split = (i: number): Linear => ({
        w: columns(qkv.w, d, 3 * d, i * d, (i + 1) * d),
        b: qkv.b!.slice(i * d, (i + 1) * d),
        dIn: d,
        dOut: d,
      });
      return {
        ln1: { w: f(`${p}ln_1.weight`, [d]), b: f(`${p}ln_1.bias`, [d]) },
        ln2: { w: f(`${p}ln_2.weight`, [d]), b: f(`${p}ln_2.bias`, [d]) },
        q: split(0),
        k: split(1),
        v: split(2),
        o: conv(`${p}attn.c_proj`, d, d),
        up: conv(`${p}mlp.c_fc`, d, s.dMlp),
        gate: null,
        down: conv(`${p}mlp.c_proj`, s.dMlp, d),
      };
    },
  };
}

function llamaReader(s: ModelSpec, st: WeightStore): WeightReader {
  const d = s.dModel;
  const qDim = s.nHeads * s.headDim;
  const kvDim = s.nKvHeads * s.headDim;
  const lin = (n: string, dOut: number, dIn: number, bias: boolean): Linear =>
    torchLinear(st, n, dOut, dIn, bias ? st.float32(`${n}.bias`, [dOut]) : null);
  return {
    globals() {
      const embed = st.float32('model.embed_tokens.weight', [s.dVocab, d]);
      const tied = s.tiedEmbeddings || !st.has('lm_head.weight');
      return {
        embed,
        posEmbed: null,
        lnFinal: { w: st.float32('model.norm.weight', [d]), b: null },
        unembed: tied ? embed : st.float32('lm_head.weight', [s.dVocab, d]),
        unembedBias: null,
      };
    },
    block(L) {
      const p = `model.layers.${L}.`;
      return {
        ln1: { w: st.float32(`${p}input_layernorm.weight`, [d]), b: null },
        ln2: { w: st.float32(`${p}post_attention_layernorm.weight`, [d]), b: null },
        q: lin(`${p}self_attn.q_proj`, qDim, d, s.qkvBias),
        k: lin(`${p}self_attn.k_proj`, kvDim, d, s.qkvBias),
        v: lin(`${p}self_attn.v_proj`, kvDim, d, s.qkvBias),
        o: lin(`${p}self_attn.o_proj`, d, qDim, s.outBias),
        up: lin(`${p}mlp.up_proj`, s.dMlp, d, s.mlpBias),
        gate: lin(`${p}mlp.gate_proj`, s.dMlp, d, s.mlpBias),
        down: lin(`${p}mlp.down_proj`, d, s.dMlp, s.mlpBias),
      };
    },
  };
}

function neoxReader(s: ModelSpec, st: WeightStore): WeightReader {
  const d = s.dModel;
  const hd = s.headDim;
  const opt = (n: string, dOut: number, bias: boolean) => (bias ? st.float32(n, [dOut]) : null);
  const lin = (n: string, dOut: number, dIn: number, bias: boolean): Linear => torchLinear(st, n, dOut, dIn, opt(`${n}.bias`, dOut, bias));
  const norm = (n: string): Norm => ({ w: st.float32(`${n}.weight`, [d]), b: st.float32(`${n}.bias`, [d]) });
  return {
    globals() {
      const embed = st.float32(pick(st, ['gpt_neox.embed_in.weight']), [s.dVocab, d]);
      return {
        embed,
        posEmbed: null,
        lnFinal: norm('gpt_neox.final_layer_norm'),
        unembed: s.tiedEmbeddings ? embed : st.float32(pick(st, ['embed_out.weight']), [s.dVocab, d]),
        unembedBias: null,
      };
    },
    block(L) {
      const p = `gpt_neox.layers.${L}.`;
      // query_key_value rows are laid out per head as [n_heads, 3, head_dim].
      const qkvW = st.float32(`${p}attention.query_key_value.weight`, [3 * d, d]);
      const qkvB = opt(`${p}attention.query_key_value.bias`, 3 * d, s.qkvBias);
      const part = (which: number): Linear => {
        const w = new Float32Array(d * d);
        const b = qkvB ? new Float32Array(d) : null;
        for (let h = 0; h < s.nHeads; h++) {
          const src = (h * 3 + which) * hd;
          w.set(rows(qkvW, d, src, src + hd), h * hd * d);
          if (b && qkvB) b.set(qkvB.subarray(src, src + hd), h * hd);
        }
        return fromTorch(w, d, d, b);
      };
      return {
        ln1: norm(`${p}input_layernorm`),
        ln2: norm(`${p}post_attention_layernorm`),
        q: part(0),
        k: part(1),
        v: part(2),
        o: lin(`${p}attention.dense`, d, d, s.outBias),
        up: lin(`${p}mlp.dense_h_to_4h`, s.dMlp, d, true),
        gate: null,
        down: lin(`${p}mlp.dense_4h_to_h`, d, s.dMlp, true),
      };
    },
  };
}
