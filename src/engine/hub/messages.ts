// The user-facing messages of Hub downloads: one specific, actionable EngineError per
// failure (HTTP status, network, file system). No message ever contains the access token.
import { EngineError } from '../errors';

/** Title of the extension command that stores a token (the host registers it). */
export const TOKEN_COMMAND = 'Transformer Dynamics: Set Hugging Face Token';

export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return '? B';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${v >= 100 || u === 0 ? Math.round(v) : v.toFixed(1)} ${units[u]}`;
}

export interface HttpContext {
  repo: string;
  revision: string;
  /** Hub base URL, for links in messages. */
  endpoint: string;
  hasToken: boolean;
  /** The file being fetched, when the failure concerns one file. */
  file?: string;
}

export interface HttpFailure {
  status: number;
  /** X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo, …). */
  errorCode?: string | null;
  /** X-Error-Message or the body's "error", shown only for unexpected statuses. */
  serverMessage?: string | null;
}

export function httpError(ctx: HttpContext, f: HttpFailure): EngineError {
  const { repo, endpoint } = ctx;
  const page = `${endpoint}/${repo}`;
  const tokenHint = `add an access token with the "${TOKEN_COMMAND}" command`;
  const code = f.errorCode ?? '';
  if (code === 'RevisionNotFound') {
    return new EngineError(
      'DOWNLOAD',
      `Revision "${ctx.revision}" does not exist in ${repo}. Use a branch, tag or commit listed on ${page} (the default is "main").`,
    );
  }
  if (code === 'EntryNotFound' || (f.status === 404 && ctx.file && code !== 'RepoNotFound')) {
    return new EngineError('DOWNLOAD', `${repo} lists ${ctx.file ?? 'a file'} but the Hub could not serve it (HTTP 404). Try again later.`);
  }
  if (code === 'RepoNotFound' || f.status === 404) {
    return new EngineError(
      'DOWNLOAD',
      ctx.hasToken
        ? `Hugging Face repository "${repo}" was not found, or your access token cannot see it. ` +
            'Check the name (for example "openai-community/gpt2"); for a private repository make sure the token belongs to an account with access.'
        : `Hugging Face repository "${repo}" was not found. Check the name (for example "openai-community/gpt2"); ` +
            `if it is a private repository, ${tokenHint}.`,
    );
  }
  if (f.status === 401 || f.status === 403 || code === 'GatedRepo') {
    if (!ctx.hasToken) {
      return new EngineError(
        'DOWNLOAD',
        `${repo} is gated or private, so downloading it needs a Hugging Face access token. ` +
          `Accept the licence on the model page (${page}), create a read token at ${endpoint}/settings/tokens, ` +
          `then ${tokenHint} and try again.`,
      );
    }
    return new EngineError(
      'DOWNLOAD',
      f.status === 401
        ? `The Hugging Face access token was rejected for ${repo} (HTTP 401: invalid or expired). ` +
            `Create a new read token at ${endpoint}/settings/tokens, replace the stored one with the "${TOKEN_COMMAND}" command, ` +
            `and make sure you accepted the licence on ${page}.`
        : `Your Hugging Face access token has no access to ${repo} (HTTP 403). Accept the licence (or request access) on ${page}; ` +
            `gated models may need approval. If you use a fine-grained token, give it read access to public gated repositories, ` +
            `or replace it with the "${TOKEN_COMMAND}" command.`,
    );
  }
  if (f.status === 429) {
    return new EngineError('DOWNLOAD', `The Hugging Face Hub is rate-limiting downloads (HTTP 429). Wait a few minutes and try again.`);
  }
  if (f.status >= 500) {
    return new EngineError(
      'DOWNLOAD',
      `The Hugging Face Hub had a server error (HTTP ${f.status}) while downloading ${repo}. Try again later; what was downloaded so far is kept.`,
    );
  }
  const extra = f.serverMessage ? `: ${f.serverMessage.replace(/\s+/g, ' ').slice(0, 200)}` : '';
  return new EngineError('DOWNLOAD', `Downloading ${repo}${ctx.file ? ` (${ctx.file})` : ''} failed with HTTP ${f.status}${extra}.`);
}

const NETWORK_CODES = new Set([
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'ENETUNREACH',
  'ENETDOWN',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'EPIPE',
  'CERT_HAS_EXPIRED',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
  'STALLED',
]);

/** Timeout of a request that received no bytes for too long. */
export class StallError extends Error {
  readonly code = 'STALLED';
  constructor(readonly ms: number) {
    super(`no data received for ${Math.round(ms / 1000)} s`);
  }
}

/** A body that ended before its announced size (treated like a dropped connection). */
export class ShortBodyError extends Error {
  readonly code = 'UND_ERR_SOCKET';
}

/** The network error code somewhere in an error's cause chain, or null when it is not a network failure. */
export function networkErrorCode(e: unknown, depth = 0): string | null {
  if (depth > 6 || typeof e !== 'object' || e === null) return null;
  const err = e as { code?: unknown; cause?: unknown; errors?: unknown; message?: unknown; name?: unknown };
  if (typeof err.code === 'string' && NETWORK_CODES.has(err.code)) return err.code;
  if (Array.isArray(err.errors)) {
    for (const x of err.errors) {
      const c = networkErrorCode(x, depth + 1);
      if (c) return c;
    }
  }
  const c = networkErrorCode(err.cause, depth + 1);
  if (c) return c;
  // undici: TypeError('fetch failed') / TypeError('terminated') without a known code
  if (err.name === 'TypeError' && (err.message === 'fetch failed' || err.message === 'terminated')) return 'NETWORK';
  return null;
}

export function describeNetworkCode(code: string): string {
  switch (code) {
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'the host name could not be resolved';
    case 'ECONNREFUSED':
      return 'the connection was refused';
    case 'ETIMEDOUT':
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
    case 'STALLED':
      return 'the connection timed out';
    case 'ENETUNREACH':
    case 'ENETDOWN':
    case 'EHOSTUNREACH':
    case 'EHOSTDOWN':
      return 'the network is unreachable';
    case 'CERT_HAS_EXPIRED':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
      return 'the TLS certificate could not be verified (a proxy intercepting HTTPS?)';
    default:
      return 'the connection failed';
  }
}

/** The Hub cannot be reached at all (before anything was downloaded). */
export function offlineError(
  ctx: { repo: string; revision: string; endpoint: string; cacheDir: string },
  code: string | null,
  cachedRevisions: string[],
): EngineError {
  const host = hostOf(ctx.endpoint);
  const why = code ? `${describeNetworkCode(code)} (${code})` : 'offline mode is on';
  const other =
    cachedRevisions.length > 0
      ? ` Cached revisions of ${ctx.repo}: ${cachedRevisions.slice(0, 5).join(', ')}; choose one of them to work offline.`
      : '';
  return new EngineError(
    'DOWNLOAD',
    `Cannot reach ${host}: ${why}. You appear to be offline, and there is no cached copy of ${ctx.repo} (${ctx.revision}) ` +
      `in ${ctx.cacheDir}.${other} Connect to the internet (check proxy settings) and try again.`,
  );
}

/** The connection broke during a file; what arrived is kept for the next try. */
export function interruptedError(repo: string, file: string, code: string, kept: number, total: number, endpoint: string): EngineError {
  return new EngineError(
    'DOWNLOAD',
    `The download of ${repo} was interrupted while fetching ${file} from ${hostOf(endpoint)}: ${describeNetworkCode(code)} (${code}). ` +
      `${formatBytes(kept)} of ${formatBytes(total)} are kept in the cache; run the download again to resume where it stopped.`,
  );
}

export function hostOf(endpoint: string): string {
  try {
    return new URL(endpoint).host;
  } catch {
    return endpoint;
  }
}

/** A file-system failure while writing the cache, or null when `e` is not one. */
export function fsError(e: unknown, cacheDir: string, repo: string, needBytes?: number): EngineError | null {
  const err = e as NodeJS.ErrnoException | null;
  if (!err || typeof err !== 'object' || typeof err.code !== 'string' || typeof err.syscall !== 'string') return null;
  switch (err.code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return new EngineError(
        'DOWNLOAD',
        `The disk holding the model cache (${cacheDir}) is full${err.code === 'EDQUOT' ? ' (disk quota exceeded)' : ''}` +
          `${needBytes ? `: ${repo} needs about ${formatBytes(needBytes)} more` : ''}. ` +
          'Free some space or choose another cache folder. The partial download is kept and resumes on the next try ' +
          '(or remove it from the list of cached models).',
      );
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new EngineError(
        'DOWNLOAD',
        `Cannot write to the model cache folder ${cacheDir} (${err.code === 'EROFS' ? 'read-only file system' : 'permission denied'}). ` +
          'Choose a writable cache folder, or fix the folder permissions.',
      );
    case 'ENOTDIR':
    case 'EEXIST':
    case 'EISDIR':
      return new EngineError(
        'DOWNLOAD',
        `Cannot use ${cacheDir} as the model cache folder: part of that path is a file, not a folder (${err.code}). Choose another cache folder.`,
      );
    case 'EMFILE':
    case 'ENFILE':
      return new EngineError('DOWNLOAD', `Too many open files while downloading ${repo} (${err.code}). Close some programs and try again.`);
    case 'ENAMETOOLONG':
      return new EngineError('DOWNLOAD', `The cache path ${cacheDir} is too long for this file system. Choose a shorter cache folder.`);
    default:
      return new EngineError(
        'DOWNLOAD',
        `Cannot write the model cache in ${cacheDir}: ${err.code} (${err.syscall}). Check the folder and try again.`,
      );
  }
}

/** Removes every occurrence of a secret from a string. */
export function redact(text: string, secret: string | undefined): string {
  if (!secret || secret.length < 4) return text;
  return text.split(secret).join('hf_***');
}
