// Consistency of an analysis payload beyond the protocol guard (which checks types, not
// shapes): every array must have the length its dimensions promise, or views would read
// past the end. Returns human-readable problems; empty = fine.
import type { AnalysisPayload } from '../src/shared/protocol';

export function payloadProblems(p: AnalysisPayload): string[] {
  const out: string[] = [];
  const T = p.tokens.length;
  const { lens, walk } = p;
  const rows = p.dims.n_layers + 1;
  const want = (what: string, a: unknown, n: number, typed: boolean) => {
    const ok = typed ? (a instanceof Float32Array || a instanceof Int32Array) && a.length === n : Array.isArray(a) && a.length === n;
    if (!ok) out.push(`${what} should have ${n} values`);
  };
  if (lens.rows !== rows || lens.pos !== T) out.push(`lens is [${lens.rows}, ${lens.pos}] but the run has ${rows} rows and ${T} tokens`);
  if (!Number.isInteger(lens.k) || lens.k < 1) out.push('lens.k must be a positive integer');
  const cells = rows * T;
  want('lens.topIds', lens.topIds, cells * lens.k, true);
  want('lens.topProbs', lens.topProbs, cells * lens.k, true);
  for (const k of ['entropy', 'nextLogprob', 'nextRank', 'klToFinal', 'copyMass', 'cosNext', 'cosPred'] as const)
    want(`lens.${k}`, lens[k], cells, true);
  want('walk.norms', walk?.norms, cells, true);
  want('walk.cosToFinal', walk?.cosToFinal, cells, true);
  want('walk.pca.coords', walk?.pca?.coords, cells * 3, true);
  if (!Array.isArray(walk?.pca?.explained)) out.push('walk.pca.explained should be an array');
  want('walk.similarity.matrix', walk?.similarity?.matrix, T * T, true);
  if (!Number.isInteger(walk?.similarity?.row) || walk.similarity.row < 0 || walk.similarity.row >= rows)
    out.push('walk.similarity.row is out of range');
  if (
    !Array.isArray(walk?.ngrams) ||
    !walk.ngrams.every(
      (g) => Number.isInteger(g.n) && Array.isArray(g.positions) && g.positions.every((q) => Number.isInteger(q) && q >= 0 && q + g.n <= T),
    )
  )
    out.push('walk.ngrams has positions outside the text');
  if (typeof p.model?.d_vocab !== 'number' || typeof p.model?.name !== 'string') out.push('model info is incomplete');
  if (typeof p.timings?.totalMs !== 'number') out.push('timings are missing');
  return out;
}
