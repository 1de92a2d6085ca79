// Shared test helpers: repository paths and small numeric assertions.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { providerEnvironment, type ProviderEnvironment } from '../src/engine/runtime/ort';
import { generate } from '../src/engine/generate';
import type { LoadedModel } from '../src/engine/model';
import type { Completion, Strategy } from '../src/shared/generation';

/** Repository root (tests run from out/test/...). */
export const ROOT = path.resolve(__dirname, '..', '..');
export const FIXTURES = path.join(ROOT, 'test', 'fixtures');
export const BUNDLED_MODEL = path.join(ROOT, 'media', 'models', 'td-mini');
/** llama2.c's stories260K and its tokenizer (test/fixtures/stories260K/SOURCE.md). */
export const STORIES260K = {
  bin: path.join(FIXTURES, 'stories260K', 'stories260K.bin'),
  tokenizer: path.join(FIXTURES, 'stories260K', 'tok512.bin'),
};

const madeDirs: string[] = [];

/**
 * A new empty folder under the system's temp folder, removed when this test process exits
 * (test/run.mjs also gives each run its own TMPDIR and removes it, for what child processes leave).
 */
export function tmpDir(prefix = 'td-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  if (madeDirs.push(dir) === 1)
    process.on('exit', () => {
      for (const d of madeDirs) fs.rmSync(d, { recursive: true, force: true });
    });
  return dir;
}

export function readJson<T = Record<string, unknown>>(file: string): T {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
}

/** max |a - b| over two equally long arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, `length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): number {
  const d = maxAbsDiff(actual, expected);
  assert.ok(d <= tol, `${what}: max abs diff ${d.toExponential(3)} > ${tol}`);
  return d;
}

/** Flattens nested number arrays. */
export function flat(x: unknown): number[] {
  const out: number[] = [];
  const walk = (v: unknown) => {
    if (Array.isArray(v)) v.forEach(walk);
    else out.push(v as number);
  };
  walk(x);
  return out;
}

/**
 * Runs f with the environment variable `name` set to `value` (undefined: unset), and puts the
 * old value back when f returns or, for a promise, when it settles.
 */
export function withEnv<T>(name: string, value: string | undefined, f: () => T): T {
  const set = (v: string | undefined) => {
    if (v === undefined) delete process.env[name];
    else process.env[name] = v;
  };
  const before = process.env[name];
  set(value);
  let result: T;
  try {
    result = f();
  } catch (e) {
    set(before);
    throw e;
  }
  if (result instanceof Promise) return result.finally(() => set(before)) as T;
  set(before);
  return result;
}

/** Rejects with an error whose message matches. */
export async function rejectsWith(p: Promise<unknown> | (() => unknown), code: string, re: RegExp): Promise<void> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    const err = e as { code?: string; message: string };
    assert.equal(err.code, code, `expected code ${code}, got ${err.code}: ${err.message}`);
    assert.match(err.message, re);
    return;
  }
  assert.fail(`expected an error ${code} matching ${re}`);
}

/**
 * This machine's provider environment claiming CUDA is installed with a GPU, so a session really
 * tries CUDA and onnxruntime fails to start it; null where CUDA does work (the claim would be true).
 */
export function failingCudaEnvironment(): ProviderEnvironment | null {
  const real = providerEnvironment();
  if (real.cudaLibrary && real.nvidiaGpu) return null;
  return { ...real, backends: [...real.backends, { name: 'cuda', bundled: false }], cudaLibrary: true, nvidiaGpu: true };
}

/**
 * Greedy and a beam of 3 from `promptIds` on two models give the same tokens (and, given
 * `probTol`, probabilities that close); returns the first model's two completions.
 */
export async function sameGreedyAndBeam(
  a: LoadedModel,
  b: LoadedModel,
  promptIds: number[],
  maxNewTokens: number,
  probTol?: number,
): Promise<Completion[]> {
  const out: Completion[] = [];
  for (const strategy of [
    { label: 'greedy', kind: 'greedy' },
    { label: 'beam 3', kind: 'beam', beams: 3 },
  ] as Strategy[]) {
    const req = { promptIds, strategy, maxNewTokens };
    const x = await generate(a, req);
    const y = await generate(b, req);
    assert.deepEqual(
      x.steps.map((s) => s.id),
      y.steps.map((s) => s.id),
      strategy.label,
    );
    if (probTol !== undefined)
      x.steps.forEach((s, i) => assert.ok(Math.abs(s.prob - y.steps[i]!.prob) < probTol, `${strategy.label} step ${i}`));
    out.push(x);
  }
  return out;
}
