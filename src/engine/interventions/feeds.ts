// Interventions → the graph inputs that carry them (graph/interventions.ts). Validation of what
// comes in (from the panel, the CLI, a file) happens here, once, with clear errors.
import { EngineError } from '../errors';
import { hook } from '../graph/forward';
import { interventionName } from '../graph/interventions';
import type { LoadedModel } from '../model';
import type { ModelSpec } from '../arch/spec';
import type { NamedTensor } from '../runtime/ort';
import { emptyPast } from '../analyze';
import {
  ABLATION_MODES,
  isPatchSite,
  patchesAnything,
  type ActivationPatch,
  type HeadAblation,
  type HeadRef,
  type InterventionRecord,
  type Interventions,
  type PatchSite,
  type PositionSite,
} from '../../shared/interventions';

export type Feeds = Record<string, NamedTensor>;

/**
 * The feeds each kept run was computed with (keyed by its activation cache, engine-side only),
 * so on-demand views that run the model again (attention patterns of long inputs, proximity)
 * see the same intervened model.
 */
const runFeeds = new WeakMap<object, Feeds>();

export function rememberFeeds(cache: object, feeds: Feeds): void {
  if (Object.keys(feeds).length > 0) runFeeds.set(cache, feeds);
}

export function feedsOf(cache: object): Feeds {
  return runFeeds.get(cache) ?? {};
}

/**
 * The feeds of a run cut to its first `n` positions: patched cells beyond them left out,
 * per-position head inputs [1, n_heads, pos, …] cut along their positions (broadcast ones, one
 * position, stay as they are).
 */
export function prefixFeeds(feeds: Feeds, n: number): Feeds {
  const out: Feeds = {};
  for (const [name, t] of Object.entries(feeds)) {
    if (/\.patch_value$/.test(name)) continue; // with its index below
    const cells = /^(.*)\.patch_index$/.exec(name);
    if (cells) {
      const value = feeds[`${cells[1]}.patch_value`]!;
      const index = t.data as BigInt64Array;
      const d = value.dims[1]!;
      const keep = Array.from({ length: t.dims[0]! }, (_, i) => i).filter((i) => index[2 * i + 1]! < BigInt(n));
      out[name] = { data: BigInt64Array.from(keep.flatMap((i) => [index[2 * i]!, index[2 * i + 1]!])), dims: [keep.length, 2] };
      const v = new Float32Array(keep.length * d);
      keep.forEach((i, j) => v.set((value.data as Float32Array).subarray(i * d, (i + 1) * d), j * d));
      out[`${cells[1]}.patch_value`] = { data: v, dims: [keep.length, d] };
      continue;
    }
    out[name] = /\.attn\.head_(scale|bias)$/.test(name) && t.dims[2] !== 1 ? cutAxis(t, 2, n) : t;
  }
  return out;
}

/** A float tensor's first `n` entries along `axis`. */
function cutAxis(t: NamedTensor, axis: number, n: number): NamedTensor {
  const dims = [...t.dims];
  const outer = dims.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const src = t.data as Float32Array;
  const data = new Float32Array(outer * n * inner);
  for (let o = 0; o < outer; o++) data.set(src.subarray(o * dims[axis]! * inner, (o * dims[axis]! + n) * inner), o * n * inner);
  dims[axis] = n;
  return { data, dims };
}

/** Refuses interventions on a model whose graphs do not take them (ONNX exports). */
export function requireInterventions(model: LoadedModel): void {
  if (!model.info.interventions || !model.suffix) {
    throw new EngineError(
      'BAD_REQUEST',
      'This model was loaded from an ONNX export, whose graph takes no interventions: head ablation and activation patching need a model folder with safetensors weights.',
    );
  }
}

/** Checks an ablation and returns it with its heads sorted and without duplicates. */
export function checkAblation(spec: ModelSpec, a: HeadAblation): HeadAblation {
  if (!ABLATION_MODES.includes(a.mode)) throw new EngineError('BAD_REQUEST', `Unknown ablation "${String(a.mode)}": use zero or mean.`);
  if (!Array.isArray(a.heads)) throw new EngineError('BAD_REQUEST', 'An ablation needs a list of heads.');
  return { heads: checkHeads(spec, a.heads), mode: a.mode };
}

/** Heads of this model, sorted by layer then head, without duplicates. */
function checkHeads(spec: ModelSpec, heads: readonly HeadRef[]): HeadRef[] {
  const seen = new Set<number>();
  for (const h of heads) {
    const ok = Number.isInteger(h.layer) && Number.isInteger(h.head) && h.layer >= 0 && h.layer < spec.nLayers && h.head >= 0;
    if (!ok || h.head >= spec.nHeads)
      throw new EngineError(
        'BAD_REQUEST',
        `No head ${h.layer}.${h.head} in this model (layers 0–${spec.nLayers - 1}, heads 0–${spec.nHeads - 1}).`,
      );
    seen.add(h.layer * spec.nHeads + h.head);
  }
  return [...seen].sort((x, y) => x - y).map((i) => ({ layer: Math.floor(i / spec.nHeads), head: i % spec.nHeads }));
}

/** The z means [n_layers, n_heads, d_head] of a clean run of `ids` (one forward pass). */
export async function cleanZMean(model: LoadedModel, ids: readonly number[]): Promise<Float32Array> {
  const s = model.spec;
  const fetches = Array.from({ length: s.nLayers }, (_, L) => interventionName.zMean(L));
  const out = await model.forward.run({ input_ids: idsTensor(ids), ...emptyPast(model) }, fetches);
  const per = s.nHeads * s.headDim;
  const means = new Float32Array(s.nLayers * per);
  for (let L = 0; L < s.nLayers; L++) means.set(out[fetches[L]!]!.data as Float32Array, L * per);
  return means;
}

/**
 * head_scale / head_bias feeds for every layer with an ablated head (other layers keep their
 * defaults). `zMean` [n_layers, n_heads, d_head] is needed for mean ablation.
 */
export function headFeeds(spec: ModelSpec, a: HeadAblation, zMean: Float32Array | null): Feeds {
  const feeds: Feeds = {};
  const H = spec.nHeads;
  const dh = spec.headDim;
  for (const { layer, head } of a.heads) {
    const scaleName = interventionName.headScale(layer);
    const biasName = interventionName.headBias(layer);
    if (!feeds[scaleName]) {
      feeds[scaleName] = { data: new Float32Array(H).fill(1), dims: [1, H, 1, 1] };
      feeds[biasName] = { data: new Float32Array(H * dh), dims: [1, H, 1, dh] };
    }
    (feeds[scaleName].data as Float32Array)[head] = 0;
    if (a.mode === 'mean') {
      if (!zMean) throw new Error('mean ablation without the clean run z means');
      const off = (layer * H + head) * dh;
      (feeds[biasName]!.data as Float32Array).set(zMean.subarray(off, off + dh), head * dh);
    }
  }
  return feeds;
}

export function idsTensor(ids: readonly number[], batch = 1): NamedTensor {
  return { data: BigInt64Array.from(ids, (i) => BigInt(i)), dims: [batch, ids.length / batch] };
}

/** Source position aligned from the end with base position p (may be negative: no source token). */
export const alignedPos = (p: number, basePos: number, sourcePos: number) => p - (basePos - sourcePos);

/** A patch as it will be applied: its site, and its cells or heads sorted without duplicates. */
export interface CheckedPatch {
  sourceIds: number[];
  site: PatchSite;
  cells: { layer: number; pos: number }[];
  heads: HeadRef[];
}

/** Checks a patch against the model and the base run (T tokens); unknown sites are refused by name. */
export function checkPatch(spec: ModelSpec, T: number, patch: ActivationPatch): CheckedPatch {
  const site = patch.site ?? 'resid_pre';
  if (!isPatchSite(site))
    throw new EngineError('BAD_REQUEST', `Unknown patching site "${String(site)}": use resid_pre, attn_out, mlp_out or z.`);
  if (!Array.isArray(patch.sourceIds) || patch.sourceIds.length === 0)
    throw new EngineError('BAD_REQUEST', 'A patch needs the source run (its token ids).');
  for (const id of patch.sourceIds)
    if (!Number.isInteger(id) || id < 0 || id >= spec.dVocab)
      throw new EngineError('BAD_REQUEST', `The patch source holds token id ${id}, outside this model's vocabulary.`);
  if (patch.sourceIds.length > spec.maxPositions)
    throw new EngineError('BAD_REQUEST', `The patch source has ${patch.sourceIds.length} tokens, more than the model's context.`);
  const cells = Array.isArray(patch.cells) ? patch.cells : [];
  const heads = Array.isArray(patch.heads) ? patch.heads : [];
  if (site === 'z') {
    if (cells.length > 0)
      throw new EngineError(
        'BAD_REQUEST',
        'A patch of heads (site z) names heads, not (layer, position) cells: each head is patched at every aligned position.',
      );
    return { sourceIds: patch.sourceIds, site, cells: [], heads: checkHeads(spec, heads) };
  }
  if (heads.length > 0)
    throw new EngineError('BAD_REQUEST', `A patch of ${site} names (layer, position) cells; heads are patched at site z.`);
  const seen = new Map<number, { layer: number; pos: number }>();
  for (const c of cells) {
    if (!Number.isInteger(c.layer) || c.layer < 0 || c.layer >= spec.nLayers)
      throw new EngineError('BAD_REQUEST', `Cannot patch ${site} of layer ${c.layer}: layers are 0–${spec.nLayers - 1}.`);
    if (!Number.isInteger(c.pos) || c.pos < 0 || c.pos >= T)
      throw new EngineError('BAD_REQUEST', `Cannot patch position ${c.pos}: the run has positions 0–${T - 1}.`);
    if (alignedPos(c.pos, T, patch.sourceIds.length) < 0)
      throw new EngineError(
        'BAD_REQUEST',
        `Position ${c.pos} has no token in the patch source (${patch.sourceIds.length} tokens, aligned from the end with this run's ${T}).`,
      );
    seen.set(c.layer * T + c.pos, { layer: c.layer, pos: c.pos });
  }
  const sorted = [...seen.entries()].sort((a, b) => a[0] - b[0]).map(([, c]) => c);
  return { sourceIds: patch.sourceIds, site, cells: sorted, heads: [] };
}

/** The residual stream rows resid_pre[0..n_layers-1] of a clean run → [n_layers, T, d_model]. */
export async function cleanResidPre(model: LoadedModel, ids: readonly number[], feeds: Feeds = {}): Promise<Float32Array> {
  return siteRows(model, ids, 'resid_pre', feeds);
}

/** A position site's values at every layer of a run of `ids` → [n_layers, T, d_model]. */
export async function siteRows(model: LoadedModel, ids: readonly number[], site: PositionSite, feeds: Feeds = {}): Promise<Float32Array> {
  const s = model.spec;
  const T = ids.length;
  const d = s.dModel;
  const fetches =
    site === 'resid_pre'
      ? [hook.residPre(0), ...Array.from({ length: s.nLayers - 1 }, (_, L) => hook.residPost(L))]
      : Array.from({ length: s.nLayers }, (_, L) => (site === 'attn_out' ? hook.attnOut(L) : hook.mlpOut(L)));
  const out = await model.forward.run({ input_ids: idsTensor(ids), ...emptyPast(model), ...feeds }, fetches);
  const rows = new Float32Array(s.nLayers * T * d);
  fetches.forEach((f, L) => rows.set(out[f]!.data as Float32Array, L * T * d));
  return rows;
}

/**
 * patch_index / patch_value feeds of the site for every patched layer of a base run of T tokens
 * (`sourceRows`: the site's values of the source run [n_layers, S, d_model]).
 */
export function patchFeeds(
  spec: ModelSpec,
  T: number,
  patch: Pick<CheckedPatch, 'sourceIds' | 'cells'>,
  sourceRows: Float32Array,
  site: PositionSite = 'resid_pre',
): Feeds {
  const d = spec.dModel;
  const S = patch.sourceIds.length;
  const values = new Map<number, { layer: number; pos: number; row: Float32Array }[]>();
  for (const { layer, pos } of patch.cells) {
    const src = (layer * S + alignedPos(pos, T, S)) * d;
    const list = values.get(layer) ?? [];
    list.push({ layer, pos, row: sourceRows.subarray(src, src + d) });
    values.set(layer, list);
  }
  return Object.assign({}, ...[...values].map(([L, cells]) => cellFeeds(spec, L, site, cells)));
}

/** The patch inputs of one layer and site that replace these cells (batch row 0) by their rows. */
export function cellFeeds(spec: ModelSpec, L: number, site: PositionSite, cells: readonly { pos: number; row: Float32Array }[]): Feeds {
  const d = spec.dModel;
  const index = new BigInt64Array(cells.length * 2);
  const value = new Float32Array(cells.length * d);
  cells.forEach((c, i) => {
    index[2 * i + 1] = BigInt(c.pos);
    value.set(c.row, i * d);
  });
  return {
    [interventionName.patchIndex(L, site)]: { data: index, dims: [cells.length, 2] },
    [interventionName.patchValue(L, site)]: { data: value, dims: [cells.length, d] },
  };
}

/**
 * head_scale / head_bias feeds that replace each patched head's z by the source's z at every
 * aligned position (positions without a counterpart keep their own), on top of `feeds` (an
 * ablation's broadcast head inputs are expanded to every position; ablated heads stay ablated).
 */
async function headPatchFeeds(model: LoadedModel, T: number, patch: CheckedPatch, feeds: Feeds): Promise<Feeds> {
  const s = model.spec;
  const H = s.nHeads;
  const dh = s.headDim;
  const S = patch.sourceIds.length;
  const layers = [...new Set(patch.heads.map((h) => h.layer))];
  const out = await model.forward.run(
    { input_ids: idsTensor(patch.sourceIds), ...emptyPast(model), ...feeds },
    layers.map((L) => interventionName.z(L)),
  );
  const next: Feeds = { ...feeds };
  for (const L of layers) {
    const scale = new Float32Array(H * T).fill(1);
    const bias = new Float32Array(H * T * dh);
    const prevScale = feeds[interventionName.headScale(L)]?.data as Float32Array | undefined; // [1, H, 1, 1]
    const prevBias = feeds[interventionName.headBias(L)]?.data as Float32Array | undefined; // [1, H, 1, dh]
    for (let h = 0; h < H; h++)
      for (let p = 0; p < T; p++) {
        scale[h * T + p] = prevScale ? prevScale[h]! : 1;
        if (prevBias) bias.set(prevBias.subarray(h * dh, (h + 1) * dh), (h * T + p) * dh);
      }
    const z = out[interventionName.z(L)]!.data as Float32Array; // [1, H, S, dh]
    // an ablated head stays ablated (its z is the same in both runs), as in the patching sweep
    for (const { head } of patch.heads.filter((x) => x.layer === L && !(prevScale && prevScale[x.head] === 0)))
      for (let p = 0; p < T; p++) {
        const q = alignedPos(p, T, S);
        if (q < 0) continue;
        scale[head * T + p] = 0;
        bias.set(z.subarray((head * S + q) * dh, (head * S + q + 1) * dh), (head * T + p) * dh);
      }
    next[interventionName.headScale(L)] = { data: scale, dims: [1, H, T, 1] };
    next[interventionName.headBias(L)] = { data: bias, dims: [1, H, T, dh] };
  }
  return next;
}

/**
 * Everything a run with interventions feeds, and what it records. `zMeanOf` gives the clean z
 * means of these ids when a kept analysis has them (mean ablation), saving a forward pass.
 */
export async function interventionFeeds(
  model: LoadedModel,
  ids: readonly number[],
  iv: Interventions | undefined,
  zMeanOf?: (ids: readonly number[]) => Float32Array | null,
): Promise<{ feeds: Feeds; record: InterventionRecord | null }> {
  const ablate = iv?.ablation && iv.ablation.heads.length > 0 ? iv.ablation : null;
  const patch = patchesAnything(iv?.patch) ? iv!.patch! : null;
  if (!ablate && !patch) return { feeds: {}, record: null };
  requireInterventions(model);
  const s = model.spec;
  let feeds: Feeds = {};
  let ablation: HeadAblation | null = null;
  if (ablate) {
    ablation = checkAblation(s, ablate);
    const means = ablation.mode === 'mean' ? (zMeanOf?.(ids) ?? (await cleanZMean(model, ids))) : null;
    feeds = headFeeds(s, ablation, means);
  }
  let patchRecord: InterventionRecord['patch'] = null;
  if (patch) {
    const p = checkPatch(s, ids.length, patch);
    // the source's values under the same head ablation, so the patch carries values of the same
    // (ablated) model
    if (p.site === 'z') feeds = await headPatchFeeds(model, ids.length, p, feeds);
    else feeds = { ...feeds, ...patchFeeds(s, ids.length, p, await siteRows(model, p.sourceIds, p.site, feeds), p.site) };
    patchRecord = {
      sourceText: model.tokenizer.decode([...p.sourceIds], true), // (without the BOS the tokenizer added)
      sourceTokens: p.sourceIds.length,
      site: p.site,
      cells: p.cells,
      heads: p.heads,
      alignment: 'end',
    };
  }
  return { feeds, record: { ablation, patch: patchRecord } };
}
