// Rotary position embeddings from config.json, in both formats transformers reads: the
// transformers 5 `rope_parameters` (flat, or keyed by layer type for Gemma 3) and the older
// top-level keys (`rope_theta`, `rope_scaling`, `partial_rotary_factor`, GPT-NeoX's
// `rotary_emb_base`/`rotary_pct`, Gemma 3's `rope_local_base_freq`), resolved with the
// precedence of transformers 5.17 (configuration_utils.py, modeling_rope_utils.py and the
// families' configuration_*.py). Every key of a rope dict must be one the rope type uses.
import { bad, isObject, show, unsupported, type ConfigReader, type Json } from './config';
import type { RopeSpec } from './spec';

/** One layer type's rope parameters after transformers' standardisation. */
export type RopeParams = Json;

const SCALED_WITH_ORIGINAL = ['llama3', 'yarn', 'longrope'];

/** Keys each rope_type requires and may have (transformers' _validate_*_rope_parameters). */
const ROPE_KEYS: Readonly<Record<string, { required: string[]; optional: string[] }>> = {
  default: { required: [], optional: ['rope_theta'] },
  linear: { required: ['factor'], optional: ['rope_theta'] },
  dynamic: { required: ['factor'], optional: ['rope_theta'] },
  yarn: {
    required: ['factor', 'original_max_position_embeddings'],
    optional: ['rope_theta', 'attention_factor', 'beta_fast', 'beta_slow', 'mscale', 'mscale_all_dim', 'truncate'],
  },
  longrope: {
    required: ['short_factor', 'long_factor', 'original_max_position_embeddings'],
    optional: ['rope_theta', 'attention_factor', 'factor'],
  },
  llama3: { required: ['factor', 'original_max_position_embeddings', 'low_freq_factor', 'high_freq_factor', 'rope_theta'], optional: [] },
};

/** How a family moves the older keys into rope_parameters (its convert_rope_params_to_dict). */
export interface FlatRopeRules {
  defaultTheta: number;
  /** Top-level key holding the base (`rope_theta`; GPT-NeoX: `rotary_emb_base`). */
  thetaKey: string;
  /** Top-level key holding the rotated fraction, and its default (null: none unless given). */
  partialKey: string;
  partialDefault: number | null;
  /** The family has its own `original_max_position_embeddings` field with this default (Phi-3). */
  originalMaxDefault: number | null;
  /** rope_type aliases the family renames (Phi-3: "su" and "yarn" are its LongRoPE). */
  renameTypes?: Readonly<Record<string, string>>;
}

function copyRope(v: unknown, key: string): RopeParams {
  if (!isObject(v)) throw bad(`"${key}" must be an object, got ${show(v)}`);
  return { ...v };
}

/** rope_scaling (when truthy) replaces rope_parameters, as transformers does. */
function ropeDict(r: ConfigReader): { rp: RopeParams; where: string } {
  const scaling = r.get('rope_scaling');
  const params = r.get('rope_parameters');
  if (isObject(scaling) && Object.keys(scaling).length > 0) return { rp: copyRope(scaling, 'rope_scaling'), where: 'rope_scaling' };
  if (scaling !== undefined && !isObject(scaling)) throw bad(`"rope_scaling" must be an object or null, got ${show(scaling)}`);
  return { rp: params === undefined ? {} : copyRope(params, 'rope_parameters'), where: 'rope_parameters' };
}

/** Flat rope parameters (every family but Gemma 3), standardised. */
export function flatRopeParams(r: ConfigReader, rules: FlatRopeRules, maxPositions: number): { rp: RopeParams; where: string } {
  const { rp, where } = ropeDict(r);
  if (rp.rope_theta === undefined) {
    const theta = r.get(rules.thetaKey);
    if (rules.thetaKey in r.cfg && theta === undefined) throw bad(`"${rules.thetaKey}" is null`);
    rp.rope_theta = theta ?? rules.defaultTheta;
  } else r.get(rules.thetaKey);
  const partial = r.get(rules.partialKey);
  if (rp.partial_rotary_factor === undefined && (partial ?? rules.partialDefault) !== null)
    rp.partial_rotary_factor = partial ?? rules.partialDefault;
  standardise(rp);
  const renamed = rules.renameTypes?.[String(rp.rope_type)];
  if (renamed) rp.rope_type = renamed;
  if (SCALED_WITH_ORIGINAL.includes(String(rp.rope_type))) {
    // A top-level original_max_position_embeddings wins over the dict's (transformers re-reads it
    // when the rotary embedding is built; Phi-3 declares the field, default 4096).
    const top = r.get('original_max_position_embeddings') ?? rules.originalMaxDefault ?? undefined;
    if (top !== undefined) rp.original_max_position_embeddings = top;
    else rp.original_max_position_embeddings ??= maxPositions;
  } else
    r.ignore(
      'original_max_position_embeddings',
      `only the llama3, yarn and longrope rope types read it (this one is ${show(rp.rope_type)})`,
    );
  return { rp, where };
}

function standardise(rp: RopeParams): void {
  rp.rope_type ??= rp.type ?? 'default';
  delete rp.type;
}

/**
 * Gemma 3: rope_parameters keyed by layer type. Older configs: rope_theta (global layers),
 * rope_local_base_freq (sliding layers) and rope_scaling (merged into the global layers').
 */
export function gemma3RopeParams(r: ConfigReader, layerTypes: readonly string[], maxPositions: number): Record<string, RopeParams> {
  const given = r.get('rope_parameters');
  const scaling = r.get('rope_scaling');
  if (given !== undefined && !isObject(given)) throw bad(`"rope_parameters" must be an object, got ${show(given)}`);
  const keyed: Json = { ...(given ?? {}) };
  for (const k of Object.keys(keyed))
    if (k !== 'full_attention' && k !== 'sliding_attention')
      throw unsupported(
        `"rope_parameters" of gemma3_text must be keyed by layer type (full_attention, sliding_attention); "${k}" is not one.`,
      );
  const full =
    keyed.full_attention === undefined || keyed.full_attention === null
      ? {}
      : copyRope(keyed.full_attention, 'rope_parameters.full_attention');
  const sliding =
    keyed.sliding_attention === undefined || keyed.sliding_attention === null
      ? {}
      : copyRope(keyed.sliding_attention, 'rope_parameters.sliding_attention');
  if (isObject(scaling)) Object.assign(full, scaling);
  else if (scaling !== undefined) throw bad(`"rope_scaling" must be an object or null, got ${show(scaling)}`);
  full.rope_theta ??= r.get('rope_theta') ?? 1_000_000;
  sliding.rope_theta ??= r.get('rope_local_base_freq') ?? 10_000;
  r.get('rope_theta');
  r.get('rope_local_base_freq');
  const out: Record<string, RopeParams> = {};
  for (const [type, rp] of [
    ['full_attention', full],
    ['sliding_attention', sliding],
  ] as const) {
    standardise(rp);
    if (SCALED_WITH_ORIGINAL.includes(String(rp.rope_type))) rp.original_max_position_embeddings ??= maxPositions;
    if (layerTypes.includes(type)) out[type] = rp;
  }
  return out;
}

/** What turns one layer type's parameters into a RopeSpec. */
export interface RopeContext {
  headDim: number;
  maxPositions: number;
  modelType: string;
  /** The family rotates only `partial_rotary_factor` of each head (Phi-3, GPT-NeoX); elsewhere it must be 1. */
  partialRotary: boolean;
  /** Where the parameters came from, for messages. */
  where: string;
}

function ropeNum(rp: RopeParams, key: string, where: string, min = -Infinity): number {
  const v = rp[key];
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min)
    throw bad(`"${where}.${key}" must be a number${min > -Infinity ? ` ≥ ${min}` : ''}, got ${show(v)}`);
  return v;
}

function optRopeNum(rp: RopeParams, key: string, where: string): number | null {
  return rp[key] === undefined || rp[key] === null ? null : ropeNum(rp, key, where);
}

function checkKeys(rp: RopeParams, type: string, where: string): void {
  const known = ROPE_KEYS[type];
  if (!known) throw unsupported(`"${where}.rope_type" ${show(type)} is not supported (supported: ${Object.keys(ROPE_KEYS).join(', ')}).`);
  for (const k of known.required) if (!(k in rp)) throw bad(`"${where}" of rope_type "${type}" has no "${k}"`);
  const allowed = new Set([...known.required, ...known.optional, 'rope_type', 'partial_rotary_factor']);
  for (const [k, v] of Object.entries(rp))
    if (!allowed.has(k))
      throw unsupported(`"${where}.${k}" = ${show(v)} is not used by rope_type "${type}"; refusing rather than ignoring it.`);
}

/** The rotated dimensions of each head: int(head_dim × partial_rotary_factor), even. */
function rotaryDim(rp: RopeParams, ctx: RopeContext): number {
  const partial = rp.partial_rotary_factor === undefined ? 1 : ropeNum(rp, 'partial_rotary_factor', ctx.where, 0);
  if (partial > 1) throw bad(`"${ctx.where}.partial_rotary_factor" must be in [0, 1], got ${partial}`);
  if (!ctx.partialRotary && partial !== 1)
    throw unsupported(
      `"${ctx.where}.partial_rotary_factor" = ${partial}: ${ctx.modelType} rotates whole heads in transformers 5.17 ` +
        '(the factor would be ignored or fail there), so it is refused.',
    );
  const dim = Math.floor(ctx.headDim * partial + 1e-9);
  if (dim % 2 !== 0) throw bad(`rotary dimensions int(head_dim ${ctx.headDim} × ${partial}) = ${dim} must be even`);
  return dim;
}

/** 1 / theta^(2i/dim), i = 0..dim/2-1, in float64. */
function baseInvFreq(theta: number, dim: number): Float64Array {
  const inv = new Float64Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) inv[i] = 1 / theta ** ((2 * i) / dim);
  return inv;
}

/** The RopeSpec of one layer type (null when no dimension is rotated). */
export function ropeSpec(rp: RopeParams, ctx: RopeContext): RopeSpec | null {
  const type = String(rp.rope_type);
  checkKeys(rp, type, ctx.where);
  const dim = rotaryDim(rp, ctx);
  if (dim === 0) return null;
  const theta = ropeNum(rp, 'rope_theta', ctx.where, Number.MIN_VALUE);
  const fixed = (inv: Float64Array, attentionFactor = 1): RopeSpec => ({
    type,
    rotaryDim: dim,
    attentionFactor,
    freq: { kind: 'fixed', invFreq: Float32Array.from(inv) },
  });
  switch (type) {
    case 'default':
      return fixed(baseInvFreq(theta, dim));
    case 'linear':
      return fixed(baseInvFreq(theta, dim).map((f) => f / ropeNum(rp, 'factor', ctx.where, Number.MIN_VALUE)));
    case 'llama3':
      return fixed(llama3InvFreq(baseInvFreq(theta, dim), rp, ctx.where));
    case 'yarn':
      return yarn(rp, theta, dim, ctx);
    case 'longrope':
      return longrope(rp, theta, dim, ctx);
    default: // dynamic: the base grows with the sequence, in the graph
      return {
        type,
        rotaryDim: dim,
        attentionFactor: 1,
        freq: { kind: 'dynamic', theta, factor: ropeNum(rp, 'factor', ctx.where, Number.MIN_VALUE), maxPositions: ctx.maxPositions },
      };
  }
}

/** Llama 3.x: long wavelengths slowed by `factor`, short ones kept, smooth in between. */
function llama3InvFreq(inv: Float64Array, rp: RopeParams, where: string): Float64Array {
  const factor = ropeNum(rp, 'factor', where, Number.MIN_VALUE);
  const low = ropeNum(rp, 'low_freq_factor', where);
  const high = ropeNum(rp, 'high_freq_factor', where);
  const oldCtx = ropeNum(rp, 'original_max_position_embeddings', where, 1);
  if (high <= low) throw bad(`"${where}": high_freq_factor ${high} must exceed low_freq_factor ${low}`);
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < oldCtx / high) return f;
    if (wavelen > oldCtx / low) return f / factor;
    const smooth = (oldCtx / wavelen - low) / (high - low);
    return (1 - smooth) * (f / factor) + smooth * f;
  });
}

/** YaRN: interpolation for long wavelengths, extrapolation for short, a ramp between; cos/sin scaled. */
function yarn(rp: RopeParams, theta: number, dim: number, ctx: RopeContext): RopeSpec {
  const where = ctx.where;
  const oldCtx = ropeNum(rp, 'original_max_position_embeddings', where, 1);
  const factor = optRopeNum(rp, 'factor', where) ?? ctx.maxPositions / oldCtx;
  const mscale = optRopeNum(rp, 'mscale', where);
  const mscaleAll = optRopeNum(rp, 'mscale_all_dim', where);
  const m = (scale: number, k = 1) => (scale <= 1 ? 1 : 0.1 * k * Math.log(scale) + 1);
  const attentionFactor =
    optRopeNum(rp, 'attention_factor', where) ?? (mscale && mscaleAll ? m(factor, mscale) / m(factor, mscaleAll) : m(factor));
  const betaFast = optRopeNum(rp, 'beta_fast', where) || 32;
  const betaSlow = optRopeNum(rp, 'beta_slow', where) || 1;
  // transformers: rope_parameters.get("truncate", True) — a null there means no truncation
  const truncate = rp.truncate === undefined ? true : rp.truncate === null ? false : rp.truncate;
  if (typeof truncate !== 'boolean') throw bad(`"${where}.truncate" must be true or false, got ${show(truncate)}`);
  const corrDim = (rot: number) => (dim * Math.log(oldCtx / (rot * 2 * Math.PI))) / (2 * Math.log(theta));
  let low = corrDim(betaFast);
  let high = corrDim(betaSlow);
  if (truncate) {
    low = Math.floor(low);
    high = Math.ceil(high);
  }
  low = Math.max(low, 0);
  high = Math.min(high, dim - 1);
  if (low === high) high += 0.001;
  const inv = baseInvFreq(theta, dim).map((extrapolated, i) => {
    const ramp = Math.min(1, Math.max(0, (i - low) / (high - low)));
    const keep = 1 - ramp; // share of the unscaled frequency
    return (extrapolated / factor) * (1 - keep) + extrapolated * keep;
  });
  return { type: 'yarn', rotaryDim: dim, attentionFactor, freq: { kind: 'fixed', invFreq: Float32Array.from(inv) } };
}

/** LongRoPE: per-frequency factors, short while the sequence fits the original context, long beyond. */
function longrope(rp: RopeParams, theta: number, dim: number, ctx: RopeContext): RopeSpec {
  const where = ctx.where;
  const oldCtx = ropeNum(rp, 'original_max_position_embeddings', where, 1);
  const factor = optRopeNum(rp, 'factor', where) ?? ctx.maxPositions / oldCtx;
  const attentionFactor =
    optRopeNum(rp, 'attention_factor', where) ?? (factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(oldCtx)));
  const scaled = (key: string): Float32Array => {
    const f = rp[key];
    if (!Array.isArray(f) || f.length !== dim / 2 || !f.every((x) => typeof x === 'number' && Number.isFinite(x) && x > 0))
      throw bad(`"${where}.${key}" must be ${dim / 2} positive numbers (one per rotated pair), got ${show(f)}`);
    const base = baseInvFreq(theta, dim);
    return Float32Array.from(base, (b, i) => b / (f[i] as number));
  };
  return {
    type: 'longrope',
    rotaryDim: dim,
    attentionFactor,
    freq: { kind: 'longrope', short: scaled('short_factor'), long: scaled('long_factor'), originalMax: oldCtx },
  };
}
