// Loading a model: checkpoint folder → spec → tokenizer → instrumented graphs → sessions.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openCheckpoint, type Checkpoint } from './checkpoint/hf';
import { paramCount, specFromConfig, type ModelSpec } from './arch/spec';
import { rowNorms, weightReader, type WeightReader } from './arch/weights';
import { forwardGraphLayers, HalfRangeError, hook, ropeCpuNodes, type ForwardGraphOptions } from './graph/forward';
import { EXTERNAL_MIN_BYTES, type GraphBuilder, type WeightSink } from './onnx/builder';
import { buildLensGraph } from './graph/lens';
import { buildLensBlockGraph, buildLensPrepGraph } from './graph/lensblocks';
import type { LensBlocks } from './lensblocked';
import { withGateDefaults } from './graph/gates';
import { withCacheDefaults } from './generate/kvcache';
import { EmbeddingRows, withEmbeddingRows, type EmbeddingTable } from './embedrows';
import { createLinAlg, type LinAlg } from './linalg';
import {
  chooseProvider,
  createSession,
  lensPrepack,
  providerEnvironmentFor,
  type ProviderRequest,
  type RuntimeOptions,
  type Session,
} from './runtime/ort';
import { resolveWeightPrecision, type WeightPrecisionRequest } from './runtime/providers';

export { resolveWeightPrecision, WEIGHT_PRECISIONS, type WeightPrecisionRequest } from './runtime/providers';
import { TextTokenizer } from './tokenizer';
import { EngineError } from './errors';
import type { ModelInfo } from '../shared/analysis';
import { findOnnxExport, loadOnnxExport } from './onnx/export-model';
import { beginEntry, cacheKey, ExternalWeightFile, findCached, markUsed, pruneCache, WEIGHTS_FILE } from './graphcache';
import type { BlockWeights, GlobalWeights } from './arch/weights';
import { SuffixGraphBuilder } from './graph/suffix';
import { withInterventionDefaults } from './interventions/session';

export interface LoadedModel {
  dir: string;
  info: ModelInfo;
  spec: ModelSpec;
  tokenizer: TextTokenizer;
  forward: Session;
  /** The whole-vocabulary lens graph (graph/lens.ts), or the block graph when lensBlocks is set. */
  lens: Session;
  /**
   * The lens in vocabulary blocks with W_U read from the weights file (lensblocked.ts): the CPU
   * with float32 weights through the graph cache. Absent: `lens` is the whole-vocabulary graph.
   */
  lensBlocks?: LensBlocks;
  /**
   * The session generation steps run on: the forward session on the CPU; on WebGPU a second
   * session of the same graph, made at the first generation, whose outputs (the KV cache, and
   * the hooks it must fetch with it) stay in GPU memory — only the logits come back.
   */
  generation(): Promise<Session>;
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
  /**
   * The suffix graph's session (graph/suffix.ts: activation patching), created on first use.
   * Absent when the graphs take no interventions (ONNX exports).
   */
  suffix?: () => Promise<Session>;
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
  /** Most bytes the graph cache keeps (least recently used entries go first); 0 or unset: automatic. */
  cacheMaxBytes?: number;
  /** Weight bytes above which graphs go to external data even without cacheDir (tests lower it). */
  inlineLimitBytes?: number;
  /**
   * Precision the graphs keep the weight matrices in. `auto`: float16 when the checkpoint is
   * stored in float16/bfloat16 and the model runs on a GPU provider, else float32.
   */
  weightPrecision?: WeightPrecisionRequest;
  /** Least time between two load-progress messages (default 200 ms; tests use 0). */
  progressIntervalMs?: number;
  /**
   * Most tokens per block of the blocked lens (lensblocked.ts; default LENS_VOCAB_BLOCK, or
   * TD_LENS_VOCAB_BLOCK); 0: the whole-vocabulary lens even where the blocked one applies.
   */
  lensVocabBlock?: number;
}

/**
 * Tokens per block of the blocked lens: 12.6 MB of GPT-2-small's W_U read per block.
 * TD_LENS_VOCAB_BLOCK overrides it; TD_LENS_VOCAB_BLOCK=0 selects the whole-vocabulary lens.
 */
export const LENS_VOCAB_BLOCK = 4096;

function lensVocabBlock(opts: LoadOptions): number {
  if (opts.lensVocabBlock !== undefined) return opts.lensVocabBlock;
  const env = process.env.TD_LENS_VOCAB_BLOCK;
  if (env === undefined || env === '') return LENS_VOCAB_BLOCK;
  const n = Number(env);
  if (!Number.isInteger(n) || n < 0) throw new EngineError('BAD_REQUEST', `TD_LENS_VOCAB_BLOCK must be a whole number ≥ 0, not "${env}".`);
  return n;
}

/** Above this many float32 weight bytes a graph cannot be one protobuf (2 GB limit). */
export const INLINE_LIMIT_BYTES = 1.8e9;

export function modelInfo(name: string, spec: ModelSpec, session?: Pick<Session, 'provider' | 'providerNote' | 'adapter'>): ModelInfo {
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
    adapter: session?.adapter ?? null,
  };
}

/** What a long load is doing, for a progress message; `fraction` of the load done, 0-1. */
export type LoadProgress = (message: string, fraction: number) => void;

/** Watching and stopping a load: a first conversion of a big checkpoint takes minutes. */
export interface LoadControl {
  onProgress?: LoadProgress;
  /** Aborting stops a conversion between two layers (nothing half-written stays in the cache). */
  signal?: AbortSignal;
}

export async function loadModel(dir: string, opts: LoadOptions, control: LoadControl = {}): Promise<LoadedModel> {
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
  const environment = await providerEnvironmentFor(opts.executionProvider, opts.environment);
  const provider = chooseProvider(opts.executionProvider, environment).provider;
  let precision = resolveWeightPrecision(
    opts.weightPrecision,
    provider,
    ckpt.weights.storedHalf(),
    provider !== 'webgpu' || environment.webgpu?.adapter?.f16 === true,
  );
  // The lens graph's top-k in the GPU's shape on WebGPU (graph/lens.ts: blockTopK)
  let shape: GraphShape = { precision, gpuTopK: provider === 'webgpu' };
  let built: BuiltGraphs;
  try {
    built = await buildGraphs(dir, ckpt, spec, opts, shape, control);
  } catch (e) {
    // auto chose float16 but a weight does not fit: float32 instead (an explicit float16 says why it cannot)
    if (!(e instanceof HalfRangeError) || (opts.weightPrecision ?? 'auto') !== 'auto') throw e;
    precision = 'float32';
    shape = { ...shape, precision };
    built = await buildGraphs(dir, ckpt, spec, opts, shape, control);
  }
  // Two sessions: onnxruntime executes every node of a graph on every run, so one graph with
  // both parts would pay an idle forward pass per lens chunk and an idle lens per generation
  // step. They share the weights file on disk; W_E (= W_U when tied) is loaded by both (through
  // the graph cache on the CPU the forward graph reads it only for generation's logits: the
  // embeddings come from the file, embedrows.ts).
  const pinned = { cpuNodes: ropeCpuNodes(spec) };
  // row gates (graph/gates.ts) at their defaults for every caller that does not set them
  const fed = (s: Session) => withCacheDefaults(built.embeds ? withEmbeddingRows(s, new EmbeddingRows(built.embeds)) : s, spec);
  let forward = fed(withGateDefaults(await createSession(built.forward, { ...opts, environment, ...pinned })));
  const providerNote = forward.providerNote;
  const autoHalf = precision === 'float16' && (opts.weightPrecision ?? 'auto') === 'auto';
  if (forward.provider === 'cpu' && (autoHalf || shape.gpuTopK)) {
    // the graphs were shaped for a GPU provider that then failed to start: on the CPU auto's
    // float16 graph would widen every weight product, and TopK is faster whole; build them for the CPU.
    await forward.release();
    if (autoHalf) precision = 'float32';
    shape = { precision, gpuTopK: false };
    built = await buildGraphs(dir, ckpt, spec, opts, shape, control);
    forward = fed(withGateDefaults(await createSession(built.forward, { ...opts, ...pinned, executionProvider: 'cpu' })));
  }
  // The other sessions use the provider that started (a failed GPU provider is not retried).
  const started: LoadOptions = { ...opts, environment, executionProvider: forward.provider as ProviderRequest };
  let lens: Session;
  let lensBlocks: LensBlocks | undefined;
  let linalg: LinAlg;
  const blockRows = Math.min(lensVocabBlock(opts), spec.dVocab);
  try {
    if (forward.provider === 'cpu' && precision === 'float32' && built.embeds && built.unembeds && blockRows > 0) {
      lensBlocks = await blockedLensSessions(spec, built, blockRows, started);
      lens = lensBlocks.block;
    } else lens = await createSession(built.lens, { ...started, prepack: lensPrepack() });
  } catch (e) {
    await forward.release();
    throw e;
  }
  const releaseLens = async () => {
    if (lensBlocks) await releaseLensBlocks(lensBlocks);
    else await lens.release();
  };
  try {
    linalg = await createLinAlg(started);
  } catch (e) {
    await forward.release();
    await releaseLens();
    throw e;
  }
  const { lnFinal, unembedNorms, embedNorms } = built;
  const suffix = lazySuffix(dir, spec, precision, started, built.suffix);
  // the intervention inputs default to "no intervention" for every caller (interventions/session.ts)
  const forwardSession = withInterventionDefaults(forward, spec);
  const generation = generationSessions(
    forwardSession,
    forward.provider === 'webgpu' ? built.forward : null,
    spec,
    opts.patterns ?? true,
    started,
  );
  if (spec.bosTokenId === null && tokenizer.bosId !== null) spec.bosTokenId = tokenizer.bosId;
  if (spec.eosTokenIds.length === 0) spec.eosTokenIds = tokenizer.eosIds;
  return {
    dir,
    info: {
      ...modelInfo(opts.name ?? path.basename(path.resolve(dir)), spec, {
        provider: forward.provider,
        providerNote,
        adapter: forward.adapter,
      }),
      weights: precision,
      interventions: true,
    },
    spec,
    tokenizer,
    forward: forwardSession,
    lens,
    ...(lensBlocks ? { lensBlocks } : {}),
    lnFinal,
    unembedNorms,
    embedNorms,
    loadMs: performance.now() - t0,
    graphSource: built.source,
    linalg,
    suffix: suffix.session,
    generation: generation.get,
    async release() {
      await generation.release();
      await forward.release();
      await releaseLens();
      await linalg.release();
      await suffix.release();
    },
  };
}

/**
 * The blocked lens's sessions (graph/lensblocks.ts, built here: their only weights are ln_final's)
 * and its readers of W_U's and W_E's rows in the weights file.
 */
async function blockedLensSessions(spec: ModelSpec, built: BuiltGraphs, blockRows: number, opts: LoadOptions): Promise<LensBlocks> {
  const unembed = new EmbeddingRows(built.unembeds!);
  const sameTable = built.unembeds!.file === built.embeds!.file && built.unembeds!.offset === built.embeds!.offset;
  const embed = sameTable ? unembed : new EmbeddingRows(built.embeds!);
  const made: Session[] = [];
  try {
    const prep = await createSession(buildLensPrepGraph(spec, built.lnFinal).encode(), opts);
    made.push(prep);
    const block = await createSession(buildLensBlockGraph(spec).encode(), opts);
    made.push(block);
    return { prep, block, unembed, embed, softcap: spec.finalSoftcap, blockRows };
  } catch (e) {
    for (const s of made) await s.release();
    unembed.close();
    embed.close();
    throw e;
  }
}

async function releaseLensBlocks(lb: LensBlocks): Promise<void> {
  await lb.prep.release();
  await lb.block.release();
  lb.unembed.close();
  lb.embed.close();
}

/** Every output of the forward graph but the logits (they stay on the device while generating). */
function deviceOutputs(spec: ModelSpec, patterns: boolean): string[] {
  const names = [hook.residPre(0)];
  for (let L = 0; L < spec.nLayers; L++) {
    names.push(hook.residMid(L), hook.residPost(L), hook.presentKey(L), hook.presentValue(L));
    if (patterns) names.push(hook.pattern(L));
  }
  return names;
}

/**
 * LoadedModel.generation: the forward session itself, or (graph given: WebGPU) a second session
 * of that graph made on first use, with everything but the logits kept on the device.
 */
function generationSessions(forward: Session, graph: Uint8Array | string | null, spec: ModelSpec, patterns: boolean, opts: LoadOptions) {
  let made: Promise<Session> | null = null;
  return {
    get(): Promise<Session> {
      if (graph === null) return Promise.resolve(forward);
      made ??= createSession(graph, { ...opts, cpuNodes: ropeCpuNodes(spec), deviceOutputs: deviceOutputs(spec, patterns) }).then((s) =>
        withInterventionDefaults(withGateDefaults(s), spec),
      );
      return made;
    },
    async release(): Promise<void> {
      if (made) await (await made).release();
    },
  };
}

/**
 * The graphs at a weight precision, through the graph cache or in memory. (A function of its
 * own, not a closure in loadModel: a closure there would keep the checkpoint — its parsed
 * tokenizer.json included — alive for as long as the model is loaded.)
 */
/** What the graphs are built for: the weights' precision, and the lens's top-k for a GPU. */
interface GraphShape {
  precision: 'float32' | 'float16';
  gpuTopK: boolean;
}

function buildGraphs(
  dir: string,
  ckpt: Checkpoint,
  spec: ModelSpec,
  opts: LoadOptions,
  shape: GraphShape,
  control: LoadControl,
): Promise<BuiltGraphs> {
  const { precision } = shape;
  const graphOpts: GraphOptions = {
    patterns: opts.patterns ?? true,
    halfWeights: precision === 'float16',
    gpuTopK: shape.gpuTopK,
    blockedAttention: !shape.gpuTopK, // forward.ts: the CPU only
    stepCache: !shape.gpuTopK, // the CPU only: WebGPU keeps its cache on the device
  };
  const cacheDir = graphCacheDir(spec, { ...opts, weightBytes: precision === 'float16' ? 2 : 4 });
  const watch = (what: string): LayerWatch => ({
    onLayer: layerProgress(spec, what, control.onProgress, opts.progressIntervalMs),
    signal: control.signal,
  });
  return cacheDir
    ? graphsViaCache(
        dir,
        ckpt,
        spec,
        graphOpts,
        cacheDir,
        watch('converting the weights into the graph cache (once per model)'),
        opts.cacheMaxBytes,
      )
    : buildInMemory(ckpt, spec, graphOpts, watch('building the graph'));
}

interface LayerWatch {
  onLayer?: (layer: number) => void;
  signal?: AbortSignal;
}

/**
 * The forward graph, one layer at a time with a turn of the event loop in between: progress
 * goes out and a cancel message comes in while a big checkpoint converts.
 */
async function buildForward(
  spec: ModelSpec,
  reader: WeightReader,
  graphOpts: ForwardGraphOptions,
  sink: WeightSink | null,
  watch: LayerWatch,
  suffix: SuffixGraphBuilder | null = null,
): Promise<GraphBuilder> {
  // The suffix graph takes each layer's weights as the forward graph reads them: the same
  // arrays, so a weight sink writes them once for both graphs.
  let lastBlock: { L: number; w: BlockWeights } | null = null;
  const tapped: WeightReader = {
    globals: () => reader.globals(),
    block: (L) => {
      const w = reader.block(L);
      lastBlock = { L, w };
      return w;
    },
  };
  const layers = forwardGraphLayers(spec, suffix ? tapped : reader, graphOpts, sink);
  for (;;) {
    if (watch.signal?.aborted) throw new EngineError('CANCELLED', 'The model load was cancelled.');
    const step = layers.next();
    if (step.done) return step.value;
    const built = lastBlock as { L: number; w: BlockWeights } | null;
    if (suffix && built?.L === step.value) suffix.addLayer(step.value, built.w);
    lastBlock = null;
    watch.onLayer?.(step.value);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/**
 * The suffix graph's session, made on first use. With a graph cache the graph was written next
 * to the forward graph (same weights file); built in memory it is built now from the checkpoint
 * (the weights read again), so a model that never patches pays nothing for it.
 */
function lazySuffix(
  dir: string,
  spec: ModelSpec,
  precision: 'float32' | 'float16',
  opts: LoadOptions,
  cached: string | null,
): { session: () => Promise<Session>; release: () => Promise<void> } {
  let made: Promise<Session> | null = null;
  return {
    session: () =>
      (made ??= (async () => {
        const graph = cached ?? buildSuffixInMemory(dir, spec, precision === 'float16');
        return withInterventionDefaults(withGateDefaults(await createSession(graph, opts)), spec);
      })()),
    release: async () => {
      const s = made;
      made = null;
      if (s) await (await s.catch(() => null))?.release();
    },
  };
}

function buildSuffixInMemory(dir: string, spec: ModelSpec, halfWeights: boolean): Uint8Array {
  const ckpt = openCheckpoint(dir);
  const reader = weightReader(spec, ckpt.weights);
  const suffix = new SuffixGraphBuilder(spec, null, halfWeights);
  for (let L = 0; L < spec.nLayers; L++) suffix.addLayer(L, reader.block(L));
  const bytes = suffix.finish(reader.globals()).encode();
  ckpt.weights.releaseScratch();
  return bytes;
}

/** Per-layer progress messages, at most one per `intervalMs` (small models build in a blink: none). */
function layerProgress(
  spec: ModelSpec,
  what: string,
  onProgress: LoadProgress | undefined,
  intervalMs = 200,
): ((layer: number) => void) | undefined {
  if (!onProgress) return undefined;
  let last = performance.now();
  return (L) => {
    const now = performance.now();
    if (now - last < intervalMs) return;
    last = now;
    onProgress(`${what}: layer ${L + 1} of ${spec.nLayers}`, (L + 1) / (spec.nLayers + 1));
  };
}

/**
 * Where the graphs go: the given cache folder, or — when the weights (`weightBytes` per
 * parameter, float32 by default) would not fit in one protobuf (2 GB) — a cache folder under
 * the system temp dir; otherwise memory (undefined).
 */
export function graphCacheDir(
  spec: ModelSpec,
  opts: Pick<LoadOptions, 'cacheDir' | 'inlineLimitBytes'> & { weightBytes?: number },
): string | undefined {
  if (opts.cacheDir) return opts.cacheDir;
  return paramCount(spec) * (opts.weightBytes ?? 4) > (opts.inlineLimitBytes ?? INLINE_LIMIT_BYTES)
    ? path.join(os.tmpdir(), 'transformer-dynamics-graphs')
    : undefined;
}

interface BuiltGraphs {
  /** Graph bytes (in memory) or a path to a cached .onnx file with external data. */
  forward: Uint8Array | string;
  lens: Uint8Array | string;
  /** The suffix graph's file in the cache; null: built in memory when first needed. */
  suffix: string | null;
  lnFinal: { w: Float32Array; b: Float32Array | null };
  unembedNorms: Float32Array;
  embedNorms: Float32Array;
  source: LoadedModel['graphSource'];
  /** W_E's rows in the cache's weights file when the forward graph takes input_embeds (embedrows.ts). */
  embeds: EmbeddingTable | null;
  /**
   * W_U's rows there too (the same table as `embeds` when tied), for the blocked lens; null for
   * a model with an unembedding bias (none of the families today): the whole-vocabulary lens then.
   */
  unembeds: EmbeddingTable | null;
}

/** What the engine keeps in JavaScript beside the graphs: ln_final's weights, ‖W_U‖ and ‖W_E‖ rows. */
export function jsSide(spec: ModelSpec, globals: GlobalWeights) {
  const unembedNorms = rowNorms(globals.unembed, spec.dVocab, spec.dModel);
  return {
    lnFinal: { w: globals.lnFinal.w, b: globals.lnFinal.b },
    unembedNorms,
    embedNorms: globals.unembed === globals.embed ? unembedNorms : rowNorms(globals.embed, spec.dVocab, spec.dModel),
  };
}

/** The forward graph's options and the lens graph's. */
type GraphOptions = ForwardGraphOptions & { gpuTopK: boolean };

async function buildInMemory(ckpt: Checkpoint, spec: ModelSpec, graphOpts: GraphOptions, watch: LayerWatch): Promise<BuiltGraphs> {
  const reader = weightReader(spec, ckpt.weights);
  const forward = (await buildForward(spec, reader, graphOpts, null, watch)).encode();
  ckpt.weights.releaseScratch();
  const globals = reader.globals();
  const side = jsSide(spec, globals);
  const lens = buildLensGraph(spec, globals, null, graphOpts.halfWeights, graphOpts.gpuTopK, side.embedNorms).encode();
  return { forward, lens, suffix: null, ...side, source: 'memory', embeds: null, unembeds: null };
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

async function graphsViaCache(
  dir: string,
  ckpt: Checkpoint,
  spec: ModelSpec,
  graphOpts: GraphOptions,
  cacheDir: string,
  watch: LayerWatch,
  limit: number | undefined,
): Promise<BuiltGraphs> {
  // On the CPU the forward graph takes its embeddings from a file read (embedrows.ts): float32
  // only, and W_E must be in the weights file (initializers below EXTERNAL_MIN_BYTES stay inline)
  const embedsInput = !graphOpts.gpuTopK && !graphOpts.halfWeights && spec.dVocab * spec.dModel * 4 >= EXTERNAL_MIN_BYTES;
  graphOpts = { ...graphOpts, embedsInput };
  const key = cacheKey(
    dir,
    ckpt.weights.files.map((f) => f.filePath),
    {
      patterns: graphOpts.patterns,
      halfWeights: graphOpts.halfWeights ?? false,
      ...(graphOpts.gpuTopK ? { gpuTopK: true } : {}),
      ...(graphOpts.embedsInput ? { embedsInput: true } : {}),
    },
  );
  const table = (dirOf: string, offset: number | undefined, what = 'W_E'): EmbeddingTable | null => {
    if (!graphOpts.embedsInput) return null;
    if (offset === undefined) throw new Error(`the cache entry does not say where ${what} is`);
    return { file: path.join(dirOf, WEIGHTS_FILE), offset, rows: spec.dVocab, cols: spec.dModel };
  };
  const hit = findCached(cacheDir, key);
  if (hit) {
    try {
      const meta = JSON.parse(fs.readFileSync(hit.meta, 'utf8')) as {
        hasBias: boolean;
        tiedNorms: boolean;
        embedOffset?: number;
        unembedOffset?: number;
      };
      const embeds = table(hit.dir, meta.embedOffset);
      const unembeds = meta.unembedOffset === undefined ? null : table(hit.dir, meta.unembedOffset, 'W_U');
      markUsed(hit.dir);
      pruneCache(cacheDir, { maxBytes: limit, keep: [key] });
      return {
        forward: hit.forward,
        lens: hit.lens,
        suffix: hit.suffix,
        ...readNorms(hit.norms, spec, meta.hasBias, meta.tiedNorms),
        source: 'cache-hit',
        embeds,
        unembeds,
      };
    } catch {
      fs.rmSync(hit.dir, { recursive: true, force: true }); // damaged entry: rebuild
    }
  }
  const entry = beginEntry(cacheDir, key);
  let sink: ExternalWeightFile | null = null;
  try {
    sink = new ExternalWeightFile(path.join(entry.paths.dir, WEIGHTS_FILE));
    const reader = weightReader(spec, ckpt.weights);
    const suffix = new SuffixGraphBuilder(spec, sink, graphOpts.halfWeights ?? false);
    fs.writeFileSync(entry.paths.forward, (await buildForward(spec, reader, graphOpts, sink, watch, suffix)).encode());
    ckpt.weights.releaseScratch();
    const globals = reader.globals();
    const side = jsSide(spec, globals);
    fs.writeFileSync(
      entry.paths.lens,
      buildLensGraph(spec, globals, sink, graphOpts.halfWeights, graphOpts.gpuTopK, side.embedNorms).encode(),
    );
    fs.writeFileSync(entry.paths.suffix, suffix.finish(globals).encode());
    sink.close();
    writeNorms(entry.paths.norms, side);
    const embedOffset = graphOpts.embedsInput ? sink.refOf(globals.embed)?.offset : undefined;
    // the blocked lens reads W_U's rows there (lensblocked.ts; models without an unembedding bias)
    const unembedOffset = graphOpts.embedsInput && !globals.unembedBias ? sink.refOf(globals.unembed)?.offset : undefined;
    fs.writeFileSync(
      entry.paths.meta,
      JSON.stringify({
        key,
        model: dir,
        hasBias: side.lnFinal.b !== null,
        tiedNorms: side.embedNorms === side.unembedNorms,
        ...(embedOffset !== undefined ? { embedOffset } : {}),
        ...(unembedOffset !== undefined ? { unembedOffset } : {}),
        created: new Date().toISOString(),
      }),
    );
    const final = entry.commit();
    pruneCache(cacheDir, { maxBytes: limit, keep: [key] });
    return {
      forward: final.forward,
      lens: final.lens,
      suffix: final.suffix,
      ...side,
      source: 'cache-write',
      embeds: table(final.dir, embedOffset),
      unembeds: unembedOffset === undefined ? null : table(final.dir, unembedOffset, 'W_U'),
    };
  } catch (e) {
    sink?.discard(); // a cancelled or failed conversion: close the file, then the folder goes
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
