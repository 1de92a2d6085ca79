#!/usr/bin/env node
// `npm run test:vscode`: the @vscode/test-electron suite. It needs to download a desktop VS
// Code; offline (as in this project's CI) it skips with a clear message — the code-server
// e2e (`npm run test:e2e`) runs the same scenarios in a real VS Code there.
/* global AbortController */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

async function online() {
  try {
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(), 4000);
    const r = await fetch('https://update.code.visualstudio.com/api/releases/stable', { signal: ctl.signal, method: 'HEAD' });
    return r.ok || r.status < 500;
  } catch {
    return false;
  }
}

if (!existsSync('.vscode-test') && !(await online())) {
  console.log(
    'test:vscode skipped: VS Code cannot be downloaded here (offline). The code-server end-to-end tests (npm run test:e2e) cover these scenarios in a real VS Code.',
  );
  process.exit(0);
}
const steps = [
  ['node', ['esbuild.mjs']],
  ['npx', ['tsc', '-p', 'test/vscode/tsconfig.json']],
  ['npx', ['vscode-test']],
];
for (const [cmd, args] of steps) {
  const r = spawnSync(cmd, args, { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
