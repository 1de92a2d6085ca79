// Canonical weights of the Llama tensor layout (`model.layers.N.*`) and its relatives: which
// norms a block has (pre, Gemma's sandwich, OLMo 2's post-norms), q/k norms, Phi-3's fused
// qkv_proj / gate_up_proj (split here), Gemma's (1 + w) norms (folded here, so every graph and
// the JS-side ln_final multiply by the stored weight alone).
import type { WeightStore } from '../checkpoint/hf';
import type { ModelSpec } from './spec';
import { columns, torchLinear, type Linear, type Norm } from './linear';
import type { BlockWeights, GlobalWeights, WeightReader } from './weights';

export function decoderReader(s: ModelSpec, st: WeightStore): WeightReader {
  const d = s.dModel;
  const qDim = s.nHeads * s.headDim;
  const kvDim = s.nKvHeads * s.headDim;
  const norm = (name: string, size = d): Norm => {
    const w = st.float32(`${name}.weight`, [size]);
    if (s.normPlusOne) for (let i = 0; i < size; i++) w[i] = w[i]! + 1;
    return { w, b: null };
  };
  const lin = (n: string, dOut: number, dIn: number, bias: boolean): Linear =>
    torchLinear(st, n, dOut, dIn, bias ? st.float32(`${n}.bias`, [dOut]) : null);
  return {
    globals(): GlobalWeights {
      const embed = st.float32('model.embed_tokens.weight', [s.dVocab, d]);
      return {
        embed,
        posEmbed: null,
        lnFinal: norm('model.norm'),
        unembed: s.tiedEmbeddings ? embed : st.float32('lm_head.weight', [s.dVocab, d]),
        unembedBias: null,
      };
    },
    block(L): BlockWeights {
      const p = `model.layers.${L}.`;
      const a = `${p}self_attn.`;
      const qkv = s.fusedProjections ? fusedQkv(st, `${a}qkv_proj`, qDim, kvDim, d) : null;
      return {
        ...blockNorms(s, p, norm),
        ...qkNorms(s, a, norm),
        q: qkv?.[0] ?? lin(`${a}q_proj`, qDim, d, s.qkvBias),
        k: qkv?.[1] ?? lin(`${a}k_proj`, kvDim, d, s.qkvBias),
        v: qkv?.[2] ?? lin(`${a}v_proj`, kvDim, d, s.qkvBias),
        o: lin(`${a}o_proj`, d, qDim, s.outBias),
        ...mlp(s, st, `${p}mlp.`, lin),
        down: lin(`${p}mlp.down_proj`, d, s.dMlp, s.mlpBias),
      };
    },
  };
}

type NormOf = (name: string, size?: number) => Norm;

/** input_layernorm / post_attention_layernorm / pre_ and post_feedforward_layernorm → canonical places. */
function blockNorms(s: ModelSpec, p: string, norm: NormOf): Pick<BlockWeights, 'ln1' | 'ln2' | 'lnAttnOut' | 'lnMlpOut'> {
  switch (s.blockNorms) {
    case 'pre':
      return { ln1: norm(`${p}input_layernorm`), ln2: norm(`${p}post_attention_layernorm`), lnAttnOut: null, lnMlpOut: null };
    case 'sandwich':
      return {
        ln1: norm(`${p}input_layernorm`),
        ln2: norm(`${p}pre_feedforward_layernorm`),
        lnAttnOut: norm(`${p}post_attention_layernorm`),
        lnMlpOut: norm(`${p}post_feedforward_layernorm`),
      };
    case 'post':
      return { ln1: null, ln2: null, lnAttnOut: norm(`${p}post_attention_layernorm`), lnMlpOut: norm(`${p}post_feedforward_layernorm`) };
  }
}

function qkNorms(s: ModelSpec, a: string, norm: NormOf): Pick<BlockWeights, 'qNorm' | 'kNorm'> {
  if (s.qkNorm === 'none') return { qNorm: null, kNorm: null };
  const head = s.qkNorm === 'head';
  return {
    qNorm: norm(`${a}q_norm`, head ? s.headDim : s.nHeads * s.headDim),
    kNorm: norm(`${a}k_norm`, head ? s.headDim : s.nKvHeads * s.headDim),
  };
}

/** Phi-3's qkv_proj [q | k | v rows, d_model] → three canonical [d_model, out] linears. */
function fusedQkv(st: WeightStore, name: string, qDim: number, kvDim: number, d: number): [Linear, Linear, Linear] {
  const rows = qDim + 2 * kvDim;
  const w = st.float32Transposed(`${name}.weight`, [rows, d]); // [d, rows]
  const part = (c0: number, c1: number): Linear => ({ w: columns(w, d, rows, c0, c1), b: null, dIn: d, dOut: c1 - c0 });
  return [part(0, qDim), part(qDim, qDim + kvDim), part(qDim + kvDim, rows)];
}

/** gate and up projections; Phi-3 fuses them as gate_up_proj [gate rows | up rows, d_model]. */
function mlp(
  s: ModelSpec,
  st: WeightStore,
  m: string,
  lin: (n: string, dOut: number, dIn: number, bias: boolean) => Linear,
): Pick<BlockWeights, 'gate' | 'up'> {
  if (!s.fusedProjections)
    return { gate: lin(`${m}gate_proj`, s.dMlp, s.dModel, s.mlpBias), up: lin(`${m}up_proj`, s.dMlp, s.dModel, s.mlpBias) };
  const d = s.dModel;
  const w = st.float32Transposed(`${m}gate_up_proj.weight`, [2 * s.dMlp, d]); // [d, 2·d_mlp]
  const part = (c0: number): Linear => ({ w: columns(w, d, 2 * s.dMlp, c0, c0 + s.dMlp), b: null, dIn: d, dOut: s.dMlp });
  return { gate: part(0), up: part(s.dMlp) };
}
