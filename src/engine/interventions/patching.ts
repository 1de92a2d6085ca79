// Activation patching between two prompts: for every layer L and position p of the base run,
// resid_pre[L][p] is replaced by the source run's (aligned from the end) and the metric is read
// at the last position (README "Metrics"). Only what a patch changes is recomputed: the suffix
// graph (graph/suffix.ts) starts at layer L and at the batch's first patched position, with the
// base run's KV cache for the positions before; cells whose two vectors are equal cannot change
// anything and take the base run's value without a run.
import { EngineError } from '../errors';
import { hook } from '../graph/forward';
import type { LoadedModel } from '../model';
import { SUFFIX_INPUT } from '../graph/suffix';
import { gateFeed, LOGIT_ROWS } from '../graph/gates';
import { emptyPast } from '../analyze';
import { alignedPos, checkAblation, cleanZMean, headFeeds, idsTensor, requireInterventions, type Feeds } from './feeds';
import { argmax, binBias, binRuns, logitDiff, normalizedLd, type BinnedCall } from './metric';
import type { PatchingRequest, PatchingResult } from '../../shared/interventions';

/** How patched runs are packed into calls: rows = positions recomputed in one call (bench/whatif.ts measures it). */
export interface PatchBatching {
  rowBudget: number;
  maxRuns: number;
}
export const PATCH_BATCHING: PatchBatching = { rowBudget: 384, maxRuns: 64 };

/** A clean (or ablated) run of one prompt: its resid_pre rows, KV cache and last logits. */
interface BaseRun {
  T: number;
  /** resid_pre[0..n_layers-1] [n_layers, T, d_model] */
  resid: Float32Array;
  /** present.{L}.key|value [1, n_kv, T, d_head] */
  keys: Float32Array[];
  values: Float32Array[];
  logits: Float32Array;
}

async function runOnce(model: LoadedModel, ids: readonly number[], feeds: Feeds, withKv: boolean): Promise<BaseRun> {
  const s = model.spec;
  const T = ids.length;
  const d = s.dModel;
  const residNames = [hook.residPre(0), ...Array.from({ length: s.nLayers - 1 }, (_, L) => hook.residPost(L))];
  const fetches = ['logits', ...residNames];
  if (withKv) for (let L = 0; L < s.nLayers; L++) fetches.push(hook.presentKey(L), hook.presentValue(L));
  const out = await model.forward.run({ input_ids: idsTensor(ids), ...emptyPast(model), ...feeds }, fetches);
  const resid = new Float32Array(s.nLayers * T * d);
  residNames.forEach((n, L) => resid.set(out[n]!.data as Float32Array, L * T * d));
  const f = (n: string) => out[n]!.data as Float32Array;
  return {
    T,
    resid,
    keys: withKv ? Array.from({ length: s.nLayers }, (_, L) => f(hook.presentKey(L))) : [],
    values: withKv ? Array.from({ length: s.nLayers }, (_, L) => f(hook.presentValue(L))) : [],
    logits: f('logits'),
  };
}

/**
 * The feeds of one call at layer L: each bin's runs back to back (metric.ts binRuns), each run
 * the base run's rows p..T−1 with the source's vector at its patched position; padding rows 0.
 */
function callFeeds(model: LoadedModel, L: number, call: BinnedCall, base: BaseRun, source: BaseRun): Feeds {
  const s = model.spec;
  const d = s.dModel;
  const { T } = base;
  const { S, Q, past } = call;
  const B = call.bins.length;
  const resid = new Float32Array(B * S * d);
  const positions = new BigInt64Array(B * S);
  const lastRows = new BigInt64Array(B * Q);
  call.bins.forEach((runs, b) => {
    runs.forEach(({ p, offset }, j) => {
      const at = b * S + offset;
      resid.set(base.resid.subarray((L * T + p) * d, (L * T + T) * d), at * d);
      const q = alignedPos(p, T, source.T);
      resid.set(source.resid.subarray((L * source.T + q) * d, (L * source.T + q + 1) * d), at * d);
      for (let i = 0; i < T - p; i++) positions[at + i] = BigInt(p + i);
      lastRows[b * Q + j] = BigInt(offset + T - p - 1);
    });
    for (let j = runs.length; j < Q; j++) lastRows[b * Q + j] = lastRows[b * Q]!; // an unused slot repeats the first
  });
  const feeds: Feeds = {
    [SUFFIX_INPUT.resid]: { data: resid, dims: [B, S, d] },
    [SUFFIX_INPUT.positions]: { data: positions, dims: [B, S] },
    [SUFFIX_INPUT.runLength]: { data: BigInt64Array.of(BigInt(T)), dims: [] },
    [SUFFIX_INPUT.lastRows]: { data: lastRows, dims: [B, Q] },
    [SUFFIX_INPUT.startLayer]: { data: BigInt64Array.of(BigInt(L)), dims: [] },
  };
  for (const window of new Set(s.layers.map((l) => l.window)))
    feeds[SUFFIX_INPUT.attnBias(window)] = { data: binBias(call, T, window), dims: [B, S, past + S] };
  // the clean cache as it is (no copy): the graph takes each bin's prefix
  feeds[SUFFIX_INPUT.pastLength] = { data: BigInt64Array.of(BigInt(past)), dims: [1] };
  for (let l = 0; l < s.nLayers; l++) {
    feeds[SUFFIX_INPUT.cacheKey(l)] = { data: base.keys[l]!, dims: [1, s.nKvHeads, T, s.headDim] };
    feeds[SUFFIX_INPUT.cacheValue(l)] = { data: base.values[l]!, dims: [1, s.nKvHeads, T, s.headDim] };
  }
  return feeds;
}

/** Last rows of patched runs read out together: a call that skips every block (start_layer = n_layers). */
const READOUT_ROWS = 128;

function readoutFeeds(model: LoadedModel, T: number, rows: Float32Array[]): Feeds {
  const s = model.spec;
  const d = s.dModel;
  const N = rows.length;
  const resid = new Float32Array(N * d);
  rows.forEach((r, i) => resid.set(r, i * d));
  const feeds: Feeds = {
    [SUFFIX_INPUT.resid]: { data: resid, dims: [1, N, d] },
    [SUFFIX_INPUT.positions]: { data: new BigInt64Array(N), dims: [1, N] },
    [SUFFIX_INPUT.runLength]: { data: BigInt64Array.of(BigInt(T)), dims: [] },
    [SUFFIX_INPUT.lastRows]: { data: BigInt64Array.from({ length: N }, (_, i) => BigInt(i)), dims: [1, N] },
    [SUFFIX_INPUT.startLayer]: { data: BigInt64Array.of(BigInt(s.nLayers)), dims: [] },
  };
  for (const window of new Set(s.layers.map((l) => l.window)))
    feeds[SUFFIX_INPUT.attnBias(window)] = { data: new Float32Array(N * N), dims: [1, N, N] };
  feeds[SUFFIX_INPUT.pastLength] = { data: BigInt64Array.of(0n), dims: [1] };
  for (let l = 0; l < s.nLayers; l++) {
    feeds[SUFFIX_INPUT.cacheKey(l)] = { data: new Float32Array(0), dims: [1, s.nKvHeads, 0, s.headDim] };
    feeds[SUFFIX_INPUT.cacheValue(l)] = { data: new Float32Array(0), dims: [1, s.nKvHeads, 0, s.headDim] };
  }
  return feeds;
}

function sameVector(a: Float32Array, ia: number, b: Float32Array, ib: number, d: number): boolean {
  for (let i = 0; i < d; i++) if (a[ia + i] !== b[ib + i]) return false;
  return true;
}

function checkRequest(model: LoadedModel, req: PatchingRequest): void {
  const s = model.spec;
  for (const [what, ids] of [
    ['clean', req.cleanIds],
    ['corrupted', req.corruptedIds],
  ] as const) {
    if (!Array.isArray(ids) || ids.length === 0) throw new EngineError('BAD_REQUEST', `The ${what} prompt has no tokens.`);
    if (ids.length > s.maxPositions) throw new EngineError('BAD_REQUEST', `The ${what} prompt is longer than the model's context.`);
    for (const id of ids)
      if (!Number.isInteger(id) || id < 0 || id >= s.dVocab)
        throw new EngineError('BAD_REQUEST', `The ${what} prompt holds token id ${id}, outside the vocabulary.`);
  }
  if (req.direction !== 'denoise' && req.direction !== 'noise')
    throw new EngineError('BAD_REQUEST', `Unknown patching direction "${String(req.direction)}": use denoise or noise.`);
  for (const [what, t] of [
    ['target', req.target],
    ['contrast', req.contrast],
  ] as const) {
    if (t !== undefined && t !== null && (!Number.isInteger(t) || t < 0 || t >= s.dVocab))
      throw new EngineError('BAD_REQUEST', `The ${what} token ${t} is outside the vocabulary.`);
  }
}

/** The layer × position heatmap (PatchingResult in shared/interventions.ts). */
export async function patchingHeatmap(
  model: LoadedModel,
  req: PatchingRequest,
  signal?: AbortSignal,
  batching: PatchBatching = PATCH_BATCHING,
): Promise<PatchingResult> {
  const t0 = performance.now();
  requireInterventions(model);
  checkRequest(model, req);
  const s = model.spec;
  const d = s.dModel;
  // every run sees the same model: with an ablation, the means come from the clean prompt
  const ablation = req.ablation && req.ablation.heads.length > 0 ? checkAblation(s, req.ablation) : null;
  const heads = ablation ? headFeeds(s, ablation, ablation.mode === 'mean' ? await cleanZMean(model, req.cleanIds) : null) : {};
  const denoise = req.direction === 'denoise';
  const baseIds = denoise ? req.corruptedIds : req.cleanIds;
  const sourceIds = denoise ? req.cleanIds : req.corruptedIds;
  const base = await runOnce(model, baseIds, heads, true);
  const source = await runOnce(model, sourceIds, heads, false);
  const [clean, corrupted] = denoise ? [source, base] : [base, source];

  const target = req.target ?? argmax(clean.logits);
  const corruptedTop = argmax(corrupted.logits);
  const contrast = req.contrast !== undefined ? req.contrast : corruptedTop !== target ? corruptedTop : null;
  if (contrast === target) throw new EngineError('BAD_REQUEST', 'The contrast token must differ from the target token.');
  const ld = (logits: Float32Array) => logitDiff(logits, target, contrast);
  // in float32, as the grid holds every cell: a cell that took the base run's value is then
  // exactly 0 (denoise) or 1 (noise) once normalised, not 0 ± 1e-7
  const ldClean = Math.fround(ld(clean.logits));
  const ldCorrupted = Math.fround(ld(corrupted.logits));
  const ldBase = denoise ? ldCorrupted : ldClean;

  const T = base.T;
  const S = source.T;
  const grid = new Float32Array(s.nLayers * T).fill(NaN);
  let skipped = 0;
  let runs = 0;
  let calls = 0;
  let layerPositions = 0;
  let kvOnlyRows = 0;
  const suffix = await model.suffix!();
  // a logit difference reads two logits per run; a log-probability all of them
  const logitDiffOnly = contrast !== null;
  const pending: { cell: number; row: Float32Array }[] = [];
  const readout: Feeds = {
    [SUFFIX_INPUT.readoutIds]: {
      data: BigInt64Array.from(logitDiffOnly ? [target, contrast] : [target], BigInt),
      dims: [logitDiffOnly ? 2 : 1],
    },
  };
  const perCall: Feeds = { ...readout, [LOGIT_ROWS]: gateFeed(0) }; // no full logits in the calls
  for (let L = 0; L < s.nLayers; L++) {
    const todo: number[] = [];
    for (let p = 0; p < T; p++) {
      const q = alignedPos(p, T, S);
      if (q < 0) continue;
      if (sameVector(base.resid, (L * T + p) * d, source.resid, (L * S + q) * d, d)) {
        grid[L * T + p] = ldBase;
        skipped++;
      } else todo.push(p);
    }
    for (const call of binRuns(todo, T, batching.rowBudget, batching.maxRuns)) {
      if (signal?.aborted) throw new EngineError('CANCELLED', 'Activation patching was cancelled.');
      const out = await suffix.run({ ...heads, ...callFeeds(model, L, call, base, source), ...perCall }, [
        logitDiffOnly ? 'readout' : 'last_resid',
      ]);
      // slot b·Q + j: the j-th run of bin b
      const two = logitDiffOnly ? (out.readout!.data as Float32Array) : null;
      const rows = logitDiffOnly ? null : (out.last_resid!.data as Float32Array);
      call.bins.forEach((bin, b) =>
        bin.forEach(({ p }, j) => {
          const slot = b * call.Q + j;
          // a logit difference: the target's and the contrast's logits (graph/suffix.ts: no
          // product with the whole W_U); a log-probability: read out later, all runs together
          if (two) grid[L * T + p] = two[2 * slot]! - two[2 * slot + 1]!;
          else pending.push({ cell: L * T + p, row: rows!.subarray(slot * d, (slot + 1) * d) }); // copied once, by readoutFeeds
        }),
      );
      calls++;
      for (const bin of call.bins) {
        runs += bin.length;
        for (const { p } of bin) {
          // the last layer: a whole block at the run's last row, keys and values at the others
          layerPositions += (T - p) * (s.nLayers - L - 1) + 1;
          kvOnlyRows += T - p - 1;
        }
      }
    }
  }
  for (let i = 0; i < pending.length; i += READOUT_ROWS) {
    if (signal?.aborted) throw new EngineError('CANCELLED', 'Activation patching was cancelled.');
    const chunk = pending.slice(i, i + READOUT_ROWS);
    const out = await suffix.run(
      {
        ...heads,
        ...readoutFeeds(
          model,
          base.T,
          chunk.map((c) => c.row),
        ),
        ...readout,
      },
      ['readout', 'lse'],
    );
    const logit = out.readout!.data as Float32Array;
    const lse = out.lse!.data as Float32Array;
    chunk.forEach((c, j) => (grid[c.cell] = logit[j]! - lse[j]!));
    calls++;
  }
  const normalized = grid.map((v) => normalizedLd(v, ldClean, ldCorrupted));
  return {
    direction: req.direction,
    n_layers: s.nLayers,
    pos: T,
    offset: T - S,
    target,
    contrast,
    metric: contrast === null ? 'logprob' : 'logit_diff',
    ldClean,
    ldCorrupted,
    ld: grid,
    normalized,
    skipped,
    runs,
    calls,
    layerPositions,
    kvOnlyRows,
    ms: performance.now() - t0,
  };
}
