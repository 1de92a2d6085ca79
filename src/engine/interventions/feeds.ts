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
  type HeadAblation,
  type InterventionRecord,
  type Interventions,
  type ResidPatch,
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

/** The feeds of a run cut to its first `n` positions (patch inputs are [1, pos, …]; head inputs have no positions). */
export function prefixFeeds(feeds: Feeds, n: number): Feeds {
  const out: Feeds = {};
  for (const [name, t] of Object.entries(feeds)) {
    if (!/\.hook_resid_pre\.patch_/.test(name)) out[name] = t;
    else {
      const per = t.data.length / t.dims[1]!;
      out[name] = { data: (t.data as Float32Array).subarray(0, n * per), dims: [1, n, t.dims[2]!] };
    }
  }
  return out;
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
  const seen = new Set<number>();
  for (const h of a.heads) {
    const ok = Number.isInteger(h.layer) && Number.isInteger(h.head) && h.layer >= 0 && h.layer < spec.nLayers && h.head >= 0;
    if (!ok || h.head >= spec.nHeads)
      throw new EngineError(
        'BAD_REQUEST',
        `No head ${h.layer}.${h.head} in this model (layers 0–${spec.nLayers - 1}, heads 0–${spec.nHeads - 1}).`,
      );
    seen.add(h.layer * spec.nHeads + h.head);
  }
  const heads = [...seen].sort((x, y) => x - y).map((i) => ({ layer: Math.floor(i / spec.nHeads), head: i % spec.nHeads }));
  return { heads, mode: a.mode };
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

/** Checks the cells of a patch against the base run (T tokens) and the source run. */
export function checkPatch(spec: ModelSpec, T: number, patch: ResidPatch): void {
  if (!Array.isArray(patch.sourceIds) || patch.sourceIds.length === 0)
    throw new EngineError('BAD_REQUEST', 'A residual patch needs the source run (its token ids).');
  for (const id of patch.sourceIds)
    if (!Number.isInteger(id) || id < 0 || id >= spec.dVocab)
      throw new EngineError('BAD_REQUEST', `The patch source holds token id ${id}, outside this model's vocabulary.`);
  if (patch.sourceIds.length > spec.maxPositions)
    throw new EngineError('BAD_REQUEST', `The patch source has ${patch.sourceIds.length} tokens, more than the model's context.`);
  for (const c of patch.cells) {
    if (!Number.isInteger(c.layer) || c.layer < 0 || c.layer >= spec.nLayers)
      throw new EngineError('BAD_REQUEST', `Cannot patch resid_pre of layer ${c.layer}: layers are 0–${spec.nLayers - 1}.`);
    if (!Number.isInteger(c.pos) || c.pos < 0 || c.pos >= T)
      throw new EngineError('BAD_REQUEST', `Cannot patch position ${c.pos}: the run has positions 0–${T - 1}.`);
    if (alignedPos(c.pos, T, patch.sourceIds.length) < 0)
      throw new EngineError(
        'BAD_REQUEST',
        `Position ${c.pos} has no token in the patch source (${patch.sourceIds.length} tokens, aligned from the end with this run's ${T}).`,
      );
  }
}

/** The residual stream rows resid_pre[0..n_layers-1] of a clean run → [n_layers, T, d_model]. */
export async function cleanResidPre(model: LoadedModel, ids: readonly number[], feeds: Feeds = {}): Promise<Float32Array> {
  const s = model.spec;
  const T = ids.length;
  const d = s.dModel;
  const fetches = [hook.residPre(0), ...Array.from({ length: s.nLayers - 1 }, (_, L) => hook.residPost(L))];
  const out = await model.forward.run({ input_ids: idsTensor(ids), ...emptyPast(model), ...feeds }, fetches);
  const rows = new Float32Array(s.nLayers * T * d);
  fetches.forEach((f, L) => rows.set(out[f]!.data as Float32Array, L * T * d));
  return rows;
}

/** patch_mask / patch_value feeds for every patched layer of a base run of T tokens. */
export function patchFeeds(spec: ModelSpec, T: number, patch: ResidPatch, sourceRows: Float32Array): Feeds {
  const feeds: Feeds = {};
  const d = spec.dModel;
  const S = patch.sourceIds.length;
  for (const { layer, pos } of patch.cells) {
    const maskName = interventionName.patchMask(layer);
    const valueName = interventionName.patchValue(layer);
    if (!feeds[maskName]) {
      feeds[maskName] = { data: new Float32Array(T), dims: [1, T, 1] };
      feeds[valueName] = { data: new Float32Array(T * d), dims: [1, T, d] };
    }
    (feeds[maskName].data as Float32Array)[pos] = 1;
    const src = (layer * S + alignedPos(pos, T, S)) * d;
    (feeds[valueName]!.data as Float32Array).set(sourceRows.subarray(src, src + d), pos * d);
  }
  return feeds;
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
  const patch = iv?.patch && iv.patch.cells.length > 0 ? iv.patch : null;
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
    checkPatch(s, ids.length, patch);
    // the source's residual stream under the same head ablation, so the patch carries values of
    // the same (ablated) model
    const rows = await cleanResidPre(model, patch.sourceIds, feeds);
    feeds = { ...feeds, ...patchFeeds(s, ids.length, patch, rows) };
    patchRecord = {
      sourceText: model.tokenizer.decode([...patch.sourceIds]),
      sourceTokens: patch.sourceIds.length,
      cells: [...patch.cells].sort((a, b) => a.layer - b.layer || a.pos - b.pos),
      alignment: 'end',
    };
  }
  return { feeds, record: { ablation, patch: patchRecord } };
}
