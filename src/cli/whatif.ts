// The CLI's what-if options: --ablate L.H[,…] --ablation zero|mean, --patch-from FILE with
// --patch-cells (a patched analysis) or without (the activation-patching heatmap), --target,
// --contrast, --patch-direction, --patch-site. Parsing only; the engine checks ranges against the model.
import * as fs from 'node:fs';
import { EngineError } from '../engine/errors';
import type { TextTokenizer } from '../engine/tokenizer';
import {
  ABLATION_MODES,
  isPatchSite,
  PATCH_SITES,
  type AblationMode,
  type HeadRef,
  type PatchDirection,
  type PatchSite,
  type ResidCell,
} from '../shared/interventions';

const bad = (why: string) => new EngineError('BAD_REQUEST', why);

/** "5.1,6.9" → heads (layer.head, 0-based). */
export function parseHeads(v: string, flag = '--ablate'): HeadRef[] {
  const heads = v.split(',').map((part) => {
    const m = /^\s*(\d+)\.(\d+)\s*$/.exec(part);
    if (!m) throw bad(`${flag} takes heads as layer.head (0-based), comma-separated, e.g. 5.1,6.9; got "${part}".`);
    return { layer: Number(m[1]), head: Number(m[2]) };
  });
  if (heads.length === 0) throw bad(`${flag} needs at least one head.`);
  return heads;
}

export function parseAblationMode(v: string | undefined): AblationMode {
  if (v === undefined) return 'zero';
  if (!(ABLATION_MODES as readonly string[]).includes(v)) throw bad(`--ablation must be zero or mean, got "${v}".`);
  return v as AblationMode;
}

export function parseDirection(v: string | undefined): PatchDirection {
  if (v === undefined) return 'denoise';
  if (v !== 'denoise' && v !== 'noise') throw bad(`--patch-direction must be denoise or noise, got "${v}".`);
  return v;
}

export function parseSite(v: string | undefined): PatchSite {
  if (v === undefined) return 'resid_pre';
  if (!isPatchSite(v)) throw bad(`--patch-site must be ${PATCH_SITES.join(', ')}; got "${v}".`);
  return v;
}

/** A position spec against T positions: "7", "2-5", "*". */
function positions(spec: string, T: number, cell: string): number[] {
  if (spec === '*') return Array.from({ length: T }, (_, i) => i);
  const m = /^(\d+)(?:-(\d+))?$/.exec(spec);
  if (!m) throw bad(`--patch-cells: "${cell}" is not layer:position, layer:a-b or layer:*.`);
  const a = Number(m[1]);
  const b = m[2] === undefined ? a : Number(m[2]);
  if (b < a) throw bad(`--patch-cells: "${cell}" has an empty range.`);
  return Array.from({ length: b - a + 1 }, (_, i) => a + i);
}

/** "3:*,4:2-5,0:7" → cells of resid_pre (layers and positions 0-based; "*" = every position of T). */
export function parseCells(v: string, T: number): ResidCell[] {
  const out = new Map<string, ResidCell>();
  for (const cell of v.split(',').map((c) => c.trim())) {
    const m = /^(\d+):(.+)$/.exec(cell);
    if (!m) throw bad(`--patch-cells: "${cell}" is not layer:position, layer:a-b or layer:*.`);
    for (const pos of positions(m[2]!, T, cell)) out.set(`${m[1]}:${pos}`, { layer: Number(m[1]), pos });
  }
  return [...out.values()];
}

interface ExportedRun {
  model?: { n_layers?: unknown; d_model?: unknown; d_vocab?: unknown; name?: unknown };
  tokens?: { id?: unknown }[];
}

/**
 * The other run of --patch-from: a JSON export of a run of this model (its tokens; the file
 * name ends in .json) or a UTF-8 text file (tokenized like the analysed text).
 */
export function readPatchSource(
  file: string,
  model: { n_layers: number; d_model: number; d_vocab: number },
  tokenizer: Pick<TextTokenizer, 'encodeIds'>,
): { ids: number[]; label: string } {
  let raw: string;
  try {
    raw = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new EngineError('NOT_FOUND', `Cannot read --patch-from ${file}: ${(e as Error).message}`);
  }
  if (!file.toLowerCase().endsWith('.json')) {
    const ids = tokenizer.encodeIds(raw);
    if (ids.length === 0) throw bad(`--patch-from ${file}: the text gives no tokens.`);
    return { ids, label: file };
  }
  let run: ExportedRun;
  try {
    run = JSON.parse(raw) as ExportedRun;
  } catch (e) {
    throw bad(
      `--patch-from ${file} is not valid JSON (${(e as Error).message}); give a JSON export of a run, or a text file not named .json.`,
    );
  }
  const m = run.model;
  if (!m || !Array.isArray(run.tokens)) throw bad(`--patch-from ${file} is not a JSON export of a run (no "model" and "tokens").`);
  for (const k of ['n_layers', 'd_model', 'd_vocab'] as const) {
    if (m[k] !== model[k]) throw bad(`--patch-from ${file} is a run of another model (${k} ${String(m[k])}, this model has ${model[k]}).`);
  }
  const ids = run.tokens.map((t) => t.id);
  if (ids.length === 0 || !ids.every((id): id is number => Number.isInteger(id) && (id as number) >= 0 && (id as number) < model.d_vocab))
    throw bad(`--patch-from ${file}: its tokens are not token ids of this model.`);
  return { ids, label: file };
}

/** --target / --contrast: a token id, or a text that is exactly one token; "none" (contrast only). */
export function parseToken(
  what: 'target' | 'contrast',
  v: string | undefined,
  tokenizer: Pick<TextTokenizer, 'encodeIds'>,
  dVocab: number,
): number | null | undefined {
  if (v === undefined) return undefined;
  if (what === 'contrast' && v === 'none') return null;
  if (/^\d+$/.test(v)) {
    const id = Number(v);
    if (id >= dVocab) throw bad(`--${what} ${id} is outside the vocabulary (0..${dVocab - 1}).`);
    return id;
  }
  const ids = tokenizer.encodeIds(v, false);
  if (ids.length !== 1) throw bad(`--${what} "${v}" is ${ids.length} tokens; give one token (its text or id).`);
  return ids[0]!;
}
