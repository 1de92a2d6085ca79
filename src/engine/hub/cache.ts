// The on-disk cache of downloaded Hub models. Layout (close to huggingface_hub's):
//
//   {cacheDir}/models--{owner}--{name}/
//     snapshots/{sha}/            one COMPLETE model folder per resolved commit; it holds
//       .complete                 the manifest (JSON), written last: no marker, not a snapshot
//       config.json, tokenizer.json, model.safetensors | model.safetensors.index.json + shards
//       onnx/model.onnx (+ onnx/model.onnx_data)          (ONNX-only repositories)
//     refs/{revision}             the sha a branch or tag resolved to at the last complete download
//     incomplete/{sha}/           the download in progress: files as *.partial until verified
//     incomplete/{sha}.lock       {pid, host} of the process downloading that snapshot
//
// A snapshot folder only appears (by renaming incomplete/{sha}) once every file is there and
// verified, so a half-written model is never returned, and a new revision never overwrites an
// older complete snapshot.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EngineError } from '../errors';

export const COMPLETE_MARKER = '.complete';

export type ModelLayout = 'safetensors' | 'onnx';

export interface ManifestFile {
  path: string;
  size: number;
  /** sha256 of the content (LFS files) or null. */
  sha256: string | null;
  /** git blob sha1 (small, non-LFS files) or null. */
  gitSha1: string | null;
}

export interface SnapshotManifest {
  format: 1;
  repo: string;
  /** The revision asked for when the snapshot was downloaded (branch, tag or sha). */
  revision: string;
  sha: string;
  layout: ModelLayout;
  files: ManifestFile[];
  bytes: number;
  completedAt: string;
}

export interface CachedModel {
  repo: string;
  /** Branches/tags (refs) currently pointing at this snapshot; the first one asked for otherwise. */
  revisions: string[];
  /** The revision recorded when it was downloaded. */
  revision: string;
  sha: string;
  layout: ModelLayout;
  /** Bytes of the model files. */
  size: number;
  /** The model folder (HF layout), usable with openCheckpoint. */
  path: string;
  completedAt: string;
}

const REPO_PART = /^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$/;
export const SHA_RE = /^[0-9a-f]{40}$/;

/** Checks a repo id ("owner/name", or a legacy "name"); throws DOWNLOAD with a hint otherwise. */
export function validateRepoId(repo: string): string {
  const r = repo.trim();
  const parts = r.split('/');
  const ok = parts.length >= 1 && parts.length <= 2 && parts.every((p) => REPO_PART.test(p) && !p.includes('..') && !p.endsWith('.'));
  if (!ok) {
    throw new EngineError(
      'DOWNLOAD',
      `"${r.slice(0, 100)}" is not a Hugging Face model id. Use the form "owner/name", for example "openai-community/gpt2".`,
    );
  }
  return r;
}

/** Accepts "owner/name", "owner/name@revision" or a huggingface.co URL (…/tree/{rev}). */
export function parseRepoInput(input: string): { repo: string; revision?: string } {
  let s = input.trim();
  const url = /^https?:\/\/[^/]+\/(?:models\/)?([^/?#]+\/[^/?#]+)(?:\/(?:tree|blob|resolve)\/([^/?#]+))?/.exec(s);
  if (url) return url[2] ? { repo: validateRepoId(url[1]!), revision: decodeURIComponent(url[2]) } : { repo: validateRepoId(url[1]!) };
  let revision: string | undefined;
  const at = s.lastIndexOf('@');
  if (at > 0) {
    revision = s.slice(at + 1);
    s = s.slice(0, at);
  }
  const repo = validateRepoId(s);
  if (revision !== undefined) validateRevision(revision);
  return revision ? { repo, revision } : { repo };
}

/** Branch/tag/sha names become paths under refs/: no traversal, no odd characters. */
export function validateRevision(revision: string): string {
  const ok =
    revision.length > 0 &&
    revision.length <= 200 &&
    /^[A-Za-z0-9._/-]+$/.test(revision) &&
    !revision.split('/').some((p) => p === '' || p === '.' || p === '..');
  if (!ok)
    throw new EngineError('DOWNLOAD', `"${revision.slice(0, 60)}" is not a valid revision (a branch, tag or commit sha such as "main").`);
  return revision;
}

export function repoFolderName(repo: string): string {
  return `models--${repo.split('/').join('--')}`;
}

export function repoDir(cacheDir: string, repo: string): string {
  return path.join(cacheDir, repoFolderName(repo));
}

export function snapshotDir(cacheDir: string, repo: string, sha: string): string {
  return path.join(repoDir(cacheDir, repo), 'snapshots', sha);
}

export function stagingDir(cacheDir: string, repo: string, sha: string): string {
  return path.join(repoDir(cacheDir, repo), 'incomplete', sha);
}

export function readManifest(dir: string): SnapshotManifest | null {
  try {
    const m = JSON.parse(fs.readFileSync(path.join(dir, COMPLETE_MARKER), 'utf8')) as Partial<SnapshotManifest>;
    if (m.format !== 1 || typeof m.repo !== 'string' || typeof m.sha !== 'string' || !Array.isArray(m.files)) return null;
    return m as SnapshotManifest;
  } catch {
    return null;
  }
}

/** The complete snapshot for a repo at a sha, or null. Checks that every manifest file is present. */
export function completeSnapshot(cacheDir: string, repo: string, sha: string): { dir: string; manifest: SnapshotManifest } | null {
  const dir = snapshotDir(cacheDir, repo, sha);
  const manifest = readManifest(dir);
  if (!manifest || manifest.sha !== sha) return null;
  for (const f of manifest.files) {
    try {
      if (fs.statSync(path.join(dir, f.path)).size !== f.size) return null;
    } catch {
      return null;
    }
  }
  return { dir, manifest };
}

export function readRef(cacheDir: string, repo: string, revision: string): string | null {
  if (SHA_RE.test(revision)) return revision;
  try {
    const sha = fs.readFileSync(path.join(repoDir(cacheDir, repo), 'refs', revision), 'utf8').trim();
    return SHA_RE.test(sha) ? sha : null;
  } catch {
    return null;
  }
}

export function writeRef(cacheDir: string, repo: string, revision: string, sha: string): void {
  if (SHA_RE.test(revision) && revision === sha) return;
  const file = path.join(repoDir(cacheDir, repo), 'refs', revision);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, sha);
  fs.renameSync(tmp, file);
}

function refsOf(dir: string): Map<string, string[]> {
  const bySha = new Map<string, string[]>();
  const walk = (d: string, prefix: string) => {
    let names: fs.Dirent[];
    try {
      names = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const n of names) {
      const p = path.join(d, n.name);
      const rev = prefix ? `${prefix}/${n.name}` : n.name;
      if (n.isDirectory()) walk(p, rev);
      else if (n.isFile()) {
        try {
          const sha = fs.readFileSync(p, 'utf8').trim();
          bySha.set(sha, [...(bySha.get(sha) ?? []), rev]);
        } catch {
          /* unreadable ref: ignore */
        }
      }
    }
  };
  walk(path.join(dir, 'refs'), '');
  return bySha;
}

/** Every complete snapshot in the cache, newest first. */
export function listCachedModels(cacheDir: string): CachedModel[] {
  const out: CachedModel[] = [];
  let repos: string[];
  try {
    repos = fs.readdirSync(cacheDir).filter((n) => n.startsWith('models--'));
  } catch {
    return [];
  }
  for (const r of repos) {
    const dir = path.join(cacheDir, r);
    const refs = refsOf(dir);
    let shas: string[];
    try {
      shas = fs.readdirSync(path.join(dir, 'snapshots'));
    } catch {
      continue;
    }
    for (const sha of shas) {
      const snap = path.join(dir, 'snapshots', sha);
      const m = readManifest(snap);
      if (!m || m.sha !== sha || repoFolderName(m.repo) !== r) continue;
      out.push({
        repo: m.repo,
        revisions: refs.get(sha) ?? [m.revision],
        revision: m.revision,
        sha,
        layout: m.layout,
        size: m.bytes,
        path: snap,
        completedAt: m.completedAt,
      });
    }
  }
  return out.sort((a, b) => b.completedAt.localeCompare(a.completedAt));
}

function dirBytes(p: string): number {
  let n = 0;
  let st: fs.Stats;
  try {
    st = fs.lstatSync(p);
  } catch {
    return 0;
  }
  if (st.isDirectory()) for (const c of fs.readdirSync(p)) n += dirBytes(path.join(p, c));
  else n += st.size;
  return n;
}

/**
 * Removes cached snapshots of a repo: one sha, or (sha omitted) the whole repo folder
 * including refs and partial downloads. Returns the bytes freed.
 */
export function removeCachedModel(cacheDir: string, repo: string, sha?: string): number {
  validateRepoId(repo);
  const dir = repoDir(cacheDir, repo);
  if (sha === undefined) {
    const n = dirBytes(dir);
    fs.rmSync(dir, { recursive: true, force: true });
    return n;
  }
  if (!SHA_RE.test(sha)) throw new EngineError('BAD_REQUEST', `"${sha.slice(0, 60)}" is not a commit sha.`);
  let n = 0;
  for (const p of [path.join(dir, 'snapshots', sha), path.join(dir, 'incomplete', sha), path.join(dir, 'incomplete', `${sha}.lock`)]) {
    n += dirBytes(p);
    fs.rmSync(p, { recursive: true, force: true });
  }
  // refs that pointed at the removed snapshot now point nowhere: drop them.
  for (const [refSha, revs] of refsOf(dir)) {
    if (refSha === sha) for (const rev of revs) fs.rmSync(path.join(dir, 'refs', rev), { force: true });
  }
  let left: string[] = [];
  try {
    left = fs.readdirSync(path.join(dir, 'snapshots'));
  } catch {
    /* none */
  }
  let partial: string[] = [];
  try {
    partial = fs.readdirSync(path.join(dir, 'incomplete'));
  } catch {
    /* none */
  }
  if (left.length === 0 && partial.length === 0) fs.rmSync(dir, { recursive: true, force: true });
  return n;
}

// ---- download lock -----------------------------------------------------------------------

const heldLocks = new Set<string>();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * One downloader per snapshot: a lock file with the owner's pid. A lock whose process is
 * gone (crash, killed window) is taken over. Returns the release function.
 */
export function acquireLock(lockFile: string, repo: string): () => void {
  if (heldLocks.has(lockFile)) {
    throw new EngineError('DOWNLOAD', `${repo} is already being downloaded; wait for that download to finish (or cancel it).`);
  }
  fs.mkdirSync(path.dirname(lockFile), { recursive: true });
  const me = JSON.stringify({ pid: process.pid, host: os.hostname(), at: new Date().toISOString() });
  try {
    fs.writeFileSync(lockFile, me, { flag: 'wx' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    let other: { pid?: unknown; host?: unknown } = {};
    try {
      other = JSON.parse(fs.readFileSync(lockFile, 'utf8')) as typeof other;
    } catch {
      /* unreadable lock: treat as stale */
    }
    const pid = typeof other.pid === 'number' ? other.pid : -1;
    if (pid > 0 && pid !== process.pid && other.host === os.hostname() && alive(pid)) {
      throw new EngineError(
        'DOWNLOAD',
        `${repo} is being downloaded by another process (pid ${pid}, perhaps another VS Code window). ` +
          'Wait for it to finish, then try again.',
      );
    }
    fs.writeFileSync(lockFile, me); // stale: take it over
  }
  heldLocks.add(lockFile);
  return () => {
    heldLocks.delete(lockFile);
    try {
      fs.rmSync(lockFile, { force: true });
    } catch {
      /* best effort */
    }
  };
}
