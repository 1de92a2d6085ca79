// The CPU's step cache (generate/kvcache.ts): its bookkeeping against a plain per-sequence
// reference under random appends, beam reorders, growth, snapshots and restores; and, on real
// models, generation through it (the graph reading the cache where it lies: graph/forward.ts,
// stepAttention) agrees with generation through present.* (the path GPU providers take, where
// keys and values are concatenated and attended to in one product) to float32 rounding, with
// the same greedy tokens.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { GROW, StepKvCache, takesStepCache, withCacheDefaults, type StepKvState } from '../../src/engine/generate/kvcache';
import { KvStepModel, type StepModel } from '../../src/engine/generate/generator';
import { argmax } from '../../src/engine/generate/processors';
import { hook } from '../../src/engine/graph/forward';
import { statsHook } from '../../src/engine/graph/attnstats';
import { ALL_ROWS, KV_ROWS, PATTERN_ROWS } from '../../src/engine/graph/gates';
import { emptyPast } from '../../src/engine/analyze';
import { loadModel, type LoadedModel } from '../../src/engine/model';
import type { NamedTensor, Session } from '../../src/engine/runtime/ort';
import type { ModelSpec } from '../../src/engine/arch/spec';
import { FIXTURES } from '../helpers';
import { HF_DIR } from '../hfReference';

/** A cache as the model sees it: per layer, per sequence, per position, n_kv·d_head floats of keys and of values. */
type Ref = { keys: Float32Array[][][]; values: Float32Array[][][] };

const LAYERS = 3;
const KV = 2;
const D = 4;
const BLOCK = KV * D;

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** New keys or values head-major [batch, n_kv, seq, d_head], and the same per sequence and position. */
function newBlock(batch: number, seq: number, rand: () => number): { headMajor: Float32Array; rows: Float32Array[][] } {
  const headMajor = Float32Array.from({ length: batch * KV * seq * D }, () => Math.round(rand() * 1000) / 8);
  const rows = Array.from({ length: batch }, (_, b) =>
    Array.from({ length: seq }, (_, t) => {
      const r = new Float32Array(BLOCK);
      for (let h = 0; h < KV; h++) r.set(headMajor.subarray(((b * KV + h) * seq + t) * D, ((b * KV + h) * seq + t + 1) * D), h * D);
      return r;
    }),
  );
  return { headMajor, rows };
}

/**
 * The feed's filled positions per sequence and position (n_kv·d_head floats each), from
 * [batch, n_kv, capacity, d_head]; and whether the unfilled capacity is all zeros.
 */
function fromFeed(data: Float32Array, batch: number, capacity: number, length: number): { perSeq: Float32Array[][]; zeroRest: boolean } {
  const perSeq = Array.from({ length: batch }, (_, b) =>
    Array.from({ length }, (_, t) => {
      const r = new Float32Array(BLOCK);
      for (let h = 0; h < KV; h++) r.set(data.subarray(((b * KV + h) * capacity + t) * D, ((b * KV + h) * capacity + t + 1) * D), h * D);
      return r;
    }),
  );
  let zeroRest = true;
  for (let head = 0; head < batch * KV; head++)
    for (let i = (head * capacity + length) * D; i < (head + 1) * capacity * D; i++) if (data[i] !== 0) zeroRest = false;
  return { perSeq, zeroRest };
}

function assertMatches(kv: StepKvCache, ref: Ref, what: string): void {
  const batch = ref.keys[0]!.length;
  const length = ref.keys[0]![0]?.length ?? 0;
  assert.equal(kv.batch, batch, `${what}: batch`);
  assert.equal(kv.length, length, `${what}: length`);
  assert.equal(kv.bytes, 2 * LAYERS * length * batch * BLOCK * 4, `${what}: bytes`);
  const feeds = kv.feeds();
  assert.equal(Object.keys(feeds).length, 2 * LAYERS + 1);
  assert.deepEqual(feeds[hook.pastCacheLength]!.data, BigInt64Array.of(BigInt(length)), `${what}: length fed`);
  const capacity = kv.capacity;
  assert.ok(capacity >= length, `${what}: capacity ${capacity} < ${length}`);
  for (let L = 0; L < LAYERS; L++) {
    for (const [name, perSeq] of [
      [hook.pastCacheKey(L), ref.keys[L]!],
      [hook.pastCacheValue(L), ref.values[L]!],
    ] as const) {
      const f = feeds[name]!;
      assert.deepEqual(f.dims, [batch, KV, capacity, D], `${what}: ${name} dims`);
      assert.equal(f.data.length, batch * KV * capacity * D, `${what}: ${name} size`);
      const got = fromFeed(f.data as Float32Array, batch, capacity, length);
      assert.deepEqual(got.perSeq, perSeq, `${what}: ${name}`);
      // the graph multiplies the unfilled capacity by probabilities of 0: it must stay finite (zero)
      assert.ok(got.zeroRest, `${what}: ${name} has writes past the filled positions`);
    }
  }
}

describe('StepKvCache: the CPU KV cache', () => {
  test('random appends (1 to 5 positions), reorders (same batch, wider, narrower), growth, restores: always the reference', () => {
    for (let seed = 1; seed <= 40; seed++) {
      const rand = rng(seed);
      let kv = new StepKvCache(LAYERS, KV, D);
      const batch0 = 1 + Math.floor(rand() * 3);
      kv.clear(batch0);
      const ref: Ref = {
        keys: Array.from({ length: LAYERS }, () => Array.from({ length: batch0 }, () => [])),
        values: Array.from({ length: LAYERS }, () => Array.from({ length: batch0 }, () => [])),
      };
      for (let op = 0; op < 30; op++) {
        const batch = kv.batch;
        if (rand() < 0.1) {
          // a snapshot restored into a fresh cache carries on as the original would
          const restored = new StepKvCache(LAYERS, KV, D);
          restored.restore(kv.snapshot());
          kv = restored;
          assertMatches(kv, ref, `seed ${seed} op ${op}: restore`);
        } else if (rand() < 0.6 || kv.length === 0) {
          const seq = rand() < 0.5 ? 1 : 1 + Math.floor(rand() * 5);
          const ks = Array.from({ length: LAYERS }, () => newBlock(batch, seq, rand));
          const vs = Array.from({ length: LAYERS }, () => newBlock(batch, seq, rand));
          const capacity = kv.capacity;
          kv.append(
            ks.map((k) => k.headMajor),
            vs.map((v) => v.headMajor),
            seq,
          );
          assert.ok(kv.capacity >= kv.length);
          if (kv.length <= capacity) assert.equal(kv.capacity, capacity, 'no growth while it fits');
          for (let L = 0; L < LAYERS; L++)
            for (let b = 0; b < batch; b++) {
              ref.keys[L]![b]!.push(...ks[L]!.rows[b]!);
              ref.values[L]![b]!.push(...vs[L]!.rows[b]!);
            }
          assertMatches(kv, ref, `seed ${seed} op ${op}: append ${seq}`);
        } else {
          const n = rand() < 0.6 ? batch : 1 + Math.floor(rand() * 4);
          const from = Array.from({ length: n }, () => Math.floor(rand() * batch));
          kv.reorder(from);
          for (const side of [ref.keys, ref.values])
            for (let L = 0; L < LAYERS; L++) side[L] = from.map((b) => side[L]![b]!.map((r) => r.slice()));
          assertMatches(kv, ref, `seed ${seed} op ${op}: reorder [${from.join(',')}]`);
        }
      }
    }
  });

  test('growth adds GROW positions of room: one position at a time reallocates once per GROW, and never holds more than GROW unfilled', () => {
    const kv = new StepKvCache(1, 1, 2);
    kv.clear(1);
    let grows = 0;
    let capacity = kv.capacity;
    for (let t = 0; t < 2000; t++) {
      kv.append([Float32Array.of(t, -t)], [Float32Array.of(2 * t, 0)], 1);
      if (kv.capacity !== capacity) grows++;
      capacity = kv.capacity;
      assert.ok(capacity - kv.length <= GROW, `${capacity - kv.length} unfilled positions after ${kv.length}`);
    }
    assert.equal(grows, Math.ceil(2000 / (GROW + 1)));
    const keys = kv.feeds()[hook.pastCacheKey(0)]!.data;
    assert.equal(keys[2 * 1999], 1999);
    assert.equal(keys[2 * 1999 + 1], -1999);
  });

  test('a cleared cache starts afresh: no room inherited from a longer or wider generation (a step reads all of it), zeros past the filled positions', () => {
    const kv = new StepKvCache(1, 1, 2);
    kv.clear(3);
    const block = (batch: number, seq: number) => [Float32Array.from({ length: batch * seq * 2 }, () => Number.NaN)];
    kv.append(block(3, 300), block(3, 300), 300);
    kv.clear(1);
    assert.equal(kv.capacity, 0);
    kv.append([Float32Array.of(1, 2)], [Float32Array.of(3, 4)], 1);
    assert.equal(kv.capacity, 1 + GROW);
    const keys = kv.feeds()[hook.pastCacheKey(0)]!.data;
    assert.deepEqual([...keys.subarray(0, 2)], [1, 2]);
    assert.ok(keys.subarray(2).every((x) => x === 0));
  });

  test('a snapshot is a copy: what the cache does next leaves it as it was, and a restore copies it again', () => {
    const rand = rng(7);
    const kv = new StepKvCache(LAYERS, KV, D);
    kv.clear(1);
    const block = () => Array.from({ length: LAYERS }, () => newBlock(1, 3, rand).headMajor);
    kv.append(block(), block(), 3);
    const state: StepKvState = kv.snapshot();
    const saved = JSON.stringify(state);
    kv.reorder([0, 0, 0]);
    kv.append(
      Array.from({ length: LAYERS }, () => newBlock(3, 1, rand).headMajor),
      Array.from({ length: LAYERS }, () => newBlock(3, 1, rand).headMajor),
      1,
    );
    kv.reorder([2, 1, 0]);
    assert.equal(JSON.stringify(state), saved);
    const again = new StepKvCache(LAYERS, KV, D);
    again.restore(state);
    assert.deepEqual(again.snapshot(), state);
    again.reorder([0, 0]);
    again.append(
      Array.from({ length: LAYERS }, () => newBlock(2, 1, rand).headMajor),
      Array.from({ length: LAYERS }, () => newBlock(2, 1, rand).headMajor),
      1,
    );
    assert.equal(JSON.stringify(state), saved, 'a restored cache writes its own arrays');
  });

  test('a run fed both past_key_values.* and a filled step cache is refused (a step attends to the cache and its new positions only)', async () => {
    const spec = { nLayers: 1, nKvHeads: KV, headDim: D } as ModelSpec;
    const runs: string[][] = [];
    const session = withCacheDefaults(
      {
        inputNames: ['input_ids', hook.pastKey(0), hook.pastCacheKey(0)],
        run: async (feeds: Record<string, unknown>) => (runs.push(Object.keys(feeds).sort()), {}),
      } as unknown as Session,
      spec,
    );
    const kv = new StepKvCache(1, KV, D);
    kv.clear(1);
    kv.append([new Float32Array(BLOCK)], [new Float32Array(BLOCK)], 1);
    const input_ids = { data: BigInt64Array.of(1n), dims: [1, 1] };
    const past = (n: number) => ({ data: new Float32Array(n * BLOCK), dims: [1, KV, n, D] });
    await session.run({ input_ids, [hook.pastKey(0)]: past(0), ...kv.feeds() }, []);
    assert.throws(() => session.run({ input_ids, [hook.pastKey(0)]: past(2), ...kv.feeds() }, []), /fed together/);
    kv.clear(1);
    await session.run({ input_ids, [hook.pastKey(0)]: past(2), ...kv.feeds() }, []); // an empty cache
    await session.run({ input_ids, [hook.pastKey(0)]: past(2) }, []); // no cache fed: an empty one
    assert.equal(runs.length, 3);
    assert.ok(runs[2]!.includes(hook.pastCacheLength));
  });

  test('wrong sizes and sequences are refused, not read past', () => {
    const kv = new StepKvCache(LAYERS, KV, D);
    kv.clear(2);
    const ok = () => Array.from({ length: LAYERS }, () => new Float32Array(2 * BLOCK));
    assert.throws(() => kv.append([new Float32Array(BLOCK), ...ok().slice(1)], ok(), 1), /new floats/);
    assert.throws(() => kv.append(ok().slice(1), ok(), 1), /missing/);
    kv.append(ok(), ok(), 1);
    assert.throws(() => kv.reorder([0, 2]), /no sequence 2 of 2/);
    assert.throws(() => kv.reorder([-1]), /no sequence/);
    assert.equal(kv.length, 1);
  });
});

/** The model with its generation session's step-cache inputs hidden: KvStepModel then passes present.* back as past. */
function throughPresent(model: LoadedModel): LoadedModel {
  const hidden = (s: Session): Session => ({ ...s, inputNames: s.inputNames.filter((n) => !n.startsWith('past_cache')) });
  return { ...model, generation: async () => hidden(await model.generation()) };
}

async function trace(m: StepModel, prompt: number[], beams: number, steps = 8): Promise<Float32Array[]> {
  const out = [await m.prefill(prompt)];
  await m.expand(beams);
  const orders = [
    [1, 0, 0],
    [2, 2, 1],
    [0, 1, 2],
    [1, 1, 0],
  ];
  for (let i = 0; i < steps; i++) {
    const tokens = Array.from({ length: beams }, (_, b) => 3 + ((i * 7 + b * 5) % 40));
    out.push(...(await m.step(tokens)).map((x) => x.slice()));
    await m.reorder(orders[i % orders.length]!.map((b) => b % beams).slice(0, beams));
  }
  return out;
}

/** The largest |a − b| over the entries, relative to the largest |b| (at least 1). */
function relativeGap(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let gap = 0;
  let scale = 1;
  for (let i = 0; i < a.length; i++) {
    gap = Math.max(gap, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return gap / scale;
}

/** Logits through the step cache against those through present.*: within 1e-5 of the largest, the same greedy token. */
function assertAgrees(viaCache: Float32Array[], viaPresent: Float32Array[]): void {
  assert.equal(viaCache.length, viaPresent.length);
  for (let i = 0; i < viaPresent.length; i++) {
    const gap = relativeGap(viaCache[i]!, viaPresent[i]!);
    assert.ok(gap <= 1e-5, `logits ${i}: relative gap ${gap.toExponential(2)}`);
    assert.equal(argmax(viaCache[i]!), argmax(viaPresent[i]!), `logits ${i}: the greedy token`);
  }
}

describe('generation through the step cache agrees with generation through present.*', () => {
  // (dir, prompt, exact): an ONNX export's step cache is sliced and concatenated in front of its
  // own attention (onnx/surgery.ts), the same keys in the same sums: the same bits. Our graphs
  // attend to the cache where it lies (forward.ts, stepAttention): sums grouped differently.
  for (const [dir, prompt, exact] of [
    [path.join(FIXTURES, 'models', 'tiny-gpt2'), [5, 17, 42, 8, 99], false],
    // grouped-query heads, and sliding windows the steps cross
    [path.join(FIXTURES, 'models', 'tiny-qwen2'), [5, 17, 42, 8, 99], false],
    [path.join(HF_DIR, 'qwen2-window'), Array.from({ length: 14 }, (_, i) => 3 + ((i * 11) % 50)), false],
    // soft-capped scores, local and global layers
    [path.join(HF_DIR, 'gemma2-window64'), Array.from({ length: 60 }, (_, i) => 3 + ((i * 7) % 90)), false],
    // per-head q/k norms (Qwen3), and layers without RoPE (SmolLM3)
    [path.join(HF_DIR, 'qwen3'), [5, 17, 42, 8, 99], false],
    [path.join(HF_DIR, 'smollm3-nope'), [5, 17, 42, 8, 99], false],
    // ONNX exports written by torch.onnx: the surgery's step cache (onnx/surgery.ts)
    [path.join(FIXTURES, 'onnx', 'tiny-gpt2-torch'), [5, 17, 42, 8, 99], true],
    [path.join(FIXTURES, 'onnx', 'tiny-llama-torch'), [5, 17, 42, 8, 99], true],
    // crosses LongRoPE's original context (64) while stepping: the cache is rebuilt from the sequences
    [path.join(HF_DIR, 'phi3-longrope-short'), Array.from({ length: 60 }, (_, i) => 3 + ((i * 13) % 90)), false],
  ] as const) {
    test(`${path.basename(dir)}${exact ? ', bit for bit' : ''}`, async () => {
      const model = await loadModel(dir, { threads: 1, executionProvider: 'cpu' });
      try {
        assert.ok(takesStepCache(await model.generation()), 'the CPU graph takes the step cache');
        assert.ok(!takesStepCache(await throughPresent(model).generation()));
        const viaCache = await trace(new KvStepModel(model), [...prompt], 3);
        const viaPresent = await trace(new KvStepModel(throughPresent(model)), [...prompt], 3);
        assert.equal(viaCache.length, 1 + 8 * 3);
        if (exact) for (let i = 0; i < viaPresent.length; i++) assert.deepEqual(viaCache[i], viaPresent[i], `logits ${i}`);
        else assertAgrees(viaCache, viaPresent);
      } finally {
        await model.release();
      }
    });
  }
});

describe('generation through the step cache, past its growth', () => {
  // GROW + 6 steps at 3 beams: the capacity grows between steps (after the expansion's regroup),
  // the grown arrays carrying every beam's positions; grouped-query heads (tiny-qwen2)
  test('tiny-qwen2, a beam of 3 for GROW + 6 steps', async () => {
    const model = await loadModel(path.join(FIXTURES, 'models', 'tiny-qwen2'), { threads: 1, executionProvider: 'cpu' });
    try {
      const prompt = [5, 17, 42, 8, 99];
      const viaCache = await trace(new KvStepModel(model), prompt, 3, GROW + 6);
      const viaPresent = await trace(new KvStepModel(throughPresent(model)), prompt, 3, GROW + 6);
      assert.equal(viaCache.length, 1 + (GROW + 6) * 3);
      assertAgrees(viaCache, viaPresent);
    } finally {
      await model.release();
    }
  });
});

describe("a step's attention outputs through the step cache", () => {
  // A step with patterns and statistics fetched (they are computed on every run, fetched by no
  // caller today): the pattern over the keys a query sees and the head statistics agree with the
  // same step fed the keys and values as past_key_values.* (the whole path), to rounding.
  for (const [dir, promptLength] of [
    [path.join(FIXTURES, 'models', 'tiny-qwen2'), 9],
    [path.join(HF_DIR, 'gemma2-window64'), 70],
  ] as const) {
    test(path.basename(dir), async () => {
      const model = await loadModel(dir, { threads: 1, executionProvider: 'cpu' });
      try {
        const { spec } = model;
        const session = await model.generation();
        const prompt = Array.from({ length: promptLength }, (_, i) => 3 + ((i * 11) % 40));
        const ids = (xs: number[]) => ({ data: BigInt64Array.from(xs.map(BigInt)), dims: [1, xs.length] });
        const kvNames = Array.from({ length: spec.nLayers }, (_, L) => [hook.presentKey(L), hook.presentValue(L)]).flat();
        const prefill = await session.run({ input_ids: ids(prompt), ...emptyPast(model) }, kvNames);
        const outputs = Array.from({ length: spec.nLayers }, (_, L) => [
          hook.pattern(L),
          statsHook.kernel(L),
          statsHook.kernelNorm(L),
          statsHook.selfBias(L),
          statsHook.induction(L),
        ]).flat();
        const step = { input_ids: ids([prompt[3]!]), [PATTERN_ROWS]: ALL_ROWS, [KV_ROWS]: ALL_ROWS };
        const past: Record<string, NamedTensor> = {};
        for (let L = 0; L < spec.nLayers; L++) {
          past[hook.pastKey(L)] = prefill[hook.presentKey(L)]!;
          past[hook.pastValue(L)] = prefill[hook.presentValue(L)]!;
        }
        const whole = await session.run({ ...step, ...past }, ['logits', ...outputs]);
        const kv = new StepKvCache(spec.nLayers, spec.nKvHeads, spec.headDim);
        kv.clear(1);
        kv.append(
          Array.from({ length: spec.nLayers }, (_, L) => prefill[hook.presentKey(L)]!.data as Float32Array),
          Array.from({ length: spec.nLayers }, (_, L) => prefill[hook.presentValue(L)]!.data as Float32Array),
          promptLength,
        );
        const cached = await session.run({ ...step, ...emptyPast(model), ...kv.feeds() }, ['logits', ...outputs]);
        for (const name of ['logits', ...outputs]) {
          assert.deepEqual(cached[name]!.dims, whole[name]!.dims, `${name} dims`);
          const [a, b] = [cached[name]!.data as Float32Array, whole[name]!.data as Float32Array];
          for (let i = 0; i < a.length; i++)
            assert.ok(
              Math.abs(a[i]! - b[i]!) <= 1e-5 * Math.max(1, Math.abs(b[i]!)) || (Number.isNaN(a[i]!) && Number.isNaN(b[i]!)),
              `${name}[${i}]: ${a[i]} against ${b[i]}`,
            );
        }
        assert.deepEqual(whole[hook.pattern(0)]!.dims, [1, spec.nHeads, 1, promptLength + 1]);
      } finally {
        await model.release();
      }
    });
  }
});
