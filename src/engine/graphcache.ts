// Built graphs cached on disk: forward.onnx and lens.onnx with their weights in one external
// data file, written once per model (and per version of this code) and reused by the next
// load. This is also how graphs beyond protobuf's 2 GB limit are stored.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ExternalRef, WeightSink } from './onnx/builder';

export const WEIGHTS_FILE = 'weights.bin';
const PAGE = 4096;

/** Appends initializers to one file; the same array (e.g. tied W_E = W_U) is written once. */
export class ExternalWeightFile implements WeightSink {
  private fd: number;
  private offset = 0;
  private readonly seen = new WeakMap<object, ExternalRef>();
  bytesWritten = 0;

  constructor(readonly filePath: string) {
    this.fd = fs.openSync(filePath, 'w');
  }

  place(_name: string, bytes: Uint8Array, owner: object): ExternalRef {
    const hit = this.seen.get(owner);
    if (hit) return hit;
    // page-aligned large tensors can be memory-mapped by onnxruntime
    const align = bytes.byteLength >= 64 * 1024 ? PAGE : 64;
    const pad = (align - (this.offset % align)) % align;
    if (pad) fs.writeSync(this.fd, new Uint8Array(pad), 0, pad, this.offset);
    this.offset += pad;
    let done = 0;
    while (done < bytes.byteLength) done += fs.writeSync(this.fd, bytes, done, bytes.byteLength - done, this.offset + done);
    const ref: ExternalRef = { location: path.basename(this.filePath), offset: this.offset, length: bytes.byteLength };
    this.offset += bytes.byteLength;
    this.bytesWritten += bytes.byteLength;
    this.seen.set(owner, ref);
    return ref;
  }

  close(): void {
    if (this.fd >= 0) {
      fs.fsyncSync(this.fd);
      fs.closeSync(this.fd);
      this.fd = -1;
    }
  }

  /** Closes the file without making it durable (the entry is being thrown away). */
  discard(): void {
    if (this.fd >= 0) {
      fs.closeSync(this.fd);
      this.fd = -1;
    }
  }
}

let codeHash: string | null = null;

/** A fingerprint of the graph-building code, so a new version never reuses an old graph. */
function builderFingerprint(): string {
  if (codeHash) return codeHash;
  const h = createHash('sha256');
  for (const f of [
    __filename,
    ...[
      'graph/forward.js',
      'graph/lens.js',
      'graph/interventions.js',
      'graph/suffix.js',
      'onnx/builder.js',
      'onnx/branch.js',
      'arch/weights.js',
      'arch/decoder-weights.js',
      'arch/linear.js',
      'arch/spec.js',
      'arch/families.js',
      'arch/readers.js',
      'arch/rope.js',
      'arch/config.js',
    ].map((p) => path.join(__dirname, p)),
  ]) {
    try {
      h.update(fs.readFileSync(f));
    } catch {
      /* bundled: __filename holds everything */
    }
  }
  codeHash = h.digest('hex').slice(0, 16);
  return codeHash;
}

/** Cache key for a model folder: its config, the weight files' sizes and times, the options and the code. */
export function cacheKey(dir: string, weightFiles: string[], options: Record<string, unknown>): string {
  const h = createHash('sha256');
  h.update(builderFingerprint());
  h.update(fs.realpathSync(dir));
  h.update(fs.readFileSync(path.join(dir, 'config.json')));
  for (const f of weightFiles) {
    const st = fs.statSync(f);
    h.update(`${path.basename(f)}:${st.size}:${st.mtimeMs}`);
  }
  h.update(JSON.stringify(options));
  return h.digest('hex').slice(0, 32);
}

export interface CachedGraphPaths {
  dir: string;
  forward: string;
  lens: string;
  /** The suffix graph for activation patching (graph/suffix.ts). */
  suffix: string;
  meta: string;
  norms: string;
}

export function cachePaths(dir: string): CachedGraphPaths {
  return {
    dir,
    forward: path.join(dir, 'forward.onnx'),
    lens: path.join(dir, 'lens.onnx'),
    suffix: path.join(dir, 'suffix.onnx'),
    meta: path.join(dir, 'meta.json'),
    norms: path.join(dir, 'norms.bin'),
  };
}

/** A complete cache entry for `key`, or null. */
export function findCached(cacheDir: string, key: string): CachedGraphPaths | null {
  const dir = path.join(cacheDir, key);
  return fs.existsSync(path.join(dir, 'complete')) ? cachePaths(dir) : null;
}

/** Creates a temporary entry folder; `commit` renames it into place atomically. */
export function beginEntry(cacheDir: string, key: string): { paths: CachedGraphPaths; commit(): CachedGraphPaths; abort(): void } {
  fs.mkdirSync(cacheDir, { recursive: true });
  const tmp = path.join(cacheDir, `${key}.tmp-${process.pid}-${Date.now()}`);
  fs.mkdirSync(tmp);
  const paths = cachePaths(tmp);
  return {
    paths,
    commit() {
      fs.writeFileSync(path.join(tmp, 'complete'), '');
      const final = path.join(cacheDir, key);
      try {
        fs.renameSync(tmp, final);
      } catch {
        // another process committed the same entry first: use theirs
        fs.rmSync(tmp, { recursive: true, force: true });
      }
      return cachePaths(final);
    },
    abort() {
      fs.rmSync(tmp, { recursive: true, force: true });
    },
  };
}

/** Removes entries other than `keep` that belong to no recent use (simple size control). */
export function pruneCache(cacheDir: string, keepNewest = 4): void {
  if (!fs.existsSync(cacheDir)) return;
  const entries = fs
    .readdirSync(cacheDir)
    .map((name) => ({ name, p: path.join(cacheDir, name) }))
    .filter((e) => fs.statSync(e.p).isDirectory())
    .map((e) => ({ ...e, t: fs.statSync(e.p).mtimeMs }))
    .sort((a, b) => b.t - a.t);
  for (const e of entries.slice(keepNewest)) fs.rmSync(e.p, { recursive: true, force: true });
}
