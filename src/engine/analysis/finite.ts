// Non-finite numbers (NaN, ±Infinity) out of a model are refused with where they start, instead
// of a panel of NaN percentages: a checkpoint with NaN or infinite weights, or a value that
// overflowed (float16 weights on a GPU provider overflow at 65504), otherwise analyses and
// generates without a word.
import { EngineError } from '../errors';

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

/** Why a model's numbers stop being finite, and what to try. */
function causes(weights: 'float32' | 'float16' | undefined): string {
  const half =
    weights === 'float16'
      ? ' The weights run in float16 here, where values above 65504 overflow: set transformerDynamics.weightPrecision (the CLI: --weights) to float32.'
      : '';
  return `Its weights may hold NaN or infinite values (a damaged or badly converted checkpoint), or a value overflowed.${half}`;
}

/**
 * Refuses an analysis whose residual stream [rows, T, d] or lens is not finite, naming the first
 * row and token. The lens's entropy [rows, T] is the gate (nothing to scan for a healthy model):
 * a row's entropy is finite exactly when its logits are, and a non-finite number anywhere in a
 * row of the stream makes all of that row's logits NaN (the final norm mixes every component).
 * Only then is the stream scanned, to tell the stream's fault from the read-out's.
 */
export function assertFiniteWalk(
  resid: Float32Array,
  entropy: Float32Array,
  shape: { rows: number; T: number; d: number },
  tokenText: (pos: number) => string,
  weights?: 'float32' | 'float16',
): void {
  const logits = firstNonFinite(entropy, shape.rows, shape.T, 1);
  if (!logits) return;
  const at = (f: NonFinite) => `at position ${f.pos} (${JSON.stringify(tokenText(f.pos))})`;
  const stream = firstNonFinite(resid, shape.rows, shape.T, shape.d);
  if (stream)
    throw new EngineError(
      'BAD_WEIGHTS',
      `The model's residual stream is not finite (${stream.value}) from ${rowName(stream.row)} ${at(stream)} on. ${causes(weights)}`,
    );
  throw new EngineError(
    'BAD_WEIGHTS',
    `The model's read-out (final norm and unembedding) gives logits that are not finite from ${rowName(logits.row)} ${at(logits)} on, out of a finite residual stream. ${causes(weights)}`,
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
