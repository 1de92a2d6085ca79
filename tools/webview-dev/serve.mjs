// A static server for the panel outside VS Code: the host's HTML shell (same CSP, nonce'd
// scripts), a theme's --vscode-* variables, the mock VS Code API and a payload.
//   node tools/webview-dev/serve.mjs [--port 5178]   then open http://127.0.0.1:5178/?theme=dark&payload=stories
import * as http from 'node:http';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { THEMES, themeCss } from './themes.mjs';
import { ROOT } from './payloads.mjs';

export const OUT_DIR = path.join(ROOT, 'test-results', 'webview-dev');
export const PAYLOAD_DIR = path.join(OUT_DIR, 'payloads');
const STAMP_FILE = path.join(PAYLOAD_DIR, 'stamp.json');

/** What the cached payloads were made from: the compiled engine (out/src) and the payload makers. */
function payloadSources() {
  const files = [];
  const walk = (dir) => {
    if (!fs.existsSync(dir)) return;
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const f = path.join(dir, e.name);
      if (e.isDirectory()) walk(f);
      else if (e.name.endsWith('.js')) files.push(f);
    }
  };
  walk(path.join(ROOT, 'out', 'src'));
  walk(path.join(ROOT, 'out', 'tools', 'convert'));
  for (const f of ['payloads.mjs', 'dynamics.mjs']) files.push(path.join(ROOT, 'tools', 'webview-dev', f));
  return files.sort();
}

/** A hash of those files: payloads made under another stamp are stale. */
export function payloadStamp() {
  const h = createHash('sha256');
  for (const f of payloadSources()) h.update(path.relative(ROOT, f)).update('\0').update(fs.readFileSync(f)).update('\0');
  return h.digest('hex');
}

function readStamp() {
  try {
    return JSON.parse(fs.readFileSync(STAMP_FILE, 'utf8'));
  } catch {
    return { stamp: '', payloads: [] };
  }
}

/**
 * Whether the cached payload `name` exists and was made by the engine as it is built now. A
 * payload made by an older build (another JSON schema, other fields) would test the panel
 * against data the engine no longer produces, so any change to the compiled engine or to the
 * makers remakes it.
 */
export function payloadCurrent(name, stamp = payloadStamp()) {
  const s = readStamp();
  return fs.existsSync(path.join(PAYLOAD_DIR, `${name}.json`)) && s.stamp === stamp && s.payloads.includes(name);
}

/** Records that payloads `names` (in PAYLOAD_DIR) were just made by the current build. */
export function markPayloadsCurrent(names, stamp = payloadStamp()) {
  const s = readStamp();
  const kept = s.stamp === stamp ? s.payloads.filter((n) => !names.includes(n)) : [];
  fs.mkdirSync(PAYLOAD_DIR, { recursive: true });
  fs.writeFileSync(STAMP_FILE, JSON.stringify({ stamp, payloads: [...kept, ...names] }));
}

const TYPES = { '.js': 'text/javascript', '.css': 'text/css', '.ttf': 'font/ttf', '.map': 'application/json', '.json': 'application/json' };

function shell({ origin, nonce, theme, payload }) {
  const csp = `default-src 'none'; img-src ${origin} data: blob:; style-src ${origin} 'unsafe-inline'; font-src ${origin}; script-src 'nonce-${nonce}';`;
  const dev =
    payload === 'none' ? '' : `<script nonce="${nonce}" src="${origin}/dev/data.js?payload=${encodeURIComponent(payload)}"></script>`;
  return `<!DOCTYPE html><html lang="en"><head><meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link href="${origin}/dev/theme.css?theme=${theme}" rel="stylesheet" id="td-dev-theme">
<link href="${origin}/dist/webview.css" rel="stylesheet"><link href="${origin}/dist/codicon.css" rel="stylesheet" id="vscode-codicon-stylesheet">
<title>Transformer Dynamics</title></head>
<body class="${THEMES[theme].bodyClass}" data-vscode-theme-kind="${THEMES[theme].bodyClass}">${dev}<script nonce="${nonce}" src="${origin}/dev/mock-vscode.js"></script><div id="app"></div><script nonce="${nonce}" src="${origin}/dist/webview.js"></script></body></html>`;
}

function sendFile(res, file) {
  if (!fs.existsSync(file)) {
    res.writeHead(404).end('not found');
    return;
  }
  res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
  fs.createReadStream(file).pipe(res);
}

/** Starts the server on 127.0.0.1; resolves to { origin, close }. */
export function startServer(port = 0) {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const origin = `http://127.0.0.1:${server.address().port}`;
    const p = url.pathname;
    if (p === '/') {
      const theme = THEMES[url.searchParams.get('theme') ?? ''] ? url.searchParams.get('theme') : 'dark';
      const payload = (url.searchParams.get('payload') ?? 'stories').replace(/[^a-z0-9-]/gi, '');
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(shell({ origin, nonce: randomBytes(16).toString('base64'), theme, payload }));
    } else if (p === '/dev/theme.css') {
      const theme = THEMES[url.searchParams.get('theme') ?? ''] ? url.searchParams.get('theme') : 'dark';
      res.writeHead(200, { 'content-type': 'text/css', 'cache-control': 'no-store' });
      res.end(themeCss(theme));
    } else if (p === '/dev/mock-vscode.js') {
      sendFile(res, path.join(import.meta.dirname, 'mock-vscode.js'));
    } else if (p === '/dev/data.js') {
      const name = (url.searchParams.get('payload') ?? '').replace(/[^a-z0-9-]/gi, '');
      const file = path.join(PAYLOAD_DIR, `${name}.json`);
      if (!fs.existsSync(file)) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/javascript', 'cache-control': 'no-store' });
      res.write('window.__TD_DEV_DATA__ = ');
      const s = fs.createReadStream(file);
      s.on('end', () => res.end(';\n'));
      s.pipe(res, { end: false });
    } else if (p === '/favicon.ico') {
      res.writeHead(204).end(); // browsers ask for one; VS Code webviews do not
    } else if (p.startsWith('/dist/')) {
      const name = path.basename(p);
      const inDist = path.join(ROOT, 'dist', name);
      const codicons = path.join(ROOT, 'node_modules', '@vscode', 'codicons', 'dist', name);
      sendFile(res, fs.existsSync(inDist) || !name.startsWith('codicon') ? inDist : codicons);
    } else {
      res.writeHead(404).end('not found');
    }
  });
  return new Promise((resolve) => {
    server.listen(port, '127.0.0.1', () => {
      const origin = `http://127.0.0.1:${server.address().port}`;
      resolve({ origin, close: () => new Promise((r) => server.close(r)) });
    });
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const i = process.argv.indexOf('--port');
  const { origin } = await startServer(i > 0 ? Number(process.argv[i + 1]) : 5178);
  console.log(
    `Panel dev server: ${origin}/?theme=dark&payload=stories   (themes: light, dark, hc; payloads: ${
      fs.existsSync(PAYLOAD_DIR)
        ? fs
            .readdirSync(PAYLOAD_DIR)
            .map((f) => f.replace('.json', ''))
            .join(', ')
        : 'run run.mjs first'
    }, none)`,
  );
}
