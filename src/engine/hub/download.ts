// Downloads a model from the Hugging Face Hub into a local cache, as a folder in HF layout
// that openCheckpoint (or the ONNX loader) opens. No `vscode` import: the extension host
// wraps this with its progress UI, cancellation and secret storage for the token.
//
// What is fetched: config.json, tokenizer.json, tokenizer_config.json and
// generation_config.json (optional ones skipped when absent), then the weights:
// model.safetensors, or model.safetensors.index.json + exactly the shards it lists, or
// (ONNX-only repositories) onnx/model.onnx + its external data file. Nothing else (no
// pickle weights, README, other formats). Pickle-only repositories are refused before any
// download.
//
// Resolution, listing and per-file metadata use @huggingface/hub (modelInfo, listFiles,
// fileDownloadInfo); the file bodies are streamed here so that a broken download resumes
// with an HTTP Range request. See cache.ts for the cache layout and README.md for the
// user-facing description.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileDownloadInfo, listFiles, modelInfo, HubApiError, InvalidApiResponseFormatError } from '@huggingface/hub';
import { EngineError } from '../errors';
import { PICKLE_MESSAGE } from '../checkpoint/hf';
import { detectModelType } from '../arch/spec';
import {
  COMPLETE_MARKER,
  SHA_RE,
  acquireLock,
  completeSnapshot,
  listCachedModels,
  readRef,
  repoDir,
  snapshotDir,
  stagingDir,
  validateRepoId,
  validateRevision,
  writeRef,
  type ManifestFile,
  type ModelLayout,
  type SnapshotManifest,
} from './cache';
import {
  ShortBodyError,
  StallError,
  formatBytes,
  fsError,
  httpError,
  interruptedError,
  networkErrorCode,
  offlineError,
  redact,
  TOKEN_COMMAND,
  type HttpFailure,
} from './messages';

export { listCachedModels, removeCachedModel, parseRepoInput, type CachedModel, type ModelLayout } from './cache';
export { TOKEN_COMMAND } from './messages';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

export interface DownloadProgress {
  /** Path (in the repo) of the file being downloaded. */
  file: string;
  fileBytes: number;
  fileTotal: number;
  /** Bytes present of all needed files (resumed and cached ones included); ends at `total`. Never decreases. */
  bytes: number;
  total: number;
  /** Network speed over the last few seconds. */
  bytesPerSecond: number;
}

/** Facts known after config.json is in and before any weights are fetched. */
export interface WeightsPlan {
  repo: string;
  sha: string;
  layout: ModelLayout;
  config: Record<string, unknown>;
  /** Bytes of the weight files (what a memory estimate calls "weights on disk"). */
  weightBytes: number;
  /** Bytes of every needed file. */
  totalBytes: number;
  /** Bytes still to fetch over the network (what is cached or partly downloaded is subtracted). */
  remainingBytes: number;
}

export interface DownloadOptions {
  /** "owner/name". */
  repo: string;
  /** Branch, tag or commit sha. Default "main". */
  revision?: string;
  cacheDir: string;
  /** Hugging Face access token ("hf_…"), for gated and private repositories. Never logged. */
  token?: string;
  /** Hub base URL. Default https://huggingface.co (tests: a local server; or a mirror). */
  endpoint?: string;
  /** Throttled to about 10 calls per second, plus a final call with bytes = total. */
  onProgress?: (p: DownloadProgress) => void;
  signal?: AbortSignal;
  fetch?: typeof fetch;
  /** Use only the cache: no network at all. */
  offline?: boolean;
  /** Abort a request that receives no data for this long. Default 30 000 ms. */
  timeoutMs?: number;
  /** Automatic resumes of a file after a dropped connection within this call. Default 2. */
  retries?: number;
  /**
   * Called once config.json is downloaded and before any weights are: throw (for example
   * EngineError('TOO_LARGE') from checkMemory) to stop. What was fetched stays cached.
   */
  beforeWeights?: (plan: WeightsPlan) => void | Promise<void>;
  /** Diagnostic lines (URLs and paths only, never the token). */
  log?: (line: string) => void;
}

export interface DownloadResult {
  /**
   * A complete model folder in HF layout. For layout "safetensors" it holds config.json,
   * tokenizer.json (+ tokenizer_config.json, generation_config.json when the repo has them)
   * and model.safetensors or model.safetensors.index.json + shards. For layout "onnx" the
   * same JSON files at the top and the model at onnx/model.onnx (+ onnx/model.onnx_data).
   * A `.complete` manifest file sits next to them.
   */
  dir: string;
  /** Nothing was fetched over the network (complete snapshot already cached, or offline). */
  fromCache: boolean;
  /** Bytes received over the network by this call. */
  bytesDownloaded: number;
  repo: string;
  revision: string;
  sha: string;
  layout: ModelLayout;
  /** For layout "onnx": the .onnx file inside `dir`. */
  onnxPath?: string;
  /** The Hub could not be reached (or offline was asked for) and a cached copy was used. */
  offline: boolean;
}

const CONFIG = 'config.json';
const TOKENIZER = 'tokenizer.json';
const OPTIONAL_JSON = ['tokenizer_config.json', 'generation_config.json'];
const SINGLE = 'model.safetensors';
const INDEX = 'model.safetensors.index.json';
const ONNX = 'onnx/model.onnx';
const ONNX_DATA = /^onnx\/model\.onnx(?:_data|\.data)(?:_\d+)?$/;
const PICKLES =
  /^(pytorch_model(-\d+-of-\d+)?\.bin|pytorch_model\.bin\.index\.json|model\.pt|model\.pth|tf_model\.h5|flax_model\.msgpack)$/;
const PROGRESS_MS = 100;

export interface RepoFile {
  path: string;
  size: number;
  /** git blob sha1 */
  oid?: string;
  /** sha256 of an LFS file */
  lfsOid?: string;
}

export interface FilePlan {
  layout: ModelLayout;
  /** Files to fetch first (JSON), in order. */
  meta: string[];
  /** The shard index, when the weights are sharded. */
  index: string | null;
  /** Weight files known before reading the index (single file or ONNX). */
  weights: string[];
}

/** Chooses the needed files from a repo listing, or refuses it with a specific error. */
export function planFiles(repo: string, available: ReadonlySet<string>): FilePlan {
  let layout: ModelLayout;
  let index: string | null = null;
  let weights: string[] = [];
  if (available.has(SINGLE)) {
    layout = 'safetensors';
    weights = [SINGLE];
  } else if (available.has(INDEX)) {
    layout = 'safetensors';
    index = INDEX;
  } else if (available.has(ONNX)) {
    layout = 'onnx';
    weights = [ONNX, ...[...available].filter((p) => ONNX_DATA.test(p)).sort()];
  } else if ([...available].some((p) => PICKLES.test(p))) {
    throw new EngineError(
      'PICKLE_REFUSED',
      `${repo} has no safetensors weights. ${PICKLE_MESSAGE} Many repositories also have a safetensors conversion on a ` +
        '"refs/pr/N" branch (see the Community tab of the model page): use that branch as the revision.',
    );
  } else {
    throw new EngineError(
      'NOT_FOUND',
      `${repo} has no model.safetensors (nor a shard index or onnx/model.onnx). Is it a Transformers language model repository?`,
    );
  }
  if (!available.has(CONFIG)) {
    throw new EngineError('NOT_FOUND', `${repo} has no config.json, so it is not a model in Transformers layout.`);
  }
  if (!available.has(TOKENIZER)) {
    throw new EngineError(
      'MISSING_TOKENIZER',
      `${repo} has no tokenizer.json, the "fast" tokenizer file Transformer Dynamics needs. Pick a repository that includes it ` +
        `(most do), or in Python run \`AutoTokenizer.from_pretrained('${repo}').save_pretrained(DIR)\` together with the model ` +
        'and open that folder instead.',
    );
  }
  const meta = [CONFIG, TOKENIZER, ...OPTIONAL_JSON.filter((p) => available.has(p))];
  return { layout, meta, index, weights };
}

/** The shard files named by a model.safetensors.index.json (validated like openCheckpoint does). */
export function shardsFromIndex(repo: string, json: unknown, available: ReadonlySet<string>): string[] {
  const map = typeof json === 'object' && json !== null ? (json as { weight_map?: unknown }).weight_map : undefined;
  if (typeof map !== 'object' || map === null)
    throw new EngineError('BAD_WEIGHTS', `${repo}: model.safetensors.index.json has no "weight_map".`);
  const shards = new Set<string>();
  for (const v of Object.values(map as Record<string, unknown>)) {
    if (
      typeof v !== 'string' ||
      v !== path.posix.basename(v) ||
      v !== path.basename(v) ||
      !v.endsWith('.safetensors') ||
      v.startsWith('.')
    ) {
      throw new EngineError(
        'BAD_WEIGHTS',
        `${repo}: model.safetensors.index.json names an invalid shard file ${JSON.stringify(v)?.slice(0, 80)}.`,
      );
    }
    shards.add(v);
  }
  if (shards.size === 0) throw new EngineError('BAD_WEIGHTS', `${repo}: model.safetensors.index.json lists no shards.`);
  for (const s of shards) {
    if (!available.has(s))
      throw new EngineError('BAD_WEIGHTS', `${repo}: shard ${s} listed in model.safetensors.index.json is not in the repository.`);
  }
  return [...shards].sort();
}

// ---- progress ------------------------------------------------------------------------------

class Progress {
  /** Bytes of finished files (downloaded, resumed or taken from the cache). */
  done = 0;
  /** Bytes received over the network. */
  net = 0;
  /** Bytes present now (finished files + the current one). */
  bytesNow = 0;
  private lastEmit = -Infinity;
  private lastBytes = 0;
  private lastSample = -Infinity;
  private samples: { t: number; n: number }[] = [];

  constructor(
    readonly total: number,
    private readonly cb: ((p: DownloadProgress) => void) | undefined,
    private readonly log?: (line: string) => void,
  ) {}

  report(file: string, fileBytes: number, fileTotal: number, force = false): void {
    const t = performance.now();
    this.bytesNow = this.done + fileBytes;
    if (t - this.lastSample >= 50) {
      this.samples.push({ t, n: this.net });
      this.lastSample = t;
      while (this.samples.length > 2 && this.samples[0]!.t < t - 3000) this.samples.shift();
    }
    if (!this.cb || (!force && t - this.lastEmit < PROGRESS_MS)) return;
    this.lastEmit = t;
    const bytes = Math.min(this.total, Math.max(this.lastBytes, this.done + fileBytes));
    this.lastBytes = bytes;
    const first = this.samples[0];
    const dt = first ? (t - first.t) / 1000 : 0;
    const bytesPerSecond = first && dt > 0.05 ? Math.max(0, (this.net - first.n) / dt) : 0;
    try {
      this.cb({ file, fileBytes, fileTotal, bytes, total: this.total, bytesPerSecond });
    } catch (e) {
      this.log?.(`progress callback threw: ${(e as Error).message}`);
    }
  }
}

// ---- the download --------------------------------------------------------------------------

interface Ctx {
  repo: string;
  revision: string;
  endpoint: string;
  cacheDir: string;
  token: string | undefined;
  signal: AbortSignal | undefined;
  baseFetch: typeof fetch;
  hubFetch: typeof fetch;
  timeoutMs: number;
  retries: number;
  log: (line: string) => void;
  lastHttp: (HttpFailure & { url: string }) | null;
  cleanups: (() => void)[];
  progress: Progress | null;
  downloaded: number;
  /** Files fetched over the network (not taken from the cache). */
  fetched: number;
  currentFile: string | null;
  remaining: number;
}

function cancelled(repo: string): EngineError {
  return new EngineError(
    'CANCELLED',
    `The download of ${repo} was cancelled. What was downloaded so far is kept and resumes on the next try.`,
  );
}

function checkCancel(ctx: Ctx): void {
  if (ctx.signal?.aborted) throw cancelled(ctx.repo);
}

/** A fetch for the library's calls: user cancellation, a timeout, and the error headers recorded. */
function makeHubFetch(ctx: Ctx): typeof fetch {
  return (async (input: string | URL | Request, init?: RequestInit) => {
    checkCancel(ctx);
    const ctl = new AbortController();
    const unlink = linkAbort(ctx.signal, ctl);
    ctx.cleanups.push(unlink);
    const timer = setTimeout(() => ctl.abort(new StallError(ctx.timeoutMs)), ctx.timeoutMs);
    timer.unref();
    ctx.cleanups.push(() => clearTimeout(timer));
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    ctx.log(`${init?.method ?? 'GET'} ${url}`);
    try {
      const res = await ctx.baseFetch(input, { ...init, signal: ctl.signal });
      unlink(); // the (small JSON) body is read under the timeout only; cancellation is checked after it
      if (!res.ok) {
        ctx.lastHttp = {
          url,
          status: res.status,
          errorCode: res.headers.get('x-error-code'),
          serverMessage: res.headers.get('x-error-message'),
        };
      }
      return res;
    } catch (e) {
      if (ctl.signal.reason instanceof StallError && !ctx.signal?.aborted) throw ctl.signal.reason;
      throw e;
    }
  }) as typeof fetch;
}

function linkAbort(from: AbortSignal | undefined, to: AbortController): () => void {
  if (!from) return () => {};
  if (from.aborted) {
    to.abort(from.reason);
    return () => {};
  }
  const on = () => to.abort(from.reason);
  from.addEventListener('abort', on, { once: true });
  return () => from.removeEventListener('abort', on);
}

function sameOrigin(a: string, b: string): boolean {
  try {
    return new URL(a).origin === new URL(b).origin;
  } catch {
    return false;
  }
}

function credentials(ctx: Ctx): { accessToken?: string } {
  return ctx.token ? { accessToken: ctx.token } : {};
}

export async function downloadModel(opts: DownloadOptions): Promise<DownloadResult> {
  const repo = validateRepoId(opts.repo);
  const revision = validateRevision(opts.revision ?? 'main');
  const endpoint = (opts.endpoint ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
  const token = opts.token?.trim() || undefined;
  const ctx: Ctx = {
    repo,
    revision,
    endpoint,
    cacheDir: path.resolve(opts.cacheDir),
    token,
    signal: opts.signal,
    baseFetch: opts.fetch ?? fetch,
    hubFetch: fetch,
    timeoutMs: opts.timeoutMs ?? 30_000,
    retries: opts.retries ?? 2,
    log: (line) => opts.log?.(redact(line, token)),
    lastHttp: null,
    cleanups: [],
    progress: null,
    downloaded: 0,
    fetched: 0,
    currentFile: null,
    remaining: 0,
  };
  ctx.hubFetch = makeHubFetch(ctx);
  let ok = false;
  try {
    const result = await run(ctx, opts);
    ok = true;
    return result;
  } catch (e) {
    const err = classify(e, ctx);
    throw new EngineError(err.code, redact(err.message, token));
  } finally {
    for (const f of ctx.cleanups) f();
    if (!ok) pruneEmptyFolders(ctx);
  }
}

/** After a failure before anything arrived (gated, refused…), leave no empty folders behind. */
function pruneEmptyFolders(ctx: Ctx): void {
  const top = repoDir(ctx.cacheDir, ctx.repo);
  const incomplete = path.join(top, 'incomplete');
  let names: string[] = [];
  try {
    names = fs.readdirSync(incomplete);
  } catch {
    return;
  }
  for (const n of names) {
    try {
      fs.rmdirSync(path.join(incomplete, n)); // only succeeds when empty
    } catch {
      /* keeps partial downloads */
    }
  }
  for (const d of [incomplete, top]) {
    try {
      fs.rmdirSync(d);
    } catch {
      return;
    }
  }
}

function fromCacheResult(ctx: Ctx, sha: string, hit: { dir: string; manifest: SnapshotManifest }, offline: boolean): DownloadResult {
  const m = hit.manifest;
  const onnx = m.layout === 'onnx' ? m.files.find((f) => f.path === ONNX) : undefined;
  return {
    dir: hit.dir,
    fromCache: true,
    bytesDownloaded: 0,
    repo: ctx.repo,
    revision: ctx.revision,
    sha,
    layout: m.layout,
    ...(onnx ? { onnxPath: path.join(hit.dir, ONNX) } : {}),
    offline,
  };
}

function cachedRevisions(ctx: Ctx): string[] {
  return listCachedModels(ctx.cacheDir)
    .filter((m) => m.repo === ctx.repo)
    .map((m) => `${m.revisions.join('/')} (${m.sha.slice(0, 7)})`);
}

async function run(ctx: Ctx, opts: DownloadOptions): Promise<DownloadResult> {
  checkCancel(ctx);
  if (ctx.token && !ctx.token.startsWith('hf_')) {
    throw new EngineError(
      'DOWNLOAD',
      `The stored Hugging Face token is not a valid access token (tokens start with "hf_"). Set it again with the "${TOKEN_COMMAND}" command.`,
    );
  }
  // A commit sha already complete in the cache, or offline: no network at all.
  const cachedSha = readRef(ctx.cacheDir, ctx.repo, ctx.revision);
  const cachedHit = cachedSha ? completeSnapshot(ctx.cacheDir, ctx.repo, cachedSha) : null;
  if (cachedHit && SHA_RE.test(ctx.revision)) return fromCacheResult(ctx, ctx.revision, cachedHit, false);
  if (opts.offline) {
    if (cachedHit && cachedSha) return fromCacheResult(ctx, cachedSha, cachedHit, true);
    throw offlineError({ ...ctx }, null, cachedRevisions(ctx));
  }

  // 1. Resolve the revision to a commit sha.
  let sha: string;
  try {
    const info = await modelInfo({
      name: ctx.repo,
      revision: ctx.revision,
      additionalFields: ['sha'],
      hubUrl: ctx.endpoint,
      fetch: ctx.hubFetch,
      ...credentials(ctx),
    });
    sha = String((info as { sha?: unknown }).sha ?? '');
  } catch (e) {
    let code = ctx.signal?.aborted ? null : networkErrorCode(e);
    // The Hub down or rate-limiting: a cached copy is as good as when offline.
    if (!code && e instanceof HubApiError && (e.statusCode >= 500 || e.statusCode === 429) && cachedHit) code = `HTTP ${e.statusCode}`;
    if (code) {
      if (cachedHit && cachedSha) {
        ctx.log(`offline (${code}): using the cached snapshot ${cachedSha}`);
        return fromCacheResult(ctx, cachedSha, cachedHit, true);
      }
      throw offlineError({ ...ctx }, code, cachedRevisions(ctx));
    }
    throw e;
  }
  if (!SHA_RE.test(sha)) throw new EngineError('DOWNLOAD', `The Hub returned no commit for ${ctx.repo} (${ctx.revision}).`);
  const hit = completeSnapshot(ctx.cacheDir, ctx.repo, sha);
  if (hit) {
    writeRef(ctx.cacheDir, ctx.repo, ctx.revision, sha);
    return fromCacheResult(ctx, sha, hit, false);
  }

  // 2. List the files (top level; onnx/ only when needed) and choose.
  const byPath = new Map<string, RepoFile>();
  const list = async (sub?: string) => {
    for await (const e of listFiles({
      repo: ctx.repo,
      revision: sha,
      ...(sub ? { path: sub } : {}),
      hubUrl: ctx.endpoint,
      fetch: ctx.hubFetch,
      ...credentials(ctx),
    })) {
      if (e.type !== 'file') {
        if (e.type === 'directory') byPath.set(`${e.path}/`, { path: `${e.path}/`, size: 0 });
        continue;
      }
      byPath.set(e.path, {
        path: e.path,
        size: e.lfs?.size ?? e.size,
        ...(e.oid ? { oid: e.oid } : {}),
        ...(e.lfs?.oid ? { lfsOid: e.lfs.oid } : {}),
      });
    }
  };
  await list();
  if (!byPath.has(SINGLE) && !byPath.has(INDEX) && byPath.has('onnx/')) await list('onnx');
  const available = new Set([...byPath.keys()].filter((p) => !p.endsWith('/')));
  const plan = planFiles(ctx.repo, available);

  // 3. Download into incomplete/{sha}, under a lock.
  const staging = stagingDir(ctx.cacheDir, ctx.repo, sha);
  fs.mkdirSync(staging, { recursive: true });
  const release = acquireLock(`${staging}.lock`, ctx.repo);
  ctx.cleanups.push(release);
  const finishedMeanwhile = completeSnapshot(ctx.cacheDir, ctx.repo, sha);
  if (finishedMeanwhile) return fromCacheResult(ctx, sha, finishedMeanwhile, false);
  const fileOf = (p: string): RepoFile => byPath.get(p)!;

  // Small JSON first: config (architecture check) and the shard index (the shard list).
  for (const p of [CONFIG, ...(plan.index ? [plan.index] : [])]) await ensureFile(ctx, staging, fileOf(p), sha);
  const config = readJsonFile(path.join(staging, CONFIG), ctx.repo);
  if (plan.layout === 'safetensors') detectModelType(config); // UNSUPPORTED_ARCHITECTURE before the big files
  let weights = plan.weights;
  if (plan.index) weights = shardsFromIndex(ctx.repo, readJsonFile(path.join(staging, plan.index), ctx.repo), available);
  const all = [...new Set([...plan.meta, ...(plan.index ? [plan.index] : []), ...weights])];
  const files = all.map(fileOf);
  const total = files.reduce((s, f) => s + f.size, 0);
  const present = files.reduce((s, f) => s + presentBytes(staging, f), 0);
  ctx.remaining = total - present;
  const weightBytes = weights.reduce((s, p) => s + fileOf(p).size, 0);
  if (opts.beforeWeights) {
    await opts.beforeWeights({
      repo: ctx.repo,
      sha,
      layout: plan.layout,
      config,
      weightBytes,
      totalBytes: total,
      remainingBytes: ctx.remaining,
    });
    checkCancel(ctx);
  }
  await checkDiskSpace(ctx, staging, ctx.remaining);

  ctx.progress = new Progress(total, opts.onProgress, ctx.log);
  for (const f of files) await ensureFile(ctx, staging, f, sha);
  const last = files[files.length - 1]!;
  ctx.progress.report(last.path, last.size, last.size, true);

  // 4. Manifest last, then the whole folder becomes the snapshot in one rename.
  const manifest: SnapshotManifest = {
    format: 1,
    repo: ctx.repo,
    revision: ctx.revision,
    sha,
    layout: plan.layout,
    files: files.map((f): ManifestFile => {
      const h = expectedHash(f);
      return { path: f.path, size: f.size, sha256: h?.algo === 'sha256' ? h.hex : null, gitSha1: h?.algo === 'gitsha1' ? h.hex : null };
    }),
    bytes: total,
    completedAt: new Date().toISOString(),
  };
  const dir = publish(ctx, staging, sha, manifest);
  release();
  writeRef(ctx.cacheDir, ctx.repo, ctx.revision, sha);
  ctx.log(`complete: ${dir} (${formatBytes(ctx.downloaded)} downloaded)`);
  return {
    dir,
    fromCache: ctx.fetched === 0,
    bytesDownloaded: ctx.downloaded,
    repo: ctx.repo,
    revision: ctx.revision,
    sha,
    layout: plan.layout,
    ...(plan.layout === 'onnx' ? { onnxPath: path.join(dir, ONNX) } : {}),
    offline: false,
  };
}

// ---- files -----------------------------------------------------------------------------------

function sizeOf(p: string): number {
  try {
    return fs.statSync(p).size;
  } catch {
    return -1;
  }
}

function localPath(staging: string, repoPath: string): string {
  return path.join(staging, ...repoPath.split('/'));
}

function presentBytes(staging: string, f: RepoFile): number {
  const final = localPath(staging, f.path);
  if (sizeOf(final) === f.size) return f.size;
  return Math.max(0, Math.min(f.size, sizeOf(`${final}.partial`)));
}

function readJsonFile(file: string, repo: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new EngineError('BAD_CONFIG', `${repo}: ${path.basename(file)} is not valid JSON (${(e as Error).message.slice(0, 120)}).`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new EngineError('BAD_CONFIG', `${repo}: ${path.basename(file)} must contain a JSON object.`);
  }
  return json as Record<string, unknown>;
}

type Expected = { algo: 'sha256' | 'gitsha1'; hex: string };

/** What a file's content must hash to: the LFS sha256, or the git blob sha1 of a small file. */
function expectedHash(f: RepoFile): Expected | null {
  if (f.lfsOid && /^[0-9a-f]{64}$/.test(f.lfsOid)) return { algo: 'sha256', hex: f.lfsOid };
  if (!f.lfsOid && f.oid && /^[0-9a-f]{40}$/.test(f.oid)) return { algo: 'gitsha1', hex: f.oid };
  return null;
}

function makeHasher(h: Expected | null, size: number): crypto.Hash | null {
  if (!h) return null;
  if (h.algo === 'sha256') return crypto.createHash('sha256');
  return crypto.createHash('sha1').update(`blob ${size}\0`);
}

async function hashExisting(file: string, hasher: crypto.Hash, bytes: number): Promise<void> {
  if (bytes <= 0) return;
  const stream = fs.createReadStream(file, { start: 0, end: bytes - 1, highWaterMark: 1 << 20 });
  for await (const chunk of stream) hasher.update(chunk as Buffer);
}

class HashMismatch extends Error {}

class HttpStatusError extends Error {
  constructor(
    readonly failure: HttpFailure,
    readonly file: string,
  ) {
    super(`HTTP ${failure.status} for ${file}`);
  }
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

async function checkDiskSpace(ctx: Ctx, dir: string, need: number): Promise<void> {
  if (need <= 0 || typeof fsp.statfs !== 'function') return;
  let free: number;
  try {
    const s = await fsp.statfs(dir);
    free = Number(s.bavail) * Number(s.bsize);
  } catch {
    return;
  }
  if (free < need + 16 * 1024 * 1024) {
    throw new EngineError(
      'DOWNLOAD',
      `Not enough disk space for ${ctx.repo}: it needs ${formatBytes(need)} more, but only ${formatBytes(free)} are free on the disk ` +
        `holding the model cache (${ctx.cacheDir}). Free some space or choose another cache folder.`,
    );
  }
}

/** Hard-links (or copies) a file with the same content from an older complete snapshot of the repo. */
async function reuseFromOtherSnapshot(ctx: Ctx, f: RepoFile, final: string, sha: string): Promise<boolean> {
  const h = expectedHash(f);
  if (!h || f.size === 0) return false;
  for (const m of listCachedModels(ctx.cacheDir)) {
    if (m.repo !== ctx.repo || m.sha === sha) continue;
    const snap = completeSnapshot(ctx.cacheDir, ctx.repo, m.sha);
    const same = snap?.manifest.files.find((x) => x.size === f.size && (h.algo === 'sha256' ? x.sha256 === h.hex : x.gitSha1 === h.hex));
    if (!snap || !same) continue;
    const src = localPath(snap.dir, same.path);
    try {
      await fsp.link(src, final);
    } catch {
      try {
        await fsp.copyFile(src, final);
      } catch {
        continue;
      }
    }
    ctx.log(`${f.path}: reused from cached snapshot ${m.sha}`);
    return true;
  }
  return false;
}

async function ensureFile(ctx: Ctx, staging: string, f: RepoFile, sha: string): Promise<void> {
  checkCancel(ctx);
  ctx.currentFile = f.path;
  const final = localPath(staging, f.path);
  const partial = `${final}.partial`;
  const finished = () => {
    if (!ctx.progress) return;
    ctx.progress.done += f.size;
    ctx.progress.report(f.path, 0, f.size);
  };
  const have = sizeOf(final);
  if (have === f.size) return finished(); // verified before it was renamed
  if (have >= 0) await fsp.rm(final, { force: true });
  await fsp.mkdir(path.dirname(final), { recursive: true });
  if (await reuseFromOtherSnapshot(ctx, f, final, sha)) return finished();
  let attempt = 0;
  let restarted = false;
  for (;;) {
    try {
      await fetchInto(ctx, f, partial, sha);
      break;
    } catch (e) {
      if (e instanceof HashMismatch && !restarted) {
        ctx.log(`${f.path}: the resumed file did not verify; downloading it again from the start`);
        restarted = true;
        continue;
      }
      const code = ctx.signal?.aborted ? null : networkErrorCode(e);
      if (code && attempt < ctx.retries) {
        attempt++;
        ctx.log(`${f.path}: ${code}; resuming (attempt ${attempt} of ${ctx.retries})`);
        await sleep(400 * attempt, ctx.signal);
        checkCancel(ctx);
        continue;
      }
      throw e;
    }
  }
  await fsp.rename(partial, final);
  ctx.fetched++;
  finished();
}

const resolvedUrls = new WeakMap<Ctx, Map<string, string>>();

/** The download URL of a file (via the library's fileDownloadInfo: it follows the Hub's redirects). */
async function fileUrl(ctx: Ctx, f: RepoFile, sha: string): Promise<string> {
  let urls = resolvedUrls.get(ctx);
  if (!urls) resolvedUrls.set(ctx, (urls = new Map()));
  const known = urls.get(f.path);
  if (known) return known;
  const plain = `${ctx.endpoint}/${ctx.repo}/resolve/${sha}/${f.path.split('/').map(encodeURIComponent).join('/')}`;
  let url = plain;
  try {
    const info = await fileDownloadInfo({
      repo: ctx.repo,
      path: f.path,
      revision: sha,
      hubUrl: ctx.endpoint,
      fetch: ctx.hubFetch,
      ...credentials(ctx),
    });
    if (!info) throw new HttpStatusError({ status: 404, errorCode: 'EntryNotFound' }, f.path);
    if (info.size !== f.size) ctx.log(`${f.path}: the listing says ${f.size} bytes, the file server ${info.size}`);
    url = info.url || plain;
  } catch (e) {
    if (!(e instanceof InvalidApiResponseFormatError)) throw e;
    ctx.log(`${f.path}: ${e.message}; downloading from ${plain}`);
  }
  urls.set(f.path, url);
  return url;
}

interface OpenBody {
  res: Response;
  ctl: AbortController;
  touch: () => void;
  done: () => void;
}

/** GET with Range, following redirects by hand so that the token never leaves the Hub's origin. */
async function openBody(ctx: Ctx, url: string, start: number): Promise<OpenBody> {
  const ctl = new AbortController();
  const unlink = linkAbort(ctx.signal, ctl);
  const timer = setTimeout(() => ctl.abort(new StallError(ctx.timeoutMs)), ctx.timeoutMs);
  timer.unref();
  const done = () => {
    clearTimeout(timer);
    unlink();
  };
  try {
    let current = url;
    let auth = !!ctx.token && sameOrigin(url, ctx.endpoint);
    for (let hop = 0; ; hop++) {
      const headers: Record<string, string> = { 'Accept-Encoding': 'identity' };
      if (start > 0) headers.Range = `bytes=${start}-`;
      if (auth && ctx.token) headers.Authorization = `Bearer ${ctx.token}`;
      ctx.log(`GET ${current}${start > 0 ? ` (Range from byte ${start})` : ''}`);
      const res = await ctx.baseFetch(current, { headers, redirect: 'manual', signal: ctl.signal });
      const location = res.status >= 300 && res.status < 400 ? res.headers.get('location') : null;
      if (!location) return { res, ctl, touch: () => timer.refresh(), done };
      await res.body?.cancel().catch(() => undefined);
      if (hop >= 8) throw new EngineError('DOWNLOAD', `Too many redirects while downloading ${ctx.currentFile ?? ctx.repo}.`);
      const next = new URL(location, current).href;
      if (!sameOrigin(next, current)) auth = false;
      current = next;
      timer.refresh();
    }
  } catch (e) {
    done();
    if (ctl.signal.reason instanceof StallError && !ctx.signal?.aborted) throw ctl.signal.reason;
    throw e;
  }
}

/** Downloads (or continues) one file into `partial`, then checks its size and hash. */
async function fetchInto(ctx: Ctx, f: RepoFile, partial: string, sha: string): Promise<void> {
  const expected = expectedHash(f);
  let start = Math.max(0, sizeOf(partial));
  if (start > f.size) start = 0;
  const resumedFrom = start;
  let hasher = makeHasher(expected, f.size);
  if (start > 0 && hasher) await hashExisting(partial, hasher, start);
  const progress = ctx.progress;
  if (f.size === 0) {
    await fsp.writeFile(partial, new Uint8Array(0));
  } else if (start < f.size) {
    const url = await fileUrl(ctx, f, sha);
    let body = await openBody(ctx, url, start);
    try {
      if (body.res.status === 416 && start > 0) {
        // The server refuses the range (the partial file is stale): start over.
        body.done();
        await body.res.body?.cancel().catch(() => undefined);
        start = 0;
        hasher = makeHasher(expected, f.size);
        body = await openBody(ctx, url, 0);
      }
      const { res } = body;
      if (start > 0 && res.status === 206) {
        const range = /^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '');
        if (!range || Number(range[1]) !== start) {
          throw new EngineError(
            'DOWNLOAD',
            `The server answered a resume of ${f.path} with the wrong byte range; remove the partial download and try again.`,
          );
        }
      } else if (res.status === 200) {
        if (start > 0) ctx.log(`${f.path}: the server ignored the Range request; downloading the file from the start`);
        start = 0;
        hasher = makeHasher(expected, f.size);
      } else {
        await res.body?.cancel().catch(() => undefined);
        throw new HttpStatusError(
          { status: res.status, errorCode: res.headers.get('x-error-code'), serverMessage: res.headers.get('x-error-message') },
          f.path,
        );
      }
      if (!res.body) throw new ShortBodyError(`no body for ${f.path}`);
      const fh = await fsp.open(partial, start > 0 ? 'r+' : 'w');
      let pos = start;
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          body.touch();
          if (pos + chunk.length > f.size) {
            throw new EngineError('DOWNLOAD', `${f.path} is larger than the ${f.size} bytes the Hub announced; try again later.`);
          }
          await fh.write(chunk, 0, chunk.length, pos);
          pos += chunk.length;
          hasher?.update(chunk);
          ctx.downloaded += chunk.length;
          if (progress) {
            progress.net += chunk.length;
            progress.report(f.path, pos, f.size);
          }
        }
      } catch (e) {
        if (body.ctl.signal.reason instanceof StallError && !ctx.signal?.aborted) throw body.ctl.signal.reason;
        throw e;
      } finally {
        await fh.close();
      }
      if (pos < f.size) throw new ShortBodyError(`${f.path} ended after ${pos} of ${f.size} bytes`);
    } finally {
      body.done();
    }
  }
  const size = sizeOf(partial);
  if (size !== f.size) {
    await fsp.rm(partial, { force: true });
    throw new EngineError('DOWNLOAD', `${f.path} of ${ctx.repo} has ${size} bytes instead of ${f.size}; it was deleted. Try again.`);
  }
  if (hasher && expected) {
    const got = hasher.digest('hex');
    if (got !== expected.hex) {
      await fsp.rm(partial, { force: true });
      if (resumedFrom > 0) throw new HashMismatch(f.path);
      throw new EngineError(
        'DOWNLOAD',
        `${f.path} of ${ctx.repo} does not match the Hub's checksum (${expected.algo} ${expected.hex.slice(0, 12)}…, got ${got.slice(0, 12)}…). ` +
          'The damaged file was deleted; try again (a proxy may be altering downloads).',
      );
    }
  }
}

/** Makes the staging folder the snapshot: manifest first (inside), then one rename. */
function publish(ctx: Ctx, staging: string, sha: string, manifest: SnapshotManifest): string {
  const marker = path.join(staging, COMPLETE_MARKER);
  fs.writeFileSync(`${marker}.tmp`, JSON.stringify(manifest, null, 1));
  fs.renameSync(`${marker}.tmp`, marker);
  const target = snapshotDir(ctx.cacheDir, ctx.repo, sha);
  fs.mkdirSync(path.dirname(target), { recursive: true });
  try {
    fs.renameSync(staging, target);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (!['ENOTEMPTY', 'EEXIST', 'EPERM', 'EACCES', 'EBUSY'].includes(code ?? '')) throw e;
    if (completeSnapshot(ctx.cacheDir, ctx.repo, sha)) {
      fs.rmSync(staging, { recursive: true, force: true }); // another process finished it first
      return target;
    }
    // The folder exists without our marker (left by another tool): move the files in, marker last.
    for (const f of manifest.files) {
      const dst = localPath(target, f.path);
      fs.mkdirSync(path.dirname(dst), { recursive: true });
      fs.rmSync(dst, { force: true });
      fs.renameSync(localPath(staging, f.path), dst);
    }
    fs.renameSync(marker, path.join(target, COMPLETE_MARKER));
    fs.rmSync(staging, { recursive: true, force: true });
  }
  try {
    fs.rmdirSync(path.dirname(staging)); // incomplete/ when empty
  } catch {
    /* other downloads in progress */
  }
  return target;
}

// ---- errors ----------------------------------------------------------------------------------

function classify(e: unknown, ctx: Ctx): EngineError {
  if (ctx.signal?.aborted) return cancelled(ctx.repo);
  if (e instanceof EngineError) return e;
  const hc = { repo: ctx.repo, revision: ctx.revision, endpoint: ctx.endpoint, hasToken: !!ctx.token };
  if (e instanceof HttpStatusError) return httpError({ ...hc, file: e.file }, e.failure);
  if (e instanceof HubApiError) {
    const rec = ctx.lastHttp && ctx.lastHttp.status === e.statusCode ? ctx.lastHttp : null;
    const data = e.data as { error?: unknown } | undefined;
    return httpError(ctx.currentFile ? { ...hc, file: ctx.currentFile } : hc, {
      status: e.statusCode,
      errorCode: rec?.errorCode ?? null,
      serverMessage: rec?.serverMessage ?? (typeof data?.error === 'string' ? data.error : null),
    });
  }
  if (e instanceof InvalidApiResponseFormatError) {
    return new EngineError(
      'DOWNLOAD',
      `The Hub at ${ctx.endpoint} sent an unexpected response while downloading ${ctx.repo}: ${e.message}.`,
    );
  }
  const net = networkErrorCode(e);
  if (net) {
    const p = ctx.progress;
    const kept = p ? p.bytesNow : 0;
    return interruptedError(ctx.repo, ctx.currentFile ?? 'the file list', net, kept, p ? p.total : 0, ctx.endpoint);
  }
  const fe = fsError(e, ctx.cacheDir, ctx.repo, ctx.remaining);
  if (fe) return fe;
  const msg = e instanceof Error ? e.message : String(e);
  return new EngineError('DOWNLOAD', `Downloading ${ctx.repo} failed: ${msg.slice(0, 300)}`);
}

/** Where downloads go by default outside VS Code (the host passes its global storage instead). */
export function defaultCacheDir(): string {
  return path.join(os.homedir(), '.cache', 'transformer-dynamics', 'hub');
}

export { repoDir };
