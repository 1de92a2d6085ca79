// Checkpoint tensors → canonical weights, one layout for every family:
// linear weights as [d_in, d_out] (ready for MatMul), fused projections split into q/k/v,
// W_E as [d_vocab, d_model] and W_U stored like W_E ([d_vocab, d_model], used with Gemm transB).
import { EngineError } from '../errors';
import type { WeightStore } from '../checkpoint/hf';
import type { ModelSpec } from './spec';
import { columns, fromTorch, rows, torchLinear, type Linear, type Norm } from './linear';
import { decoderReader } from './decoder-weights';

export type { Linear, Norm } from './linear';
export { transpose } from './linear';

export interface BlockWeights {
  /** Norm of the attention input; null where the block normalises the attention output only (OLMo 2). */
  ln1: Norm | null;
  /** Norm of the MLP input; null for OLMo 2. */
  ln2: Norm | null;
  /** Norms of the attention and MLP outputs before they join the residual stream (Gemma 2/3, OLMo 2). */
  lnAttnOut: Norm | null;
  lnMlpOut: Norm | null;
  /** RMSNorm weights of queries and keys ([head_dim], or the whole projection for OLMo 2). */
  qNorm: Norm | null;
  kNorm: Norm | null;
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

export interface WeightReader {
  globals(): GlobalWeights;
  block(layer: number): BlockWeights;
}

/** The reader for a spec's family; `globals()` is read once and memoised. */
export function weightReader(spec: ModelSpec, store: WeightStore): WeightReader {
  const inner =
    spec.family === 'gpt2' ? gpt2Reader(spec, store) : spec.family === 'llama' ? decoderReader(spec, store) : neoxReader(spec, store);
  let globals: GlobalWeights | null = null;
  return {
    globals: () => (globals ??= inner.globals()),
    block: (L) => inner.block(L),
  };
}

/** The norms only some layouts have. */
const NO_EXTRA_NORMS = { lnAttnOut: null, lnMlpOut: null, qNorm: null, kNorm: null } as const;

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
      const head = s.tiedEmbeddings ? embed : st.float32('lm_head.weight', [s.dVocab, d]);
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
        ...NO_EXTRA_NORMS,
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
        ...NO_EXTRA_NORMS,
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

/** ‖row‖ of each row of a [rows, d] matrix. */
export function rowNorms(m: Float32Array, rows: number, d: number): Float32Array {
  const out = new Float32Array(rows);
  for (let t = 0; t < rows; t++) {
    let s = 0;
    for (let i = 0; i < d; i++) s += m[t * d + i]! ** 2;
    out[t] = Math.sqrt(s);
  }
  return out;
}
