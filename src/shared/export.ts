// The analysis as JSON (CLI --json, "Export Analysis…") and CSV. One schema, versioned,
// documented in the README.
import type { Analysis } from './analysis';

export const JSON_SCHEMA_VERSION = 1;

const round = (x: number, digits = 6) => (Number.isFinite(x) ? Number(x.toPrecision(digits)) : null);

export interface TopJson {
  id: number;
  text: string;
  prob: number | null;
}

export function analysisToJson(a: Analysis): Record<string, unknown> {
  const { lens, walk } = a;
  const T = lens.pos;
  const k = lens.k;
  const text = (id: number) => a.vocab[id] ?? '';
  const top = (r: number, p: number): TopJson[] =>
    Array.from({ length: k }, (_, j) => {
      const id = lens.topIds[(r * T + p) * k + j]!;
      return { id, text: text(id), prob: round(lens.topProbs[(r * T + p) * k + j]!) };
    });
  const cell = (r: number, p: number) => {
    const i = r * T + p;
    const last = p === T - 1;
    return {
      top: top(r, p),
      entropy: round(lens.entropy[i]!),
      next_rank: last ? null : lens.nextRank[i]!,
      next_prob: last ? null : round(Math.exp(lens.nextLogprob[i]!)),
      next_logprob: last ? null : round(lens.nextLogprob[i]!),
      kl_to_final: round(lens.klToFinal[i]!),
      copy_mass: round(lens.copyMass[i]!),
      cos_next: last ? null : round(lens.cosNext[i]!),
      cos_pred: round(lens.cosPred[i]!),
    };
  };
  const grid = (arr: Float32Array, rows: number) =>
    Array.from({ length: rows }, (_, r) => Array.from(arr.subarray(r * T, (r + 1) * T), (v) => round(v)));
  const rows = lens.rows;
  return {
    version: JSON_SCHEMA_VERSION,
    model: a.model,
    text: a.text,
    truncation: a.truncation,
    tokens: a.tokens.map((t) => ({ id: t.id, text: t.text, start: t.start, end: t.end, special: t.special })),
    lens: Array.from({ length: rows - 1 }, (_, L) => Array.from({ length: T }, (_, p) => cell(L + 1, p))),
    lens_embed: Array.from({ length: T }, (_, p) => cell(0, p)),
    logits_top: Array.from({ length: T }, (_, p) => top(rows - 1, p).map(({ id, text: t, prob }) => ({ id, text: t, prob }))),
    surprisal_bits: Array.from({ length: T }, (_, p) => (p === T - 1 ? null : round(-lens.nextLogprob[(rows - 1) * T + p]! / Math.LN2))),
    norms: grid(walk.norms, rows),
    cos_to_final: grid(walk.cosToFinal, rows),
    step_size: grid(walk.stepSize, rows - 1),
    step_cos: grid(walk.stepCos, rows - 1),
    pca: {
      explained_variance: walk.pca.explained.map((v) => round(v)),
      coords: Array.from({ length: rows }, (_, r) =>
        Array.from({ length: T }, (_, p) => Array.from(walk.pca.coords.subarray((r * T + p) * 3, (r * T + p) * 3 + 3), (v) => round(v))),
      ),
    },
    repeated_ngrams: walk.ngrams,
    last_logits_top: a.lastLogitsTop.map((t) => ({ id: t.id, text: text(t.id), prob: round(t.prob) })),
    timings_ms: a.timings,
  };
}

function csvField(v: string | number | null): string {
  if (v === null) return '';
  const s = String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** One row per (layer, position): the lens table in long format. */
export function analysisToCsv(a: Analysis): string {
  const { lens, walk } = a;
  const T = lens.pos;
  const lines = ['layer,pos,token_id,token,top1_id,top1,top1_prob,entropy,next_rank,next_prob,kl_to_final,copy_mass,norm,cos_to_final'];
  for (let r = 0; r < lens.rows; r++) {
    for (let p = 0; p < T; p++) {
      const i = r * T + p;
      const top1 = lens.topIds[i * lens.k]!;
      const tok = a.tokens[p]!;
      const last = p === T - 1;
      lines.push(
        [
          r === 0 ? 'embed' : r - 1,
          p,
          tok.id,
          tok.text,
          top1,
          a.vocab[top1] ?? '',
          lens.topProbs[i * lens.k]!.toPrecision(6),
          lens.entropy[i]!.toPrecision(6),
          last ? null : lens.nextRank[i]!,
          last ? null : Math.exp(lens.nextLogprob[i]!).toPrecision(6),
          lens.klToFinal[i]!.toPrecision(6),
          lens.copyMass[i]!.toPrecision(6),
          walk.norms[i]!.toPrecision(6),
          walk.cosToFinal[i]!.toPrecision(6),
        ]
          .map(csvField)
          .join(','),
      );
    }
  }
  return lines.join('\n') + '\n';
}
