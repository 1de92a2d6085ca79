/**
 * Self-test of the e2e harness with a throwaway dummy extension (nothing here is about the
 * real extension). Run:  npx tsc -p tsconfig.test.json && node --test out/test/e2e/harness.selftest.js
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { e2eSkipReason, repoRoot, resultsDir, startVsCode, type VsCodeSession } from './harness';

const skip = e2eSkipReason();

const DUMMY_PACKAGE = {
  name: 'td-e2e-dummy',
  displayName: 'TD e2e dummy',
  description: 'Throwaway extension for the e2e harness self-test',
  publisher: 'td-e2e',
  version: '0.0.1',
  license: 'MIT',
  engines: { vscode: '^1.100.0' },
  main: './extension.js',
  activationEvents: ['onCommand:tdDummy.openPanel'],
  contributes: {
    commands: [
      { command: 'tdDummy.openPanel', title: 'Open Panel', category: 'Dummy' },
      { command: 'tdDummy.violateCsp', title: 'Violate CSP (self-test)', category: 'Dummy' },
    ],
  },
};

// Plain JS so the dummy needs no build. The webview gets its data by postMessage after a
// 'ready' handshake and renders it with textContent only.
const DUMMY_EXTENSION_JS = String.raw`
const vscode = require('vscode');
const crypto = require('crypto');
let panel;
function html(webview) {
  const nonce = crypto.randomBytes(16).toString('base64');
  const csp = process.env.TD_DUMMY_CSP ||
    "default-src 'none'; style-src " + webview.cspSource + " 'unsafe-inline'; script-src 'nonce-" + nonce + "'";
  return '<!DOCTYPE html><html><head><meta charset="UTF-8">' +
    '<meta http-equiv="Content-Security-Policy" content="' + csp.replace(/NONCE/g, nonce) + '">' +
    '</head><body><h1>Dummy panel</h1><p id="msg">loading</p><pre id="payload"></pre>' +
    '<script nonce="' + nonce + '">' +
    'const vscode = acquireVsCodeApi();' +
    'window.addEventListener("message", (e) => { const d = e.data;' +
    '  if (d.type === "data") { document.getElementById("msg").textContent = d.message;' +
    '    document.getElementById("payload").textContent = d.payload; }' +
    '  if (d.type === "violate") { const i = document.createElement("img"); i.src = "https://example.invalid/x.png"; document.body.append(i); }' +
    '});' +
    'vscode.postMessage({ type: "ready" });' +
    '</script></body></html>';
}
exports.activate = function (context) {
  const item = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Left, 100);
  item.text = '$(beaker) Dummy idle';
  item.show();
  context.subscriptions.push(item);
  context.subscriptions.push(vscode.commands.registerCommand('tdDummy.openPanel', () => {
    const ed = vscode.window.activeTextEditor;
    const sel = ed ? ed.selection : undefined;
    const lines = sel && !sel.isEmpty ? sel.end.line - sel.start.line + 1 : 0;
    const text = ed && sel ? ed.document.getText(sel) : '';
    item.text = '$(beaker) Dummy: ' + lines + ' lines';
    panel = vscode.window.createWebviewPanel('tdDummy', 'Dummy Panel', vscode.ViewColumn.Beside, { enableScripts: true });
    panel.webview.onDidReceiveMessage((m) => {
      if (m.type === 'ready') panel.webview.postMessage({ type: 'data',
        message: 'Selected ' + lines + ' lines: <img src=x onerror=alert(1)>', payload: text });
    });
    panel.webview.html = html(panel.webview);
    vscode.window.showInformationMessage('Dummy panel opened');
  }));
  context.subscriptions.push(vscode.commands.registerCommand('tdDummy.violateCsp', () => {
    if (panel) panel.webview.postMessage({ type: 'violate' });
  }));
};
exports.deactivate = function () {};
`;

const SAMPLE = ['alpha line one', 'beta line two', 'gamma line three', 'delta line four', 'epsilon line five', ''].join('\n');
const XSS_TEXT = '<img src=x onerror=alert(1)>';

let extDir = '';
let vsix = '';
const timings: Record<string, number> = {};

function buildDummy(): void {
  const t0 = Date.now();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'td-e2e-dummy-'));
  extDir = path.join(tmp, 'ext');
  fs.mkdirSync(extDir);
  fs.writeFileSync(path.join(extDir, 'package.json'), JSON.stringify(DUMMY_PACKAGE, null, 2));
  fs.writeFileSync(path.join(extDir, 'extension.js'), DUMMY_EXTENSION_JS);
  fs.writeFileSync(path.join(extDir, 'README.md'), '# Dummy\n\nThrowaway e2e self-test extension.\n');
  vsix = path.join(tmp, 'td-e2e-dummy.vsix');
  const vsce = require.resolve('@vscode/vsce/vsce', { paths: [repoRoot()] });
  const r = spawnSync(
    process.execPath,
    [vsce, 'package', '--no-dependencies', '--allow-missing-repository', '--skip-license', '--out', vsix],
    { cwd: extDir, encoding: 'utf8' },
  );
  assert.equal(r.status, 0, `vsce package failed:\n${r.stdout}\n${r.stderr}`);
  assert.ok(fs.existsSync(vsix));
  timings.vscePackageMs = Date.now() - t0;
}

before(() => {
  if (!skip) buildDummy();
});

after(() => {
  if (extDir) fs.rmSync(path.dirname(extDir), { recursive: true, force: true });
  if (Object.keys(timings).length) {
    fs.mkdirSync(resultsDir(), { recursive: true });
    fs.writeFileSync(path.join(resultsDir(), 'harness-selftest-timings.json'), JSON.stringify(timings, null, 2));
    console.log('harness self-test timings (ms):', JSON.stringify(timings));
  }
});

test('harness drives a real VS Code with a VSIX-installed extension', { skip, timeout: 300_000 }, async () => {
  let s: VsCodeSession | undefined;
  let ok = false;
  try {
    s = await startVsCode({ name: 'selftest-vsix', vsix, theme: 'light', files: { 'src/sample.txt': SAMPLE } });
    Object.assign(timings, {
      extensionInstallMs: s.timings.extensionsMs,
      serverStartMs: s.timings.serverStartMs,
      browserLaunchMs: s.timings.browserLaunchMs,
      workbenchMs: s.timings.workbenchMs,
      startTotalMs: s.timings.totalMs,
    });

    await s.openFile('src/sample.txt');
    const sel = await s.selectLines(2, 4);
    assert.match(sel, /^Ln 4, Col 16 \(46 selected\)/);

    const t0 = Date.now();
    await s.runCommand('Dummy: Open Panel');
    await s.waitForWebview('Selected 3 lines');
    timings.commandToWebviewMs = Date.now() - t0;

    const frame = s.webviewFrame();
    assert.equal(await frame.locator('#msg').innerText(), `Selected 3 lines: ${XSS_TEXT}`);
    assert.equal(await frame.locator('#payload').innerText(), 'beta line two\ngamma line three\ndelta line four');
    assert.equal(await frame.locator('img').count(), 0, 'message must be rendered as text');
    await s.waitForStatusBarItem('Dummy: 3 lines');
    await s.waitForNotification('Dummy panel opened');
    assert.ok((await s.statusBarText()).includes('Dummy: 3 lines'));

    await s.assertNoCspViolations();
    assert.deepEqual(s.dialogs, []);
    const errors = s.consoleErrors();
    if (errors.length) console.log(`console errors (not failing):\n  ${errors.join('\n  ')}`);

    const light = await s.screenshot('light');
    const t1 = Date.now();
    await s.setTheme('dark');
    timings.themeSwitchMs = Date.now() - t1;
    const dark = await s.screenshot('dark');
    console.log(`screenshots: ${light} ${dark}`);

    // Positive control: the detector must see a violation inside the webview content frame.
    await s.runCommand('Dummy: Violate CSP (self-test)');
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && !s.cspViolations.some((v) => v.via === 'event')) {
      await s.flushCspViolations(200);
    }
    const seen = s.cspViolations;
    console.log(`positive control saw:\n  ${seen.map((v) => `[${v.via}] ${v.text}`).join('\n  ')}`);
    assert.ok(
      seen.some((v) => v.via === 'event' && v.blockedURI?.includes('example.invalid')),
      'event channel',
    );
    assert.ok(
      seen.some((v) => v.via === 'console'),
      'console channel',
    );
    await assert.rejects(s.assertNoCspViolations(), /CSP violation/);
    ok = true;
  } finally {
    await s?.dispose({ failed: !ok });
  }
});

test('harness loads an extension from a symlinked folder', { skip, timeout: 300_000 }, async () => {
  let s: VsCodeSession | undefined;
  let ok = false;
  try {
    s = await startVsCode({ name: 'selftest-folder', extensionFolders: extDir, theme: 'dark', files: { 'a.txt': SAMPLE } });
    await s.openFile('a.txt');
    await s.selectAll();
    await s.runCommand('Dummy: Open Panel');
    await s.waitForWebview('Selected 6 lines');
    await s.waitForStatusBarItem('Dummy: 6 lines');
    await s.assertNoCspViolations();
    ok = true;
  } finally {
    await s?.dispose({ failed: !ok });
  }
});
