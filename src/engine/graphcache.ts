// Built graphs cached on disk: forward.onnx and lens.onnx with their weights in one external
// data file, written once per model (and per version of this code) and reused by the next
// load. This is also how graphs beyond protobuf's 2 GB limit are stored. The cache is bounded
// by bytes, not by a count of models: a 1.2 B model's conversion takes 20 s and its graph
// 5 GB, a small model's 1 s and 30 MB. Past the limit the entries used longest ago go.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ExternalRef, WeightSink } from './onnx/builder';

export const WEIGHTS_FILE = 'weights.bin';
const PAGE = 4096;
/** A marker in a complete entry, touched on every use: its mtime is the entry's last use. */
const COMPLETE = 'complete';

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

  /** Where `owner`'s bytes were written, or null when they were not. */
  refOf(owner: object): ExternalRef | null {
    return this.seen.get(owner) ?? null;
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
      'graph/attnstats.js',
      'graph/lens.js',
      'graph/walkstats.js',
      'graph/gates.js',
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
  return fs.existsSync(path.join(dir, COMPLETE)) ? cachePaths(dir) : null;
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
      fs.writeFileSync(path.join(tmp, COMPLETE), '');
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

// ---- size control: the cache is bounded by bytes and keeps what was used last -------------

/** Above this the automatic limit never goes, whatever the free disk space. */
export const DEFAULT_LIMIT_BYTES = 20e9;
/** `<key>.tmp-<pid>-<ms>`: an entry being written by process `pid`. */
const TMP_ENTRY = /^[0-9a-f]+\.tmp-(\d+)-\d+$/;

export interface CacheEntry {
  key: string;
  /** The entry's folder. */
  path: string;
  /** The model folder the graphs were built from (meta.json), or null when unreadable. */
  model: string | null;
  /** Bytes of every file in the entry. */
  bytes: number;
  /** Last load through this entry (ms since the epoch). */
  lastUsed: number;
}

/** Records a use of an entry (a load read or wrote it), for the least-recently-used order. */
export function markUsed(entryDir: string): void {
  const now = new Date();
  fs.utimesSync(path.join(entryDir, COMPLETE), now, now);
}

function folderBytes(dir: string): number {
  let n = 0;
  for (const f of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, f.name);
    n += f.isDirectory() ? folderBytes(p) : fs.statSync(p).size;
  }
  return n;
}

function readModel(entryDir: string): string | null {
  try {
    const m = (JSON.parse(fs.readFileSync(path.join(entryDir, 'meta.json'), 'utf8')) as { model?: unknown }).model;
    return typeof m === 'string' ? m : null;
  } catch {
    return null;
  }
}

/** The complete entries of a cache folder (none when it does not exist). */
export function listCache(cacheDir: string): CacheEntry[] {
  if (!fs.existsSync(cacheDir)) return [];
  const out: CacheEntry[] = [];
  for (const d of fs.readdirSync(cacheDir, { withFileTypes: true })) {
    const p = path.join(cacheDir, d.name);
    if (!d.isDirectory() || TMP_ENTRY.test(d.name)) continue;
    try {
      const marker = fs.statSync(path.join(p, COMPLETE));
      out.push({ key: d.name, path: p, model: readModel(p), bytes: folderBytes(p), lastUsed: marker.mtimeMs });
    } catch {
      /* not complete (or removed meanwhile): not an entry */
    }
  }
  return out;
}

/**
 * The automatic limit: the smaller of 20 GB and a quarter of the disk space the cache could
 * use (free space plus what it holds already, so the limit does not shrink as the cache fills).
 */
export function defaultLimitBytes(freeBytes: number, cacheBytes: number): number {
  return Math.min(DEFAULT_LIMIT_BYTES, Math.floor((freeBytes + cacheBytes) / 4));
}

/** Free bytes on the disk holding `dir` (its nearest existing ancestor); Infinity when unknown. */
export function freeDiskBytes(dir: string): number {
  let d = path.resolve(dir);
  while (!fs.existsSync(d) && path.dirname(d) !== d) d = path.dirname(d);
  try {
    const st = fs.statfsSync(d);
    return st.bavail * st.bsize;
  } catch {
    return Infinity;
  }
}

/**
 * Which entries go so that the rest fits in `maxBytes`: the least recently used first, never
 * one in `keep` (the graph being loaded stays even when it alone is over the limit).
 */
export function evictionPlan(entries: readonly CacheEntry[], maxBytes: number, keep: ReadonlySet<string> = new Set()): CacheEntry[] {
  let total = entries.reduce((s, e) => s + e.bytes, 0);
  const out: CacheEntry[] = [];
  for (const e of [...entries].sort((a, b) => a.lastUsed - b.lastUsed)) {
    if (total <= maxBytes) break;
    if (keep.has(e.key)) continue;
    out.push(e);
    total -= e.bytes;
  }
  return out;
}

export interface PruneOptions {
  /** The limit in bytes; undefined or 0: the automatic one (defaultLimitBytes). */
  maxBytes?: number;
  /** Keys never removed (the entry just loaded). */
  keep?: readonly string[];
}

export interface Removed {
  /** Entries removed and the bytes they held. */
  entries: number;
  freedBytes: number;
  /** Entries that could not be removed (a file in use on Windows, permissions). */
  failed: number;
}

function removeEntries(entries: readonly CacheEntry[]): Removed {
  const r: Removed = { entries: 0, freedBytes: 0, failed: 0 };
  for (const e of entries) {
    try {
      // the marker first: a half-removed entry is never taken for a complete one
      fs.rmSync(path.join(e.path, COMPLETE), { force: true });
      fs.rmSync(e.path, { recursive: true, force: true });
      r.entries++;
      r.freedBytes += e.bytes;
    } catch {
      r.failed++;
    }
  }
  return r;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes the half-written entries of processes that no longer run (a crash, a kill). */
function removeOrphans(cacheDir: string): Removed {
  const r: Removed = { entries: 0, freedBytes: 0, failed: 0 };
  if (!fs.existsSync(cacheDir)) return r;
  for (const name of fs.readdirSync(cacheDir)) {
    const m = TMP_ENTRY.exec(name);
    if (!m || Number(m[1]) === process.pid || processAlive(Number(m[1]))) continue;
    const p = path.join(cacheDir, name);
    try {
      const bytes = folderBytes(p);
      fs.rmSync(p, { recursive: true, force: true });
      r.entries++;
      r.freedBytes += bytes;
    } catch {
      r.failed++;
    }
  }
  return r;
}

/**
 * Evicts the least recently used entries until the cache fits its limit. Never throws: size
 * control must not fail the load that calls it (a folder it cannot read counts as failed).
 */
export function pruneCache(cacheDir: string, opts: PruneOptions = {}): Removed {
  try {
    const orphans = removeOrphans(cacheDir);
    const entries = listCache(cacheDir);
    const max = limitBytes(cacheDir, opts.maxBytes, entries);
    const r = removeEntries(evictionPlan(entries, max, new Set(opts.keep ?? [])));
    return { entries: r.entries, freedBytes: r.freedBytes + orphans.freedBytes, failed: r.failed + orphans.failed };
  } catch {
    return { entries: 0, freedBytes: 0, failed: 1 };
  }
}

/** The limit in effect: `maxBytes` when set (> 0), else the automatic one for this disk. */
export function limitBytes(cacheDir: string, maxBytes: number | undefined, entries: readonly CacheEntry[] = listCache(cacheDir)): number {
  if (maxBytes !== undefined && maxBytes > 0) return maxBytes;
  return defaultLimitBytes(
    freeDiskBytes(cacheDir),
    entries.reduce((s, e) => s + e.bytes, 0),
  );
}

/** Removes every entry (and orphaned half-written ones): "Clear Graph Cache". */
export function clearCache(cacheDir: string): Removed {
  const orphans = removeOrphans(cacheDir);
  const r = removeEntries(listCache(cacheDir));
  return { entries: r.entries, freedBytes: r.freedBytes + orphans.freedBytes, failed: r.failed + orphans.failed };
}
