#!/usr/bin/env node
// The project's test command (`npm test`): unit + integration tests with node's test
// runner, then the real-client end-to-end tests in code-server + Chromium.
// Flags: --unit (only unit), --e2e (only e2e). Prints one closing summary line for CI.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const args = new Set(process.argv.slice(2));
const runUnit = !args.has('--e2e');
const runE2e = !args.has('--unit') && process.env.TD_SKIP_E2E !== '1';

function findTests(dir) {
  if (!existsSync(dir)) return [];
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...findTests(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

/** "1 min 12 s" / "23 s": how long a part took (the e2e suite's run time is watched: CI has 20 min in all). */
function elapsed(ms) {
  const s = Math.round(ms / 1000);
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

function nodeTest(files, label) {
  const t0 = Date.now();
  if (files.length === 0) {
    console.error(`${label}: no test files found (did the build run?)`);
    return { ok: false, summary: `${label}: no tests` };
  }
  const res = spawnSync(process.execPath, ['--test', '--test-reporter=spec', '--test-concurrency=1', ...files], {
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
  });
  process.stdout.write(res.stdout ?? '');
  const count = (k) => Number(new RegExp(`ℹ ${k} (\\d+)`).exec(res.stdout ?? '')?.[1] ?? NaN);
  return {
    ok: res.status === 0,
    summary: `${label}: ${count('tests')} tests, ${count('pass')} passed, ${count('fail')} failed, ${count('skipped')} skipped (${elapsed(Date.now() - t0)})`,
  };
}

// One temp folder per run, removed at the end: what the tests and the processes they start
// (the CLI, the engine worker, code-server, Chromium) write to the temp folder goes there, so
// repeated runs do not fill the machine's /tmp.
const runTmp = mkdtempSync(join(tmpdir(), 'td-tests-'));
process.env.TMPDIR = runTmp;
const results = [];
if (runUnit) {
  // the WebGPU tests run on SwiftShader: Debian's chromium ships its Vulkan driver, libvulkan1 the loader
  const setup = spawnSync('bash', ['tools/e2e/setup.sh', '--unit'], { stdio: 'inherit' });
  if (setup.status !== 0) results.push({ ok: false, summary: 'unit: setup failed (chromium, libvulkan1)' });
  else results.push(nodeTest(findTests('out/test/unit'), 'unit'));
}
if (runE2e) {
  const setup = spawnSync('bash', ['tools/e2e/setup.sh'], { stdio: 'inherit' });
  if (setup.status !== 0) results.push({ ok: false, summary: 'e2e: setup failed' });
  else results.push(nodeTest(findTests('out/test/e2e'), 'e2e'));
}
rmSync(runTmp, { recursive: true, force: true });
const ok = results.every((r) => r.ok);
console.log(`\nTEST SUMMARY: ${ok ? 'PASS' : 'FAIL'} — ${results.map((r) => r.summary).join('; ')}`);
process.exit(ok ? 0 : 1);
