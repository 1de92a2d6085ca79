// Loading an existing ONNX export (Optimum / transformers.js layout):
//   DIR/config.json, DIR/tokenizer.json (+ tokenizer_config.json), DIR/onnx/model.onnx
//   (+ external data such as DIR/onnx/model.onnx_data), and no model.safetensors.
// The folder may also be the onnx/ folder itself (config and tokenizer then come from it or
// its parent). The graph goes through surgery.ts; the lens graph is built from the export's
// own W_E / final norm / W_U with buildLensGraph, exactly as for safetensors checkpoints.
//
// External data: ORT resolves an initializer's `location` relative to the model file it
// loads, refuses locations that resolve (symbolic links included) outside that file's folder,
// and onnxruntime-node cannot take external data from memory. So:
//   - a graph without external data is handed to ORT as bytes (nothing is written);
//   - otherwise the instrumented graph (small: the weights stay external) is written to a
//     cache folder, os.tmpdir()/transformer-dynamics-onnx/<hash of path, size, mtime>/model.onnx,
//     next to *hard links* to the original data files (free, no copy; symlinks are refused by
//     ORT's path check). Hard links need the same file system: when they cannot be made, the
//     graph is written next to the original as onnx/model.td-instrumented-*.onnx (when that
//     folder is writable); if neither works the load fails with BAD_ONNX saying why.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import { EngineError } from '../errors';
import { specFromConfig, type ModelSpec } from '../arch/spec';
import { buildLensGraph } from '../graph/lens';
import { hook } from '../graph/forward';
import { createSession, lensPrepack, type ProviderRequest, type Session } from '../runtime/ort';
import { withGateDefaults } from '../graph/gates';
import { withCacheDefaults } from '../generate/kvcache';
import { TextTokenizer } from '../tokenizer';
import { jsSide, modelInfo, type LoadedModel, type LoadOptions } from '../model';
import { checkExportAgainstConfig, instrumentExport, type SurgeryDescription, type SurgeryResult } from './surgery';
import { externalRef, type ExternalReader } from './tensors';

const MAX_PROTO_BYTES = 2 ** 31 - 1;

function isFile(f: string): boolean {
  try {
    return fs.statSync(f).isFile();
  } catch {
    return false;
  }
}

/**
 * The model.onnx of an ONNX-export folder, or null when `dir` is not one (a folder with
 * safetensors weights always goes through the checkpoint loader).
 */
export function findOnnxExport(dir: string): string | null {
  if (isFile(path.join(dir, 'model.safetensors')) || isFile(path.join(dir, 'model.safetensors.index.json'))) return null;
  for (const f of [path.join(dir, 'onnx', 'model.onnx'), path.join(dir, 'model.onnx')]) if (isFile(f)) return f;
  const sub = path.join(dir, 'onnx');
  let others: string[] = [];
  try {
    others = fs.readdirSync(fs.statSync(sub).isDirectory() ? sub : dir).filter((f) => f.endsWith('.onnx'));
  } catch {
    return null;
  }
  if (others.length > 0)
    throw new EngineError(
      'BAD_ONNX',
      `Found ${others.slice(0, 6).join(', ')} but no model.onnx. Transformer Dynamics opens the float32 decoder exported "with past" ` +
        '(Optimum --task text-generation-with-past) as onnx/model.onnx.',
    );
  return null;
}

function readJsonFile(file: string, code: 'BAD_CONFIG' | 'BAD_TOKENIZER'): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new EngineError(code, `${path.basename(file)} could not be read as JSON: ${(e as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new EngineError(code, `${path.basename(file)} must contain a JSON object.`);
  return json as Record<string, unknown>;
}

/** First existing file among `dirs` (the export folder, then its parent). */
function firstFile(dirs: string[], name: string): string | null {
  for (const d of dirs) if (isFile(path.join(d, name))) return path.join(d, name);
  return null;
}

/** Reads external tensor data, refusing locations that leave the model's folder. */
export function externalReader(modelFile: string): ExternalReader & { close(): void } {
  const base = path.dirname(path.resolve(modelFile));
  const fds = new Map<string, { fd: number; size: number }>();
  const read = (location: string, offset: number, length: number): Uint8Array => {
    const file = resolveLocation(base, location);
    let h = fds.get(file);
    if (!h) {
      const fd = fs.openSync(file, 'r');
      h = { fd, size: fs.fstatSync(fd).size };
      fds.set(file, h);
    }
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > h.size)
      throw new EngineError(
        'BAD_ONNX',
        `External data "${location}": bytes ${offset}..${offset + length} lie outside the ${h.size}-byte file.`,
      );
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const n = fs.readSync(h.fd, out, done, length - done, offset + done);
      if (n <= 0) throw new EngineError('BAD_ONNX', `External data "${location}" ended early.`);
      done += n;
    }
    return out;
  };
  return Object.assign(read, {
    close() {
      for (const { fd } of fds.values()) fs.closeSync(fd);
      fds.clear();
    },
  });
}

function resolveLocation(base: string, location: string): string {
  const norm = path.normalize(location);
  if (path.isAbsolute(location) || norm.split(/[\\/]/).includes('..') || location.includes('\0'))
    throw new EngineError('BAD_ONNX', `External data location ${JSON.stringify(location).slice(0, 80)} leaves the model's folder.`);
  const file = path.join(base, norm);
  if (!isFile(file)) throw new EngineError('BAD_ONNX', `External data file "${location}" is missing next to the model.`);
  return file;
}

function externalLocations(model: onnx.IModelProto): string[] {
  const out = new Set<string>();
  for (const t of model.graph?.initializer ?? []) {
    const ref = externalRef(t);
    if (ref) out.add(ref.location);
  }
  return [...out];
}

/** Writes `bytes` to `file` atomically (temp name + rename). */
function writeAtomic(file: string, bytes: Uint8Array): void {
  const tmp = `${file}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`;
  fs.writeFileSync(tmp, bytes);
  fs.renameSync(tmp, file);
}

function linkData(src: string, dst: string): void {
  fs.mkdirSync(path.dirname(dst), { recursive: true });
  try {
    const a = fs.statSync(src);
    const b = fs.statSync(dst);
    if (a.ino === b.ino && a.dev === b.dev) return; // linked by an earlier load
    fs.unlinkSync(dst);
  } catch {
    // not there yet
  }
  fs.linkSync(src, dst);
}

/**
 * Where ORT should load the instrumented graph from so that its external data resolves
 * (see the header comment); returns the file written.
 */
export function placeInstrumented(
  modelFile: string,
  bytes: Uint8Array,
  locations: string[],
  tag: string,
  cacheRoot = path.join(os.tmpdir(), 'transformer-dynamics-onnx'),
): string {
  const abs = path.resolve(modelFile);
  const st = fs.statSync(abs);
  const key = crypto.createHash('sha256').update(`${abs}\0${st.size}\0${st.mtimeMs}\0${tag}`).digest('hex').slice(0, 24);
  const cache = path.join(cacheRoot, key);
  const base = path.dirname(abs);
  try {
    fs.mkdirSync(cache, { recursive: true });
    for (const loc of locations) linkData(resolveLocation(base, loc), path.join(cache, path.normalize(loc)));
    const out = path.join(cache, 'model.onnx');
    writeAtomic(out, bytes);
    return out;
  } catch (e) {
    const out = path.join(base, `model.td-instrumented${tag ? `-${tag}` : ''}.onnx`);
    try {
      writeAtomic(out, bytes);
      return out;
    } catch (e2) {
      throw new EngineError(
        'BAD_ONNX',
        `The instrumented graph needs its external data next to it, but neither a cache folder with hard links (${(e as Error).message}) ` +
          `nor the model's folder (${(e2 as Error).message}) could be written.`,
      );
    }
  }
}

type Json = Record<string, unknown>;

function cfgInt(cfg: Json, keys: string[]): number | null {
  for (const k of keys) {
    const v = cfg[k];
    if (typeof v === 'number' && Number.isInteger(v) && v > 0 && v <= 1 << 24) return v;
  }
  return null;
}

function tokenIds(v: unknown): number[] {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0);
  return [];
}

/** A ModelSpec from what the graph says, completed (and cross-checked) with config.json. */
export function specForExport(config: Json, d: SurgeryDescription): ModelSpec {
  let base: ModelSpec | null = null;
  try {
    base = specFromConfig(config);
  } catch (e) {
    if (!(e instanceof EngineError)) throw e; // an architecture we cannot build is fine here: the graph is given
  }
  const mismatch = (what: string, cfg: number, graph: number) =>
    new EngineError('BAD_ONNX', `config.json says ${what} = ${cfg} but the ONNX graph has ${graph}: the config belongs to another model.`);
  if (base) {
    if (base.dModel !== d.dModel) throw mismatch('the hidden size', base.dModel, d.dModel);
    if (base.nLayers !== d.nLayers) throw mismatch('the number of layers', base.nLayers, d.nLayers);
    if (base.dVocab !== d.dVocab) throw mismatch('the vocabulary size', base.dVocab, d.dVocab);
    checkExportAgainstConfig(d, base);
  }
  const nHeads = base?.nHeads ?? cfgInt(config, ['num_attention_heads', 'n_head', 'n_heads', 'num_heads']) ?? d.nKvHeads;
  if (!nHeads)
    throw new EngineError(
      'BAD_ONNX',
      'The number of attention heads is unknown: config.json has no num_attention_heads and the KV inputs have symbolic head counts.',
    );
  const nKvHeads = d.nKvHeads ?? base?.nKvHeads ?? cfgInt(config, ['num_key_value_heads', 'n_head_kv']) ?? nHeads;
  const headDim = d.headDim ?? base?.headDim ?? cfgInt(config, ['head_dim']) ?? d.dModel / nHeads;
  if (base && (base.nKvHeads !== nKvHeads || base.headDim !== headDim))
    throw new EngineError(
      'BAD_ONNX',
      `config.json implies ${base.nKvHeads} KV heads of size ${base.headDim}, the ONNX past_key_values inputs ${nKvHeads} × ${headDim}.`,
    );
  if (!Number.isInteger(headDim) || headDim <= 0)
    throw new EngineError('BAD_ONNX', `Cannot tell the attention head size (d_model ${d.dModel}, ${nHeads} heads).`);
  return {
    family: base?.family ?? (d.norm === 'rmsnorm' ? 'llama' : d.parallelResidual ? 'gpt_neox' : 'gpt2'),
    modelType: typeof config.model_type === 'string' ? config.model_type.slice(0, 60) : 'onnx',
    nLayers: d.nLayers,
    dModel: d.dModel,
    nHeads,
    nKvHeads,
    headDim,
    dVocab: d.dVocab,
    dMlp: base?.dMlp ?? cfgInt(config, ['intermediate_size', 'n_inner', 'ffn_dim']) ?? 4 * d.dModel,
    maxPositions:
      d.positionRows ?? base?.maxPositions ?? cfgInt(config, ['max_position_embeddings', 'n_positions', 'n_ctx', 'seq_length']) ?? 2048,
    norm: d.norm,
    normEps: d.normEps,
    act: base?.act ?? 'gelu',
    gatedMlp: base?.gatedMlp ?? false,
    normPlusOne: base?.normPlusOne ?? false,
    blockNorms: base?.blockNorms ?? (d.postNorms ? 'sandwich' : 'pre'),
    qkNorm: base?.qkNorm ?? (d.qkNorms ? 'head' : 'none'),
    fusedProjections: base?.fusedProjections ?? false,
    embedScale: base?.embedScale ?? 1,
    attnScale: base?.attnScale ?? 1 / Math.sqrt(headDim),
    attnSoftcap: base?.attnSoftcap ?? null,
    finalSoftcap: d.finalSoftcap, // the graph's own (checked against config.json above)
    layers: base?.layers ?? Array.from({ length: d.nLayers }, () => ({ window: null, rope: null })),
    cacheRecomputeAt: null, // length-dependent RoPE exports are refused (checkExportAgainstConfig)
    parallelResidual: d.parallelResidual,
    tiedEmbeddings: d.tiedEmbeddings,
    qkvBias: base?.qkvBias ?? false,
    outBias: base?.outBias ?? false,
    mlpBias: base?.mlpBias ?? false,
    bosTokenId: base?.bosTokenId ?? tokenIds(config.bos_token_id)[0] ?? null,
    eosTokenIds: base?.eosTokenIds ?? tokenIds(config.eos_token_id),
  };
}

export interface LoadedExport extends LoadedModel {
  /** What the surgery found and changed. */
  surgery: SurgeryDescription;
}

/** Instruments a decoded export and creates its forward session. */
async function forwardSession(
  modelFile: string,
  proto: onnx.IModelProto,
  read: ExternalReader,
  opts: LoadOptions,
  patterns: boolean,
): Promise<{ session: Session; result: SurgeryResult }> {
  let result: SurgeryResult;
  try {
    result = instrumentExport(proto, { readExternal: read, patterns });
  } catch (e) {
    if (e instanceof EngineError) throw e;
    throw new EngineError('BAD_ONNX', `ONNX export not recognised: ${(e as Error).message}`);
  }
  const bytes = onnx.ModelProto.encode(onnx.ModelProto.create(result.model)).finish();
  const locations = externalLocations(result.model);
  const session =
    locations.length === 0
      ? await createSession(bytes, opts)
      : await createSession(placeInstrumented(modelFile, bytes, locations, patterns ? 'p' : 'n'), opts);
  return { session, result };
}

/** Shapes of one tiny forward pass, against what the surgery promised. */
async function smokeCheck(session: Session, spec: ModelSpec, patterns: boolean): Promise<'ok' | 'patterns'> {
  const T = 2;
  const feeds: Record<string, { data: Float32Array | BigInt64Array; dims: number[] }> = {
    input_ids: { data: new BigInt64Array(T), dims: [1, T] },
  };
  for (let L = 0; L < spec.nLayers; L++) {
    feeds[hook.pastKey(L)] = { data: new Float32Array(0), dims: [1, spec.nKvHeads, 0, spec.headDim] };
    feeds[hook.pastValue(L)] = { data: new Float32Array(0), dims: [1, spec.nKvHeads, 0, spec.headDim] };
  }
  const fetches = ['logits', hook.residPre(0), hook.residMid(spec.nLayers - 1), hook.residPost(spec.nLayers - 1), hook.presentKey(0)];
  if (patterns) fetches.push(hook.pattern(0));
  const out = await session.run(feeds, fetches);
  const same = (a: number[], b: number[]) => a.length === b.length && a.every((v, i) => v === b[i]);
  const expect: [string, number[]][] = [
    ['logits', [1, spec.dVocab]],
    [hook.residPre(0), [1, T, spec.dModel]],
    [hook.residPost(spec.nLayers - 1), [1, T, spec.dModel]],
    [hook.presentKey(0), [1, spec.nKvHeads, T, spec.headDim]],
  ];
  for (const [name, dims] of expect) {
    const got = out[name]!.dims;
    if (!same(got, dims))
      throw new EngineError(
        'BAD_ONNX',
        `After surgery "${name}" has shape [${got.join(', ')}], expected [${dims.join(', ')}]; the export's structure was misread.`,
      );
  }
  if (patterns && !same(out[hook.pattern(0)]!.dims, [1, spec.nHeads, T, T])) return 'patterns';
  return 'ok';
}

export async function loadOnnxExport(dir: string, opts: LoadOptions): Promise<LoadedExport> {
  const t0 = performance.now();
  const modelFile = findOnnxExport(dir);
  if (!modelFile) throw new EngineError('NOT_FOUND', `No onnx/model.onnx in ${dir}.`);
  const onnxDir = path.dirname(modelFile);
  const metaDirs = [...new Set([path.resolve(dir), onnxDir, path.dirname(onnxDir)])];
  const configFile = firstFile(metaDirs, 'config.json');
  const config = configFile ? readJsonFile(configFile, 'BAD_CONFIG') : {};
  const tokFile = firstFile(metaDirs, 'tokenizer.json');
  if (!tokFile)
    throw new EngineError(
      'MISSING_TOKENIZER',
      `No tokenizer.json next to ${path.relative(dir, modelFile) || modelFile} or in its parent folder.`,
    );
  const tokCfgFile = firstFile(metaDirs, 'tokenizer_config.json');
  let tokCfg: Json = {};
  try {
    if (tokCfgFile) tokCfg = readJsonFile(tokCfgFile, 'BAD_TOKENIZER');
  } catch {
    tokCfg = {}; // optional metadata
  }
  const tokenizer = new TextTokenizer(readJsonFile(tokFile, 'BAD_TOKENIZER'), tokCfg);

  const size = fs.statSync(modelFile).size;
  if (size > MAX_PROTO_BYTES)
    throw new EngineError('BAD_ONNX', `${path.basename(modelFile)} is ${size} bytes, more than a protobuf can hold.`);
  let proto: onnx.IModelProto;
  try {
    proto = onnx.ModelProto.decode(fs.readFileSync(modelFile));
  } catch (e) {
    throw new EngineError('BAD_ONNX', `${path.basename(modelFile)} is not a valid ONNX model: ${(e as Error).message}`);
  }
  const read = externalReader(modelFile);
  let forward: Session | null = null;
  let lens: Session | null = null;
  try {
    let want = opts.patterns ?? true;
    let { session, result } = await forwardSession(modelFile, proto, read, opts, want);
    forward = session;
    const spec = specForExport(config, result.description);
    // callers that do not know the kv_rows gate and the step cache get their defaults
    const withDefaults = (s: Session) => withCacheDefaults(withGateDefaults(s), spec);
    forward = withDefaults(forward);
    if (tokenizer.vocabSize > spec.dVocab)
      throw new EngineError(
        'BAD_TOKENIZER',
        `tokenizer.json has ${tokenizer.vocabSize} tokens but the model's vocabulary has ${spec.dVocab}: they belong to different models.`,
      );
    if ((await smokeCheck(forward, spec, result.description.patterns)) === 'patterns') {
      // the Softmax found is not [batch, heads, q, k]: run without attention views
      await forward.release();
      forward = null;
      want = false;
      ({ session, result } = await forwardSession(modelFile, proto, read, opts, want));
      forward = withDefaults(session);
      result.description.patternsNote = 'the attention Softmax found does not have shape [batch, heads, query, key]';
    }
    const w = result.weights;
    // on the provider the forward session started with (a GPU provider that failed is not retried)
    const side = jsSide(spec, w);
    lens = await createSession(buildLensGraph(spec, w, null, false, false, side.embedNorms).encode(), {
      ...opts,
      executionProvider: forward.provider as ProviderRequest,
      prepack: lensPrepack(),
    });
    if (spec.bosTokenId === null && tokenizer.bosId !== null) spec.bosTokenId = tokenizer.bosId;
    if (spec.eosTokenIds.length === 0) spec.eosTokenIds = tokenizer.eosIds;
    const fwd = forward;
    const lns = lens;
    const name = opts.name ?? path.basename(configFile ? path.dirname(configFile) : path.resolve(dir));
    return {
      dir,
      info: modelInfo(name, spec, fwd),
      spec,
      tokenizer,
      forward: fwd,
      lens: lns,
      generation: () => Promise.resolve(fwd), // on the CPU the step cache (generate/kvcache.ts), elsewhere present.* through host memory
      ...side,
      loadMs: performance.now() - t0,
      graphSource: 'memory',
      surgery: result.description,
      async release() {
        await fwd.release();
        await lns.release();
      },
    };
  } catch (e) {
    await forward?.release();
    await lens?.release();
    throw e;
  } finally {
    read.close();
  }
}
