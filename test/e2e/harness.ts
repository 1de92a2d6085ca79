/**
 * Real-client end-to-end harness: code-server (VS Code 1.100.3 served to a browser,
 * with a real Node extension host) driven by Debian's Chromium through playwright-core.
 *
 * Framework-agnostic: callers use node:test (or anything else) and call
 * `startVsCode(options)`, then drive the returned `VsCodeSession`, and always
 * `await session.dispose()` (in a `finally` / `after`).
 *
 * Environment:
 *   TD_E2E_HEADED=1        show the browser (needs a display); also slows actions down a bit
 *   TD_E2E_KEEP=1          keep the temp dir (user data, logs, workspace) even on success
 *   TD_E2E_DEBUG=1         echo code-server output and harness progress to stderr
 *   TD_E2E_SKIP=1          e2eSkipReason() reports a skip
 *   TD_E2E_REQUIRE=1       e2eSkipReason() throws instead of reporting a skip (CI)
 *   TD_CODE_SERVER_DIR     code-server cache folder (default <repo>/.cache/code-server-4.100.3)
 *   TD_CHROMIUM            Chromium binary (default /usr/bin/chromium)
 *   TD_E2E_RESULTS_DIR     screenshots / failure artefacts (default <repo>/test-results)
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  chromium,
  type Browser,
  type BrowserContext,
  type ConsoleMessage,
  type Frame,
  type FrameLocator,
  type Locator,
  type Page,
} from 'playwright-core';

export const CODE_SERVER_VERSION = '4.100.3';
const SETUP_MARKER = '.td-e2e-setup-complete';

// ------------------------------------------------------------------------------------------
// Paths, availability
// ------------------------------------------------------------------------------------------

/** Repository root: the nearest ancestor holding tools/e2e/setup.sh. */
export function repoRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'tools', 'e2e', 'setup.sh'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`e2e harness: cannot find tools/e2e/setup.sh above ${__dirname}`);
    dir = parent;
  }
}

export function codeServerDir(): string {
  return process.env.TD_CODE_SERVER_DIR ?? path.join(repoRoot(), '.cache', `code-server-${CODE_SERVER_VERSION}`);
}

export function codeServerBin(): string {
  return path.join(codeServerDir(), 'node_modules', '.bin', 'code-server');
}

export function chromiumPath(): string {
  return process.env.TD_CHROMIUM ?? '/usr/bin/chromium';
}

export function resultsDir(): string {
  return process.env.TD_E2E_RESULTS_DIR ?? path.join(repoRoot(), 'test-results');
}

/** Packages the extension (tools/package.mjs) and returns this platform's newest VSIX. */
export function buildVsix(): string {
  const root = repoRoot();
  const r = spawnSync(process.execPath, [path.join(root, 'tools', 'package.mjs')], { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`packaging failed:\n${r.stdout}\n${r.stderr}`);
  const dir = path.join(root, 'dist-vsix');
  const vsix = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.vsix') && f.includes(`${process.platform}-${process.arch}`))
    .map((f) => path.join(dir, f))
    .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs)[0];
  if (!vsix) throw new Error('no VSIX produced');
  return vsix;
}

/** Runs tools/e2e/setup.sh when code-server is not installed yet; returns the binary. */
export function ensureCodeServer(): string {
  const marker = path.join(codeServerDir(), SETUP_MARKER);
  if (!fs.existsSync(marker) || !fs.existsSync(chromiumPath())) {
    const setup = path.join(repoRoot(), 'tools', 'e2e', 'setup.sh');
    const r = spawnSync('bash', [setup], { stdio: 'inherit', env: process.env });
    if (r.status !== 0) throw new Error(`e2e harness: ${setup} failed (exit ${r.status ?? r.signal})`);
  }
  if (!fs.existsSync(marker)) throw new Error(`e2e harness: code-server not installed in ${codeServerDir()}`);
  if (!fs.existsSync(chromiumPath())) throw new Error(`e2e harness: Chromium not found at ${chromiumPath()}`);
  return codeServerBin();
}

/**
 * For `test(name, { skip: e2eSkipReason() }, ...)`: undefined when the e2e tests can run
 * (installing code-server first if needed), else a reason. With TD_E2E_REQUIRE=1 it throws
 * instead of returning a reason, so CI cannot silently skip.
 */
export function e2eSkipReason(): string | undefined {
  let reason: string | undefined;
  if (process.env.TD_E2E_SKIP === '1') reason = 'TD_E2E_SKIP=1';
  else if (process.platform !== 'linux') reason = `e2e harness supports Linux only (have ${process.platform})`;
  else {
    try {
      ensureCodeServer();
    } catch (e) {
      reason = (e as Error).message;
    }
  }
  if (reason && process.env.TD_E2E_REQUIRE === '1' && process.env.TD_E2E_SKIP !== '1') {
    throw new Error(`e2e tests required (TD_E2E_REQUIRE=1) but unavailable: ${reason}`);
  }
  return reason;
}

// ------------------------------------------------------------------------------------------
// Small utilities
// ------------------------------------------------------------------------------------------

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('freePort: no port'))));
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function slug(s: string): string {
  return (
    s
      .replace(/[^A-Za-z0-9._-]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 80) || 'x'
  );
}

function httpGetOk(url: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: timeoutMs }, (res) => {
      res.resume();
      resolve((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

/** Environment for code-server: no leaking of an outer VS Code's IPC hooks, private XDG dirs. */
function childEnv(tmp: string, extra: Record<string, string> | undefined): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('VSCODE_') || k === 'ELECTRON_RUN_AS_NODE' || k === 'NODE_OPTIONS') continue;
    env[k] = v;
  }
  env.XDG_CONFIG_HOME = path.join(tmp, 'xdg', 'config');
  env.XDG_DATA_HOME = path.join(tmp, 'xdg', 'data');
  env.XDG_CACHE_HOME = path.join(tmp, 'xdg', 'cache');
  return { ...env, ...(extra ?? {}) };
}

/** Installs a .vsix into a user-data/extensions dir pair with the code-server CLI. */
export async function installVsix(
  vsix: string,
  dirs: { userDataDir: string; extensionsDir: string; tmp: string; env?: Record<string, string> },
): Promise<string> {
  const bin = ensureCodeServer();
  const args = [
    '--user-data-dir',
    dirs.userDataDir,
    '--extensions-dir',
    dirs.extensionsDir,
    '--install-extension',
    path.resolve(vsix),
    '--force',
  ];
  return new Promise((resolve, reject) => {
    const p = spawn(bin, args, { env: childEnv(dirs.tmp, dirs.env), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), 120_000);
    p.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0 && /successfully installed/i.test(out)) resolve(out);
      else reject(new Error(`installing ${vsix} failed (exit ${code}):\n${out}`));
    });
  });
}

/** Links an unpacked extension folder into an extensions dir as <publisher>.<name>-<version>. */
export function linkExtensionFolder(folder: string, extensionsDir: string): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(folder, 'package.json'), 'utf8')) as {
    publisher?: string;
    name?: string;
    version?: string;
  };
  if (!pkg.publisher || !pkg.name || !pkg.version) {
    throw new Error(`${folder}/package.json needs publisher, name and version`);
  }
  const link = path.join(extensionsDir, `${pkg.publisher}.${pkg.name}-${pkg.version}`);
  fs.mkdirSync(extensionsDir, { recursive: true });
  fs.rmSync(link, { recursive: true, force: true });
  fs.symlinkSync(path.resolve(folder), link, 'dir');
  return link;
}

export const DEFAULT_SETTINGS: Readonly<Record<string, unknown>> = {
  'workbench.startupEditor': 'none',
  'telemetry.telemetryLevel': 'off',
  'extensions.autoUpdate': false,
  'extensions.autoCheckUpdates': false,
  'extensions.ignoreRecommendations': true,
  'update.mode': 'none',
  'workbench.enableExperiments': false,
  'workbench.tips.enabled': false,
  'workbench.welcomePage.walkthroughs.openOnInstall': false,
  'editor.wordWrap': 'off',
  'files.hotExit': 'off',
  'window.restoreWindows': 'none',
  'git.enabled': false,
  'chat.commandCenter.enabled': false,
};

export const THEMES = { light: 'Default Light Modern', dark: 'Default Dark Modern' } as const;

/** 'light' / 'dark' → the default modern theme's label; anything else is a theme label. */
export function themeLabel(theme: string): string {
  return theme === 'light' ? THEMES.light : theme === 'dark' ? THEMES.dark : theme;
}

/** Console messages that are noise in an offline code-server. */
export const DEFAULT_CONSOLE_NOISE: readonly RegExp[] = [
  /ENOTFOUND/,
  /extensionquery|marketplace|gallery/i,
  /ERR_NAME_NOT_RESOLVED|ERR_INTERNET_DISCONNECTED|net::ERR_/,
  /Failed to load resource[\s\S]*vsda/, // Microsoft-only module, absent from code-server
  /update\.code\.visualstudio\.com|vscode-unpkg|vscode-cdn|open-vsx/i,
  /The web worker extension host is started in a same-origin iframe/i,
  // the workbench's task service, when a built-in extension's task provider (TypeScript's) does
  // not answer in time on a loaded machine: VS Code's message about VS Code's own extension
  /^Timed out getting tasks from /,
  // window reload / shutdown
  /Long running operations during shutdown are unsupported/,
  /IndexedDB database '[^']*' is closed/,
];

// ------------------------------------------------------------------------------------------
// Options & records
// ------------------------------------------------------------------------------------------

/** What one code-server process is started with: shared by every window it serves. */
export interface ServerOptions {
  /** Prefix for the temp dir and artefacts. */
  name?: string;
  /** .vsix file(s) installed with `--install-extension` into a fresh extensions dir. */
  vsix?: string | string[];
  /** Unpacked extension folder(s) symlinked into the extensions dir. */
  extensionFolders?: string | string[];
  /** Extra user settings (merged over DEFAULT_SETTINGS). */
  settings?: Record<string, unknown>;
  /** Remote (machine) settings: machine-scoped settings such as paths on the server go here. */
  machineSettings?: Record<string, unknown>;
  /** 'light' | 'dark' | a theme label; sets workbench.colorTheme. */
  theme?: 'light' | 'dark' | (string & {});
  /** Keep workspace trust enabled (default: disabled). */
  workspaceTrust?: boolean;
  /** Extra environment for code-server and its extension hosts. */
  env?: Record<string, string>;
  /** Default TD_E2E_HEADED=1. */
  headed?: boolean;
  /** Keep the temp dir when a window failed (default true) / always (TD_E2E_KEEP=1). */
  keepTempDirOnFailure?: boolean;
  /** Extra Chromium flags. */
  chromiumArgs?: string[];
}

/**
 * One browser window on a code-server: a fresh browser profile (no workbench state in
 * IndexedDB) on a fresh workspace folder, so a fresh workbench and extension host.
 */
export interface WindowOptions {
  /** Prefix for screenshots / artefacts, e.g. the test name. */
  name?: string;
  /** Folder to open. Default: a fresh folder in the server's temp dir. */
  workspace?: string;
  /** Files (relative path → content) written into the workspace before the window opens. */
  files?: Record<string, string>;
  viewport?: { width: number; height: number };
  /** Default timeout for helper steps (ms). Default 30 s. */
  timeoutMs?: number;
  /** Console messages to ignore (added to DEFAULT_CONSOLE_NOISE). */
  ignoreConsole?: RegExp[];
}

export type StartOptions = ServerOptions & WindowOptions;

export interface CspViolation {
  /** 'event': securitypolicyviolation event; 'console': a console message about CSP. */
  via: 'event' | 'console';
  frameUrl: string;
  directive?: string;
  blockedURI?: string;
  sourceFile?: string;
  lineNumber?: number;
  sample?: string;
  text: string;
}

export interface ConsoleEntry {
  type: string;
  text: string;
  frameUrl: string;
}

export interface Timings {
  /** ensureCodeServer() (0 when already installed). */
  setupMs: number;
  /** Installing VSIX files / linking folders. */
  extensionsMs: number;
  /** code-server spawn → /healthz OK. */
  serverStartMs: number;
  /** Chromium launch. */
  browserLaunchMs: number;
  /** page.goto → .monaco-workbench visible (first workbench paint). */
  workbenchMs: number;
  /** Whole startVsCode() (the server's start counted in the first window only). */
  totalMs: number;
}

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
  '--use-angle=swiftshader',
  '--enable-unsafe-swiftshader',
  '--password-store=basic',
];

/** Installed in every frame (including webview iframes) before their scripts run. */
const INIT_SCRIPT = `(() => {
  if (window.__tdE2E) return;
  const report = (data) => {
    try { (window.__tdE2EViolations = window.__tdE2EViolations || []).push(data); } catch (e) {}
    try { if (typeof window.__tdE2EReport === 'function') window.__tdE2EReport(data); } catch (e) {}
  };
  const onViolation = (e) => report({
    directive: e.effectiveDirective || e.violatedDirective, blockedURI: e.blockedURI,
    sourceFile: e.sourceFile, lineNumber: e.lineNumber, sample: e.sample,
    disposition: e.disposition, documentURI: e.documentURI,
  });
  // document.open() (used by VS Code webviews to write their content into the inner frame)
  // erases all listeners; re-add after open/close/write. addEventListener dedupes.
  const install = (doc) => { try { doc.addEventListener('securitypolicyviolation', onViolation, true); } catch (e) {} };
  for (const name of ['open', 'write', 'close']) {
    const orig = Document.prototype[name];
    Document.prototype[name] = function (...args) { const r = orig.apply(this, args); install(this); return r; };
  }
  window.__tdE2E = { install: () => install(document) };
  install(document);
})();`;

class StepError extends Error {}

// ------------------------------------------------------------------------------------------
// Session
// ------------------------------------------------------------------------------------------

export class VsCodeSession {
  readonly cspViolations: CspViolation[] = [];
  readonly consoleMessages: ConsoleEntry[] = [];
  readonly pageErrors: string[] = [];
  readonly screenshots: string[] = [];
  /** alert/confirm/prompt dialogs seen (they are dismissed); any is usually an XSS. */
  readonly dialogs: string[] = [];
  failed = false;
  private shotCounter = 0;
  private disposed = false;
  private readonly noise: RegExp[];

  constructor(
    readonly page: Page,
    readonly context: BrowserContext,
    /** The code-server this window runs on (shared with other windows, or its own). */
    readonly server: CodeServer,
    readonly url: string,
    readonly workspaceDir: string,
    readonly timings: Timings,
    private readonly opts: WindowOptions,
    /** Extension-host processes that appeared while this window opened (its own). */
    private readonly hostPidsBefore: ReadonlySet<number>,
  ) {
    this.noise = [...DEFAULT_CONSOLE_NOISE, ...(opts.ignoreConsole ?? [])];
  }

  get name(): string {
    return slug(this.opts.name ?? 'e2e');
  }
  get timeoutMs(): number {
    return this.opts.timeoutMs ?? 30_000;
  }
  get port(): number {
    return this.server.port;
  }
  get tmpDir(): string {
    return this.server.tmpDir;
  }
  get userDataDir(): string {
    return this.server.userDataDir;
  }
  get extensionsDir(): string {
    return this.server.extensionsDir;
  }

  /** Tail of code-server's stdout/stderr. */
  serverLog(chars = 20_000): string {
    return this.server.serverLog(chars);
  }

  /** @internal */
  onConsole(msg: ConsoleMessage): void {
    const frameUrl = safeFrameUrl(msg);
    const text = msg.text();
    const type = msg.type();
    this.consoleMessages.push({ type, text, frameUrl });
    if (/Content[- ]Security[- ]Policy/i.test(text) && (type === 'error' || type === 'warning')) {
      this.cspViolations.push({ via: 'console', frameUrl, text });
    }
  }
  /** @internal */
  onViolationEvent(frameUrl: string, data: unknown): void {
    const d = (data ?? {}) as Record<string, unknown>;
    const str = (k: string): string | undefined => (typeof d[k] === 'string' ? (d[k] as string) : undefined);
    const v: CspViolation = { via: 'event', frameUrl, text: '' };
    const directive = str('directive');
    const blockedURI = str('blockedURI');
    const sourceFile = str('sourceFile');
    const sample = str('sample');
    if (directive !== undefined) v.directive = directive;
    if (blockedURI !== undefined) v.blockedURI = blockedURI;
    if (sourceFile !== undefined) v.sourceFile = sourceFile;
    if (sample !== undefined) v.sample = sample;
    if (typeof d.lineNumber === 'number') v.lineNumber = d.lineNumber;
    v.text = `CSP violation: ${directive ?? '?'} blocked ${blockedURI || '(inline)'}${sample ? ` sample=${JSON.stringify(sample)}` : ''} in ${frameUrl}`;
    this.cspViolations.push(v);
  }

  /** Console errors (type 'error') minus known offline noise, plus uncaught page errors. */
  consoleErrors(): string[] {
    const errs = this.consoleMessages
      .filter((m) => m.type === 'error' && !this.noise.some((re) => re.test(`${m.text} ${m.frameUrl}`)))
      .map((m) => `${m.text} (${m.frameUrl})`);
    return [...errs, ...this.pageErrors.map((e) => `pageerror: ${e}`)];
  }

  clearCollected(): void {
    this.cspViolations.length = 0;
    this.consoleMessages.length = 0;
    this.pageErrors.length = 0;
    this.dialogs.length = 0;
  }

  /** Re-installs the CSP listener in every current frame (idempotent) and waits briefly. */
  async flushCspViolations(settleMs = 250): Promise<CspViolation[]> {
    await Promise.all(this.page.frames().map((f) => f.evaluate('window.__tdE2E && window.__tdE2E.install()').catch(() => undefined)));
    await sleep(settleMs);
    return [...this.cspViolations];
  }

  /** Throws (with details) when any CSP violation was seen in any frame. */
  async assertNoCspViolations(): Promise<void> {
    const v = await this.flushCspViolations();
    if (v.length) {
      throw new Error(`${v.length} CSP violation(s):\n` + v.map((x) => `  [${x.via}] ${x.text}`).join('\n'));
    }
  }

  // ----------------------------------------------------------------------------- steps

  /**
   * Runs `fn` under a name; on failure takes a screenshot and rethrows an error that
   * names the step, the screenshot and the temp dir.
   */
  async step<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const t0 = Date.now();
    this.debug(`step ${name} ...`);
    try {
      const r = await fn();
      this.debug(`step ${name} ok (${Date.now() - t0} ms)`);
      return r;
    } catch (e) {
      if (e instanceof StepError) throw e; // nested step already reported
      this.failed = true;
      let shot = '(no screenshot)';
      try {
        shot = await this.screenshot(`FAILED-${name}`);
      } catch {
        /* page may be gone */
      }
      const msg =
        `e2e step "${name}" failed after ${Date.now() - t0} ms: ${(e as Error).message}\n` +
        `  screenshot: ${shot}\n  temp dir: ${this.tmpDir}`;
      throw new StepError(msg, { cause: e });
    }
  }

  private debug(msg: string): void {
    if (process.env.TD_E2E_DEBUG === '1') process.stderr.write(`[e2e ${this.name}] ${msg}\n`);
  }

  // ----------------------------------------------------------------------------- basic UI

  async screenshot(name: string): Promise<string> {
    const dir = resultsDir();
    await fsp.mkdir(dir, { recursive: true });
    const file = path.join(dir, `${this.name}-${String(++this.shotCounter).padStart(2, '0')}-${slug(name)}.png`);
    await this.page.screenshot({ path: file, timeout: 15_000 });
    this.screenshots.push(file);
    return file;
  }

  /**
   * Gives the page keyboard focus without disturbing the editor selection: clicks an empty
   * spot of the activity bar (or the top edge of the workbench).
   */
  async focusWorkbench(): Promise<void> {
    const bar = this.page.locator('.part.activitybar').first();
    const box = await bar.boundingBox().catch(() => null);
    if (box && box.height > 400) {
      await this.page.mouse.click(box.x + box.width / 2, box.y + box.height * 0.55);
    } else {
      await this.page.locator('.monaco-workbench').click({ position: { x: 300, y: 3 }, timeout: 5_000 });
    }
  }

  private quickInput(): Locator {
    return this.page.locator('.quick-input-widget');
  }

  /** Presses `key` until the quick input shows (first chord can be lost); returns its input. */
  async openQuickInput(key: string, attempts = 5): Promise<Locator> {
    const widget = this.quickInput();
    if (await widget.isVisible()) {
      await this.page.keyboard.press('Escape');
      await widget.waitFor({ state: 'hidden', timeout: 5_000 }).catch(() => undefined);
    }
    for (let i = 1; i <= attempts; i++) {
      await this.page.keyboard.press(key);
      try {
        await widget.waitFor({ state: 'visible', timeout: 1_000 * i });
        const input = widget.locator('.quick-input-box input');
        await input.waitFor({ state: 'visible', timeout: 5_000 });
        return input;
      } catch {
        this.debug(`${key}: quick input not visible (attempt ${i}), refocusing`);
        await this.focusWorkbench().catch(() => undefined);
      }
    }
    throw new Error(`quick input did not open after ${attempts} presses of ${key}`);
  }

  /** Waits for a quick-input row matching `text` (exact label preferred) and accepts it. */
  private async acceptQuickPickRow(text: string, timeoutMs: number, waitHidden = true): Promise<void> {
    const rows = this.quickInput().locator('.quick-input-list .monaco-list-row');
    try {
      await rows.filter({ hasText: text }).first().waitFor({ state: 'visible', timeout: timeoutMs });
    } catch (e) {
      const shown = await rows.allInnerTexts().catch(() => []);
      throw new Error(`no quick-input row "${text}" within ${timeoutMs} ms; rows shown: ${JSON.stringify(shown.slice(0, 10))}`, {
        cause: e,
      });
    }
    const labels = await rows.evaluateAll((els) =>
      els.map((el) => {
        const e = el as unknown as {
          querySelector(s: string): { textContent: string | null } | null;
          textContent: string | null;
          classList: { contains(c: string): boolean };
        };
        const label = e.querySelector('.label-name') ?? e.querySelector('.monaco-highlighted-label');
        return { label: (label?.textContent ?? '').trim(), all: e.textContent ?? '', focused: e.classList.contains('focused') };
      }),
    );
    let idx = labels.findIndex((l) => l.label === text);
    if (idx < 0) idx = labels.findIndex((l) => l.all.includes(text));
    if (idx < 0) throw new Error(`no quick-input row for "${text}"; rows: ${JSON.stringify(labels.map((l) => l.all))}`);
    if (labels[idx]?.focused) await this.page.keyboard.press('Enter');
    else await rows.nth(idx).click();
    if (waitHidden)
      await this.quickInput()
        .waitFor({ state: 'hidden', timeout: 10_000 })
        .catch(() => undefined);
  }

  /**
   * Runs a command by its palette title (e.g. "Transformer Dynamics: Analyze Selection"). In a
   * window that has just opened, the extensions' commands may not be registered yet, and an open
   * palette does not pick them up: it is opened again until the command shows.
   */
  async runCommand(title: string, opts: { timeoutMs?: number } = {}): Promise<void> {
    await this.step(`runCommand ${title}`, async () => {
      const deadline = Date.now() + (opts.timeoutMs ?? this.timeoutMs);
      const row = this.quickInput().locator('.quick-input-list .monaco-list-row').filter({ hasText: title }).first();
      for (;;) {
        const input = await this.openQuickInput('F1');
        await input.fill(`>${title}`);
        const shown = await row
          .waitFor({ state: 'visible', timeout: Math.max(1, Math.min(3_000, deadline - Date.now())) })
          .then(() => true)
          .catch(() => false);
        if (shown || Date.now() >= deadline) break;
        this.debug(`${title}: not in the palette yet, opening it again`);
      }
      await this.acceptQuickPickRow(title, Math.max(1_000, deadline - Date.now()));
    });
  }

  /**
   * Opens a file (path relative to the workspace, or absolute) with Quick Open. The absolute
   * path is typed: Quick Open then stats it instead of waiting for the first file search
   * (~1.5 s instead of ~9 s on a busy machine).
   */
  async openFile(relPath: string): Promise<void> {
    const abs = path.isAbsolute(relPath) ? relPath : path.join(this.workspaceDir, relPath);
    const base = path.basename(abs);
    await this.step(`openFile ${relPath}`, async () => {
      const input = await this.openQuickInput('Control+P');
      await input.fill(abs);
      await this.acceptQuickPickRow(base, this.timeoutMs);
      await this.page
        .locator('.editor-group-container.active .tab.active', { hasText: base })
        .waitFor({ state: 'visible', timeout: this.timeoutMs });
      await this.activeEditor().locator('.view-lines').waitFor({ state: 'visible', timeout: this.timeoutMs });
    });
  }

  /** The active editor group's text editor. */
  activeEditor(): Locator {
    return this.page.locator('.editor-group-container.active .editor-instance .monaco-editor').first();
  }

  /** Focuses the active text editor (clicks into it: moves the cursor). */
  async focusEditor(): Promise<void> {
    await this.activeEditor().locator('.view-lines').click({ timeout: this.timeoutMs });
  }

  /** Text of the status bar's selection indicator, e.g. "Ln 5, Col 12 (120 selected)". */
  async selectionStatus(): Promise<string> {
    const item = this.page.locator('.part.statusbar [id="status.editor.selection"]');
    return ((await item.innerText({ timeout: 5_000 }).catch(() => '')) || '').trim();
  }

  /** Selects whole lines `from`..`to` (1-based, inclusive) in the active editor. */
  async selectLines(from: number, to: number): Promise<string> {
    if (from < 1 || to < from) throw new Error(`selectLines: bad range ${from}..${to}`);
    return this.step(`selectLines ${from}-${to}`, async () => {
      await this.activeEditor().waitFor({ state: 'visible', timeout: this.timeoutMs });
      const input = await this.openQuickInput('Control+G');
      await input.fill(`:${from}`);
      await this.page.keyboard.press('Enter');
      await this.quickInput().waitFor({ state: 'hidden', timeout: 5_000 });
      for (let i = from; i < to; i++) await this.page.keyboard.press('Shift+ArrowDown');
      await this.page.keyboard.press('Shift+End');
      return this.waitForSelectionStatus((st) => st.startsWith(`Ln ${to},`) && /selected/.test(st));
    });
  }

  /** Select all in the active editor. */
  async selectAll(): Promise<string> {
    return this.step('selectAll', async () => {
      await this.focusEditor();
      await this.page.keyboard.press('Control+A');
      return this.waitForSelectionStatus();
    });
  }

  /** Waits until the selection indicator satisfies `pred` and has been stable for 300 ms. */
  private async waitForSelectionStatus(pred: (s: string) => boolean = (s) => /selected/.test(s)): Promise<string> {
    const deadline = Date.now() + 10_000;
    let last = '';
    let since = Date.now();
    while (Date.now() < deadline) {
      const s = await this.selectionStatus();
      if (s !== last) {
        last = s;
        since = Date.now();
      } else if (pred(s) && Date.now() - since >= 300) {
        return s;
      }
      await sleep(100);
    }
    throw new Error(`selection status bar item did not settle as expected (last: "${last}")`);
  }

  // ----------------------------------------------------------------------------- webviews

  /**
   * The content frame of a webview (two iframes deep). Default: the last *visible* ready
   * webview; pass `index` to pick among visible ones.
   */
  webviewFrame(opts: { index?: number } = {}): FrameLocator {
    const outer = this.page.locator('iframe.webview.ready').filter({ visible: true });
    const one = opts.index === undefined ? outer.last() : outer.nth(opts.index);
    return one.contentFrame().locator('iframe#active-frame').contentFrame();
  }

  /** Waits until a webview shows `text` (or matches a locator built from its frame). */
  async waitForWebview(
    what: string | ((frame: FrameLocator) => Locator),
    opts: { timeoutMs?: number; index?: number } = {},
  ): Promise<Locator> {
    const label = typeof what === 'string' ? what : 'locator';
    return this.step(`waitForWebview ${label}`, async () => {
      const frame = this.webviewFrame(opts.index === undefined ? {} : { index: opts.index });
      const loc = typeof what === 'string' ? frame.getByText(what).first() : what(frame);
      await loc.waitFor({ state: 'visible', timeout: opts.timeoutMs ?? this.timeoutMs });
      return loc;
    });
  }

  /** The Playwright Frame objects of webview contents (for evaluate()). */
  webviewContentFrames(): Frame[] {
    return this.page.frames().filter((f) => f.name() === 'active-frame' || /\/fake\.html\b/.test(f.url()));
  }

  // ----------------------------------------------------------------------------- status bar, notifications

  async statusBarItems(): Promise<string[]> {
    const t = await this.page.locator('.part.statusbar .statusbar-item').allInnerTexts();
    return t.map((s) => s.trim()).filter(Boolean);
  }

  async statusBarText(): Promise<string> {
    return (await this.statusBarItems()).join(' | ');
  }

  async waitForStatusBarItem(text: string | RegExp, timeoutMs?: number): Promise<Locator> {
    return this.step(`waitForStatusBarItem ${String(text)}`, async () => {
      const loc = this.page.locator('.part.statusbar .statusbar-item').filter({ hasText: text }).first();
      await loc.waitFor({ state: 'visible', timeout: timeoutMs ?? this.timeoutMs });
      return loc;
    });
  }

  async waitForNotification(text: string | RegExp, timeoutMs?: number): Promise<Locator> {
    return this.step(`waitForNotification ${String(text)}`, async () => {
      const loc = this.page.locator('.notifications-toasts .notification-toast').filter({ hasText: text }).first();
      await loc.waitFor({ state: 'visible', timeout: timeoutMs ?? this.timeoutMs });
      return loc;
    });
  }

  async notificationTexts(): Promise<string[]> {
    return this.page.locator('.notifications-toasts .notification-toast').allInnerTexts();
  }

  // ----------------------------------------------------------------------------- settings, theme

  settingsPath(): string {
    return path.join(this.userDataDir, 'User', 'settings.json');
  }

  /**
   * Switches the color theme live through "Preferences: Color Theme" (as a user would); waits
   * for the workbench and every visible webview (body.vscode-light / vscode-dark) to follow.
   * `kind` is needed for theme labels other than 'light' / 'dark'.
   */
  async setTheme(theme: 'light' | 'dark' | (string & {}), kind?: 'light' | 'dark'): Promise<void> {
    const label = themeLabel(theme);
    const k = kind ?? (theme === 'light' || theme === 'dark' ? theme : undefined);
    await this.step(`setTheme ${label}`, async () => {
      const input = await this.openQuickInput('F1');
      await input.fill('>Preferences: Color Theme');
      await this.acceptQuickPickRow('Preferences: Color Theme', this.timeoutMs, false);
      // The same widget now lists themes.
      await this.quickInput()
        .locator('.quick-input-list .monaco-list-row')
        .filter({ hasText: /Default (Light|Dark)/ })
        .first()
        .waitFor({ state: 'visible', timeout: this.timeoutMs });
      await this.quickInput().locator('.quick-input-box input').fill(label);
      await this.acceptQuickPickRow(label, this.timeoutMs);
      if (!k) {
        await sleep(1_000);
        return;
      }
      const cls = k === 'light' ? 'vs' : 'vs-dark';
      await this.page.locator(`.monaco-workbench.${cls}`).waitFor({ state: 'attached', timeout: this.timeoutMs });
      const webviews = this.page.locator('iframe.webview.ready').filter({ visible: true });
      const n = await webviews.count();
      for (let i = 0; i < n; i++) {
        await this.webviewFrame({ index: i }).locator(`body.vscode-${k}`).waitFor({ state: 'attached', timeout: this.timeoutMs });
      }
      await sleep(300); // let re-renders settle before screenshots
    });
  }

  /** Reloads the window (e.g. after installing an extension while running). */
  async reloadWindow(): Promise<void> {
    await this.step('reloadWindow', async () => {
      await this.page.reload();
      await this.page.locator('.monaco-workbench').waitFor({ state: 'visible', timeout: 60_000 });
      await this.page.locator('.part.statusbar').waitFor({ state: 'visible', timeout: 60_000 });
      await this.focusWorkbench().catch(() => undefined);
    });
  }

  // ----------------------------------------------------------------------------- teardown

  /** Copies code-server output and the VS Code logs (incl. extension host) to `dest`. */
  async saveLogs(dest = path.join(resultsDir(), `${this.name}-logs`)): Promise<string> {
    await fsp.mkdir(dest, { recursive: true });
    await fsp.writeFile(path.join(dest, 'code-server.log'), this.server.serverLog(200_000));
    await fsp.writeFile(
      path.join(dest, 'browser-console.log'),
      this.consoleMessages.map((m) => `[${m.type}] ${m.text} (${m.frameUrl})`).join('\n'),
    );
    const logs = path.join(this.userDataDir, 'logs');
    if (fs.existsSync(logs)) await fsp.cp(logs, path.join(dest, 'vscode-logs'), { recursive: true });
    return dest;
  }

  /**
   * Closes the window: its browser context, then its extension host (with the engine process
   * under it) when code-server keeps it waiting for a reconnection. A session from startVsCode()
   * also stops its code-server and removes the temp dir (kept when it failed or TD_E2E_KEEP=1).
   * Pass `{ failed: true }` from a failing test to get a final screenshot and the logs under
   * test-results/.
   */
  async dispose(opts: { failed?: boolean } = {}): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    const failed = this.failed || opts.failed === true;
    if (failed) {
      this.server.failed = true;
      await this.screenshot('final').catch(() => undefined);
      const logs = await this.saveLogs().catch(() => undefined);
      if (logs) process.stderr.write(`[e2e ${this.name}] logs saved to ${logs}\n`);
    }
    await Promise.race([this.context.close().catch(() => undefined), sleep(10_000)]);
    await this.server.windowClosed(this.hostPidsBefore);
  }
}

function safeFrameUrl(msg: ConsoleMessage): string {
  try {
    const loc = msg.location();
    return loc.url || msg.page()?.url() || '';
  } catch {
    return '';
  }
}

// ------------------------------------------------------------------------------------------
// Processes under code-server
// ------------------------------------------------------------------------------------------

/** pid → parent pid and command line of every process (Linux /proc). */
function processTable(): Map<number, { ppid: number; cmd: string }> {
  const out = new Map<number, { ppid: number; cmd: string }>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const cmd = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').replace(/\0/g, ' ');
      out.set(Number(name), { ppid, cmd });
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

/** `root` and every process below it. */
function processTree(root: number, table = processTable()): number[] {
  const tree = [root];
  for (let i = 0; i < tree.length; i++) for (const [pid, p] of table) if (p.ppid === tree[i]) tree.push(pid);
  return tree;
}

// ------------------------------------------------------------------------------------------
// CodeServer: one process, many fresh windows
// ------------------------------------------------------------------------------------------

/**
 * A code-server process with one headless Chromium. Each `openWindow()` is a fresh VS Code
 * window — new browser profile, new workspace folder, so a new workbench and a new extension
 * host — without paying code-server's and Chromium's start again. Extensions, user settings
 * and the extensions' global storage are shared by the windows.
 */
export class CodeServer {
  failed = false;
  private output = '';
  private windows = 0;
  private disposed = false;
  private ownedBy: VsCodeSession | null = null;
  private readonly exitHook = (): void => this.killSync();

  constructor(
    private readonly process_: ChildProcess,
    readonly browser: Browser,
    readonly base: string,
    readonly port: number,
    readonly tmpDir: string,
    readonly userDataDir: string,
    readonly extensionsDir: string,
    readonly timings: Timings,
    private readonly opts: ServerOptions,
  ) {
    process.once('exit', this.exitHook);
  }

  get name(): string {
    return slug(this.opts.name ?? 'e2e');
  }

  /** @internal */
  appendOutput(s: string, echo = true): void {
    this.output = (this.output + s).slice(-200_000);
    if (echo && process.env.TD_E2E_DEBUG === '1') process.stderr.write(`[code-server] ${s}`);
  }

  /** Tail of code-server's stdout/stderr. */
  serverLog(chars = 20_000): string {
    return this.output.slice(-chars);
  }

  /** Extension-host processes of this server now. */
  extensionHostPids(): Set<number> {
    const pid = this.process_.pid;
    if (pid === undefined) return new Set();
    const table = processTable();
    return new Set(processTree(pid, table).filter((p) => /--type=extensionHost/.test(table.get(p)?.cmd ?? '')));
  }

  /** Opens a fresh window (see the class comment) on its own workspace folder. */
  async openWindow(options: WindowOptions = {}): Promise<VsCodeSession> {
    if (this.disposed) throw new Error('e2e harness: openWindow on a stopped code-server');
    const tStart = Date.now();
    const n = ++this.windows;
    const workspaceDir = options.workspace
      ? path.resolve(options.workspace)
      : path.join(this.tmpDir, n === 1 ? 'workspace' : `workspace-${n}-${slug(options.name ?? 'window')}`);
    await fsp.mkdir(workspaceDir, { recursive: true });
    for (const [rel, content] of Object.entries(options.files ?? {})) {
      const f = path.join(workspaceDir, rel);
      await fsp.mkdir(path.dirname(f), { recursive: true });
      await fsp.writeFile(f, content);
    }
    const hostPidsBefore = this.extensionHostPids();
    const context = await this.browser.newContext({ viewport: options.viewport ?? { width: 1400, height: 900 } });
    const page = await context.newPage();
    const url = `${this.base}/?folder=${encodeURIComponent(workspaceDir)}`;
    const timings: Timings =
      n === 1
        ? { ...this.timings, workbenchMs: 0, totalMs: 0 }
        : { setupMs: 0, extensionsMs: 0, serverStartMs: 0, browserLaunchMs: 0, workbenchMs: 0, totalMs: 0 };
    const sess = new VsCodeSession(
      page,
      context,
      this,
      url,
      workspaceDir,
      timings,
      { ...options, name: options.name ?? this.opts.name },
      hostPidsBefore,
    );
    try {
      await context.exposeBinding('__tdE2EReport', (source, data: unknown) => {
        sess.onViolationEvent(source.frame.url(), data);
      });
      await context.addInitScript({ content: INIT_SCRIPT });
      page.on('console', (m) => sess.onConsole(m));
      page.on('pageerror', (e) => sess.pageErrors.push(String(e?.stack ?? e)));
      page.on('dialog', (d) => {
        sess.dialogs.push(`${d.type()}: ${d.message()}`);
        void d.dismiss().catch(() => undefined);
      });
      const tPage = Date.now();
      await sess.step('open workbench', async () => {
        await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 60_000 });
        await page.locator('.monaco-workbench').waitFor({ state: 'visible', timeout: 60_000 });
        timings.workbenchMs = Date.now() - tPage;
        await page.locator('.part.statusbar').waitFor({ state: 'visible', timeout: 60_000 });
        await sess.focusWorkbench(); // the first key chord is lost without a click
      });
      timings.totalMs = Date.now() - tStart + (n === 1 ? this.timings.totalMs : 0);
      return sess;
    } catch (e) {
      await sess.dispose({ failed: true }).catch(() => undefined);
      throw e;
    }
  }

  /** @internal A window was closed: its extension host goes (code-server would keep it for hours). */
  async windowClosed(hostPidsBefore: ReadonlySet<number>): Promise<void> {
    if (this.ownedBy) return this.dispose();
    const own = [...this.extensionHostPids()].filter((p) => !hostPidsBefore.has(p));
    // closing the browser tab drops the connection; code-server would wait 3 h for it to come back
    const t0 = Date.now();
    while (Date.now() - t0 < 500 && own.some(alive)) await sleep(50);
    if (process.env.TD_E2E_DEBUG === '1')
      process.stderr.write(
        `[e2e ${this.name}] window closed: extension host ${own.join(', ') || '(none)'} ${own.some(alive) ? 'killed' : 'exited'}\n`,
      );
    const table = processTable();
    for (const pid of own.filter(alive)) {
      for (const p of processTree(pid, table).reverse()) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
  }

  /** @internal The session that owns this server (startVsCode): closing it stops the server. */
  ownBy(s: VsCodeSession): void {
    this.ownedBy = s;
  }

  private killSync(): void {
    const pid = this.process_.pid;
    if (pid === undefined || this.process_.exitCode !== null || this.process_.signalCode !== null) return;
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }

  private async kill(): Promise<void> {
    const pid = this.process_.pid;
    if (pid === undefined || this.process_.exitCode !== null || this.process_.signalCode !== null) return;
    const exited = new Promise<void>((r) => this.process_.once('exit', () => r()));
    try {
      process.kill(-pid, 'SIGTERM');
    } catch {
      return;
    }
    const ok = await Promise.race([exited.then(() => true), sleep(5_000).then(() => false)]);
    if (!ok) this.killSync();
    // Children that ignored SIGTERM (extension host, pty host) share the group.
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      /* all gone */
    }
  }

  /**
   * Closes Chromium, kills code-server's process group and removes the temp dir (kept when a
   * window failed, `failed` is passed, or TD_E2E_KEEP=1).
   */
  async dispose(opts: { failed?: boolean } = {}): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    const failed = this.failed || opts.failed === true;
    await Promise.race([this.browser.close().catch(() => undefined), sleep(10_000)]);
    await this.kill();
    process.removeListener('exit', this.exitHook);
    const keep = process.env.TD_E2E_KEEP === '1' || (failed && this.opts.keepTempDirOnFailure !== false);
    if (keep) process.stderr.write(`[e2e ${this.name}] temp dir kept: ${this.tmpDir}\n`);
    else await fsp.rm(this.tmpDir, { recursive: true, force: true, maxRetries: 3 }).catch(() => undefined);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// ------------------------------------------------------------------------------------------
// startCodeServer, startVsCode
// ------------------------------------------------------------------------------------------

/** Starts code-server (with the extensions installed) and Chromium; open windows with `openWindow()`. */
export async function startCodeServer(options: ServerOptions = {}): Promise<CodeServer> {
  const tStart = Date.now();
  const timings: Timings = { setupMs: 0, extensionsMs: 0, serverStartMs: 0, browserLaunchMs: 0, workbenchMs: 0, totalMs: 0 };
  const bin = ensureCodeServer();
  timings.setupMs = Date.now() - tStart;

  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), `td-e2e-${slug(options.name ?? 'vscode')}-`));
  const userDataDir = path.join(tmp, 'user-data');
  const extensionsDir = path.join(tmp, 'extensions');
  let server: ChildProcess | undefined;
  let browser: Browser | undefined;
  let serverOut = '';
  try {
    await Promise.all([userDataDir, extensionsDir].map((d) => fsp.mkdir(d, { recursive: true })));
    const settings: Record<string, unknown> = { ...DEFAULT_SETTINGS };
    if (!options.workspaceTrust) settings['security.workspace.trust.enabled'] = false;
    if (options.theme) settings['workbench.colorTheme'] = themeLabel(options.theme);
    Object.assign(settings, options.settings ?? {});
    await fsp.mkdir(path.join(userDataDir, 'User'), { recursive: true });
    await fsp.writeFile(path.join(userDataDir, 'User', 'settings.json'), JSON.stringify(settings, null, 2));
    if (options.machineSettings) {
      // code-server's "remote" settings: where machine-scoped settings (paths on the server) belong
      await fsp.mkdir(path.join(userDataDir, 'Machine'), { recursive: true });
      await fsp.writeFile(path.join(userDataDir, 'Machine', 'settings.json'), JSON.stringify(options.machineSettings, null, 2));
    }

    // Extensions
    const tExt = Date.now();
    const vsixes = options.vsix === undefined ? [] : Array.isArray(options.vsix) ? options.vsix : [options.vsix];
    for (const v of vsixes) {
      await installVsix(v, { userDataDir, extensionsDir, tmp, ...(options.env ? { env: options.env } : {}) });
    }
    const folders =
      options.extensionFolders === undefined
        ? []
        : Array.isArray(options.extensionFolders)
          ? options.extensionFolders
          : [options.extensionFolders];
    for (const f of folders) linkExtensionFolder(f, extensionsDir);
    timings.extensionsMs = Date.now() - tExt;

    // Server (no folder argument: each window names its own in the URL)
    const tServer = Date.now();
    const port = await freePort();
    const configFile = path.join(tmp, 'code-server.yaml');
    await fsp.writeFile(configFile, `bind-addr: 127.0.0.1:${port}\nauth: none\ncert: false\n`);
    const args = [
      '--config',
      configFile,
      '--auth',
      'none',
      '--bind-addr',
      `127.0.0.1:${port}`,
      '--disable-telemetry',
      '--disable-update-check',
      '--disable-getting-started-override',
      '--user-data-dir',
      userDataDir,
      '--extensions-dir',
      extensionsDir,
    ];
    if (!options.workspaceTrust) args.push('--disable-workspace-trust');
    server = spawn(bin, args, {
      cwd: tmp,
      env: childEnv(tmp, options.env),
      detached: true, // own process group → dispose() kills extension hosts etc. too
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const srv = server;
    const onOut = (d: Buffer): void => {
      serverOut = (serverOut + d.toString()).slice(-200_000);
      if (process.env.TD_E2E_DEBUG === '1') process.stderr.write(`[code-server] ${d.toString()}`);
    };
    srv.stdout?.on('data', onOut);
    srv.stderr?.on('data', onOut);
    const base = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (srv.exitCode !== null)
        throw new Error(`code-server exited (${srv.exitCode}) before answering /healthz:\n${serverOut.slice(-4000)}`);
      if (await httpGetOk(`${base}/healthz`, 1_000)) break;
      if (Date.now() > deadline) throw new Error(`code-server /healthz not OK within 60 s:\n${serverOut.slice(-4000)}`);
      await sleep(100);
    }
    timings.serverStartMs = Date.now() - tServer;

    // Browser
    const tBrowser = Date.now();
    const headed = options.headed ?? process.env.TD_E2E_HEADED === '1';
    browser = await chromium.launch({
      executablePath: chromiumPath(),
      headless: !headed,
      args: [...CHROMIUM_ARGS, ...(options.chromiumArgs ?? [])],
      ...(headed ? { slowMo: 50 } : {}),
      timeout: 60_000,
    });
    timings.browserLaunchMs = Date.now() - tBrowser;
    timings.totalMs = Date.now() - tStart;

    const cs = new CodeServer(srv, browser, base, port, tmp, userDataDir, extensionsDir, timings, options);
    cs.appendOutput(serverOut, false);
    srv.stdout?.off('data', onOut);
    srv.stderr?.off('data', onOut);
    srv.stdout?.on('data', (d: Buffer) => cs.appendOutput(d.toString()));
    srv.stderr?.on('data', (d: Buffer) => cs.appendOutput(d.toString()));
    return cs;
  } catch (e) {
    await browser?.close().catch(() => undefined);
    if (server?.pid !== undefined && server.exitCode === null) {
      try {
        process.kill(-server.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    if (process.env.TD_E2E_KEEP === '1' || options.keepTempDirOnFailure !== false) {
      process.stderr.write(`[e2e] start failed; temp dir kept: ${tmp}\n`);
    } else {
      await fsp.rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    }
    throw e;
  }
}

/** Starts a code-server of its own and opens one window on it; disposing the window stops both. */
export async function startVsCode(options: StartOptions = {}): Promise<VsCodeSession> {
  const server = await startCodeServer(options);
  try {
    const vs = await server.openWindow(options);
    server.ownBy(vs);
    return vs;
  } catch (e) {
    await server.dispose({ failed: true });
    throw e;
  }
}

/**
 * Starts VS Code, runs `fn` with the session and disposes it, keeping the logs and a screenshot
 * (dispose's `failed`) when `fn` threw.
 */
export async function withVsCode<T>(options: StartOptions, fn: (vs: VsCodeSession) => Promise<T>): Promise<T> {
  const vs = await startVsCode(options);
  let failed = false;
  try {
    return await fn(vs);
  } catch (e) {
    failed = true;
    throw e;
  } finally {
    await vs.dispose({ failed });
  }
}
