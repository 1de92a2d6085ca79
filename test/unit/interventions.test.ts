// Interventions (head ablation, residual-stream patching, the activation-patching heatmap)
// against the independent numpy reference (tools/reference/make_intervention_goldens.py) for
// every family's tiny model, plus the identities that must hold exactly.
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { loadModel, type LoadedModel } from '../../src/engine/model';
import { analyze, emptyPast } from '../../src/engine/analyze';
import { generate } from '../../src/engine/generate';
import { RecomputeStepModel } from '../../src/engine/generate/generator';
import { buildForwardGraph, hook } from '../../src/engine/graph/forward';
import { openCheckpoint } from '../../src/engine/checkpoint/hf';
import { weightReader } from '../../src/engine/arch/weights';
import { createSession } from '../../src/engine/runtime/ort';
import { interventionName } from '../../src/engine/graph/interventions';
import {
  cellFeeds,
  cleanResidPre,
  feedsOf,
  headFeeds,
  idsTensor,
  interventionFeeds,
  prefixFeeds,
} from '../../src/engine/interventions/feeds';
import { patchingHeatmap } from '../../src/engine/interventions/patching';
import type { Analysis } from '../../src/shared/analysis';
import { PATCH_SITES, type AblationMode, type HeadAblation, type PatchSite } from '../../src/shared/interventions';
import { FIXTURES, ROOT, assertClose, flat, readJson, rejectsWith, tmpDir } from '../helpers';
import { gateFeed, PATTERN_ROWS, withGateDefaults } from '../../src/engine/graph/gates';

const TOL = 1e-4;

/** 1e-4 on values up to 1, relative beyond: float32's precision on the larger residual streams of some fixtures. */
function assertNear(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  let scale = 1;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]!));
  assertClose(actual, expected, TOL * scale, what);
}

interface AblationGolden {
  mode: AblationMode;
  heads: { layer: number; head: number }[];
  resid_pre: number[][][];
  resid_post_last: number[][];
  logits_last: number[];
  greedy_ids: number[];
}

interface PatchingGolden {
  clean_ids: number[];
  corrupted_ids: number[];
  target: number;
  contrast: number | null;
  ld_clean: number;
  ld_corrupted: number;
  denoise_ld: (number | null)[][];
  noise_ld: (number | null)[][];
  /** The same grids patching each block's attention or MLP output. */
  sites: Record<'attn_out' | 'mlp_out', { denoise_ld: (number | null)[][]; noise_ld: (number | null)[][] }>;
  /** Each head's z patched at every aligned position: [L][H]. */
  heads: { denoise_ld: (number | null)[][]; noise_ld: (number | null)[][] };
}

interface Golden {
  model_dir: string;
  ids: number[];
  n_layers: number;
  n_heads: number;
  d_model: number;
  z_mean: number[][][];
  ablation: AblationGolden[];
  patching: PatchingGolden[];
  patch_layer: { layer: number; source_ids: number[]; resid_pre: number[][][]; logits_last: number[] };
  /** Whole runs with sublayer outputs or heads patched, several cells at once. */
  patch_sites: {
    site: PatchSite;
    source_ids: number[];
    cells: { layer: number; pos: number }[];
    heads: { layer: number; head: number }[];
    resid_post_last: number[][];
    logits_last: number[];
  }[];
}

/** Every family and variant: the tiny models and transformers' own small models of the newer families. */
const MODELS = [
  'tiny-gpt2',
  'tiny-llama',
  'tiny-qwen2',
  'tiny-neox',
  'tiny-neox-seq',
  'gemma',
  'gemma2',
  'gemma3-mixed',
  'qwen3',
  'olmo2',
  'phi3-longrope',
  'smollm3-nope',
  'mistral-window',
  'llama-dynamic',
];

const req = (ids: number[], extra: Partial<Parameters<typeof analyze>[1]> = {}) => ({
  ids,
  topK: 5,
  maxTokens: 4096,
  patterns: true as const,
  ...extra,
});

/** Rows 0..n_layers-1 of the walk (= resid_pre[0..n_layers-1]). */
function residPre(a: Analysis): Float32Array {
  const { n_layers, pos, d_model } = a.cache;
  return a.cache.resid.subarray(0, n_layers * pos * d_model);
}

function lastRow(a: Analysis): Float32Array {
  const { n_layers, pos, d_model } = a.cache;
  return a.cache.resid.subarray(n_layers * pos * d_model);
}

async function lastLogits(model: LoadedModel, ids: number[], feeds = {}): Promise<Float32Array> {
  const out = await model.forward.run({ input_ids: idsTensor(ids), ...emptyPast(model), ...feeds }, ['logits']);
  return out.logits!.data as Float32Array;
}

/** Golden grid → flat array with NaN for null. */
const grid = (g: (number | null)[][]) => g.flat().map((v) => (v === null ? NaN : v));

function assertGridClose(actual: Float32Array, expected: number[], what: string): void {
  assert.equal(actual.length, expected.length, `${what}: size`);
  for (let i = 0; i < expected.length; i++) {
    if (Number.isNaN(expected[i]!)) assert.ok(Number.isNaN(actual[i]!), `${what}[${i}] should be NaN, got ${actual[i]}`);
    else
      assert.ok(
        Math.abs(actual[i]! - expected[i]!) <= TOL * Math.max(1, Math.abs(expected[i]!)),
        `${what}[${i}]: ${actual[i]} vs ${expected[i]}`,
      );
  }
}

for (const name of MODELS) {
  describe(`interventions vs numpy: ${name}`, () => {
    let model: LoadedModel;
    let g: Golden;
    before(async () => {
      g = readJson<Golden>(path.join(FIXTURES, 'goldens', 'interventions', `${name}.json`));
      // through the graph cache too: the suffix graph then shares the forward graph's weights file
      model = await loadModel(path.join(ROOT, g.model_dir), { threads: 2, executionProvider: 'cpu', cacheDir: tmpDir('td-iv-') });
    });
    after(async () => model?.release());

    test('a clean run records each head’s mean z', async () => {
      const a = await analyze(model, req(g.ids));
      assert.equal(a.cache.interventions, null);
      assertClose(a.cache.zMean!, flat(g.z_mean), TOL, 'z_mean');
    });

    for (const mode of ['zero', 'mean'] as const) {
      test(`${mode} ablation: residual streams, logits, and greedy generation`, async () => {
        const gold = g.ablation.find((x) => x.mode === mode)!;
        const ablation: HeadAblation = { heads: gold.heads, mode };
        const a = await analyze(model, req(g.ids, { interventions: { ablation } }));
        assert.deepEqual(a.cache.interventions, { ablation, patch: null });
        assertNear(residPre(a), flat(gold.resid_pre), `${mode}: resid_pre`);
        assertNear(lastRow(a), flat(gold.resid_post_last), `${mode}: resid_post of the last layer`);
        const feeds = headFeeds(model.spec, ablation, mode === 'mean' ? (a.cache.zMean ?? null) : null);
        // (the ablated run's zMean is its own; mean ablation takes the clean one)
        const clean = await analyze(model, req(g.ids));
        const meanFeeds = mode === 'mean' ? headFeeds(model.spec, ablation, clean.cache.zMean!) : feeds;
        assertNear(await lastLogits(model, g.ids, meanFeeds), gold.logits_last, `${mode}: last logits`);
        const c = await generate(model, { promptIds: g.ids, strategy: { label: 'greedy', kind: 'greedy' }, maxNewTokens: 6, ablation });
        assert.deepEqual(
          c.steps.map((s) => s.id),
          gold.greedy_ids,
          `${mode}: greedy under ablation`,
        );
        assert.deepEqual(c.ablation, ablation);
        // the KV cache agrees with recomputing everything under the ablation
        const re = await generate(
          model,
          { promptIds: g.ids, strategy: { label: 'beam', kind: 'beam', beams: 2 }, maxNewTokens: 4, ablation },
          undefined,
          undefined,
          (f) => new RecomputeStepModel(model, f),
        );
        const kv = await generate(model, {
          promptIds: g.ids,
          strategy: { label: 'beam', kind: 'beam', beams: 2 },
          maxNewTokens: 4,
          ablation,
        });
        assert.deepEqual(
          kv.steps.map((s) => s.id),
          re.steps.map((s) => s.id),
        );
        for (let i = 0; i < kv.steps.length; i++) assertClose([kv.steps[i]!.prob], [re.steps[i]!.prob], 1e-5, `step ${i} prob`);
      });
    }

    test('patching a layer at every position with another run', async () => {
      const pl = g.patch_layer;
      const cells = g.ids.map((_, pos) => ({ layer: pl.layer, pos }));
      const a = await analyze(model, req(g.ids, { interventions: { patch: { sourceIds: pl.source_ids, cells } } }));
      assertNear(residPre(a), flat(pl.resid_pre), 'patched resid_pre');
      assertNear(await lastLogits(model, g.ids, feedsOf(a.cache)), pl.logits_last, 'patched logits');
      assert.equal(a.cache.interventions?.patch?.cells.length, g.ids.length);
      assert.equal(a.cache.interventions?.patch?.sourceTokens, pl.source_ids.length);
    });

    test('whole runs with attention outputs, MLP outputs or heads patched, several layers at once, aligned from the end', async () => {
      assert.deepEqual(
        g.patch_sites.map((c) => c.site),
        ['attn_out', 'mlp_out', 'z'],
      );
      for (const c of g.patch_sites) {
        const patch = { sourceIds: c.source_ids, site: c.site, cells: c.cells, heads: c.heads };
        const a = await analyze(model, req(g.ids, { interventions: { patch } }));
        assertNear(lastRow(a), flat(c.resid_post_last), `${c.site}: patched resid_post of the last layer`);
        assertNear(await lastLogits(model, g.ids, feedsOf(a.cache)), c.logits_last, `${c.site}: patched logits`);
        const rec = a.cache.interventions?.patch;
        assert.equal(rec?.site, c.site);
        const order = (x: { layer: number }, y: { layer: number }) => x.layer - y.layer;
        assert.deepEqual(
          rec?.cells,
          [...c.cells].sort((x, y) => order(x, y) || x.pos - y.pos),
          'recorded sorted',
        );
        assert.deepEqual(
          rec?.heads,
          [...c.heads].sort((x, y) => order(x, y) || x.head - y.head),
          'recorded sorted',
        );
      }
    });

    test('each heatmap cell equals the whole run patched at that cell alone (every site, prompts of different lengths)', async () => {
      const pg = g.patching.find((x) => x.clean_ids.length !== x.corrupted_ids.length)!;
      const [clean, corrupted] = [pg.clean_ids, pg.corrupted_ids];
      const s = model.spec;
      for (const direction of ['denoise', 'noise'] as const) {
        const [base, source] = direction === 'denoise' ? [corrupted, clean] : [clean, corrupted];
        for (const site of PATCH_SITES) {
          const r = await patchingHeatmap(model, { cleanIds: clean, corruptedIds: corrupted, direction, site });
          const cols = site === 'z' ? s.nHeads : base.length;
          // a cell of the first layer, one of the last, one between: the aligned positions, or heads
          const picks: [number, number][] = [
            [0, cols - 1],
            [s.nLayers - 1, site === 'z' ? 0 : cols - 1],
            [Math.floor(s.nLayers / 2), site === 'z' ? Math.floor(cols / 2) : Math.max(0, base.length - source.length) + 1],
          ];
          for (const [L, col] of picks) {
            const patch =
              site === 'z'
                ? { sourceIds: source, site, cells: [], heads: [{ layer: L, head: col }] }
                : { sourceIds: source, site, cells: [{ layer: L, pos: col }] };
            const { feeds } = await interventionFeeds(model, base, { patch });
            const logits = await lastLogits(model, base, feeds);
            const lse = Math.log(logits.reduce((t, v) => t + Math.exp(v), 0));
            const ld = r.contrast === null ? logits[r.target]! - lse : logits[r.target]! - logits[r.contrast]!;
            assertClose([r.ld[L * cols + col]!], [ld], TOL, `${site} ${direction} cell ${L},${col}`);
          }
        }
      }
    });

    test('given a contrast token, the heatmap reads two logits per run: equal to single patched runs of the forward graph', async () => {
      const pg = g.patching.find((x) => x.clean_ids.length === x.corrupted_ids.length) ?? g.patching[0]!;
      const [ids, source] = [pg.corrupted_ids, pg.clean_ids]; // denoise: clean values into the corrupted run
      const T = ids.length;
      const S = source.length;
      const target = pg.target;
      const contrast = (target + 1) % model.spec.dVocab;
      const r = await patchingHeatmap(model, { cleanIds: source, corruptedIds: ids, direction: 'denoise', target, contrast });
      assert.equal(r.metric, 'logit_diff');
      const d = model.spec.dModel;
      const src = await cleanResidPre(model, source);
      for (let L = 0; L < model.spec.nLayers; L++) {
        for (const p of new Set([Math.max(0, T - S), Math.floor((T + Math.max(0, T - S)) / 2), T - 1])) {
          const q = p - (T - S); // aligned from the end
          const row = src.subarray((L * S + q) * d, (L * S + q + 1) * d);
          const logits = await lastLogits(model, ids, cellFeeds(model.spec, L, 'resid_pre', [{ pos: p, row }]));
          assertClose([r.ld[L * T + p]!], [logits[target]! - logits[contrast]!], TOL, `cell ${L},${p}`);
        }
      }
    });

    test('activation-patching heatmap in both directions, equal and unequal lengths, of every site', async () => {
      for (const pg of g.patching) {
        for (const [site, direction] of PATCH_SITES.flatMap((st) => (['denoise', 'noise'] as const).map((dir) => [st, dir] as const))) {
          const r = await patchingHeatmap(model, { cleanIds: pg.clean_ids, corruptedIds: pg.corrupted_ids, direction, site });
          const gold = site === 'resid_pre' ? pg : site === 'z' ? pg.heads : pg.sites[site];
          const what = `${site} ${direction}`;
          assert.equal(r.site, site);
          assert.equal(r.target, pg.target);
          assert.equal(r.contrast, pg.contrast);
          assert.equal(r.metric, pg.contrast === null ? 'logprob' : 'logit_diff');
          assertClose([r.ldClean, r.ldCorrupted], [pg.ld_clean, pg.ld_corrupted], TOL, 'LD clean / corrupted');
          assertGridClose(r.ld, grid(direction === 'denoise' ? gold.denoise_ld : gold.noise_ld), `${what} LD`);
          const base = direction === 'denoise' ? pg.corrupted_ids : pg.clean_ids;
          const src = direction === 'denoise' ? pg.clean_ids : pg.corrupted_ids;
          assert.equal(r.offset, base.length - src.length);
          for (let i = 0; i < r.ld.length; i++) {
            if (Number.isNaN(r.ld[i]!) || r.ldClean === r.ldCorrupted) assert.ok(Number.isNaN(r.normalized[i]!), 'undefined');
            else assertClose([r.normalized[i]!], [(r.ld[i]! - r.ldCorrupted) / (r.ldClean - r.ldCorrupted)], 1e-6, 'normalised');
          }
        }
      }
    });
  });
}

describe('interventions: identities', () => {
  let model: LoadedModel;
  const ids = [83, 258, 269, 265, 264, 265, 220, 261, 262, 285, 265, 11, 290, 262];
  before(async () => {
    model = await loadModel(path.join(FIXTURES, 'models', 'tiny-llama'), { threads: 2, executionProvider: 'cpu' });
  });
  after(async () => model?.release());

  test('a patched run cut to its first positions (views that run a prefix again) computes the same prefix', async () => {
    const source = ids.slice(3); // aligned from the end: the first 3 positions have no counterpart
    const n = 8;
    const s = model.spec;
    const fetch = hook.residPost(s.nLayers - 1);
    for (const patch of [
      {
        sourceIds: source,
        site: 'mlp_out' as const,
        cells: [
          { layer: 0, pos: 5 },
          { layer: 1, pos: 12 },
        ],
      },
      { sourceIds: source, site: 'z' as const, cells: [], heads: [{ layer: 0, head: 1 }] },
    ]) {
      const { feeds } = await interventionFeeds(model, ids, { patch, ablation: { heads: [{ layer: 1, head: 0 }], mode: 'zero' } });
      const run = (x: number[], f: typeof feeds) => model.forward.run({ input_ids: idsTensor(x), ...emptyPast(model), ...f }, [fetch]);
      const whole = (await run(ids, feeds))[fetch]!.data as Float32Array;
      const prefix = (await run(ids.slice(0, n), prefixFeeds(feeds, n)))[fetch]!.data as Float32Array;
      assertClose(prefix, whole.subarray(0, n * s.dModel), 1e-5, `${patch.site}: the first ${n} positions`);
      const clean = (await run(ids.slice(0, n), {}))[fetch]!.data as Float32Array;
      assert.ok(
        clean.some((v, i) => Math.abs(v - prefix[i]!) > 1e-3),
        `${patch.site}: the prefix is patched (and ablated)`,
      );
    }
  });

  test('ablating nothing equals the clean run exactly', async () => {
    const s = model.spec;
    const fetches = ['logits'];
    for (let L = 0; L < s.nLayers; L++) fetches.push(hook.residMid(L), hook.residPost(L), hook.pattern(L), hook.presentKey(L));
    // the patterns' query rows asked for (graph/gates.ts), so the pattern outputs are compared too
    const rows = { [PATTERN_ROWS]: gateFeed(ids.length) };
    const clean = await model.forward.run({ input_ids: idsTensor(ids), ...emptyPast(model), ...rows }, fetches);
    // every layer's head inputs fed explicitly with "no ablation"
    const feeds: Record<string, { data: Float32Array; dims: number[] }> = {};
    for (let L = 0; L < s.nLayers; L++) {
      feeds[interventionName.headScale(L)] = { data: new Float32Array(s.nHeads).fill(1), dims: [1, s.nHeads, 1, 1] };
      feeds[interventionName.headBias(L)] = { data: new Float32Array(s.nHeads * s.headDim), dims: [1, s.nHeads, 1, s.headDim] };
    }
    const fed = await model.forward.run({ input_ids: idsTensor(ids), ...emptyPast(model), ...rows, ...feeds }, fetches);
    for (const f of fetches) assert.deepEqual(fed[f]!.data, clean[f]!.data, f);
    // and the graph without the intervention hooks at all computes the same bits
    const ckpt = openCheckpoint(path.join(FIXTURES, 'models', 'tiny-llama'));
    const bare = buildForwardGraph(s, weightReader(s, ckpt.weights), { patterns: true, interventions: false });
    const session = withGateDefaults(await createSession(bare.encode(), { threads: 2, executionProvider: 'cpu' }));
    try {
      const plain = await session.run({ input_ids: idsTensor(ids), ...emptyPast(model), ...rows }, fetches);
      for (const f of fetches) assert.deepEqual(clean[f]!.data, plain[f]!.data, `${f}: with and without the hooks`);
    } finally {
      await session.release();
    }
    // an ablation of no heads is no intervention at all
    const a = await analyze(model, req(ids, { interventions: { ablation: { heads: [], mode: 'zero' } } }));
    const b = await analyze(model, req(ids));
    assert.equal(a.cache.interventions, null);
    assert.deepEqual(a.cache.resid, b.cache.resid);
    assert.deepEqual(a.lens.topProbs, b.lens.topProbs);
  });

  test('patching every position of a layer with the run’s own values equals the clean run', async () => {
    const clean = await analyze(model, req(ids));
    for (let L = 0; L < model.spec.nLayers; L++) {
      const cells = ids.map((_, pos) => ({ layer: L, pos }));
      const a = await analyze(model, req(ids, { interventions: { patch: { sourceIds: ids, cells } } }));
      assert.deepEqual(a.cache.resid, clean.cache.resid, `layer ${L}: residual streams`);
      assert.deepEqual(a.lens.topIds, clean.lens.topIds, `layer ${L}: lens`);
      assert.deepEqual(a.cache.patterns, clean.cache.patterns, `layer ${L}: patterns`);
    }
  });

  test('patching every position at layer 0 with the corrupted run reproduces the corrupted run', async () => {
    const corrupted = [...ids];
    corrupted[3] = 17;
    corrupted[9] = 40;
    const want = await analyze(model, req(corrupted));
    const cells = ids.map((_, pos) => ({ layer: 0, pos }));
    const a = await analyze(model, req(ids, { interventions: { patch: { sourceIds: corrupted, cells } } }));
    assert.deepEqual(a.cache.resid, want.cache.resid);
    assert.deepEqual(a.cache.residMid, want.cache.residMid);
    assert.deepEqual(a.lens.topIds, want.lens.topIds);
    assert.deepEqual(a.lastLogitsTop, want.lastLogitsTop);
  });

  test('the heatmap equals single-cell patched runs of the forward graph, and skips equal cells', async () => {
    const corrupted = [...ids];
    corrupted[6] = 101;
    const r = await patchingHeatmap(model, { cleanIds: ids, corruptedIds: corrupted, direction: 'noise', target: 7, contrast: 9 });
    const T = ids.length;
    const d = model.spec.dModel;
    const source = await cleanResidPre(model, corrupted);
    for (let L = 0; L < model.spec.nLayers; L++) {
      for (const p of [0, 5, 6, 7, T - 1]) {
        const row = source.subarray((L * T + p) * d, (L * T + p + 1) * d);
        const logits = await lastLogits(model, ids, cellFeeds(model.spec, L, 'resid_pre', [{ pos: p, row }]));
        assertClose([r.ld[L * T + p]!], [logits[7]! - logits[9]!], TOL, `cell ${L},${p}`);
      }
    }
    // positions before the changed token hold the same vectors at every layer; at layer 0 only
    // the changed token differs
    assert.equal(r.skipped, model.spec.nLayers * 6 + (T - 7));
    assert.equal(r.runs + r.skipped, model.spec.nLayers * T);
    // a cell that changes nothing keeps the base run's behaviour exactly: 1 when noising, 0 when
    // denoising (with the log-probability metric too, computed in float64 from the logits)
    const lp = await patchingHeatmap(model, { cleanIds: ids, corruptedIds: corrupted, direction: 'denoise', target: 7, contrast: null });
    for (let L = 0; L < model.spec.nLayers; L++)
      for (let p = 0; p < 6; p++) {
        assert.equal(r.normalized[L * T + p], 1, `noise, cell ${L},${p}`);
        assert.ok(lp.normalized[L * T + p] === 0, `denoise, log p, cell ${L},${p}: ${lp.normalized[L * T + p]}`);
      }
  });

  test('bad interventions are refused by name', async () => {
    await rejectsWith(
      analyze(model, req(ids, { interventions: { ablation: { heads: [{ layer: 9, head: 0 }], mode: 'zero' } } })),
      'BAD_REQUEST',
      /No head 9\.0/,
    );
    await rejectsWith(
      analyze(model, req(ids, { interventions: { ablation: { heads: [{ layer: 0, head: 0 }], mode: 'resample' as AblationMode } } })),
      'BAD_REQUEST',
      /Unknown ablation "resample"/,
    );
    await rejectsWith(
      analyze(model, req(ids, { interventions: { patch: { sourceIds: ids.slice(4), cells: [{ layer: 0, pos: 1 }] } } })),
      'BAD_REQUEST',
      /Position 1 has no token in the patch source/,
    );
    await rejectsWith(
      patchingHeatmap(model, { cleanIds: ids, corruptedIds: ids, direction: 'sideways' as 'noise' }),
      'BAD_REQUEST',
      /Unknown patching direction/,
    );
    await rejectsWith(
      patchingHeatmap(model, { cleanIds: ids, corruptedIds: ids, direction: 'noise', site: 'hook_z' as 'attn_out' }),
      'BAD_REQUEST',
      /Unknown patching site "hook_z": use resid_pre, attn_out, mlp_out/,
    );
  });

  test('sublayer outputs are exactly what the blocks add, and patching one is patching the next resid_pre', async () => {
    const s = model.spec;
    const T = ids.length;
    const d = s.dModel;
    const layers = Array.from({ length: s.nLayers }, (_, L) => L);
    const fetch = async (x: number[]) => {
      const names = layers.flatMap((L) => [hook.attnOut(L), hook.residMid(L), hook.mlpOut(L), hook.residPost(L)]);
      const out = await model.forward.run({ input_ids: idsTensor(x), ...emptyPast(model) }, [hook.residPre(0), ...names]);
      return (n: string) => out[n]!.data as Float32Array;
    };
    const base = await fetch(ids);
    for (const L of layers) {
      const pre = L === 0 ? base(hook.residPre(0)) : base(hook.residPost(L - 1));
      const [attn, mid, mlp, post] = [base(hook.attnOut(L)), base(hook.residMid(L)), base(hook.mlpOut(L)), base(hook.residPost(L))];
      assert.deepEqual(
        Float32Array.from(pre, (v, i) => v + attn[i]!),
        mid,
        `layer ${L}: resid_mid = resid_pre + attn_out`,
      );
      assert.deepEqual(
        Float32Array.from(mid, (v, i) => v + mlp[i]!),
        post,
        `layer ${L}: resid_post = resid_mid + mlp_out`,
      );
    }
    const corrupted = [...ids];
    corrupted[6] = 101;
    const src = await fetch(corrupted);
    const r = await patchingHeatmap(model, {
      cleanIds: ids,
      corruptedIds: corrupted,
      direction: 'noise',
      target: 7,
      contrast: 9,
      site: 'mlp_out',
    });
    for (const L of layers.slice(0, -1))
      for (const p of [6, 9, T - 1]) {
        const row = new Float32Array(d);
        for (let i = 0; i < d; i++) row[i] = base(hook.residMid(L))[p * d + i]! + src(hook.mlpOut(L))[p * d + i]!;
        const logits = await lastLogits(model, ids, cellFeeds(model.spec, L + 1, 'resid_pre', [{ pos: p, row }]));
        assertClose([r.ld[L * T + p]!], [logits[7]! - logits[9]!], TOL, `mlp_out cell ${L},${p}`);
      }
    // the last block's outputs reach the last position only there: every other cell is skipped
    for (const site of ['attn_out', 'mlp_out'] as const) {
      const x = await patchingHeatmap(model, { cleanIds: ids, corruptedIds: corrupted, direction: 'denoise', site });
      const last = (s.nLayers - 1) * T;
      for (let p = 0; p < T - 1; p++) assert.equal(x.ld[last + p], x.ldCorrupted, `${site}: last layer, position ${p}`);
      // positions before the changed token are equal in both runs; at the last layer only T − 1 runs
      assert.equal(x.runs, (s.nLayers - 1) * (T - 6) + 1, `${site}: runs`);
      assert.equal(x.runs + x.skipped, s.nLayers * T, `${site}: every cell`);
    }
  });
});
