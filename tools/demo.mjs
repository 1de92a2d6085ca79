#!/usr/bin/env node
// `npm run demo`: sets everything up and shows the extension on the bundled model.
//  1. installs dependencies when needed (npm ci) and builds;
//  2. runs the CLI on the sample document (prose + code) with the bundled model;
//  3. opens VS Code with the extension loaded and the sample open: your `code` when it is
//     installed (--extensionDevelopmentPath), otherwise code-server on 127.0.0.1 with the
//     packaged VSIX installed. Prints the URL and what to do next.
// Flags: --check (start everything, verify it answers, then exit), --port N, --no-code.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer } from 'node:net';
import { ensureDependencies, NPM_ENV } from './deps.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const check = args.includes('--check');
const env = NPM_ENV;

function step(msg) {
  console.log(`\n\x1b[1m▶ ${msg}\x1b[0m`);
}

function run(cmd, argv, opts = {}) {
  const r = spawnSync(cmd, argv, { cwd: root, stdio: 'inherit', env, ...opts });
  if (r.status !== 0) {
    console.error(`\n✖ ${cmd} ${argv.join(' ')} failed (exit ${r.status ?? r.signal}).`);
    process.exit(1);
  }
}

function hasCommand(c) {
  return spawnSync('sh', ['-c', `command -v ${c}`], { stdio: 'ignore' }).status === 0;
}

async function freePort() {
  return new Promise((res) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

ensureDependencies(root);
step('Building the extension, engine and panel…');
run(process.execPath, ['esbuild.mjs']);

const bundled = join(root, 'media', 'models', 'td-mini');
if (!existsSync(join(bundled, 'model.safetensors'))) {
  console.error(`✖ The bundled model is missing (${bundled}). Train it with \`bash tools/train/run.sh\` (see tools/train/README.md).`);
  process.exit(1);
}
step('Analysing the sample document with the bundled model (td-mini), from the CLI…');
run(process.execPath, ['dist/cli.js', 'analyze', '--text-file', 'media/sample.md', '--csv', join(tmpdir(), 'td-demo-lens.csv')]);

const workspace = mkdtempSync(join(tmpdir(), 'td-demo-'));
copyFileSync(join(root, 'media', 'sample.md'), join(workspace, 'sample.md'));
const next = `Next: select a paragraph in sample.md (or nothing, for the whole file) and run
  "Transformer Dynamics: Analyze Selection" — Ctrl+Alt+D, the right-click menu, or F1.`;

if (hasCommand('code') && !args.includes('--no-code') && !check) {
  step('Opening VS Code with the extension in development mode…');
  spawn('code', ['--extensionDevelopmentPath', root, workspace, join(workspace, 'sample.md')], { stdio: 'ignore', detached: true }).unref();
  console.log(`\n${next}`);
  process.exit(0);
}

step('Packaging the extension (VSIX)…');
run(process.execPath, ['tools/package.mjs']);
const vsix = readdirSync(join(root, 'dist-vsix'))
  .filter((f) => f.endsWith('.vsix'))
  .map((f) => join(root, 'dist-vsix', f))
  .sort()
  .pop();
step('Setting up code-server (VS Code in the browser; cached after the first time)…');
run('bash', ['tools/e2e/setup.sh']);
const csDir = process.env.TD_CODE_SERVER_DIR ?? join(root, '.cache', 'code-server-4.100.3');
const cs = join(csDir, 'node_modules', '.bin', 'code-server');
const data = join(root, '.cache', 'demo');
const userData = join(data, 'user-data');
const extDir = join(data, 'extensions');
mkdirSync(join(userData, 'User'), { recursive: true });
writeFileSync(
  join(userData, 'User', 'settings.json'),
  JSON.stringify(
    {
      'workbench.startupEditor': 'none',
      'telemetry.telemetryLevel': 'off',
      'extensions.autoUpdate': false,
      'security.workspace.trust.enabled': false,
    },
    null,
    1,
  ),
);
run(cs, ['--user-data-dir', userData, '--extensions-dir', extDir, '--install-extension', vsix, '--force']);
const port = Number(args[args.indexOf('--port') + 1]) || (await freePort());
const server = spawn(
  cs,
  [
    '--auth',
    'none',
    '--bind-addr',
    `127.0.0.1:${port}`,
    '--disable-telemetry',
    '--disable-update-check',
    '--user-data-dir',
    userData,
    '--extensions-dir',
    extDir,
    workspace,
  ],
  {
    cwd: root,
    env: { ...env, XDG_CONFIG_HOME: join(data, 'xdg-config'), XDG_DATA_HOME: join(data, 'xdg-data') },
    stdio: ['ignore', 'pipe', 'pipe'],
  },
);
server.stdout.on('data', () => undefined);
server.stderr.on('data', () => undefined);
const url = `http://127.0.0.1:${port}/?folder=${encodeURIComponent(workspace)}`;
for (let i = 0; i < 60; i++) {
  try {
    const r = await fetch(`http://127.0.0.1:${port}/healthz`);
    if (r.ok) break;
  } catch {
    /* not up yet */
  }
  await new Promise((r) => setTimeout(r, 500));
}
console.log(
  `\n\x1b[1mVS Code (code-server) with Transformer Dynamics is running:\x1b[0m\n  ${url}\n\nOpen it in a browser, then open sample.md.\n${next}\n\nCtrl+C stops the server.`,
);
if (check) {
  const ok = (await fetch(`http://127.0.0.1:${port}/healthz`)).ok;
  server.kill();
  console.log(ok ? 'demo check: OK' : 'demo check: code-server did not answer');
  process.exit(ok ? 0 : 1);
}
process.on('SIGINT', () => {
  server.kill();
  process.exit(0);
});
