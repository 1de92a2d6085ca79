// Activation patching between two prompts: for every layer L and position p of the base run,
// resid_pre[L][p] (or block L's attention or MLP output at p) is replaced by the source run's
// (aligned from the end) and the metric is read at the last position (README "Metrics"). Only
// what a patch changes is recomputed: the suffix graph (graph/suffix.ts) starts at layer L and at
// the batch's first patched position, with the base run's KV cache for the positions before;
// cells whose two vectors are equal cannot change anything and take the base run's value
// without a run.
//
// A sublayer output is patched through the residual stream: the MLP is position-wise, so
// patching block L's output at p changes resid_pre[L+1] at p alone. mlp_out: resid_pre[L+1][p]
// = base resid_mid[L][p] + the source's mlp_out. attn_out: the rest of block L (resid_mid, the
// MLP) run on base resid_pre[L][p] + the source's attn_out (the suffix graph's half.* path).
// Either way the suffix graph then runs from layer L+1 (after the last layer, the read-out).
//
// Heads (site z) are patched per (layer, head) at every position at once, through the forward
// graph's head inputs: headSweep below.
import { EngineError } from '../errors';
import { hook } from '../graph/forward';
import type { LoadedModel } from '../model';
import { HALF_OUTPUT, SUFFIX_INPUT } from '../graph/suffix';
import { gateFeed, LOGIT_ROWS } from '../graph/gates';
import { interventionName } from '../graph/interventions';
import { emptyPast } from '../analyze';
import { alignedPos, checkAblation, cleanZMean, headFeeds, idsTensor, requireInterventions, type Feeds } from './feeds';
import { argmax, binBias, binRuns, logitDiff, normalizedLd, type BinnedCall } from './metric';
import { isPatchSite, PATCH_SITES, type PatchingRequest, type PatchingResult, type PatchSite } from '../../shared/interventions';

/** How patched runs are packed into calls: rows = positions recomputed in one call (bench/whatif.ts measures it). */
export interface PatchBatching {
  rowBudget: number;
  maxRuns: number;
}
export const PATCH_BATCHING: PatchBatching = { rowBudget: 384, maxRuns: 64 };

/** A clean (or ablated) run of one prompt: what patching reads of it, KV cache and last logits. */
interface BaseRun {
  T: number;
  /** resid_pre[0..n_layers-1] [n_layers, T, d_model] (the base run; the source's for resid_pre) */
  resid: Float32Array;
  /** the patched site's values [n_layers, T, d_model] (z: [n_layers, n_heads, T, d_head]) */
  site: Float32Array;
  /** resid_mid [n_layers, T, d_model] (the base run, patching mlp_out) */
  mid: Float32Array | null;
  /** present.{L}.key|value [1, n_kv, T, d_head] */
  keys: Float32Array[];
  values: Float32Array[];
  logits: Float32Array;
}

const SITE_HOOK: Record<Exclude<PatchSite, 'resid_pre'>, (L: number) => string> = {
  attn_out: hook.attnOut,
  mlp_out: hook.mlpOut,
  z: interventionName.z,
};

async function runOnce(model: LoadedModel, ids: readonly number[], feeds: Feeds, site: PatchSite, isBase: boolean): Promise<BaseRun> {
  const s = model.spec;
  const T = ids.length;
  const layers = Array.from({ length: s.nLayers }, (_, L) => L);
  const residNames = [hook.residPre(0), ...layers.slice(1).map((L) => hook.residPost(L - 1))];
  const siteNames = site === 'resid_pre' ? residNames : layers.map(SITE_HOOK[site]);
  const midNames = isBase && site === 'mlp_out' ? layers.map(hook.residMid) : [];
  // the suffix graph's sweep reads the base run's residual stream and KV cache, the head sweep (z) its KV cache
  const sweep = isBase && site !== 'z';
  const wantResid = sweep || site === 'resid_pre';
  const wantKv = isBase;
  const fetches = new Set(['logits', ...(wantResid ? residNames : []), ...siteNames, ...midNames]);
  if (wantKv) for (const L of layers) fetches.add(hook.presentKey(L)).add(hook.presentValue(L));
  const out = await model.forward.run({ input_ids: idsTensor(ids), ...emptyPast(model), ...feeds }, [...fetches]);
  const f = (n: string) => out[n]!.data as Float32Array;
  const stack = (names: string[]) => {
    const per = f(names[0]!).length; // T·d_model, or n_heads·T·d_head
    const all = new Float32Array(s.nLayers * per);
    names.forEach((n, L) => all.set(f(n), L * per));
    return all;
  };
  const resid = wantResid ? stack(residNames) : new Float32Array(0);
  return {
    T,
    resid,
    site: site === 'resid_pre' ? resid : stack(siteNames),
    mid: midNames.length > 0 ? stack(midNames) : null,
    keys: wantKv ? layers.map((L) => f(hook.presentKey(L))) : [],
    values: wantKv ? layers.map((L) => f(hook.presentValue(L))) : [],
    logits: f('logits'),
  };
}

/** What a sweep did (PatchingResult's counts). */
type SweepCounts = Pick<PatchingResult, 'skipped' | 'runs' | 'calls' | 'layerPositions' | 'kvOnlyRows'>;

function throwIfCancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new EngineError('CANCELLED', 'Activation patching was cancelled.');
}

/** The suffix graph's half-block inputs when a call does not use them (graph/suffix.ts). */
function noHalf(d: number): Feeds {
  const row = { data: new Float32Array(d), dims: [1, d] };
  return {
    [SUFFIX_INPUT.halfPre]: row,
    [SUFFIX_INPUT.halfAttn]: row,
    [SUFFIX_INPUT.halfLayer]: { data: BigInt64Array.of(-1n), dims: [] },
  };
}

/**
 * The feeds of one call from layer L: each bin's runs back to back (metric.ts binRuns), each
 * run the base run's rows p..T−1 of resid_pre[L] with `patched(p)` at its patched position;
 * padding rows 0.
 */
function callFeeds(model: LoadedModel, L: number, call: BinnedCall, base: BaseRun, patched: (p: number) => Float32Array): Feeds {
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
      resid.set(patched(p), at * d);
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
    ...noHalf(d),
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
    ...noHalf(d),
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
  if (req.site !== undefined && !isPatchSite(req.site))
    throw new EngineError('BAD_REQUEST', `Unknown patching site "${String(req.site)}": use ${PATCH_SITES.join(', ')}.`);
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
  const site = req.site ?? 'resid_pre';
  const base = await runOnce(model, baseIds, heads, site, true);
  const source = await runOnce(model, sourceIds, heads, site, false);
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
  const done = (grid: Float32Array, counts: SweepCounts) => ({
    direction: req.direction,
    site,
    n_layers: s.nLayers,
    pos: base.T,
    n_heads: s.nHeads,
    offset: base.T - source.T,
    target,
    contrast,
    metric: contrast === null ? ('logprob' as const) : ('logit_diff' as const),
    ldClean,
    ldCorrupted,
    ld: grid,
    normalized: grid.map((v) => normalizedLd(v, ldClean, ldCorrupted)),
    ...counts,
    ms: performance.now() - t0,
  });
  if (site === 'z') {
    const ablated = new Set((ablation?.heads ?? []).map((h) => h.layer * s.nHeads + h.head));
    return done(...(await headSweep(model, baseIds, base, source, heads, ablated, { target, contrast, ldBase }, signal)));
  }

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
  const row = (a: Float32Array, n: number, L: number, p: number) => a.subarray((L * n + p) * d, (L * n + p + 1) * d);
  for (let L = 0; L < s.nLayers; L++) {
    // a sublayer's output is patched as resid_pre of the next layer (the header)
    const from = site === 'resid_pre' ? L : L + 1;
    const todo: number[] = [];
    for (let p = 0; p < T; p++) {
      const q = alignedPos(p, T, S);
      if (q < 0) continue;
      // equal vectors change nothing; after the last block only the last position is read
      if (sameVector(base.site, (L * T + p) * d, source.site, (L * S + q) * d, d) || (from === s.nLayers && p < T - 1)) {
        grid[L * T + p] = ldBase;
        skipped++;
      } else todo.push(p);
    }
    if (todo.length === 0) continue;
    const patched = new Map<number, Float32Array>();
    if (site === 'resid_pre') for (const p of todo) patched.set(p, row(source.resid, S, L, alignedPos(p, T, S)));
    else if (site === 'mlp_out')
      for (const p of todo) {
        const v = row(base.mid!, T, L, p).slice();
        const m = row(source.site, S, L, alignedPos(p, T, S));
        for (let i = 0; i < d; i++) v[i] = v[i]! + m[i]!; // float32, as the graph adds them
        patched.set(p, v);
      }
    else {
      // the rest of block L on base resid_pre[L][p] + the source's attn_out, every p in one call
      throwIfCancelled(signal);
      const pre = new Float32Array(todo.length * d);
      const attn = new Float32Array(todo.length * d);
      todo.forEach((p, i) => {
        pre.set(row(base.resid, T, L, p), i * d);
        attn.set(row(source.site, S, L, alignedPos(p, T, S)), i * d);
      });
      const out = await suffix.run(
        {
          ...heads,
          ...readoutFeeds(model, T, [new Float32Array(d)]),
          ...perCall,
          [SUFFIX_INPUT.halfPre]: { data: pre, dims: [todo.length, d] },
          [SUFFIX_INPUT.halfAttn]: { data: attn, dims: [todo.length, d] },
          [SUFFIX_INPUT.halfLayer]: { data: BigInt64Array.of(BigInt(L)), dims: [] },
        },
        [HALF_OUTPUT],
      );
      const post = out[HALF_OUTPUT]!.data as Float32Array;
      todo.forEach((p, i) => patched.set(p, post.subarray(i * d, (i + 1) * d)));
      calls++;
    }
    if (from === s.nLayers) {
      // the last block's output at the last position: read out with the others
      for (const p of todo) pending.push({ cell: L * T + p, row: patched.get(p)! });
      runs += todo.length;
      continue;
    }
    for (const call of binRuns(todo, T, batching.rowBudget, batching.maxRuns)) {
      throwIfCancelled(signal);
      const out = await suffix.run({ ...heads, ...callFeeds(model, from, call, base, (p) => patched.get(p)!), ...perCall }, [
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
          layerPositions += (T - p) * (s.nLayers - from - 1) + 1;
          kvOnlyRows += T - p - 1;
        }
      }
    }
  }
  for (let i = 0; i < pending.length; i += READOUT_ROWS) {
    throwIfCancelled(signal);
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
    const k = logitDiffOnly ? 2 : 1;
    chunk.forEach((c, j) => (grid[c.cell] = logitDiffOnly ? logit[k * j]! - logit[k * j + 1]! : logit[j]! - lse[j]!));
    calls++;
  }
  return done(grid, { skipped, runs, calls, layerPositions, kvOnlyRows });
}

/** Runs of the base prompt, each with one head patched, per forward call (batch rows). */
const HEAD_BATCH = 8;

/**
 * Site z: for every layer L and head h, the base run with that head's z replaced by the source's
 * at every aligned position (positions without a counterpart keep their own), through the
 * forward graph's head inputs (graph/interventions.ts): scale 0 and bias = the source's z there,
 * up to HEAD_BATCH heads per call, one per batch row. A head whose z is equal at every aligned
 * position, or that the ablation replaces in both runs, takes the base run's LD without a run.
 * Positions before the first one where a call's heads differ are not recomputed: the base run's
 * KV cache stands in for them (a patch there would replace z by itself).
 */
async function headSweep(
  model: LoadedModel,
  baseIds: readonly number[],
  base: BaseRun,
  source: BaseRun,
  heads: Feeds,
  ablated: Set<number>,
  m: { target: number; contrast: number | null; ldBase: number },
  signal?: AbortSignal,
): Promise<[Float32Array, SweepCounts]> {
  const s = model.spec;
  const H = s.nHeads;
  const dh = s.headDim;
  const T = base.T;
  const S = source.T;
  const grid = new Float32Array(s.nLayers * H).fill(NaN);
  let skipped = 0;
  let runs = 0;
  let calls = 0;
  let layerPositions = 0;
  const zAt = (n: number, L: number, h: number, p: number) => ((L * H + h) * n + p) * dh; // in [n_layers, H, n, d_head]
  for (let L = 0; L < s.nLayers; L++) {
    const todo: number[] = [];
    /** the first aligned position where head h's z differs in the two runs (T: none) */
    const first = new Map<number, number>();
    for (let h = 0; h < H; h++) {
      let p = Math.max(0, T - S);
      while (p < T && sameVector(base.site, zAt(T, L, h, p), source.site, zAt(S, L, h, alignedPos(p, T, S)), dh)) p++;
      first.set(h, p);
      if (p < T && !ablated.has(L * H + h)) todo.push(h);
      else {
        grid[L * H + h] = m.ldBase;
        skipped++;
      }
    }
    // this layer's inputs as the ablation (if any) sets them, for every position
    const scale0 = heads[interventionName.headScale(L)]?.data as Float32Array | undefined;
    const bias0 = heads[interventionName.headBias(L)]?.data as Float32Array | undefined;
    for (let i = 0; i < todo.length; i += HEAD_BATCH) {
      throwIfCancelled(signal);
      const chunk = todo.slice(i, i + HEAD_BATCH);
      const K = chunk.length;
      // rows p0..T−1 are computed; the base run's cache holds the positions before
      const p0 = Math.min(...chunk.map((h) => first.get(h)!));
      const R = T - p0;
      const scale = new Float32Array(K * H * R);
      const bias = new Float32Array(K * H * R * dh);
      for (let k = 0; k < K; k++)
        for (let h = 0; h < H; h++)
          for (let r = 0; r < R; r++) {
            scale[(k * H + h) * R + r] = scale0 ? scale0[h]! : 1;
            if (bias0) bias.set(bias0.subarray(h * dh, (h + 1) * dh), ((k * H + h) * R + r) * dh);
          }
      chunk.forEach((h, k) => {
        for (let p = p0; p < T; p++) {
          scale[(k * H + h) * R + p - p0] = 0;
          const from = zAt(S, L, h, alignedPos(p, T, S));
          bias.set(source.site.subarray(from, from + dh), ((k * H + h) * R + p - p0) * dh);
        }
      });
      const out = await model.forward.run(
        {
          input_ids: idsTensor(Array.from({ length: K }, () => baseIds.slice(p0)).flat(), K),
          ...prefixCache(model, base, p0, K),
          ...heads,
          [interventionName.headScale(L)]: { data: scale, dims: [K, H, R, 1] },
          [interventionName.headBias(L)]: { data: bias, dims: [K, H, R, dh] },
        },
        ['logits'],
      );
      const logits = out.logits!.data as Float32Array;
      const V = logits.length / K;
      chunk.forEach((h, k) => (grid[L * H + h] = logitDiff(logits.subarray(k * V, (k + 1) * V), m.target, m.contrast)));
      runs += K;
      calls++;
      layerPositions += K * R * s.nLayers;
    }
  }
  return [grid, { skipped, runs, calls, layerPositions, kvOnlyRows: 0 }];
}

/** past_key_values.* for K batch rows: the base run's keys and values of positions 0..p0−1, in each row. */
function prefixCache(model: LoadedModel, base: BaseRun, p0: number, K: number): Feeds {
  const s = model.spec;
  const { T } = base;
  const dh = s.headDim;
  const feeds: Feeds = {};
  for (let L = 0; L < s.nLayers; L++)
    for (const [name, all] of [
      [hook.pastKey(L), base.keys[L]!],
      [hook.pastValue(L), base.values[L]!],
    ] as const) {
      const one = new Float32Array(s.nKvHeads * p0 * dh); // [n_kv, p0, d_head] of [n_kv, T, d_head]
      for (let h = 0; h < s.nKvHeads; h++) one.set(all.subarray(h * T * dh, (h * T + p0) * dh), h * p0 * dh);
      const rows = new Float32Array(K * one.length);
      for (let k = 0; k < K; k++) rows.set(one, k * one.length);
      feeds[name] = { data: rows, dims: [K, s.nKvHeads, p0, dh] };
    }
  return feeds;
}
