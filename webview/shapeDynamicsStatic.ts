// The static report's data (CLI `analyze --html`): one analysis plus precomputed answers to the
// panel's requests, inlined as typed-array-aware JSON in a <script type="application/json">.
// Pure: encoding, decoding and answering requests from the data. The DOM side (reading the
// script element, downloads) is webview/staticHost.ts; the writer is src/cli/report.ts.
import type { ClustersResult, DiffResult, HeadStatsResult, ProximityResult } from '../src/shared/analysis';
import type { PatchingResult } from '../src/shared/interventions';
import type { AnalysisPayload, PanelSettings, RequestMap, RequestMethod } from '../src/shared/protocol';
import { averageLinkage, cosineDistance } from '../src/engine/analysis/clusters';

/** id of the <script type="application/json"> element holding the data. */
export const STATIC_DATA_ID = 'td-static-data';
export const STATIC_DATA_VERSION = 1;

export interface StaticData {
  version: 1;
  /** ISO time the report was written. */
  generated: string;
  /** e.g. "transformer-dynamics 0.1.0". */
  generator: string;
  payload: AnalysisPayload;
  settings: PanelSettings;
  /** Token × token cosine similarity per row of the walk (every row, or the last only for long texts). */
  similarity: Record<number, Float32Array>;
  /** Attention head statistics, or null with `attentionNote` saying why. */
  headStats: HeadStatsResult | null;
  attentionNote: string | null;
  /** Attention patterns keyed "layer.head" ([pos, pos] each), or null with `patternsNote` saying why. */
  patterns: Record<string, Float32Array> | null;
  patternsNote: string | null;
  /** Angular proximity per position (the last position at least). */
  proximity: Record<number, ProximityResult>;
  /** Encoding-walk clusters per row (rows without one are computed from `similarity`). */
  clusters: Record<number, ClustersResult>;
  /** What-if (CLI --ablate, --patch-cells): the clean run beside the intervened `payload`. */
  clean?: AnalysisPayload | null;
  /** Two prompts for the Diff tab and their activation-patching heatmap (CLI --patch-from). */
  promptDiff?: {
    a: AnalysisPayload;
    b: AnalysisPayload;
    diff: DiffResult;
    labels: [string, string];
    patching: PatchingResult | null;
  } | null;
}

// ---- typed-array-aware JSON -------------------------------------------------------------

const TYPED = { Float32Array, Float64Array, Int32Array, Uint8Array } as const;
type TypedName = keyof typeof TYPED;
type Typed = Float32Array | Float64Array | Int32Array | Uint8Array;

export interface Base64Codec {
  encode(bytes: Uint8Array): string;
  decode(b64: string): Uint8Array;
}

/** base64 with btoa/atob (both exist in browsers and in Node ≥ 16). */
export const BASE64: Base64Codec = {
  encode(bytes) {
    let s = '';
    const CHUNK = 0x8000;
    for (let i = 0; i < bytes.length; i += CHUNK) s += String.fromCharCode(...bytes.subarray(i, i + CHUNK));
    return btoa(s);
  },
  decode(b64) {
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  },
};

function typedName(v: unknown): TypedName | null {
  for (const name of Object.keys(TYPED) as TypedName[]) if (v instanceof TYPED[name]) return name;
  return null;
}

/**
 * JSON in which typed arrays become {"$typed": "Float32Array", "b64": …} (their raw bytes, so
 * NaN survives), safe to place inside a <script> element: "<", ">" and "&" are written as
 * \u escapes, so the text can never close the element or open a comment.
 */
export function encodeTypedJson(value: unknown, codec: Base64Codec = BASE64): string {
  const json = JSON.stringify(value, (_k, v: unknown) => {
    const name = typedName(v);
    if (!name) return v;
    const t = v as Typed;
    return { $typed: name, b64: codec.encode(new Uint8Array(t.buffer, t.byteOffset, t.byteLength)) };
  });
  return json.replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** The inverse of encodeTypedJson. */
export function decodeTypedJson(text: string, codec: Base64Codec = BASE64): unknown {
  return JSON.parse(text, (_k, v: unknown) => {
    if (v && typeof v === 'object' && typeof (v as { $typed?: unknown }).$typed === 'string') {
      const { $typed, b64 } = v as { $typed: string; b64: unknown };
      const T = TYPED[$typed as TypedName];
      if (!T || typeof b64 !== 'string') throw new Error(`Bad typed array in the report data (${$typed.slice(0, 20)}).`);
      const bytes = codec.decode(b64);
      if (bytes.length % T.BYTES_PER_ELEMENT !== 0) throw new Error(`A ${$typed} in the report data has a partial element.`);
      const copy = new Uint8Array(bytes.length);
      copy.set(bytes);
      return new T(copy.buffer);
    }
    return v;
  });
}

/** Shape checks on decoded report data (enough that the panel can trust it like a host message). */
export function staticDataProblems(d: unknown): string[] {
  const out: string[] = [];
  if (!d || typeof d !== 'object') return ['the report data is not an object'];
  const s = d as Partial<StaticData>;
  if (s.version !== STATIC_DATA_VERSION) out.push(`unknown report data version ${String(s.version)}`);
  if (!s.payload || typeof s.payload !== 'object') out.push('the analysis is missing');
  for (const k of ['similarity', 'proximity', 'clusters'] as const) if (!s[k] || typeof s[k] !== 'object') out.push(`${k} is missing`);
  return out;
}

// ---- answering the panel's requests -----------------------------------------------------

export class StaticAnswerError extends Error {}

/** Answers a data request from the report; throws StaticAnswerError with a message for the view. */
export function staticAnswer<M extends RequestMethod>(
  data: StaticData,
  method: M,
  params: RequestMap[M]['params'],
): RequestMap[M]['result'] {
  const T = data.payload.tokens.length;
  const rows = data.payload.dims.n_layers + 1;
  const lastRow = rows - 1;
  const p = params as Record<string, unknown>;
  const run = p.runId;
  if (typeof run === 'number' && run !== data.payload.runId)
    throw new StaticAnswerError(
      data.clean?.runId === run
        ? 'This report holds the views of the intervened run; the clean run is here for comparison only.'
        : 'This report holds one analysis only.',
    );
  const result = (v: unknown) => v as RequestMap[M]['result'];
  switch (method) {
    case 'similarity': {
      const m = data.similarity[p.row as number];
      if (!m)
        throw new StaticAnswerError(
          `This report holds the similarity matrix of the last layer only (the text has ${T} tokens; every layer is kept up to 512).`,
        );
      return result(m);
    }
    case 'headStats':
      if (!data.headStats) throw new StaticAnswerError(data.attentionNote ?? 'This report has no attention statistics.');
      return result(data.headStats);
    case 'pattern': {
      const m = data.patterns?.[`${p.layer as number}.${p.head as number}`];
      if (!m) throw new StaticAnswerError(data.patternsNote ?? 'This report has no attention patterns.');
      return result(m);
    }
    case 'proximity': {
      const r = data.proximity[p.pos as number];
      if (!r) {
        const have = Object.keys(data.proximity).map(Number);
        throw new StaticAnswerError(
          `This report holds angular proximity for ${have.length === 1 ? `position ${have[0]} (the last token) only` : `positions ${have.join(', ')} only`}.`,
        );
      }
      return result(r);
    }
    case 'clusters': {
      const row = p.row as number;
      const have = data.clusters[row];
      if (have) return result(have);
      const sim = data.similarity[row];
      if (!sim || row < 0 || row > lastRow) throw new StaticAnswerError('This report holds the clusters of the last layer only.');
      const dendrogram = averageLinkage(cosineDistance(sim, T), T);
      const c: ClustersResult = { row, similarity: sim, order: dendrogram.order, merges: dendrogram.merges };
      data.clusters[row] = c;
      return result(c);
    }
    case 'showClusters':
      return result(null);
    case 'patching': {
      const have = data.promptDiff?.patching;
      if (!have) throw new StaticAnswerError('This report has no activation patching: run the CLI with --patch-from.');
      const q = params as RequestMap['patching']['params'];
      const same =
        q.direction === have.direction &&
        (q.site ?? 'resid_pre') === have.site &&
        (q.target === undefined || q.target === have.target) &&
        (q.contrast === undefined || q.contrast === have.contrast);
      if (!same)
        throw new StaticAnswerError(
          `This report holds the ${have.direction === 'denoise' ? 'denoising' : 'noising'} heatmap of ${have.site} for one target only; run the CLI with --patch-direction, --patch-site, --target and --contrast for others.`,
        );
      return result(have);
    }
    case 'openPatched': {
      // a report cannot run the model: say how the CLI makes the report of that patched run
      const q = params as RequestMap['openPatched']['params'];
      const cells = q.cells.map((c) => (q.site === 'z' ? `${c.layer}.${c.col}` : `${c.layer}:${c.col}`)).join(',');
      throw new StaticAnswerError(
        `A report cannot run the model. The CLI makes the report of this patched run: analyse the ${q.direction === 'denoise' ? 'corrupted' : 'clean'} text with --patch-from <the other text> --patch-site ${q.site} --patch-cells ${cells}.`,
      );
    }
    default:
      throw new StaticAnswerError('Not available in a static report — open the text in VS Code with Transformer Dynamics for this.');
  }
}
