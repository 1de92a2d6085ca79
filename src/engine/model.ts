// Loading a model: checkpoint folder → spec → tokenizer → instrumented graphs → sessions.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openCheckpoint, type Checkpoint } from './checkpoint/hf';
import { paramCount, specFromConfig, type ModelSpec } from './arch/spec';
import { weightReader } from './arch/weights';
import { buildForwardGraph } from './graph/forward';
import { buildLensGraph, LENS_PREFIX } from './graph/lens';
import { hook } from './graph/forward';
import { createLinAlg, type LinAlg } from './linalg';
import { createSession, type NamedTensor, type RuntimeOptions, type Session } from './runtime/ort';
import { TextTokenizer } from './tokenizer';
import { EngineError } from './errors';
import type { ModelInfo } from '../shared/analysis';
import { findOnnxExport, loadOnnxExport } from './onnx/export-model';
import { beginEntry, cacheKey, ExternalWeightFile, findCached, pruneCache, WEIGHTS_FILE } from './graphcache';
import type { GlobalWeights } from './arch/weights';

export interface LoadedModel {
  dir: string;
  info: ModelInfo;
  spec: ModelSpec;
  tokenizer: TextTokenizer;
  forward: Session;
  lens: Session;
  /** ln_final weights (and bias), kept for measures computed in JS. */
  lnFinal: { w: Float32Array; b: Float32Array | null };
  /** ‖W_U[:, t]‖ and ‖W_E[t]‖ for every token t [d_vocab]. */
  unembedNorms: Float32Array;
  embedNorms: Float32Array;
  loadMs: number;
  /** onnxruntime sessions for the analyses' dense algebra (covariance, cosine matrices). */
  linalg?: LinAlg;
  /** How the graphs were obtained: built in memory, built into the cache, or read from it. */
  graphSource: 'memory' | 'cache-write' | 'cache-hit';
  release(): Promise<void>;
}

export interface LoadOptions extends RuntimeOptions {
  /** Display name; defaults to the folder name. */
  name?: string;
  /** Output attention patterns from the forward graph. */
  patterns?: boolean;
  /**
   * Folder for built graphs (weights as external data, reused by the next load). Without it
   * graphs are built in memory, unless they would exceed protobuf's 2 GB limit.
   */
  cacheDir?: string;
  /** Weight bytes above which graphs go to external data even without cacheDir (tests lower it). */
  inlineLimitBytes?: number;
}

/** Above this many float32 weight bytes a graph cannot be one protobuf (2 GB limit). */
export const INLINE_LIMIT_BYTES = 1.8e9;

export function modelInfo(name: string, spec: ModelSpec, session?: Pick<Session, 'provider' | 'providerNote'>): ModelInfo {
  return {
    name,
    architecture: spec.modelType,
    family: spec.family,
    n_layers: spec.nLayers,
    d_model: spec.dModel,
    d_vocab: spec.dVocab,
    n_heads: spec.nHeads,
    n_kv_heads: spec.nKvHeads,
    d_head: spec.headDim,
    max_positions: spec.maxPositions,
    params: paramCount(spec),
    tied_embeddings: spec.tiedEmbeddings,
    provider: session?.provider ?? 'cpu',
    provider_note: session?.providerNote ?? null,
  };
}

export async function loadModel(dir: string, opts: LoadOptions): Promise<LoadedModel> {
  // An existing ONNX export (onnx/model.onnx, no safetensors): graph surgery instead of building.
  if (findOnnxExport(dir)) return loadOnnxExport(dir, opts);
  const t0 = performance.now();
  const ckpt = openCheckpoint(dir);
  const spec = specFromConfig(ckpt.config);
  const tokenizer = new TextTokenizer(ckpt.tokenizerJson, ckpt.tokenizerConfig);
  if (tokenizer.vocabSize > spec.dVocab) {
    throw new EngineError(
      'BAD_TOKENIZER',
      `tokenizer.json has ${tokenizer.vocabSize} tokens but the model's vocabulary has ${spec.dVocab}: they belong to different models.`,
    );
  }
  const patterns = opts.patterns ?? true;
  const cacheDir = graphCacheDir(spec, opts);
  const built = cacheDir ? await graphsViaCache(dir, ckpt, spec, patterns, cacheDir) : buildInMemory(ckpt, spec, patterns);
  // One onnxruntime session holds the forward pass and the lens: one copy of the weights.
  const shared = await createSession(built.model, opts);
  const { forward, lens } = branches(shared, spec);
  const linalg = await createLinAlg(opts);
  const { lnFinal, unembedNorms, embedNorms } = built;
  if (spec.bosTokenId === null && tokenizer.bosId !== null) spec.bosTokenId = tokenizer.bosId;
  if (spec.eosTokenIds.length === 0) spec.eosTokenIds = tokenizer.eosIds;
  return {
    dir,
    info: modelInfo(opts.name ?? path.basename(path.resolve(dir)), spec, forward),
    spec,
    tokenizer,
    forward,
    lens,
    lnFinal,
    unembedNorms,
    embedNorms,
    loadMs: performance.now() - t0,
    graphSource: built.source,
    linalg,
    async release() {
      await shared.release();
      await linalg.release();
    },
  };
}

/**
 * The forward pass and the lens live in one graph: onnxruntime runs every node on each run,
 * so the part not asked for gets a minimal input (1 token; 1 lens cell). These views make
 * the shared session look like two.
 */
export function branches(shared: Session, spec: ModelSpec): { forward: Session; lens: Session } {
  const d = spec.dModel;
  const V = spec.dVocab;
  const lensIdle: Record<string, NamedTensor> = {
    [`${LENS_PREFIX}resid`]: { data: new Float32Array(d), dims: [1, 1, d] },
    [`${LENS_PREFIX}next_ids`]: { data: new BigInt64Array(1), dims: [1] },
    [`${LENS_PREFIX}seen`]: { data: new Float32Array(V), dims: [1, V] },
    [`${LENS_PREFIX}k`]: { data: BigInt64Array.of(1n), dims: [1] },
  };
  const forwardIdle: Record<string, NamedTensor> = { input_ids: { data: new BigInt64Array(1), dims: [1, 1] } };
  for (let L = 0; L < spec.nLayers; L++) {
    forwardIdle[hook.pastKey(L)] = { data: new Float32Array(0), dims: [1, spec.nKvHeads, 0, spec.headDim] };
    forwardIdle[hook.pastValue(L)] = { data: new Float32Array(0), dims: [1, spec.nKvHeads, 0, spec.headDim] };
  }
  const isLens = (n: string) => n.startsWith(LENS_PREFIX);
  const forward: Session = {
    provider: shared.provider,
    providerNote: shared.providerNote,
    inputNames: shared.inputNames.filter((n) => !isLens(n)),
    outputNames: shared.outputNames.filter((n) => !isLens(n)),
    run: (feeds, fetches, into) => shared.run({ ...lensIdle, ...feeds }, fetches, into),
    release: () => shared.release(),
  };
  const lens: Session = {
    provider: shared.provider,
    providerNote: shared.providerNote,
    inputNames: shared.inputNames.filter(isLens).map((n) => n.slice(LENS_PREFIX.length)),
    outputNames: shared.outputNames.filter(isLens).map((n) => n.slice(LENS_PREFIX.length)),
    async run(feeds, fetches) {
      const prefixed: Record<string, NamedTensor> = { ...forwardIdle };
      for (const [k, v] of Object.entries(feeds)) prefixed[LENS_PREFIX + k] = v;
      const out = await shared.run(
        prefixed,
        fetches.map((f) => LENS_PREFIX + f),
      );
      const plain: Record<string, NamedTensor> = {};
      for (const f of fetches) plain[f] = out[LENS_PREFIX + f]!;
      return plain;
    },
    release: () => shared.release(),
  };
  return { forward, lens };
}

/**
 * Where the graphs go: the given cache folder, or — when the float32 weights would not fit in
 * one protobuf (2 GB) — a cache folder under the system temp dir; otherwise memory (undefined).
 */
export function graphCacheDir(spec: ModelSpec, opts: Pick<LoadOptions, 'cacheDir' | 'inlineLimitBytes'>): string | undefined {
  if (opts.cacheDir) return opts.cacheDir;
  return paramCount(spec) * 4 > (opts.inlineLimitBytes ?? INLINE_LIMIT_BYTES)
    ? path.join(os.tmpdir(), 'transformer-dynamics-graphs')
    : undefined;
}

interface BuiltGraphs {
  /** Graph bytes (in memory) or a path to a cached .onnx file with external data. */
  /** The combined forward + lens graph. */
  model: Uint8Array | string;
  lnFinal: { w: Float32Array; b: Float32Array | null };
  unembedNorms: Float32Array;
  embedNorms: Float32Array;
  source: LoadedModel['graphSource'];
}

function rowNorms(m: Float32Array, rows: number, d: number): Float32Array {
  const out = new Float32Array(rows);
  for (let t = 0; t < rows; t++) {
    let s = 0;
    for (let i = 0; i < d; i++) s += m[t * d + i]! ** 2;
    out[t] = Math.sqrt(s);
  }
  return out;
}

function jsSide(spec: ModelSpec, globals: GlobalWeights) {
  const unembedNorms = rowNorms(globals.unembed, spec.dVocab, spec.dModel);
  return {
    lnFinal: { w: globals.lnFinal.w, b: globals.lnFinal.b },
    unembedNorms,
    embedNorms: globals.unembed === globals.embed ? unembedNorms : rowNorms(globals.embed, spec.dVocab, spec.dModel),
  };
}

function buildInMemory(ckpt: Checkpoint, spec: ModelSpec, patterns: boolean): BuiltGraphs {
  const reader = weightReader(spec, ckpt.weights);
  const g = buildForwardGraph(spec, reader, { patterns });
  const globals = reader.globals();
  buildLensGraph(spec, globals, null, g);
  return { model: g.encode(), ...jsSide(spec, globals), source: 'memory' };
}

/** The JS-side arrays stored next to a cached graph: ln_final w (b), ‖W_U‖, ‖W_E‖. */
function writeNorms(file: string, side: ReturnType<typeof jsSide>): void {
  const parts = [side.lnFinal.w, side.lnFinal.b ?? new Float32Array(0), side.unembedNorms, side.embedNorms];
  fs.writeFileSync(file, Buffer.concat(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength))));
}

function readNorms(file: string, spec: ModelSpec, hasBias: boolean, tiedNorms: boolean): ReturnType<typeof jsSide> {
  const buf = fs.readFileSync(file);
  const all = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4).slice();
  const d = spec.dModel;
  const V = spec.dVocab;
  let at = 0;
  const take = (n: number) => all.subarray(at, (at += n));
  const w = take(d);
  const b = take(hasBias ? d : 0);
  const unembedNorms = take(V);
  const embedNorms = take(V);
  return { lnFinal: { w, b: hasBias ? b : null }, unembedNorms, embedNorms: tiedNorms ? unembedNorms : embedNorms };
}

async function graphsViaCache(dir: string, ckpt: Checkpoint, spec: ModelSpec, patterns: boolean, cacheDir: string): Promise<BuiltGraphs> {
  const key = cacheKey(
    dir,
    ckpt.weights.files.map((f) => f.filePath),
    { patterns },
  );
  const hit = findCached(cacheDir, key);
  if (hit) {
    try {
      const meta = JSON.parse(fs.readFileSync(hit.meta, 'utf8')) as { hasBias: boolean; tiedNorms: boolean };
      fs.utimesSync(hit.dir, new Date(), new Date());
      return { model: hit.forward, ...readNorms(hit.norms, spec, meta.hasBias, meta.tiedNorms), source: 'cache-hit' };
    } catch {
      fs.rmSync(hit.dir, { recursive: true, force: true }); // damaged entry: rebuild
    }
  }
  const entry = beginEntry(cacheDir, key);
  try {
    const sink = new ExternalWeightFile(path.join(entry.paths.dir, WEIGHTS_FILE));
    const reader = weightReader(spec, ckpt.weights);
    const g = buildForwardGraph(spec, reader, { patterns }, sink);
    const globals = reader.globals();
    buildLensGraph(spec, globals, sink, g);
    fs.writeFileSync(entry.paths.forward, g.encode());
    sink.close();
    const side = jsSide(spec, globals);
    writeNorms(entry.paths.norms, side);
    fs.writeFileSync(
      entry.paths.meta,
      JSON.stringify({
        key,
        model: dir,
        hasBias: side.lnFinal.b !== null,
        tiedNorms: side.embedNorms === side.unembedNorms,
        created: new Date().toISOString(),
      }),
    );
    const final = entry.commit();
    pruneCache(cacheDir);
    return { model: final.forward, ...side, source: 'cache-write' };
  } catch (e) {
    entry.abort();
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOSPC' || err.code === 'EACCES' || err.code === 'EROFS') {
      throw new EngineError(
        'TOO_LARGE',
        `Cannot write the model's graph cache in ${cacheDir} (${err.code}): free disk space or choose another cache folder.`,
      );
    }
    throw e;
  }
}
