// The logit lens with the unembedding read from the graph cache's weights file one block of
// tokens at a time (graph/lensblocks.ts has the graphs and the partial sums they return). Each
// block goes through every chunk of positions before the next block is read, so W_U is read
// once per analysis and never held whole. The partial sums are merged here in float64 with the
// running maximum as the reference point, the way an online softmax merges its blocks:
//
//   a block with maximum m, Σ e^(x−m) = s and Σ e^(x−m)(x−m) = t joins a running (M, S, Q) as
//   M' = max(M, m), S' = S·e^(M−M') + s·e^(m−M'),
//   Q' = e^(M−M')·(Q + (M−M')·S) + e^(m−M')·(t + (m−M')·s);
//   at the end lse = M + ln S and the entropy is ln S − Q/S.
//
// The block graph returns each block's softmax statistics (max, p at the max = 1/s, Σ p·x):
// t = s·(Σ p·x − m). KL(p_F || p_L) needs Σ_v p_F(v)·x_L(v): per block s_F·Σ p_F·x_L, rescaled
// to the final row's running maximum. The actual next token's logit (the rank's threshold, the
// log-prob) and its cosine are dot products of ln_final(x) with that token's rows of W_U and W_E
// (the prep graph); the cosine to the final top-1 is computed here from its W_E row once the
// blocks have found it. The rank counts the tokens whose logit exceeds the threshold, the next
// token's own column excluded: its logit in the block and the threshold are two roundings of
// one number.
import type { EmbeddingRows } from './embedrows';
import type { NamedTensor, Session } from './runtime/ort';
import { WALK_OUTPUTS } from './graph/walkstats';
import { BLOCK_OUTPUTS } from './graph/lensblocks';
import { emptyLensTable, type LensTable, type WalkMetrics } from '../shared/analysis';
import type { BufferPool } from './pool';

/** What the blocked lens runs on, beside the model's spec. */
export interface LensBlocks {
  /** ln_final and the walk's measures (graph/lensblocks.ts: buildLensPrepGraph). */
  prep: Session;
  /** One block of the vocabulary against a chunk of positions (buildLensBlockGraph). */
  block: Session;
  /** W_U's rows in the weights file ([d_vocab, d_model] float32). */
  unembed: EmbeddingRows;
  /** W_E's rows (the same reader as `unembed` when tied). */
  embed: EmbeddingRows;
  /** The final logits' soft-cap (Gemma 2/3), or null. */
  softcap: number | null;
  /** Most tokens per block (more only where k is larger: every block holds at least k tokens). */
  blockRows: number;
}

/** The walk's per-position measures the lens computes (graph/walkstats.ts). */
export type PerPosition = Pick<WalkMetrics, 'norms' | 'normsFinal' | 'cosToFinal' | 'stepSize' | 'stepCos'>;

export interface LensModel {
  spec: { nLayers: number; dModel: number; dVocab: number };
  embedNorms: Float32Array;
}

/**
 * Block boundaries: blocks of near-equal size, ≤ blockRows tokens each unless k is larger (TopK's
 * k must fit in every block).
 */
export function vocabBlocks(V: number, blockRows: number, k: number): number[] {
  const n = Math.max(1, Math.min(Math.ceil(V / blockRows), Math.floor(V / Math.max(1, k))));
  return Array.from({ length: n + 1 }, (_, i) => Math.floor((i * V) / n));
}

/** One lens chunk's walk measures, position-major [C, rows], into the [rows, T] tables. */
export function walkChunk(p: PerPosition, out: Record<string, NamedTensor>, c0: number, C: number, rows: number, T: number): void {
  const put = (dst: Float32Array, name: string, R: number) => {
    const src = out[name]!.data as Float32Array;
    for (let c = 0; c < C; c++) for (let r = 0; r < R; r++) dst[r * T + c0 + c] = src[c * R + r]!;
  };
  put(p.norms, 'norm', rows);
  put(p.normsFinal, 'norm_final', rows);
  put(p.cosToFinal, 'cos_to_final', rows);
  put(p.stepSize, 'step_size', rows - 1);
  put(p.stepCos, 'step_cos', rows - 1);
}

/**
 * Positions [c0, c0 + C) of every row of `resid` [rows, T, d] (the cache's layout) in `into`,
 * position-major [C, rows, d], as the lens graphs take them; returns the filled part.
 */
export function positionMajor(
  resid: Float32Array,
  rows: number,
  T: number,
  d: number,
  c0: number,
  C: number,
  into: Float32Array,
): Float32Array {
  const x = into.subarray(0, C * rows * d);
  for (let c = 0; c < C; c++)
    for (let r = 0; r < rows; r++) x.set(resid.subarray((r * T + c0 + c) * d, (r * T + c0 + c + 1) * d), (c * rows + r) * d);
  return x;
}

export function emptyPerPosition(rows: number, T: number): PerPosition {
  return {
    norms: new Float32Array(rows * T),
    normsFinal: new Float32Array(rows * T),
    cosToFinal: new Float32Array(rows * T),
    stepSize: new Float32Array((rows - 1) * T),
    stepCos: new Float32Array((rows - 1) * T),
  };
}

/**
 * The lens over every row of the walk. `resid` [rows, T, d] (the cache's layout); `chunkBytes`:
 * the budget for one block run's [chunk, rows, block] intermediates (4 of them).
 */
export async function blockedLogitLens(
  model: LensModel,
  lb: LensBlocks,
  resid: Float32Array,
  ids: readonly number[],
  k: number,
  chunkBytes: number,
  checkCancel: () => void,
  pool?: BufferPool,
): Promise<{ lens: LensTable; perPosition: PerPosition }> {
  const { nLayers, dModel: d, dVocab: V } = model.spec;
  const R = nLayers + 1;
  const T = ids.length;
  const kk = Math.min(k, V);
  const cells = T * R;
  const perPosition = emptyPerPosition(R, T);

  // 1. ln_final of every row, position-major [T, R, d], the walk's measures, and the actual next
  // token's logit (the rank's threshold) and cosine, from its rows of W_U and W_E
  const normed = pool ? pool.take(cells * d) : new Float32Array(cells * d);
  try {
    const nextIds = BigInt64Array.from({ length: T }, (_, p) => BigInt(p + 1 < T ? ids[p + 1]! : 0));
    const threshold = new Float32Array(cells);
    const cosNext = new Float32Array(cells);
    const prepChunk = Math.max(1, Math.min(T, Math.floor((8 * 2 ** 20) / (R * d * 4))));
    const xBuf = new Float32Array(prepChunk * R * d);
    const vBuf = new Float32Array(prepChunk * 2 * d);
    for (let c0 = 0; c0 < T; c0 += prepChunk) {
      checkCancel();
      const C = Math.min(prepChunk, T - c0);
      const x = positionMajor(resid, R, T, d, c0, C, xBuf);
      const next = nextIds.subarray(c0, c0 + C);
      const u = lb.unembed.read(next);
      const e = lb.embed === lb.unembed ? u : lb.embed.read(next);
      const v = vBuf.subarray(0, C * 2 * d);
      for (let c = 0; c < C; c++) {
        v.set(u.subarray(c * d, (c + 1) * d), c * 2 * d);
        v.set(e.subarray(c * d, (c + 1) * d), (c * 2 + 1) * d);
      }
      const out = await lb.prep.run(
        { resid: { data: x, dims: [C, R, d] }, next_rows: { data: v, dims: [C, 2, d] } },
        ['normed', 'dots', ...WALK_OUTPUTS],
        { normed: { data: normed.subarray(c0 * R * d, (c0 + C) * R * d), dims: [C, R, d] } },
      );
      walkChunk(perPosition, out, c0, C, R, T);
      const dots = out.dots!.data as Float32Array;
      for (let c = 0; c < C; c++) {
        const t = Number(next[c]);
        for (let r = 0; r < R; r++) {
          const cell = (c0 + c) * R + r;
          const logit = dots[(c * R + r) * 2]!;
          threshold[cell] = lb.softcap === null ? logit : Math.tanh(logit / lb.softcap) * lb.softcap;
          cosNext[cell] = dots[(c * R + r) * 2 + 1]! / (perPosition.normsFinal[r * T + c0 + c]! * model.embedNorms[t]!);
        }
      }
    }

    // 3. the blocks, each through every chunk of positions; merged per cell (position-major p·R + r)
    const M = new Float64Array(cells);
    const S = new Float64Array(cells); // 0 until the cell's first block
    const Q = new Float64Array(cells);
    const G = new Float64Array(cells); // Σ e^(x_F − M_F)·x_L, relative to the final row's M
    const CM = new Float64Array(cells);
    const rank = new Float64Array(cells);
    const topV = new Float32Array(cells * kk).fill(-Infinity);
    const topI = new Int32Array(cells * kk).fill(-1);
    const mergeV = new Float32Array(kk);
    const mergeI = new Int32Array(kk);
    const bounds = vocabBlocks(V, lb.blockRows, kk);
    const maxB = bounds.slice(1).reduce((m, b, i) => Math.max(m, b - bounds[i]!), 0);
    const wBuf = new Float32Array(maxB * d);
    const chunk = Math.max(1, Math.min(T, Math.floor(chunkBytes / (R * maxB * 4 * 4))));
    const context = contextTokens(ids);
    const positions = Float32Array.from({ length: T }, (_, p) => p);
    const kFeed: NamedTensor = { data: BigInt64Array.of(BigInt(kk)), dims: [1] };
    for (let bi = 0; bi + 1 < bounds.length; bi++) {
      checkCancel();
      const b0 = bounds[bi]!;
      const B = bounds[bi + 1]! - b0;
      const w = lb.unembed.readRange(b0, B, wBuf);
      const inBlock: number[] = [];
      context.ids.forEach((id, j) => {
        if (id >= BigInt(b0) && id < BigInt(b0 + B)) inBlock.push(j);
      });
      // an empty list would be an empty Gather: one token no position has seen instead
      const ctxIds = inBlock.length ? BigInt64Array.from(inBlock, (j) => context.ids[j]! - BigInt(b0)) : BigInt64Array.of(0n);
      const ctxFirst = inBlock.length ? Float32Array.from(inBlock, (j) => context.firstSeen[j]!) : Float32Array.of(1e30);
      for (let c0 = 0; c0 < T; c0 += chunk) {
        checkCancel();
        const C = Math.min(chunk, T - c0);
        const nextLocal = new BigInt64Array(C);
        const nextIn = new Float32Array(C);
        for (let c = 0; c < C; c++) {
          const local = Number(nextIds[c0 + c]) - b0;
          const inside = local >= 0 && local < B;
          nextLocal[c] = BigInt(inside ? local : 0);
          nextIn[c] = inside ? 1 : 0;
        }
        const feeds: Record<string, NamedTensor> = {
          normed: { data: normed.subarray(c0 * R * d, (c0 + C) * R * d), dims: [C, R, d] },
          w: { data: w, dims: [B, d] },
          threshold: { data: threshold.subarray(c0 * R, (c0 + C) * R), dims: [C, R] },
          next_local: { data: nextLocal, dims: [C] },
          next_in: { data: nextIn, dims: [C] },
          context_local: { data: ctxIds, dims: [ctxIds.length] },
          first_seen: { data: ctxFirst, dims: [ctxFirst.length] },
          positions: { data: positions.subarray(c0, c0 + C), dims: [C] },
          k: kFeed,
        };
        const out = await lb.block.run(feeds, BLOCK_OUTPUTS);
        const f = (n: string) => out[n]!.data as Float32Array;
        const [bMax, bPTop, bPDotX, bPFDotX, bCopy, bRank, bTopV] = [
          f('blk_max'),
          f('blk_ptop'),
          f('blk_pdotx'),
          f('blk_pfdotx'),
          f('blk_copy'),
          f('blk_rank'),
          f('top_vals'),
        ];
        const bTopI = f('top_ids');
        for (let c = 0; c < C; c++) {
          const iF = c * R + R - 1;
          const cellF = (c0 + c) * R + R - 1;
          // the final row's running maximum before and after this block (G's reference point)
          const mF = bMax[iF]!;
          const sF = 1 / bPTop[iF]!;
          const MF = S[cellF] === 0 ? mF : Math.max(M[cellF]!, mF);
          const aF = S[cellF] === 0 ? 0 : Math.exp(M[cellF]! - MF);
          const bF = Math.exp(mF - MF);
          for (let r = 0; r < R; r++) {
            const i = c * R + r;
            const cell = (c0 + c) * R + r;
            const m = bMax[i]!;
            const s = 1 / bPTop[i]!; // Σ e^(x − m) over the block
            const t = s * (bPDotX[i]! - m); // Σ e^(x − m)·(x − m)
            // Σ e^(x_F − m_F)·x_r over the block = s_F·Σ p_F·x_r
            G[cell] = aF * G[cell]! + bF * sF * bPFDotX[i]!;
            const cp = s * bCopy[i]!;
            if (S[cell] === 0) {
              M[cell] = m;
              S[cell] = s;
              Q[cell] = t;
              CM[cell] = cp;
            } else {
              const Mo = M[cell]!;
              const Mn = Math.max(Mo, m);
              const a = Math.exp(Mo - Mn);
              const b = Math.exp(m - Mn);
              Q[cell] = a * (Q[cell]! + (Mo - Mn) * S[cell]!) + b * (t + (m - Mn) * s);
              S[cell] = a * S[cell]! + b * s;
              CM[cell] = a * CM[cell]! + b * cp;
              M[cell] = Mn;
            }
            rank[cell] = rank[cell]! + bRank[i]!;
            mergeTop(topV, topI, cell * kk, bTopV, bTopI, i * kk, b0, kk, mergeV, mergeI);
          }
        }
      }
    }

    // 4. cos(ln_final(x), W_E[final top-1]) at every row, then the table in the [rows, T] layout
    const predIds = BigInt64Array.from({ length: T }, (_, p) => BigInt(topI[(p * R + R - 1) * kk]!));
    const ePred = lb.embed.read(predIds);
    const lens = emptyLensTable(R, T, kk);
    for (let p = 0; p < T; p++) {
      const last = p === T - 1;
      const cellF = p * R + R - 1;
      const lseF = M[cellF]! + Math.log(S[cellF]!);
      const crossF = G[cellF]! / S[cellF]! - lseF;
      const pred = Number(predIds[p]);
      for (let r = 0; r < R; r++) {
        const cell = p * R + r;
        const dst = r * T + p;
        const lse = M[cell]! + Math.log(S[cell]!);
        for (let j = 0; j < kk; j++) {
          lens.topIds[dst * kk + j] = topI[cell * kk + j]!;
          lens.topProbs[dst * kk + j] = Math.exp(topV[cell * kk + j]! - lse);
        }
        lens.entropy[dst] = Math.log(S[cell]!) - Q[cell]! / S[cell]!;
        lens.nextLogprob[dst] = last ? NaN : threshold[cell]! - lse;
        lens.nextRank[dst] = last ? -1 : rank[cell]!;
        lens.klToFinal[dst] = Math.max(0, crossF - (G[cell]! / S[cellF]! - lse));
        lens.copyMass[dst] = CM[cell]! / S[cell]!;
        lens.cosNext[dst] = last ? NaN : cosNext[cell]!;
        let dot = 0;
        const at = cell * d;
        for (let i = 0; i < d; i++) dot += normed[at + i]! * ePred[p * d + i]!;
        lens.cosPred[dst] = dot / (perPosition.normsFinal[dst]! * model.embedNorms[pred]!);
      }
    }
    return { lens, perPosition };
  } finally {
    pool?.give(normed);
  }
}

/**
 * Merges a block's sorted top-k (block-local ids + b0) into a cell's running top-k. The running
 * list holds lower token ids (earlier blocks), so it wins ties: the order of TopK over the whole row.
 */
function mergeTop(
  topV: Float32Array,
  topI: Int32Array,
  at: number,
  bV: Float32Array,
  bI: Float32Array,
  from: number,
  b0: number,
  k: number,
  mv: Float32Array,
  mi: Int32Array,
): void {
  if (bV[from]! <= topV[at + k - 1]!) return; // nothing of this block enters
  let x = 0;
  let y = 0;
  for (let j = 0; j < k; j++) {
    if (x < k && topV[at + x]! >= bV[from + y]!) {
      mv[j] = topV[at + x]!;
      mi[j] = topI[at + x]!;
      x++;
    } else {
      mv[j] = bV[from + y]!;
      mi[j] = bI[from + y]! + b0;
      y++;
    }
  }
  topV.set(mv, at);
  topI.set(mi, at);
}

/**
 * The distinct tokens of a sequence in order of first occurrence, with that position: the lens
 * graph's copy mass reads p at these ids. seenBy(p) = how many first occur at positions ≤ p.
 */
export function contextTokens(ids: readonly number[]): { ids: BigInt64Array; firstSeen: Float32Array; seenBy(pos: number): number } {
  const order: number[] = [];
  const first: number[] = [];
  const known = new Set<number>();
  ids.forEach((id, p) => {
    if (known.has(id)) return;
    known.add(id);
    order.push(id);
    first.push(p);
  });
  const firstSeen = Float32Array.from(first);
  return {
    ids: BigInt64Array.from(order, (id) => BigInt(id)),
    firstSeen,
    seenBy(pos: number): number {
      let n = 0;
      while (n < first.length && first[n]! <= pos) n++;
      return n;
    },
  };
}
