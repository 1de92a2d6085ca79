// The CLI's standalone HTML report (`analyze --html`): one file, the panel bundle and the data
// inlined, a nonce CSP, no external resource references, data that decodes into what the
// panel's requests need; and the JSON schema 2 quantities.
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vm from 'node:vm';
import { Engine } from '../../src/engine/engine';
import { REPORT_DEFAULTS, reportData, safeInlineScript } from '../../src/cli/report';
import { STATIC_DATA_ID, decodeTypedJson, staticDataProblems, type StaticData } from '../../webview/shapeDynamicsStatic';
import { FIXTURES, ROOT, tmpDir } from '../helpers';
import { JSON_SCHEMA_VERSION } from '../../src/shared/export';

const CLI = path.join(ROOT, 'dist', 'cli.js');
const TINY = path.join(FIXTURES, 'models', 'tiny-llama');
const TEXT = 'the cat sat on the mat. the cat sat on the mat again, and the dog sat too.';

function cli(args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
}

/** Text of the HTML outside <script> elements (where resource references would be). */
function outsideScripts(html: string): string {
  return html.replace(/<script\b[^>]*>[\s\S]*?<\/script>/gi, '<script></script>');
}

function dataOf(html: string): StaticData {
  const m = new RegExp(`<script type="application/json" id="${STATIC_DATA_ID}">([\\s\\S]*?)</script>`).exec(html);
  assert.ok(m, 'the data script is there');
  return decodeTypedJson(m[1]!) as StaticData;
}

describe('HTML report', () => {
  let dir = '';
  let html = '';
  let json: Record<string, unknown> = {};
  before(() => {
    dir = tmpDir();
    const r = cli([
      'analyze',
      '--model',
      TINY,
      '--text',
      TEXT,
      '--threads',
      '1',
      '--html',
      path.join(dir, 'report.html'),
      '--json',
      path.join(dir, 'a.json'),
    ]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /report: .*report\.html \(\d+\.\d MB\)/);
    html = fs.readFileSync(path.join(dir, 'report.html'), 'utf8');
    json = JSON.parse(fs.readFileSync(path.join(dir, 'a.json'), 'utf8')) as Record<string, unknown>;
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('one self-contained file: CSP by nonce, no external resource references', () => {
    assert.ok(html.startsWith('<!DOCTYPE html>'));
    const csp = /<meta http-equiv="Content-Security-Policy" content="([^"]+)">/.exec(html)?.[1] ?? '';
    assert.match(csp, /default-src 'none'/);
    const nonce = /script-src 'nonce-([A-Za-z0-9+/=]+)'/.exec(csp)?.[1];
    assert.ok(nonce, csp);
    assert.doesNotMatch(csp, /https?:|'unsafe-eval'|script-src[^;]*'unsafe-inline'/);
    // every executable script carries the nonce; the data script is JSON
    const scripts = [...html.matchAll(/<script\b([^>]*)>/gi)].map((m) => m[1]!);
    assert.equal(scripts.length, 2);
    assert.ok(scripts.some((a) => a.includes(`type="application/json"`)));
    assert.ok(scripts.some((a) => a.includes(`nonce="${nonce}"`)));
    const outside = outsideScripts(html);
    for (const m of outside.matchAll(/\b(?:src|href)\s*=\s*"([^"]*)"/gi)) assert.match(m[1]!, /^data:/, `resource ${m[1]!.slice(0, 60)}`);
    for (const m of outside.matchAll(/url\(\s*["']?([^"')]*)/gi)) assert.match(m[1]!, /^data:/, `css url ${m[1]!.slice(0, 60)}`);
    assert.doesNotMatch(outside, /@import/i);
    assert.doesNotMatch(outside, /(?:src|href|url\()\s*=?\s*["']?(?:https?:)?\/\//i);
    // the codicon stylesheet (a data: URL) has its font inlined too
    const codicons = /id="vscode-codicon-stylesheet"/.test(html) && /href="data:text\/css;base64,([^"]+)"/.exec(html)?.[1];
    assert.ok(codicons);
    const css = Buffer.from(codicons, 'base64').toString('utf8');
    assert.match(css, /url\("data:font\/ttf;base64,/);
    assert.doesNotMatch(css, /url\((?!"data:)/);
  });

  test('the app script parses and cannot close its element early', () => {
    const m = /<script nonce="[^"]+">([\s\S]*)<\/script>\s*<\/body>/.exec(html);
    assert.ok(m);
    const js = m[1]!;
    assert.doesNotMatch(js, /<\/script/i);
    assert.doesNotMatch(js, /sourceMappingURL/);
    assert.doesNotThrow(() => new vm.Script(js, { filename: 'webview.js' }));
    // the escaping keeps string values the same
    const src = 'globalThis.x = ["</script>", "<SCRIPT src=a>", /<\\/script>/.test("</script>")]';
    const ctx = vm.createContext({});
    vm.runInContext(safeInlineScript(src), ctx);
    assert.deepEqual(JSON.parse(vm.runInContext('JSON.stringify(globalThis.x)', ctx) as string), ['</script>', '<SCRIPT src=a>', true]);
    assert.doesNotMatch(safeInlineScript(src), /<\/?script/i);
  });

  test('the inlined data decodes into everything the tabs ask for', () => {
    const d = dataOf(html);
    assert.deepEqual(staticDataProblems(d), []);
    const p = d.payload;
    const { n_layers: L, n_heads: H, pos: T } = p.dims;
    assert.equal(p.tokens.length, T);
    assert.ok(p.walk.normsFinal instanceof Float32Array && p.walk.normsFinal.length === (L + 1) * T);
    assert.equal(Object.keys(d.similarity).length, L + 1, 'every row (pos ≤ 512)');
    for (const m of Object.values(d.similarity)) assert.ok(m instanceof Float32Array && m.length === T * T);
    assert.ok(d.headStats && d.headStats.selfBias.length === L * H);
    assert.ok(L * H * T * T <= REPORT_DEFAULTS.maxPatternFloats);
    assert.equal(Object.keys(d.patterns ?? {}).length, L * H, 'all heads');
    assert.ok(d.proximity[T - 1] && d.proximity[T - 1]!.logits.length === p.model.d_vocab);
    assert.ok(d.clusters[L] && d.clusters[L]!.order.length === T);
    assert.equal(d.settings.lensTopK, p.lens.k);
  });

  test('JSON schema 2 fields (in version 3 and later): attention, proximity_last, norms_final, clusters_last', () => {
    assert.equal(json.version, JSON_SCHEMA_VERSION);
    assert.equal(json.interventions, null, 'a clean run');
    assert.equal(json.patching, null);
    const model = json.model as { n_layers: number; n_heads: number };
    const T = (json.tokens as unknown[]).length;
    const att = json.attention as {
      max_offset: number;
      heads: { layer: number; head: number; self_bias: number; induction: number | null; kernel: number[]; kernel_norm: number[] }[];
    };
    assert.equal(att.heads.length, model.n_layers * model.n_heads);
    for (const h of att.heads) {
      assert.equal(h.kernel.length, att.max_offset + 1);
      assert.equal(h.kernel_norm.length, att.max_offset + 1);
      assert.equal(typeof h.self_bias, 'number');
    }
    assert.ok(
      att.heads.some((h) => typeof h.induction === 'number'),
      'the text repeats, so induction is defined',
    );
    const prox = json.proximity_last as {
      pos: number;
      spearman: number;
      k: number;
      topk_overlap: number;
      top_by_logit: { id: number; text: string; logit: number; cos: number }[];
      top_by_cos: unknown[];
    };
    assert.equal(prox.pos, T - 1);
    assert.ok(prox.spearman > -1 && prox.spearman <= 1);
    assert.equal(prox.top_by_logit.length, prox.k);
    assert.equal(prox.top_by_cos.length, prox.k);
    assert.ok(prox.top_by_logit[0]!.logit >= prox.top_by_logit[1]!.logit);
    // the top logit is the model's own prediction
    assert.equal(prox.top_by_logit[0]!.id, (json.last_logits_top as { id: number }[])[0]!.id);
    const nf = json.norms_final as number[][];
    assert.equal(nf.length, model.n_layers + 1);
    assert.equal(nf[0]!.length, T);
    const cl = json.clusters_last as { row: number; order: number[]; merges: { a: number; b: number; height: number; size: number }[] };
    assert.equal(cl.row, model.n_layers);
    assert.deepEqual(
      [...cl.order].sort((a, b) => a - b),
      Array.from({ length: T }, (_, i) => i),
    );
    assert.equal(cl.merges.length, T - 1);
    assert.equal(cl.merges.at(-1)!.size, T);
  });

  test('--no-patterns: the report and the JSON say there is no attention', () => {
    const out = path.join(dir, 'np.html');
    const outJson = path.join(dir, 'np.json');
    const r = cli(['analyze', '--model', TINY, '--text', TEXT, '--threads', '1', '--no-patterns', '--html', out, '--json', outJson]);
    assert.equal(r.status, 0, r.stderr);
    const d = dataOf(fs.readFileSync(out, 'utf8'));
    assert.equal(d.headStats, null);
    assert.equal(d.patterns, null);
    assert.match(d.attentionNote ?? '', /--no-patterns/);
    const j = JSON.parse(fs.readFileSync(outJson, 'utf8')) as Record<string, unknown>;
    assert.equal(j.attention, null);
    assert.ok(j.proximity_last && j.clusters_last);
  });
});

describe('report limits', () => {
  const engine = new Engine();
  after(() => engine.dispose());

  test('patterns over the limit are left out with a note; long texts keep the last similarity row only', async () => {
    await engine.load({ dir: TINY, threads: 1, executionProvider: 'cpu', patterns: true });
    const a = await engine.analyze({ text: TEXT, topK: 3, maxTokens: 64, patterns: true }, undefined, 9);
    const T = a.cache.pos;
    const d = await reportData(engine, a, 9, { maxPatternFloats: 10, maxSimilarityPos: T - 1, allProximity: true });
    assert.equal(d.patterns, null);
    assert.match(d.patternsNote ?? '', /not in this report/);
    assert.ok(d.headStats, 'head statistics are small and stay');
    assert.deepEqual(Object.keys(d.similarity).map(Number), [a.cache.n_layers]);
    assert.equal(Object.keys(d.proximity).length, T);
  });
});
