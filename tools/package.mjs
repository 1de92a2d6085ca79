#!/usr/bin/env node
// Builds platform-specific VSIX files: each holds dist/, media/ and only that platform's
// onnxruntime-node binary. Usage: node tools/package.mjs [--target linux-x64 ...|--all]
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, statSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { arch, platform, tmpdir } from 'node:os';

const TARGETS = {
  'linux-x64': 'linux/x64',
  'linux-arm64': 'linux/arm64',
  'darwin-arm64': 'darwin/arm64',
  'win32-x64': 'win32/x64',
  'win32-arm64': 'win32/arm64',
};

const args = process.argv.slice(2);
let targets = [];
if (args.includes('--all')) targets = Object.keys(TARGETS);
for (let i = 0; i < args.length; i++) if (args[i] === '--target') targets.push(args[++i]);
if (targets.length === 0) targets = [`${platform()}-${arch()}`];
for (const t of targets) if (!TARGETS[t]) throw new Error(`unknown target ${t}; known: ${Object.keys(TARGETS).join(', ')}`);

// vsce runs the `vscode:prepublish` script (a production build) before packaging.
const base = readFileSync('.vscodeignore', 'utf8');
const version = JSON.parse(readFileSync('package.json', 'utf8')).version;
mkdirSync('dist-vsix', { recursive: true });
for (const t of targets) {
  const ignore = base.replace(
    'node_modules/onnxruntime-node/bin/napi-v6/linux/x64/**',
    `node_modules/onnxruntime-node/bin/napi-v6/${TARGETS[t]}/**`,
  );
  const ignoreFile = join(tmpdir(), `td-vscodeignore-${t}`);
  writeFileSync(ignoreFile, ignore);
  const out = join('dist-vsix', `transformer-dynamics-${t}-${version}.vsix`);
  const r = spawnSync(
    'npx',
    ['vsce', 'package', '--target', t, '--out', out, '--ignoreFile', ignoreFile, '--allow-missing-repository', '--skip-license'],
    {
      stdio: 'inherit',
      env: { ...process.env, npm_config_yes: 'true' },
    },
  );
  rmSync(ignoreFile, { force: true });
  if (r.status !== 0) process.exit(r.status ?? 1);
  console.log(`packaged ${out} (${(statSync(out).size / 1e6).toFixed(1)} MB)`);
}
