// Canonical linear layers and norms, and the small matrix reshuffles the readers share.
import type { WeightStore } from '../checkpoint/hf';
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

/** Transpose a row-major [rows, cols] matrix. */
export function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  return transposeToF32(src, 'F32', rows, cols);
}

/** Rows [r0, r1) of a row-major matrix with `cols` columns. */
export function rows(src: Float32Array, cols: number, r0: number, r1: number): Float32Array {
  return src.slice(r0 * cols, r1 * cols);
}

/** Columns [c0, c1) of a row-major [nRows, cols] matrix. */
export function columns(src: Float32Array, nRows: number, cols: number, c0: number, c1: number): Float32Array {
  const w = c1 - c0;
  const out = new Float32Array(nRows * w);
  for (let r = 0; r < nRows; r++) out.set(src.subarray(r * cols + c0, r * cols + c1), r * w);
  return out;
}

/** A torch Linear weight [out, in] → canonical [in, out]. */
export function fromTorch(w: Float32Array, dOut: number, dIn: number, b: Float32Array | null): Linear {
  return { w: transpose(w, dOut, dIn), b, dIn, dOut };
}

/** A torch Linear stored in the checkpoint as [out, in], read straight into canonical [in, out]. */
export function torchLinear(st: WeightStore, name: string, dOut: number, dIn: number, bias: Float32Array | null): Linear {
  return { w: st.float32Transposed(`${name}.weight`, [dOut, dIn]), b: bias, dIn, dOut };
}
