// Graph surgery on existing ONNX exports (issue 6, "Existing ONNX exports"):
//  1. exports written by our own builder, reshaped into the Optimum layout (no hook outputs,
//     logits [batch, seq, vocab], attention_mask/position_ids inputs; also with external data
//     and with ORT's fused SkipLayerNormalization), against the safetensors path;
//  2. exports no code of ours built: torch.onnx.export of tiny HF-style modules
//     (tools/reference/export_torch_onnx.py → test/fixtures/onnx/*-torch), against the
//     safetensors path, including KV-cache generation;
//  3. refusals (BAD_ONNX) and fused attention (patterns off).
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import { specFromConfig } from '../../src/engine/arch/spec';
import { hook } from '../../src/engine/graph/forward';
import { GraphBuilder } from '../../src/engine/onnx/builder';
import { instrumentExport } from '../../src/engine/onnx/surgery';
import { placeInstrumented, type LoadedExport } from '../../src/engine/onnx/export-model';
import { loadModel, type LoadedModel } from '../../src/engine/model';
import { analyze } from '../../src/engine/analyze';
import { createSession } from '../../src/engine/runtime/ort';
import { KvStepModel, RecomputeStepModel } from '../../src/engine/generate/generator';
import type { Analysis } from '../../src/shared/analysis';
import { FIXTURES, assertClose, rejectsWith, sameGreedyAndBeam, tmpDir } from '../helpers';
import { exportLikeOf, roundTrip } from '../exportLike';

const exportLike = (fixture: string) => exportLikeOf(path.join(FIXTURES, 'models', fixture));

const TOL = 1e-4;
const RT = { threads: 1, executionProvider: 'cpu' as const };
const IDS = [299, 5, 17, 42, 7, 99, 250, 3, 11, 64, 12];
const META = ['config.json', 'tokenizer.json', 'tokenizer_config.json'];

/** Moves every initializer above 256 bytes into one external file (as large exports do). */
function toExternal(proto: onnx.IModelProto, dataName: string): Uint8Array {
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const t of proto.graph!.initializer!) {
    const raw = t.rawData;
    if (!raw || raw.length <= 256) continue;
    chunks.push(raw);
    t.rawData = new Uint8Array(0);
    t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
    t.externalData = [
      { key: 'location', value: dataName },
      { key: 'offset', value: String(offset) },
      { key: 'length', value: String(raw.length) },
    ];
    offset += raw.length;
  }
  const out = new Uint8Array(offset);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** ORT-style fusion: LayerNormalization(Add(a, b)) → SkipLayerNormalization with the sum as output 3. */
function fuseSkipLayerNorm(proto: onnx.IModelProto): number {
  const g = proto.graph!;
  const producer = new Map(g.node!.map((n) => [n.output![0]!, n]));
  const consts = new Set(g.initializer!.map((t) => t.name!));
  const drop = new Set<onnx.INodeProto>();
  let fused = 0;
  for (const ln of g.node!) {
    if (ln.opType !== 'LayerNormalization') continue;
    let src = ln.input![0]!;
    while (producer.get(src)?.opType === 'Identity') src = producer.get(src)!.input![0]!;
    const add = producer.get(src);
    if (!add || add.opType !== 'Add' || add.input!.some((x) => consts.has(x)) || drop.has(add)) continue;
    const eps = ln.attribute!.find((a) => a.name === 'epsilon')!;
    Object.assign(ln, {
      opType: 'SkipLayerNormalization',
      domain: 'com.microsoft',
      input: [add.input![0]!, add.input![1]!, ln.input![1]!, ln.input![2]!],
      output: [ln.output![0]!, '', '', src],
      attribute: [eps],
    });
    drop.add(add);
    fused++;
  }
  g.node = g.node!.filter((n) => !drop.has(n));
  proto.opsetImport = [...proto.opsetImport!, { domain: 'com.microsoft', version: 1 }];
  return fused;
}

function writeExport(dir: string, fixture: string, proto: onnx.IModelProto, external = false): string {
  fs.mkdirSync(path.join(dir, 'onnx'), { recursive: true });
  for (const f of META) fs.copyFileSync(path.join(FIXTURES, 'models', fixture, f), path.join(dir, f));
  if (external) fs.writeFileSync(path.join(dir, 'onnx', 'model.onnx_data'), toExternal(proto, 'model.onnx_data'));
  fs.writeFileSync(path.join(dir, 'onnx', 'model.onnx'), onnx.ModelProto.encode(onnx.ModelProto.create(proto)).finish());
  return dir;
}

/** Everything the analysis shows, export vs safetensors. */
function compareAnalyses(a: Analysis, b: Analysis, what: string): Record<string, number> {
  const d: Record<string, number> = {};
  d.resid = assertClose(a.cache.resid, b.cache.resid, TOL, `${what}: resid`);
  d.residMid = assertClose(a.cache.residMid, b.cache.residMid, TOL, `${what}: resid_mid`);
  if (b.cache.patterns) {
    assert.ok(a.cache.patterns, `${what}: patterns computed`);
    d.patterns = assertClose(a.cache.patterns, b.cache.patterns, TOL, `${what}: patterns`);
  }
  assert.deepEqual(Array.from(a.lens.topIds), Array.from(b.lens.topIds), `${what}: lens top ids`);
  d.lensProbs = assertClose(a.lens.topProbs, b.lens.topProbs, TOL, `${what}: lens probs`);
  d.entropy = assertClose(a.lens.entropy, b.lens.entropy, TOL, `${what}: lens entropy`);
  d.kl = assertClose(a.lens.klToFinal, b.lens.klToFinal, TOL, `${what}: KL to final`);
  const finite = (x: Float32Array) => Array.from(x).map((v) => (Number.isNaN(v) ? 0 : v));
  d.nextLogprob = assertClose(finite(a.lens.nextLogprob), finite(b.lens.nextLogprob), TOL, `${what}: next log-prob`);
  d.cosNext = assertClose(finite(a.lens.cosNext), finite(b.lens.cosNext), TOL, `${what}: cos next`);
  assert.deepEqual(
    a.lastLogitsTop.map((t) => t.id),
    b.lastLogitsTop.map((t) => t.id),
    `${what}: last-position top ids`,
  );
  d.logits = assertClose(
    a.lastLogitsTop.map((t) => t.prob),
    b.lastLogitsTop.map((t) => t.prob),
    TOL,
    `${what}: last-position probabilities`,
  );
  d.normsFinal = assertClose(a.walk.normsFinal, b.walk.normsFinal, TOL, `${what}: norms after ln_final`);
  return d;
}

const diffs: Record<string, Record<string, number>> = {};
after(() => {
  const worst = (r: Record<string, number>) => Math.max(...Object.values(r));
  for (const [k, v] of Object.entries(diffs)) console.log(`# ${k}: max abs diff ${worst(v).toExponential(2)} ${JSON.stringify(v)}`);
});

const refs = new Map<string, Promise<{ model: LoadedModel; a: Analysis }>>();
function reference(fixture: string) {
  let r = refs.get(fixture);
  if (!r) {
    r = (async () => {
      const model = await loadModel(path.join(FIXTURES, 'models', fixture), RT);
      return { model, a: await analyze(model, { ids: IDS, topK: 5, maxTokens: 64, patterns: true }) };
    })();
    refs.set(fixture, r);
  }
  return r;
}
after(async () => {
  for (const r of refs.values()) await (await r).model.release();
});

describe('surgery on exports written by our builder (Optimum layout)', () => {
  const cases: { name: string; fixture: string; external?: boolean; fuse?: boolean }[] = [
    { name: 'tiny-llama', fixture: 'tiny-llama' },
    { name: 'tiny-gpt2', fixture: 'tiny-gpt2' },
    { name: 'tiny-neox (parallel)', fixture: 'tiny-neox' },
    { name: 'tiny-qwen2', fixture: 'tiny-qwen2' },
    { name: 'tiny-llama, external data', fixture: 'tiny-llama', external: true },
    { name: 'tiny-gpt2, fused SkipLayerNormalization', fixture: 'tiny-gpt2', fuse: true },
  ];
  for (const c of cases) {
    describe(c.name, () => {
      let model: LoadedExport;
      let proto: onnx.IModelProto;
      let dir: string;
      before(async () => {
        proto = exportLike(c.fixture);
        if (c.fuse) assert.ok(fuseSkipLayerNorm(proto) >= 3, 'fused some LayerNorms');
        dir = writeExport(path.join(tmpDir('td-onnx-'), c.fixture), c.fixture, roundTrip(proto), c.external);
        model = (await loadModel(dir, RT)) as LoadedExport;
      });
      after(async () => model?.release());

      test('the plain export itself runs: full-sequence logits match the safetensors model', async () => {
        if (c.external) return; // covered by the same graph without external data
        const { model: ref } = await reference(c.fixture);
        const s = ref.spec;
        const session = await createSession(onnx.ModelProto.encode(onnx.ModelProto.create(proto)).finish(), RT);
        try {
          const T = IDS.length;
          const feeds: Parameters<typeof session.run>[0] = {
            input_ids: { data: BigInt64Array.from(IDS, BigInt), dims: [1, T] },
            attention_mask: { data: new BigInt64Array(T).fill(1n), dims: [1, T] },
            position_ids: { data: BigInt64Array.from(IDS.keys(), BigInt), dims: [1, T] },
          };
          for (let L = 0; L < s.nLayers; L++)
            for (const n of [hook.pastKey(L), hook.pastValue(L)])
              feeds[n] = { data: new Float32Array(0), dims: [1, s.nKvHeads, 0, s.headDim] };
          const out = await session.run(feeds, ['logits']);
          assert.deepEqual(out.logits!.dims, [1, T, s.dVocab]);
        } finally {
          await session.release();
        }
      });

      test('the surgery finds the structure', () => {
        const d = model.surgery;
        const spec = specFromConfig(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')));
        assert.equal(d.nLayers, spec.nLayers);
        assert.equal(d.dModel, spec.dModel);
        assert.equal(d.norm, spec.norm);
        assert.equal(d.patterns, true, d.patternsNote);
        assert.equal(d.tiedEmbeddings, spec.tiedEmbeddings);
        assert.equal(d.positionRows !== null, c.fixture === 'tiny-gpt2');
        assert.deepEqual(d.computedInputs, ['attention_mask', 'position_ids']);
        assert.equal(d.logits, 'before-head');
        if (c.fuse) assert.equal(d.finalNorm, 'SkipLayerNormalization');
        assert.deepEqual(
          [...model.forward.inputNames].sort(),
          [
            'input_ids',
            hook.pastCacheLength,
            ...Array.from({ length: spec.nLayers }, (_, L) => [
              hook.pastKey(L),
              hook.pastValue(L),
              hook.pastCacheKey(L),
              hook.pastCacheValue(L),
            ]).flat(),
          ].sort(),
        );
      });

      test('residual streams, patterns, lens and logits equal the safetensors path', async () => {
        const { a: b } = await reference(c.fixture);
        const a = await analyze(model, { ids: IDS, topK: 5, maxTokens: 64, patterns: true });
        diffs[`builder export ${c.name}`] = compareAnalyses(a, b, c.name);
      });
    });
  }
});

describe('surgery on torch.onnx.export graphs (test/fixtures/onnx, tools/reference/export_torch_onnx.py)', () => {
  for (const fixture of ['tiny-llama', 'tiny-gpt2', 'tiny-neox']) {
    describe(fixture, () => {
      const dir = path.join(FIXTURES, 'onnx', `${fixture}-torch`);
      let model: LoadedExport;
      before(async () => {
        model = (await loadModel(dir, RT)) as LoadedExport;
      });
      after(async () => model?.release());

      test('structure', () => {
        const d = model.surgery;
        assert.equal(d.patterns, true, d.patternsNote);
        assert.equal(d.parallelResidual, fixture === 'tiny-neox');
        assert.equal(d.residMid, fixture === 'tiny-neox' ? 'synthesized' : 'graph');
        assert.equal(d.finalNorm, fixture === 'tiny-llama' ? 'decomposed RMSNorm' : 'LayerNormalization');
        assert.equal(d.tiedEmbeddings, fixture === 'tiny-gpt2');
        assert.equal(model.info.n_layers, model.spec.nLayers);
      });

      test('residual streams, patterns, lens and logits equal the safetensors path', async () => {
        const { a: b } = await reference(fixture);
        const a = await analyze(model, { ids: IDS, topK: 5, maxTokens: 64, patterns: true });
        diffs[`torch export ${fixture}`] = compareAnalyses(a, b, fixture);
      });

      test('KV-cache steps through the export equal full recompute', async () => {
        const kv = new KvStepModel(model);
        const re = new RecomputeStepModel(model);
        assertClose(await kv.prefill(IDS.slice(0, 4)), await re.prefill(IDS.slice(0, 4)), TOL, 'prefill');
        kv.expand(2);
        re.expand(2);
        for (const t of [IDS[4]!, IDS[5]!, IDS[6]!]) {
          const x = await kv.step([t, 100]);
          const y = await re.step([t, 100]);
          assertClose(x[0]!, y[0]!, TOL, 'step beam 0');
          assertClose(x[1]!, y[1]!, TOL, 'step beam 1');
        }
      });

      test('greedy and beam continuations equal the safetensors model', async () => {
        const { model: ref } = await reference(fixture);
        for (const x of await sameGreedyAndBeam(model, ref, IDS.slice(0, 5), 24)) assert.ok(x.steps.length > 0);
      });
    });
  }
});

/** A small export-shaped graph for structure checks (need not run). */
function toyExport(opts: { embedding: boolean; fused: boolean }): onnx.IModelProto {
  const V = 16;
  const d = 8;
  const g = new GraphBuilder('toy');
  const ids = g.input('input_ids', 'int64', ['batch', 'seq']);
  g.input('attention_mask', 'int64', ['batch', 'total']);
  const pk = g.input(hook.pastKey(0), 'float32', ['batch', 2, 'past', 4]);
  const pv = g.input(hook.pastValue(0), 'float32', ['batch', 2, 'past', 4]);
  const r = (n: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i + n));
  const mat = (name: string, a: number, b: number) => g.initializer(name, r(a * b), [a, b]);
  const vec = (name: string, n: number) => g.initializer(name, r(n), [n]);
  const x = opts.embedding
    ? g.op('Gather', [mat('embed', V, d), ids], { axis: 0 })
    : g.op('MatMul', [g.op('Unsqueeze', [g.op('Cast', [ids], { to: 1 }), g.ints([2])]), mat('proj', 1, d)]);
  const ln = (y: string, n: string) =>
    g.op('LayerNormalization', [y, vec(`${n}.w`, d), vec(`${n}.b`, d)], { axis: -1, epsilon: { float: 1e-5 } });
  const h = ln(x, 'ln1');
  const q = g.op('MatMul', [h, mat('wq', d, d)]);
  const k = g.op('MatMul', [h, mat('wk', d, d)]);
  const v = g.op('MatMul', [h, mat('wv', d, d)]);
  let attn: string;
  let presentK: string;
  let presentV: string;
  if (opts.fused) {
    [attn, presentK, presentV] = g.opN('MultiHeadAttention', [q, k, v, '', '', '', pk, pv], 3, { num_heads: 2 }) as [
      string,
      string,
      string,
    ];
  } else {
    presentK = g.op('Concat', [pk, k], { axis: 2 });
    presentV = g.op('Concat', [pv, v], { axis: 2 });
    attn = g.op('MatMul', [g.op('Softmax', [g.op('MatMul', [q, g.op('Transpose', [k], { perm: [0, 2, 1] })])], { axis: -1 }), v]);
  }
  const mid = g.op('Add', [x, g.op('MatMul', [attn, mat('wo', d, d)])]);
  const post = g.op('Add', [
    mid,
    g.op('MatMul', [g.op('Relu', [g.op('MatMul', [ln(mid, 'ln2'), mat('w1', d, 2 * d)])]), mat('w2', 2 * d, d)]),
  ]);
  g.output('logits', g.op('MatMul', [ln(post, 'lnf'), mat('lm_head', d, V)]), 'float32', ['batch', 'seq', V]);
  g.output(hook.presentKey(0), presentK, 'float32', ['batch', 2, 'total', 4]);
  g.output(hook.presentValue(0), presentV, 'float32', ['batch', 2, 'total', 4]);
  const proto = g.toModelProto();
  for (const n of proto.graph!.node!) if (n.opType === 'MultiHeadAttention') n.domain = 'com.microsoft';
  proto.opsetImport = [...proto.opsetImport!, { domain: 'com.microsoft', version: 1 }];
  return roundTrip(proto);
}

describe('what the surgery refuses or turns off', () => {
  test('a graph with no embedding Gather is BAD_ONNX with a message saying so', async () => {
    assert.throws(
      () => instrumentExport(toyExport({ embedding: false, fused: false })),
      (e: Error & { code?: string }) => e.code === 'BAD_ONNX' && /no token-embedding Gather/.test(e.message),
    );
    // through loadModel, too
    const dir = writeExport(path.join(tmpDir('td-onnx-bad-'), 'toy'), 'tiny-gpt2', toyExport({ embedding: false, fused: false }));
    await rejectsWith(loadModel(dir, RT), 'BAD_ONNX', /no token-embedding Gather/);
  });

  test('the same graph with an embedding is understood (patterns from the Softmax)', () => {
    const r = instrumentExport(toyExport({ embedding: true, fused: false }));
    assert.equal(r.description.nLayers, 1);
    assert.equal(r.description.patterns, true);
    assert.ok(r.description.hooks.includes(hook.pattern(0)));
  });

  test('fused attention (com.microsoft MultiHeadAttention): residual hooks, patterns disabled', () => {
    const r = instrumentExport(toyExport({ embedding: true, fused: true }));
    assert.equal(r.description.patterns, false);
    assert.match(r.description.patternsNote, /com\.microsoft\.MultiHeadAttention/);
    assert.deepEqual(r.description.hooks, [hook.residPre(0), hook.residMid(0), hook.residPost(0)]);
    const outs = r.model.graph!.output!.map((o) => o.name);
    assert.ok(outs.includes(hook.residMid(0)) && !outs.includes(hook.pattern(0)));
    assert.ok(!r.model.graph!.input!.some((i) => i.name === 'attention_mask'), 'attention_mask is computed in the graph');
  });

  test('an export without past_key_values, or without logits, is refused with what is missing', () => {
    const noPast = toyExport({ embedding: true, fused: false });
    noPast.graph!.input = noPast.graph!.input!.filter((i) => !i.name!.startsWith('past_'));
    assert.throws(() => instrumentExport(noPast), /no past_key_values/);
    const noLogits = toyExport({ embedding: true, fused: false });
    noLogits.graph!.output = noLogits.graph!.output!.filter((o) => o.name !== 'logits');
    assert.throws(() => instrumentExport(noLogits), /no "logits" output/);
  });

  test('external data: without a usable cache folder the graph is written next to the original', async () => {
    const proto = exportLike('tiny-llama');
    const dir = writeExport(path.join(tmpDir('td-onnx-place-'), 'm'), 'tiny-llama', proto, true);
    const file = path.join(dir, 'onnx', 'model.onnx');
    const blocker = path.join(dir, 'not-a-folder');
    fs.writeFileSync(blocker, '');
    const bytes = fs.readFileSync(file);
    const placed = placeInstrumented(file, bytes, ['model.onnx_data'], 'x', path.join(blocker, 'cache'));
    assert.equal(placed, path.join(dir, 'onnx', 'model.td-instrumented-x.onnx'));
    const session = await createSession(placed, RT);
    await session.release();
    // and the normal placement: a cache folder with a hard link to the data
    const cached = placeInstrumented(file, bytes, ['model.onnx_data'], 'x', path.join(dir, 'cache'));
    assert.equal(
      fs.statSync(path.join(path.dirname(cached), 'model.onnx_data')).ino,
      fs.statSync(path.join(dir, 'onnx', 'model.onnx_data')).ino,
    );
    await (await createSession(cached, RT)).release();
  });

  test('external data may not leave the model folder', async () => {
    const proto = exportLike('tiny-llama');
    const dir = writeExport(path.join(tmpDir('td-onnx-ext-'), 'm'), 'tiny-llama', proto, true);
    const p = onnx.ModelProto.decode(fs.readFileSync(path.join(dir, 'onnx', 'model.onnx')));
    for (const t of p.graph!.initializer!) for (const e of t.externalData ?? []) if (e.key === 'location') e.value = '../model.onnx_data';
    fs.writeFileSync(path.join(dir, 'onnx', 'model.onnx'), onnx.ModelProto.encode(p).finish());
    await rejectsWith(loadModel(dir, RT), 'BAD_ONNX', /leaves the model's folder/);
  });
});
