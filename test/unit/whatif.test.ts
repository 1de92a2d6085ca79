// What-if around the engine: the patching metric and batching, the CLI's options and runs (JSON
// version 3 and the report), the protocol's new messages, the editor's difference tint, and the
// panel's what-if data shaping.
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { binBias, binRuns, logitDiff, normalizedLd } from '../../src/engine/interventions/metric';
import { parseAblationMode, parseCells, parseHeads, parseToken, readPatchSource } from '../../src/cli/whatif';
import { isHostToWebview, isStrategy, isWebviewToHost } from '../../src/shared/protocol';
import type { AnalysisPayload } from '../../src/shared/protocol';
import { overlayDiffTokens } from '../../src/shared/overlay';
import type { HeadStatsResult, LensTable } from '../../src/shared/analysis';
import { emptyLensTable } from '../../src/shared/analysis';
import {
  alignmentText,
  comparison,
  copyMassDelta,
  divergingIndex,
  finalTop1,
  lensDelta,
  pairDelta,
  pairNames,
  patchText,
  runRole,
  patchingZ,
  repeatCopyMass,
  toggleHead,
  topInductionHeads,
  whatIfFromPair,
} from '../../webview/shapeWhatIf';
import { EMPTY_COMPLETIONS, sameStrategy, strategyFromForm, formValues, withAblatedCopies } from '../../webview/shapeCompletions';
import { PATCH_SITES, strongestCell, type PatchingResult } from '../../src/shared/interventions';
import { JSON_SCHEMA_VERSION } from '../../src/shared/export';
import type { Strategy } from '../../src/shared/generation';
import { FIXTURES, ROOT, assertClose, tmpDir } from '../helpers';
import { explainedAlong, pca, project } from '../../src/engine/analysis/pca';
import { Engine } from '../../src/engine/engine';
import { analysisToPayload } from '../../src/shared/payload';
import { WhatIf, type KeptRun, type WhatIfHost } from '../../src/extension/whatif';

const CLI = path.join(ROOT, 'dist', 'cli.js');
const TINY = path.join(FIXTURES, 'models', 'tiny-llama');
const cli = (args: string[]) =>
  spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, TD_CACHE_DIR: tmpDir() } });

describe('patching metric', () => {
  test('logit difference, log-prob without a contrast, and the normalisation', () => {
    const l = Float32Array.of(1, 3, 0.5);
    assert.equal(logitDiff(l, 1, 0), 2);
    const lse = Math.log(Math.exp(1) + Math.exp(3) + Math.exp(0.5));
    assert.ok(Math.abs(logitDiff(l, 1, null) - (3 - lse)) < 1e-6);
    assert.equal(normalizedLd(2, 2, -1), 1);
    assert.equal(normalizedLd(-1, 2, -1), 0);
    assert.equal(normalizedLd(0.5, 2, -1), 0.5);
    assert.ok(Number.isNaN(normalizedLd(0.5, 1, 1)), 'nothing to restore');
    assert.ok(Number.isNaN(normalizedLd(NaN, 2, -1)));
  });

  test('bins: whole runs back to back, longest first, calls within the row and run budgets', () => {
    // the worst case of 64 tokens: every position but the first patched → runs of 63 … 1 rows pair up
    const calls = binRuns(
      Array.from({ length: 63 }, (_, i) => i + 1),
      64,
      384,
      64,
    );
    const seen: number[] = [];
    for (const c of calls) {
      const runs = c.bins.flat();
      assert.ok(runs.length <= 64);
      assert.ok(c.bins.length === 1 || c.bins.length * c.S <= 384, `rows of a call: ${c.bins.length} × ${c.S}`);
      assert.equal(c.past, Math.max(...runs.map((r) => r.p)));
      assert.equal(c.Q, Math.max(...c.bins.map((b) => b.length)));
      for (const bin of c.bins) {
        let at = 0;
        for (const r of bin) {
          assert.equal(r.offset, at, 'runs back to back');
          at += 64 - r.p;
          seen.push(r.p);
        }
        assert.ok(at <= c.S && c.S <= 64, `a bin holds at most the longest + the shortest run: ${at} of ${c.S}`);
      }
    }
    assert.deepEqual(
      seen.sort((a, b) => a - b),
      Array.from({ length: 63 }, (_, i) => i + 1),
      'every run once',
    );
    assert.equal(calls.flatMap((c) => c.bins).length, 32, '31 full pairs (p, 64 − p) and the run at 32 alone');
    assert.deepEqual(binRuns([5, 4, 3], 10, 1000, 2), [
      {
        bins: [
          [
            { p: 3, offset: 0 },
            { p: 5, offset: 7 },
          ],
        ],
        S: 12,
        Q: 2,
        past: 5,
      },
      { bins: [[{ p: 4, offset: 0 }]], S: 6, Q: 1, past: 4 },
    ]);
    assert.deepEqual(binRuns([], 10, 100, 4), []);
  });

  test('a call’s attention bias: the clean prefix before each run’s position, its own rows causally, the window, padding', () => {
    // T = 4: bin 0 holds the run patched at 2 (positions 2, 3), bin 1 the run at 3 and a padding row; past = 3
    const call = { bins: [[{ p: 2, offset: 0 }], [{ p: 3, offset: 0 }]], S: 2, Q: 1, past: 3 };
    const bias = binBias(call, 4, null);
    const open = (row: number) => Array.from(bias.subarray(row * 5, row * 5 + 5), (v) => (v === 0 ? 1 : 0));
    assert.deepEqual(open(0), [1, 1, 0, 1, 0]); // position 2: prefix 0, 1 and itself
    assert.deepEqual(open(1), [1, 1, 0, 1, 1]); // position 3: prefix 0, 1, position 2, itself
    assert.deepEqual(open(2), [1, 1, 1, 1, 0]); // bin 1, the run at 3: prefix 0-2 and itself
    assert.deepEqual(open(3), [0, 0, 0, 0, 1]); // padding: itself only (finite, seen by no one)
    const w = binBias({ bins: [[{ p: 2, offset: 0 }]], S: 2, Q: 1, past: 2 }, 4, 2);
    assert.deepEqual(
      Array.from(w.subarray(4, 8), (v) => (v === 0 ? 1 : 0)),
      [0, 0, 1, 1],
    ); // position 3, window 2: keys 2, 3
  });
});

describe('CLI what-if options', () => {
  const tk = { encodeIds: (t: string) => (t === 'x' ? [7] : t === 'xy' ? [7, 8] : []) };

  test('heads, modes, cells and tokens parse or fail by name', () => {
    assert.deepEqual(parseHeads('5.1, 6.9'), [
      { layer: 5, head: 1 },
      { layer: 6, head: 9 },
    ]);
    assert.throws(() => parseHeads('5:1'), /layer\.head/);
    assert.equal(parseAblationMode(undefined), 'zero');
    assert.throws(() => parseAblationMode('resample'), /zero or mean/);
    assert.deepEqual(parseCells('1:*', 3), [
      { layer: 1, pos: 0 },
      { layer: 1, pos: 1 },
      { layer: 1, pos: 2 },
    ]);
    assert.deepEqual(parseCells('0:2-3,0:3,2:0', 9), [
      { layer: 0, pos: 2 },
      { layer: 0, pos: 3 },
      { layer: 2, pos: 0 },
    ]);
    assert.throws(() => parseCells('0:5-2', 9), /empty range/);
    assert.throws(() => parseCells('x', 9), /layer:position/);
    assert.equal(parseToken('target', '12', tk, 100), 12);
    assert.equal(parseToken('target', 'x', tk, 100), 7);
    assert.equal(parseToken('contrast', 'none', tk, 100), null);
    assert.throws(() => parseToken('target', 'xy', tk, 100), /2 tokens/);
    assert.throws(() => parseToken('target', '500', tk, 100), /outside the vocabulary/);
  });

  test('--patch-from reads a JSON export of the same model or a text file', () => {
    const dir = tmpDir();
    const model = { n_layers: 2, d_model: 4, d_vocab: 10 };
    const json = path.join(dir, 'run.json');
    fs.writeFileSync(json, JSON.stringify({ model, tokens: [{ id: 3 }, { id: 4 }] }));
    assert.deepEqual(readPatchSource(json, model, tk).ids, [3, 4]);
    fs.writeFileSync(json, JSON.stringify({ model: { ...model, d_model: 8 }, tokens: [{ id: 3 }] }));
    assert.throws(() => readPatchSource(json, model, tk), /another model \(d_model 8/);
    fs.writeFileSync(json, '{');
    assert.throws(() => readPatchSource(json, model, tk), /not valid JSON/);
    const txt = path.join(dir, 'other.txt');
    fs.writeFileSync(txt, 'x');
    assert.deepEqual(readPatchSource(txt, model, tk).ids, [7]);
  });

  test('--ablate writes the interventions (version 3 and later); the report carries the clean twin', () => {
    const dir = tmpDir();
    const r = cli([
      'analyze',
      '--model',
      TINY,
      '--text',
      'the cat sat on the mat',
      '--ablate',
      '1.0,0.3',
      '--ablation',
      'mean',
      '--json',
      path.join(dir, 'a.json'),
      '--html',
      path.join(dir, 'a.html'),
    ]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /intervention: L0H3, L1H0 \(mean ablation\)/);
    const j = JSON.parse(fs.readFileSync(path.join(dir, 'a.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(j.version, JSON_SCHEMA_VERSION);
    assert.deepEqual(j.interventions, {
      ablation: {
        mode: 'mean',
        heads: [
          { layer: 0, head: 3 },
          { layer: 1, head: 0 },
        ],
      },
      patch: null,
    });
    assert.equal(j.patching, null);
    const html = fs.readFileSync(path.join(dir, 'a.html'), 'utf8');
    assert.match(html, /"clean":\{/, 'the clean run is inlined beside the ablated one');
  });

  test('--patch-from writes the heatmap; --patch-cells a patched analysis; stray options are refused', () => {
    const dir = tmpDir();
    const other = path.join(dir, 'other.txt');
    fs.writeFileSync(other, 'the dog sat on the mat');
    // the analysed text against other.txt, the JSON written to `json` in dir
    const withOther = (extra: string[], json: string) =>
      cli([
        'analyze',
        '--model',
        TINY,
        '--text',
        'the cat sat on the mat',
        '--patch-from',
        other,
        ...extra,
        '--json',
        path.join(dir, json),
      ]);
    const written = <T>(json: string) => JSON.parse(fs.readFileSync(path.join(dir, json), 'utf8')) as T;
    const r = withOther(['--contrast', 'none'], 'h.json');
    assert.equal(r.status, 0, r.stderr);
    const p = written<{ patching: Record<string, unknown> }>('h.json').patching;
    assert.equal(p.direction, 'denoise');
    assert.equal(p.site, 'resid_pre');
    assert.equal(p.metric, 'logprob');
    assert.equal(p.contrast, null);
    assert.equal((p.normalized as unknown[][]).length, 3);
    // each layer's MLP output instead, and a site that does not exist
    const m = withOther(['--patch-site', 'mlp_out'], 'm.json');
    assert.equal(m.status, 0, m.stderr);
    assert.match(m.stdout + m.stderr, /activation patching \(mlp_out, denoise/);
    const pm = written<{ patching: Record<string, unknown> }>('m.json').patching;
    assert.equal(pm.site, 'mlp_out');
    assert.notDeepEqual(pm.ld, p.ld);
    const site = cli(['analyze', '--model', TINY, '--text', 'x', '--patch-from', other, '--patch-site', 'hook_z']);
    assert.notEqual(site.status, 0);
    assert.match(site.stderr, /--patch-site must be resid_pre, attn_out, mlp_out, z; got "hook_z"/);
    // heads: the summary counts layers × heads
    const heads = withOther(['--patch-site', 'z'], 'z.json');
    assert.equal(heads.status, 0, heads.stderr);
    const pz = written<{ patching: { site: string; n_heads: number; ld: unknown[][] } }>('z.json').patching;
    assert.equal(pz.site, 'z');
    assert.equal(pz.ld[0]!.length, pz.n_heads);
    assert.match(heads.stdout + heads.stderr, new RegExp(`activation patching \\(z, denoise.*: \\d+ layers × ${pz.n_heads} heads in`));
    const c = withOther(['--patch-cells', '1:*'], 'c.json');
    assert.equal(c.status, 0, c.stderr);
    type PatchJson = { interventions: { patch: { site: string; cells: unknown[]; heads: unknown[] } }; surprisal_bits: unknown[] };
    const iv = written<PatchJson>('c.json').interventions;
    assert.equal(iv.patch.site, 'resid_pre');
    assert.ok(iv.patch.cells.length > 0);
    // the patched run is drawn in the clean run's PCA axes; a plain run in its own
    assert.equal(written<{ pca: { axes: string } }>('c.json').pca.axes, 'unintervened');
    assert.equal(written<{ pca: { axes: string } }>('h.json').pca.axes, 'own');
    // the same cells of the MLP outputs, and two heads (site z): other runs, recorded as such
    const cm = withOther(['--patch-site', 'mlp_out', '--patch-cells', '1:*'], 'cm.json');
    assert.equal(cm.status, 0, cm.stderr);
    assert.match(cm.stdout + cm.stderr, /intervention: \d+ cells of mlp_out patched from/);
    assert.equal(written<PatchJson>('cm.json').interventions.patch.site, 'mlp_out');
    assert.notDeepEqual(written<PatchJson>('cm.json').surprisal_bits, written<PatchJson>('c.json').surprisal_bits);
    const cz = withOther(['--patch-site', 'z', '--patch-cells', '0.1,1.0'], 'cz.json');
    assert.equal(cz.status, 0, cz.stderr);
    assert.match(cz.stdout + cz.stderr, /intervention: z of 2 heads \(every position\) patched from/);
    assert.deepEqual(written<PatchJson>('cz.json').interventions.patch.heads, [
      { layer: 0, head: 1 },
      { layer: 1, head: 0 },
    ]);
    const czBad = withOther(['--patch-site', 'z', '--patch-cells', '1:*'], 'x.json');
    assert.notEqual(czBad.status, 0);
    assert.match(czBad.stderr, /--patch-cells \(site z\) takes heads as layer\.head/);
    const noFrom = cli(['analyze', '--model', TINY, '--text', 'x', '--patch-site', 'z']);
    assert.match(noFrom.stderr, /--patch-site needs --patch-from/);
    const bad = cli(['analyze', '--model', TINY, '--text', 'x', '--target', 'x']);
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /--target applies to the patching heatmap/);
    const bad2 = cli(['analyze', '--model', TINY, '--text', 'x', '--ablate', '9.0']);
    assert.match(bad2.stderr, /No head 9\.0/);
  });
});

describe('what-if protocol', () => {
  test('ablate, patching and showRun requests; whatIf messages; strategies with an ablation', () => {
    const ok = [
      { type: 'request', id: 1, method: 'ablate', params: { runId: 3, ablation: { heads: [{ layer: 1, head: 2 }], mode: 'mean' } } },
      { type: 'request', id: 2, method: 'ablate', params: { runId: 3, ablation: null } },
      { type: 'request', id: 3, method: 'patching', params: { cleanRunId: 1, corruptedRunId: 2, direction: 'noise', contrast: null } },
      ...PATCH_SITES.map((site) => ({
        type: 'request',
        id: 5,
        method: 'patching',
        params: { cleanRunId: 1, corruptedRunId: 2, direction: 'denoise', site },
      })),
      { type: 'request', id: 4, method: 'showRun', params: { runId: 1, compareTo: 2 } },
      ...PATCH_SITES.map((site) => ({
        type: 'request',
        id: 6,
        method: 'openPatched',
        params: {
          cleanRunId: 1,
          corruptedRunId: 2,
          direction: 'noise',
          site,
          cells: [
            { layer: 0, col: 3 },
            { layer: 1, col: 0 },
          ],
        },
      })),
    ];
    for (const m of ok) assert.ok(isWebviewToHost(m), JSON.stringify(m));
    const bad = [
      { type: 'request', id: 1, method: 'ablate', params: { runId: 3, ablation: { heads: [{ layer: -1, head: 2 }], mode: 'zero' } } },
      { type: 'request', id: 1, method: 'ablate', params: { runId: 3, ablation: { heads: [], mode: 'resample' } } },
      { type: 'request', id: 3, method: 'patching', params: { cleanRunId: 1, corruptedRunId: 2, direction: 'up' } },
      { type: 'request', id: 3, method: 'patching', params: { cleanRunId: 1, corruptedRunId: 2, direction: 'noise', site: 'hook_z' } },
      { type: 'request', id: 4, method: 'showRun', params: { runId: 1 } },
      {
        type: 'request',
        id: 6,
        method: 'openPatched',
        params: { cleanRunId: 1, corruptedRunId: 2, direction: 'noise', site: 'hook_z', cells: [{ layer: 0, col: 3 }] },
      },
      {
        type: 'request',
        id: 6,
        method: 'openPatched',
        params: { cleanRunId: 1, corruptedRunId: 2, direction: 'noise', site: 'z', cells: [{ layer: 0, col: -1 }] },
      },
      {
        type: 'request',
        id: 6,
        method: 'openPatched',
        params: { cleanRunId: 1, corruptedRunId: 2, direction: 'noise', site: 'z', cells: [] },
      },
    ];
    for (const m of bad) assert.ok(!isWebviewToHost(m), JSON.stringify(m));
    assert.ok(isHostToWebview({ type: 'whatIf', pair: null }));
    assert.ok(!isHostToWebview({ type: 'whatIf', pair: { clean: {} } }));
    assert.ok(isStrategy({ label: 'g', kind: 'greedy', ablation: { heads: [{ layer: 0, head: 1 }], mode: 'zero' } }));
    assert.ok(!isStrategy({ label: 'g', kind: 'greedy', ablation: { heads: 'all', mode: 'zero' } }));
  });
});

// ---- the panel's shaping -----------------------------------------------------------------

function lens(pos: number, rows: number, fill: (r: number, p: number) => { top: number; lp: number; copy: number }): LensTable {
  const k = 1;
  const t: LensTable = emptyLensTable(rows, pos, k);
  for (let r = 0; r < rows; r++)
    for (let p = 0; p < pos; p++) {
      const v = fill(r, p);
      t.topIds[r * pos + p] = v.top;
      t.nextLogprob[r * pos + p] = p === pos - 1 ? NaN : v.lp;
      t.copyMass[r * pos + p] = v.copy;
    }
  return t;
}

function payload(runId: number, l: LensTable, interventions: AnalysisPayload['interventions'] = null): AnalysisPayload {
  const tokens = Array.from({ length: l.pos }, (_, i) => ({ id: i, text: `t${i}`, start: i * 2, end: i * 2 + 2, special: false }));
  return { runId, lens: l, tokens, interventions, source: { uri: 'file:///x', fileName: 'x', offset: 0 } } as unknown as AnalysisPayload;
}

describe('PCA axes of another run', () => {
  test('the variance explained along a run’s own principal axes is what its PCA says; along other axes, less', () => {
    let seed = 7;
    const rnd = () => ((seed = (seed * 16807) % 2147483647) / 2147483647) * 2 - 1;
    const n = 200;
    const d = 6;
    const points = Float32Array.from({ length: n * d }, (_, i) => rnd() * (i % d === 0 ? 5 : i % d === 1 ? 2 : 0.5));
    const own = pca(points, n, d, 3);
    const coords = project(points, n, own);
    const along = explainedAlong(points, n, d, coords, 3);
    assertClose(along, own.explained, 1e-5, 'own axes');
    const other = pca(
      Float32Array.from({ length: n * d }, () => rnd()),
      n,
      d,
      3,
    );
    const off = explainedAlong(points, n, d, project(points, n, other), 3);
    assert.ok(off.reduce((a, b) => a + b) < own.explained.reduce((a, b) => a + b), 'other axes show less of its spread');
  });
});

describe('what-if shaping', () => {
  const clean = payload(
    1,
    lens(4, 2, (r, p) => ({ top: p, lp: -2, copy: 0.5 })),
  );
  const abl = payload(
    2,
    lens(4, 2, (r, p) => ({ top: p === 1 ? 9 : p, lp: -3, copy: 0.2 })),
    { ablation: { heads: [{ layer: 0, head: 1 }], mode: 'zero' }, patch: null },
  );

  test('the pair, the comparison, and the differences the views draw', () => {
    const w = whatIfFromPair({ clean, intervened: abl })!;
    assert.equal(w.show, 'intervened');
    assert.equal(comparison({ ...w, compare: 'off' }, abl), null);
    const cmp = comparison(w, abl)!;
    assert.equal(cmp.other, clean);
    assert.equal(comparison({ ...w, show: 'clean' }, clean)!.other, abl);
    assert.equal(lensDelta(abl.lens, clean.lens, 1, 0), -1);
    assert.ok(Number.isNaN(lensDelta(abl.lens, clean.lens, 1, 3)));
    assert.deepEqual(
      copyMassDelta(abl.lens, clean.lens, 1).map((v) => Math.round(v * 100) / 100),
      [-0.3, -0.3, -0.3, -0.3],
    );
    // a repeat of 3 tokens at 1..3: copy mass at positions 1 and 2 predict its 2nd and 3rd tokens
    assert.ok(Math.abs(repeatCopyMass(abl.lens, { src: 0, dst: 1, len: 3 }, 1) - 0.2) < 1e-6);
    assert.ok(Number.isNaN(repeatCopyMass(abl.lens, { src: 0, dst: 2, len: 1 }, 1)));
    assert.equal(divergingIndex(0, 1, 10), 10);
    assert.equal(divergingIndex(-5, 1, 10), 0);
    assert.equal(divergingIndex(NaN, 1, 10), null);
    assert.equal(
      whatIfFromPair({
        clean,
        intervened: payload(
          3,
          lens(5, 2, () => ({ top: 0, lp: 0, copy: 0 })),
        ),
      }),
      null,
      'different tokens',
    );
  });

  test('the editor tint of a difference: more surprising vs less, by |Δ bits|', () => {
    const t = overlayDiffTokens(abl, clean);
    // Δ bits = (3 − 2) / ln 2 ≈ 1.44 more surprising for tokens 1..3; token 0 has no surprisal
    assert.equal(t[0]!.sign, 0);
    assert.equal(t[1]!.sign, 1);
    assert.equal(t[1]!.bucket, 1);
    assert.ok(Math.abs(t[1]!.delta - 1 / Math.LN2) < 1e-6);
    const back = overlayDiffTokens(clean, abl);
    assert.equal(back[2]!.sign, -1);
  });

  test('the top induction heads, and picking heads', () => {
    const stats = { n_layers: 2, n_heads: 3, induction: Float32Array.of(0.1, NaN, 0.5, 0.9, 0.2, 0.5) } as unknown as HeadStatsResult;
    assert.deepEqual(topInductionHeads(stats, 3), [
      { layer: 1, head: 0 },
      { layer: 0, head: 2 },
      { layer: 1, head: 2 },
    ]);
    const a = toggleHead([{ layer: 1, head: 0 }], { layer: 0, head: 2 });
    assert.deepEqual(a, [
      { layer: 0, head: 2 },
      { layer: 1, head: 0 },
    ]);
    assert.deepEqual(toggleHead(a, { layer: 1, head: 0 }), [{ layer: 0, head: 2 }]);
  });

  test('a patched pair: its runs’ names, what the bar says, the top prediction after the last token', () => {
    const rec = { sourceText: 'When  Mary\nand John', sourceTokens: 5, alignment: 'end' as const };
    const patched = payload(
      3,
      lens(4, 2, (r, p) => ({ top: p, lp: -1, copy: 0 })),
      { ablation: null, patch: { ...rec, site: 'mlp_out', cells: [{ layer: 1, pos: 2 }], heads: [] } },
    );
    patched.lens.topProbs.set([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]);
    assert.deepEqual(pairNames({ intervened: patched }), { base: 'unpatched', twin: 'patched' });
    assert.deepEqual(pairNames({ intervened: abl }), { base: 'clean', twin: 'ablated' });
    assert.equal(pairDelta({ intervened: patched }), 'patched − unpatched');
    assert.equal(runRole(patched), 'patched');
    assert.equal(patchText(patched.interventions!.patch!, clean), 'mlp_out L1 at pos 2 “t2” patched · from “When Mary and John”');
    const heads = {
      ...rec,
      site: 'z' as const,
      cells: [],
      heads: [
        { layer: 0, head: 3 },
        { layer: 2, head: 1 },
      ],
    };
    assert.equal(patchText(heads, clean), 'z of L0H3, L2H1 patched · from “When Mary and John”');
    const long = { ...heads, sourceText: 'x'.repeat(80) };
    assert.match(patchText(long, clean), /from “x{39}…”$/);
    // the final lens row's last position: row 1, position 3
    assert.deepEqual(finalTop1(patched), { id: 3, prob: Math.fround(0.8) });
  });

  test('the strongest cell: denoising the highest, noising the lowest, never an undefined one', () => {
    const r = {
      direction: 'denoise',
      site: 'resid_pre',
      n_layers: 2,
      pos: 3,
      n_heads: 4,
      normalized: Float32Array.of(NaN, 0.5, 0.9, 0.1, NaN, -0.2),
    } as PatchingResult;
    assert.deepEqual(strongestCell(r), { layer: 0, col: 2, value: Math.fround(0.9) });
    assert.deepEqual(strongestCell({ ...r, direction: 'noise' }), { layer: 1, col: 2, value: Math.fround(-0.2) });
    // heads: the columns are heads
    assert.deepEqual(strongestCell({ ...r, site: 'z', n_heads: 3 }), { layer: 0, col: 2, value: Math.fround(0.9) });
    assert.equal(strongestCell({ ...r, normalized: Float32Array.of(NaN, NaN, NaN, NaN, NaN, NaN) }), null);
  });

  test('the heatmap grid and the alignment sentence', () => {
    const r = {
      n_layers: 2,
      pos: 3,
      offset: 2,
      normalized: Float32Array.of(NaN, 0.5, 1, NaN, 0, 2),
      ld: new Float32Array(6),
    } as PatchingResult;
    assert.deepEqual(patchingZ(r, 'normalized'), [
      [null, 0.5, 1],
      [null, 0, 2],
    ]);
    // heads (site z): the columns are the heads, not the positions
    assert.deepEqual(patchingZ({ ...r, site: 'z', n_heads: 2, pos: 5, normalized: Float32Array.of(1, 2, 3, NaN) }, 'normalized'), [
      [1, 2],
      [3, null],
    ]);
    assert.match(alignmentText(r, 'B', 'A'), /B's position p takes A's position p − 2; its first 2 positions have no counterpart/);
    assert.match(alignmentText({ ...r, offset: 0 }, 'B', 'A'), /same length/);
  });

  test('ablated copies of the completion columns', () => {
    const ablation = { heads: [{ layer: 0, head: 1 }], mode: 'zero' as const };
    const s = {
      ...EMPTY_COMPLETIONS,
      columns: [{ id: 1, strategy: { label: 'greedy', kind: 'greedy' as const }, entry: null }],
      nextColumnId: 2,
    };
    const t = withAblatedCopies(s, ablation)!;
    assert.equal(t.columns.length, 2);
    assert.deepEqual(t.columns[1]!.strategy.ablation, ablation);
    assert.match(t.columns[1]!.strategy.label, /greedy · ablated/);
    assert.equal(withAblatedCopies(t, ablation), null, 'each column has its copy');
    assert.ok(sameStrategy(t.columns[1]!.strategy, JSON.parse(JSON.stringify(t.columns[1]!.strategy)) as Strategy));
    // editing an ablated column keeps it ablated
    const edited = strategyFromForm('greedy', formValues(t.columns[1]!.strategy), t.columns[1]!.strategy).strategy!;
    assert.deepEqual(edited.ablation, ablation);
  });
});

describe('the host’s what-if: a heatmap cell opened as a whole run', () => {
  const A = 'the cat sat on the mat and the dog';
  const B = 'the dog sat on the mat and the cat';
  const req = (text: string) => ({ text, topK: 5, maxTokens: 1024, patterns: false as const });
  let engine: Engine;
  let ids = 0;
  let kept: KeptRun[];
  let adopted: KeptRun[];
  let pairs: { clean: AnalysisPayload; intervened: AnalysisPayload }[];
  let whatIf: WhatIf;
  before(async () => {
    engine = new Engine();
    await engine.load({ dir: TINY, threads: 2, executionProvider: 'cpu' });
    const keep = async (text: string) => {
      const id = ++ids;
      const analysis = await engine.analyze(req(text), undefined, id);
      return { analysis, payload: analysisToPayload(analysis, id, null), request: req(text) };
    };
    kept = [await keep(A), await keep(B)];
    adopted = [];
    pairs = [];
    const host: WhatIfHost = {
      get last() {
        return adopted.at(-1) ?? null;
      },
      diffRuns: [1, 2],
      diffRun: (runId) => kept.find((r) => r.payload.runId === runId) ?? null,
      analysisRequest: req,
      adopt: (run) => adopted.push(run),
      nextRunId: () => ++ids,
      retainRuns: () => {},
      analyzeRun: (r, runId, signal) => engine.analyze(r, signal, runId),
      postPair: (pair) => {
        if (pair) pairs.push(pair);
      },
      showOverlay: () => {},
      patching: (p, signal) => engine.query({ type: 'patching', ...p }, signal) as Promise<PatchingResult>,
      log: () => {},
    };
    whatIf = new WhatIf(host);
  });
  after(async () => engine?.dispose());

  test('denoising: B (corrupted) analysed unpatched, then patched at the cell from A; the pair is shown, the patched run first', async () => {
    const heat = await whatIf.patching({ cleanRunId: 1, corruptedRunId: 2, direction: 'denoise', site: 'attn_out' });
    const best = strongestCell(heat)!;
    assert.equal(
      await whatIf.openPatched({
        cleanRunId: 1,
        corruptedRunId: 2,
        direction: 'denoise',
        site: 'attn_out',
        cells: [{ layer: best.layer, col: best.col }],
      }),
      null,
    );
    const base = adopted.at(-1)!;
    const pair = pairs.at(-1)!;
    assert.equal(base.analysis.text, B);
    assert.equal(pair.clean, base.payload);
    assert.deepEqual(pair.intervened.interventions?.patch, {
      sourceText: A,
      sourceTokens: kept[0]!.payload.tokens.length,
      site: 'attn_out',
      cells: [{ layer: best.layer, pos: best.col }],
      heads: [],
      alignment: 'end',
    });
    assert.equal(whatIf.shown()?.payload, pair.intervened, 'Export Analysis writes the patched run');
    // the run equals the engine's own patched analysis, and differs from the unpatched one
    const patch = {
      sourceIds: kept[0]!.payload.tokens.map((t) => t.id),
      site: 'attn_out' as const,
      cells: [{ layer: best.layer, pos: best.col }],
    };
    const direct = await engine.analyze({ ...req(B), interventions: { patch } }, undefined, 99);
    assert.deepEqual(pair.intervened.lens.topProbs, direct.lens.topProbs);
    assert.notDeepEqual(pair.intervened.lens.topProbs, pair.clean.lens.topProbs);
    // its walk is drawn in the unpatched run's PCA axes: the rows before the patched layer's
    // output are the same points, so they land on the same coordinates
    const pca = pair.intervened.walk.pca;
    assert.equal(pca.axesOf, base.payload.runId);
    assert.equal(pair.clean.walk.pca.axesOf, undefined);
    const T = base.payload.tokens.length;
    const same = (best.layer + 1) * T * 3; // rows 0..layer: resid_pre[0..layer]
    assertClose(pca.coords.subarray(0, same), pair.clean.walk.pca.coords.subarray(0, same), 1e-4, 'coordinates before the patch');
    assert.ok(
      pca.coords.subarray(same).some((v, i) => Math.abs(v - pair.clean.walk.pca.coords[same + i]!) > 1e-3),
      'and apart after it',
    );
    for (const e of pca.explained) assert.ok(e > 0 && e < 1, `explained ${e}`);
  });

  test('a run asked to be drawn in the axes of a run no longer kept is refused by name', async () => {
    await assert.rejects(engine.analyze({ ...req(A), pcaAxesOf: 12345 }, undefined, 98), /Run 12345, whose PCA axes .* is no longer kept/);
  });

  test('noising heads: A (clean) patched with B’s z of those heads together; a newer request cancels an older one', async () => {
    const first = whatIf.openPatched({ cleanRunId: 1, corruptedRunId: 2, direction: 'noise', site: 'z', cells: [{ layer: 0, col: 0 }] });
    const heads = [
      { layer: 1, col: 1 },
      { layer: 0, col: 1 },
    ];
    const second = whatIf.openPatched({ cleanRunId: 1, corruptedRunId: 2, direction: 'noise', site: 'z', cells: heads });
    await assert.rejects(first, (e: Error & { code?: string }) => e.code === 'CANCELLED');
    await second;
    assert.equal(adopted.at(-1)!.analysis.text, A);
    assert.deepEqual(pairs.at(-1)!.intervened.interventions?.patch?.heads, [
      { layer: 0, head: 1 },
      { layer: 1, head: 1 },
    ]);
  });

  test('several cells of one site patched together: the run the engine computes with all of them', async () => {
    const cells = [
      { layer: 0, col: 2 },
      { layer: 1, col: 5 },
    ];
    await whatIf.openPatched({ cleanRunId: 1, corruptedRunId: 2, direction: 'denoise', site: 'mlp_out', cells });
    const got = pairs.at(-1)!.intervened;
    const patch = {
      sourceIds: kept[0]!.payload.tokens.map((t) => t.id),
      site: 'mlp_out' as const,
      cells: cells.map((c) => ({ layer: c.layer, pos: c.col })),
    };
    const both = await engine.analyze({ ...req(B), interventions: { patch } }, undefined, 97);
    const one = await engine.analyze({ ...req(B), interventions: { patch: { ...patch, cells: patch.cells.slice(0, 1) } } }, undefined, 96);
    assert.deepEqual(got.lens.topProbs, both.lens.topProbs);
    assert.notDeepEqual(got.lens.topProbs, one.lens.topProbs, 'both cells count');
  });

  test('runs that are no longer compared are refused by name', async () => {
    await assert.rejects(
      whatIf.openPatched({ cleanRunId: 1, corruptedRunId: 7, direction: 'denoise', site: 'resid_pre', cells: [{ layer: 0, col: 0 }] }),
      /no longer compared; run Compare Prompts again/,
    );
  });
});
