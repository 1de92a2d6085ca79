// The transformers 5.17 reference fixtures (test/fixtures/hf-transformers, see its README):
// reading their numbers, and writing a fixture's config in the keys transformers used before
// `rope_parameters` existed, so both formats can be checked against the same numbers.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SafetensorsFile } from '../src/engine/checkpoint/safetensors';
import type { Analysis } from '../src/shared/analysis';
import * as assert from 'node:assert/strict';
import { FIXTURES, assertClose, tmpDir } from './helpers';

export const HF_DIR = path.join(FIXTURES, 'hf-transformers');

/** The fixture folders, sorted. */
export function hfFixtureNames(): string[] {
  return fs
    .readdirSync(HF_DIR)
    .filter((n) => fs.statSync(path.join(HF_DIR, n)).isDirectory())
    .sort();
}

export interface HfReference {
  inputIds: number[];
  /** [L+1, T, d]: embedding output, then every layer's output. */
  resid: Float32Array;
  /** [T, V] */
  logits: Float32Array;
  /** [L, H, T, T] */
  attention: Float32Array;
  /** Greedy continuation through transformers' KV cache, and the logits each step chose from [G, V]. */
  genIds: number[];
  genLogits: Float32Array;
}

function tensors(file: string): Map<string, { dtype: string; data: Uint8Array }> {
  const f = SafetensorsFile.open(file);
  const out = new Map<string, { dtype: string; data: Uint8Array }>();
  for (const e of f.entries.values()) out.set(e.name, { dtype: e.dtype, data: f.readBytes(e) });
  return out;
}

function floats(t: { dtype: string; data: Uint8Array } | undefined, what: string): Float32Array {
  if (!t || t.dtype !== 'F32') throw new Error(`reference ${what}: missing or not F32`);
  return new Float32Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 4);
}

function ints(t: { dtype: string; data: Uint8Array } | undefined, what: string): number[] {
  if (!t || t.dtype !== 'I64') throw new Error(`reference ${what}: missing or not I64`);
  return Array.from(new BigInt64Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 8), Number);
}

export function readHfReference(name: string): HfReference {
  const dir = path.join(HF_DIR, name);
  const ref = tensors(path.join(dir, 'reference.safetensors'));
  const gen = ref.has('gen_ids') ? ref : tensors(path.join(dir, 'generation.safetensors'));
  return {
    inputIds: ints(ref.get('input_ids'), 'input_ids'),
    resid: floats(ref.get('resid'), 'resid'),
    logits: floats(ref.get('logits'), 'logits'),
    attention: floats(ref.get('attention'), 'attention'),
    genIds: ints(gen.get('gen_ids'), 'gen_ids'),
    genLogits: floats(gen.get('gen_logits'), 'gen_logits'),
  };
}

export function readHfConfig(name: string): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(path.join(HF_DIR, name, 'config.json'), 'utf8')) as Record<string, unknown>;
}

type Json = Record<string, unknown>;

function without(o: Json, ...keys: string[]): Json {
  const out = { ...o };
  for (const k of keys) delete out[k];
  return out;
}

/** A rope dict's scaling part in the older `rope_scaling` form ("type" or "rope_type", both were written). */
function scalingOf(rp: Json, typeKey: 'type' | 'rope_type'): Json | null {
  if (rp.rope_type === 'default') return null;
  return { [typeKey]: rp.rope_type, ...without(rp, 'rope_type', 'rope_theta', 'partial_rotary_factor') };
}

/**
 * The config as transformers 4.x wrote it: rope_theta / rope_scaling / partial_rotary_factor
 * (GPT-NeoX: rotary_emb_base / rotary_pct; Gemma 3: rope_theta, rope_local_base_freq and the
 * global layers' rope_scaling). null when the config has no rope_parameters or cannot be
 * said in the older keys (a scaled rope on Gemma 3's sliding layers).
 */
export function olderFormat(cfg: Json, typeKey: 'type' | 'rope_type'): Json | null {
  const rp = cfg.rope_parameters as Json | undefined;
  if (!rp) return null;
  const out = without(cfg, 'rope_parameters');
  if (cfg.model_type === 'gemma3_text') {
    const full = rp.full_attention as Json;
    const sliding = rp.sliding_attention as Json;
    if (Object.keys(without(sliding, 'rope_type', 'rope_theta')).length > 0 || sliding.rope_type !== 'default') return null;
    const scaling = scalingOf(full, typeKey);
    return { ...out, rope_theta: full.rope_theta, rope_local_base_freq: sliding.rope_theta, ...(scaling ? { rope_scaling: scaling } : {}) };
  }
  const scaling = scalingOf(rp, typeKey);
  if (scaling) out.rope_scaling = scaling;
  if (cfg.model_type === 'gpt_neox') {
    out.rotary_emb_base = rp.rope_theta;
    if (rp.partial_rotary_factor !== undefined) out.rotary_pct = rp.partial_rotary_factor;
  } else {
    out.rope_theta = rp.rope_theta;
    if (rp.partial_rotary_factor !== undefined) out.partial_rotary_factor = rp.partial_rotary_factor;
  }
  return out;
}

/** A copy of a fixture folder with another config.json. */
export function fixtureWithConfig(name: string, cfg: Json): string {
  const dir = path.join(tmpDir('td-hf-'), name);
  fs.mkdirSync(dir);
  for (const f of fs.readdirSync(path.join(HF_DIR, name))) fs.copyFileSync(path.join(HF_DIR, name, f), path.join(dir, f));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg, null, 1));
  return dir;
}

const TOL = 1e-4;

/**
 * Tolerance of one residual-stream row: 1e-4, or 50 float32 ulps of the row's largest value
 * when that is larger. These random models grow their streams to |x| ≈ 40, where a float32 ulp
 * is 3.8e-6: plain float32 arithmetic (tools/reference/check_hf_fixtures.py --float32) lands
 * up to 1.1e-4 from transformers' numbers there, the engine up to 1.2e-4.
 */
function rowTolerance(row: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < row.length; i++) m = Math.max(m, Math.abs(row[i]!));
  const ulp = m > 0 ? 2 ** (Math.floor(Math.log2(m)) - 23) : 0;
  return Math.max(TOL, 50 * ulp);
}

/** Residual streams [rows, T, d] compared row by row, each with its tolerance. */
export function assertStreamsClose(actual: Float32Array, expected: Float32Array, rows: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const n = expected.length / rows;
  for (let r = 0; r < rows; r++) {
    const exp = expected.subarray(r * n, (r + 1) * n);
    assertClose(actual.subarray(r * n, (r + 1) * n), exp, rowTolerance(exp), `${what} row ${r}`);
  }
}

function topK(row: Float32Array, k: number): number[] {
  return Array.from(row.keys())
    .sort((a, b) => row[b]! - row[a]! || a - b)
    .slice(0, k);
}

function softmax(row: Float32Array): Float64Array {
  let m = -Infinity;
  for (const v of row) m = Math.max(m, v);
  const e = Float64Array.from(row, (v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

/** An analysis against transformers' numbers: residual streams, attention patterns, the last lens row. */
export function checkAnalysis(a: Analysis, ref: HfReference, V: number): void {
  const T = ref.inputIds.length;
  assertStreamsClose(a.cache.resid, ref.resid, a.cache.n_layers + 1, 'residual streams (resid_pre[0], resid_post[*])');
  assert.ok(a.cache.patterns, 'attention patterns were computed');
  assertClose(a.cache.patterns, ref.attention, TOL, 'attention patterns');
  // the last lens row is the model's own read-out: its top-k are the logits' top-k
  const { lens } = a;
  const k = lens.k;
  const last = lens.rows - 1;
  for (let p = 0; p < T; p++) {
    const row = ref.logits.subarray(p * V, (p + 1) * V);
    const probs = softmax(row);
    const ids = Array.from(lens.topIds.subarray((last * T + p) * k, (last * T + p + 1) * k));
    assert.deepEqual(ids, topK(row, k), `last lens row top-${k} at position ${p}`);
    assertClose(
      lens.topProbs.subarray((last * T + p) * k, (last * T + p + 1) * k),
      ids.map((i) => probs[i]!),
      1e-5,
      `last lens row probabilities at ${p}`,
    );
  }
}
