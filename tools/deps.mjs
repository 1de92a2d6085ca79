#!/usr/bin/env node
// Installs the npm dependencies when they are missing or not the locked versions (a fresh clone,
// a pull that changed package-lock.json): `npm ci`, with onnxruntime-node's optional GPU binary
// download skipped. `npm test` runs it first (its pretest) and so does `npm run demo`, so either
// works as the first command in a fresh clone. Quiet and instant when everything is in place.
//   node tools/deps.mjs          install if needed
//   node tools/deps.mjs --check  only report (exit 1 when an install is needed)
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Environment for npm: no GPU binary download, no funding or audit chatter. */
export const NPM_ENV = { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip', npm_config_fund: 'false', npm_config_audit: 'false' };

/** The direct dependencies that are not installed at their locked version, as "name (why)". */
export function staleDependencies(root = ROOT) {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8'));
  const out = [];
  for (const name of Object.keys({ ...pkg.dependencies, ...pkg.devDependencies })) {
    const installed = join(root, 'node_modules', name, 'package.json');
    const locked = lock.packages?.[`node_modules/${name}`]?.version;
    if (!existsSync(installed)) out.push(`${name} (missing)`);
    else if (locked && JSON.parse(readFileSync(installed, 'utf8')).version !== locked) out.push(`${name} (not ${locked})`);
  }
  return out;
}

/** Runs `npm ci` when a dependency is missing or stale; exits the process when npm fails. */
export function ensureDependencies(root = ROOT) {
  const stale = staleDependencies(root);
  if (stale.length === 0) return false;
  const shown = stale.slice(0, 5).join(', ') + (stale.length > 5 ? `, … (${stale.length} in all)` : '');
  console.log(`\n\x1b[1m▶ Installing dependencies (npm ci): ${shown}\x1b[0m`);
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const r = spawnSync(npm, ['ci'], { cwd: root, stdio: 'inherit', env: NPM_ENV, shell: process.platform === 'win32' });
  if (r.status !== 0) {
    console.error(`\n✖ npm ci failed (exit ${r.status ?? r.signal}). It needs the npm registry; see the README's Quick start.`);
    process.exit(1);
  }
  return true;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--check')) {
    const stale = staleDependencies();
    if (stale.length) console.log(`needs npm ci: ${stale.join(', ')}`);
    process.exit(stale.length ? 1 : 0);
  }
  ensureDependencies();
}
