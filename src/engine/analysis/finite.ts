// Non-finite numbers (NaN, ±Infinity) out of a model are refused with where they start, instead
// of a panel of NaN percentages: a checkpoint with NaN or infinite weights, or a value that
// overflowed (float16 weights on a GPU provider overflow at 65504), otherwise analyses and
// generates without a word.
import { EngineError } from '../errors';
import { weightFiles, WeightStore } from '../checkpoint/hf';
import { SafetensorsFile } from '../checkpoint/safetensors';

/** Where a walk first stops being finite: its row (0 = the embeddings, r = block r−1's output) and position. */
export interface NonFinite {
  row: number;
  pos: number;
  /** what the first non-finite value is */
  value: 'NaN' | 'Infinity' | '-Infinity';
}

function kind(v: number): NonFinite['value'] {
  return Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity';
}

/**
 * The first row (then position) of `values` [rows, T, width] holding a non-finite number, or
 * null when all are finite.
 */
export function firstNonFinite(values: Float32Array, rows: number, T: number, width: number): NonFinite | null {
  for (let r = 0; r < rows; r++)
    for (let p = 0; p < T; p++) {
      const at = (r * T + p) * width;
      for (let i = at; i < at + width; i++) {
        const v = values[i]!;
        // v − v is 0 for every finite v and NaN for NaN and ±Infinity
        if (v - v !== 0) return { row: r, pos: p, value: kind(v) };
      }
    }
  return null;
}

/** "L1 (the output of block 1)" / "the embeddings": a walk's row as the panel names it. */
function rowName(row: number): string {
  return row === 0 ? 'the embeddings (emb)' : `L${row - 1} (the output of block ${row - 1})`;
}

const HALF_REMEDY =
  'The weights run in float16 here, where values above 65504 overflow: set transformerDynamics.weightPrecision (the CLI: --weights) to float32.';

/** Why a model's numbers stop being finite, and what to try, when its weights were not looked at. */
function causes(weights: 'float32' | 'float16' | undefined): string {
  return `Its weights may hold NaN or infinite values (a damaged or badly converted checkpoint), or a value overflowed.${weights === 'float16' ? ` ${HALF_REMEDY}` : ''}`;
}

/** The layer a checkpoint tensor belongs to: its name's first numeric part ("model.layers.3.mlp…" → 3), null for none. */
export function tensorLayer(name: string): number | null {
  const m = /(?:^|\.)(\d+)\./.exec(name);
  return m ? Number(m[1]) : null;
}

/**
 * The floating-point tensors of a Hugging Face checkpoint folder that hold NaN or infinite
 * values, among those of one layer (`layer`) or those of none (null: embeddings, final norm,
 * read-out), with how many such values each holds; and the largest finite magnitude among them
 * (an overflow's likely source). Reads those tensors from disk: for an error's message, not for
 * a healthy run.
 */
export function nonFiniteWeights(
  dir: string,
  layer: number | null,
): { bad: { name: string; count: number; total: number }[]; largest: { name: string; value: number } | null } {
  const store = new WeightStore(weightFiles(dir).map((f) => SafetensorsFile.open(f)));
  const bad: { name: string; count: number; total: number }[] = [];
  let largest: { name: string; value: number } | null = null;
  for (const name of store.names().sort()) {
    const { file, entry } = store.entry(name);
    if (tensorLayer(name) !== layer || !['F32', 'F16', 'BF16'].includes(entry.dtype)) continue;
    const x = file.readFloat32(entry);
    let count = 0;
    let top = 0;
    for (let i = 0; i < x.length; i++) {
      const v = x[i]!;
      if (v - v !== 0) count++;
      else if (Math.abs(v) > top) top = Math.abs(v);
    }
    if (count > 0) bad.push({ name, count, total: x.length });
    if (!largest || top > largest.value) largest = { name, value: top };
  }
  return { bad, largest };
}

/**
 * What the checkpoint's weights say about where a walk stops being finite (block `layer`; null:
 * the embeddings or the read-out): which of those tensors hold NaN or infinite values, or that
 * none does, so a value overflowed. The generic causes when the folder's weights cannot be read
 * (an ONNX export).
 */
export function weightsVerdict(dir: string, layer: number | null, weights?: 'float32' | 'float16'): string {
  let found: ReturnType<typeof nonFiniteWeights>;
  try {
    found = nonFiniteWeights(dir, layer);
  } catch {
    return causes(weights);
  }
  const where = layer === null ? 'the embeddings, final norm and read-out' : `block ${layer}`;
  if (found.bad.length === 0) {
    const largest = found.largest ? ` (its largest weight: ${found.largest.value.toExponential(2)}, in "${found.largest.name}")` : '';
    return `No weight of ${where} in the checkpoint is NaN or infinite, so a value overflowed there${largest}.${weights === 'float16' ? ` ${HALF_REMEDY}` : ''}`;
  }
  const list = found.bad
    .slice(0, 3)
    .map((t) => `"${t.name}" (${t.count} of ${t.total} values)`)
    .join(', ');
  const more = found.bad.length > 3 ? ` and ${found.bad.length - 3} more` : '';
  return `In the checkpoint, ${list}${more} of ${where} ${found.bad.length === 1 ? 'holds' : 'hold'} NaN or infinite values: it is damaged or was converted badly (compare the folder in transformers, or download it again).`;
}

/**
 * Refuses an analysis whose residual stream [rows, T, d] or lens is not finite, naming the first
 * row and token. The lens's entropy [rows, T] is the gate (nothing to scan for a healthy model):
 * a row's entropy is finite exactly when its logits are, and a non-finite number anywhere in a
 * row of the stream makes all of that row's logits NaN (the final norm mixes every component).
 * Only then is the stream scanned, to tell the stream's fault from the read-out's. `verdict`:
 * the cause, from the weights of a block (null: the embeddings or the read-out): weightsVerdict.
 */
export function assertFiniteWalk(
  resid: Float32Array,
  entropy: Float32Array,
  shape: { rows: number; T: number; d: number },
  tokenText: (pos: number) => string,
  verdict: (layer: number | null) => string,
): void {
  const logits = firstNonFinite(entropy, shape.rows, shape.T, 1);
  if (!logits) return;
  const at = (f: NonFinite) => `at position ${f.pos} (${JSON.stringify(tokenText(f.pos))})`;
  const stream = firstNonFinite(resid, shape.rows, shape.T, shape.d);
  if (stream)
    throw new EngineError(
      'BAD_WEIGHTS',
      `The model's residual stream is not finite (${stream.value}) from ${rowName(stream.row)} ${at(stream)} on. ${verdict(stream.row === 0 ? null : stream.row - 1)}`,
    );
  throw new EngineError(
    'BAD_WEIGHTS',
    `The model's read-out (final norm and unembedding) gives logits that are not finite from ${rowName(logits.row)} ${at(logits)} on, out of a finite residual stream. ${verdict(null)}`,
  );
}

/** Refuses a generation step whose logits are not finite (their log-sum-exp is then NaN). */
export function assertFiniteStep(lse: number, step: number, weights?: 'float32' | 'float16'): void {
  if (Number.isNaN(lse))
    throw new EngineError(
      'BAD_WEIGHTS',
      `The model's next-token logits are not finite (NaN or infinite) ${step === 0 ? 'after the prompt' : `after generated token ${step}`}. ${causes(weights)}`,
    );
}
