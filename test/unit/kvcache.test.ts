// The CPU's time-major KV cache (generate/kvcache.ts): its bookkeeping against a plain
// per-sequence reference under random appends, beam reorders, growth, snapshots and restores;
// and, on real models, generation through it gives exactly the bits of generation through
// present.* (the path it replaced, which GPU providers still take).
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { TimeMajorKv, takesTimeMajorCache, type TimeMajorKvState } from '../../src/engine/generate/kvcache';
import { KvStepModel, type StepModel } from '../../src/engine/generate/generator';
import { hook } from '../../src/engine/graph/forward';
import { loadModel, type LoadedModel } from '../../src/engine/model';
import type { Session } from '../../src/engine/runtime/ort';
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

/** The reference laid out as the graph's past_time_major feed: [positions, batch, n_kv, d_head]. */
function timeMajor(perSeq: Float32Array[][]): Float32Array {
  const batch = perSeq.length;
  const length = perSeq[0]?.length ?? 0;
  const out = new Float32Array(length * batch * BLOCK);
  for (let t = 0; t < length; t++) for (let b = 0; b < batch; b++) out.set(perSeq[b]![t]!, (t * batch + b) * BLOCK);
  return out;
}

function assertMatches(kv: TimeMajorKv, ref: Ref, what: string): void {
  const batch = ref.keys[0]!.length;
  const length = ref.keys[0]![0]?.length ?? 0;
  assert.equal(kv.batch, batch, `${what}: batch`);
  assert.equal(kv.length, length, `${what}: length`);
  assert.equal(kv.bytes, 2 * LAYERS * length * batch * BLOCK * 4, `${what}: bytes`);
  const feeds = kv.feeds();
  assert.equal(Object.keys(feeds).length, 2 * LAYERS);
  for (let L = 0; L < LAYERS; L++) {
    for (const [name, perSeq] of [
      [hook.pastTimeMajorKey(L), ref.keys[L]!],
      [hook.pastTimeMajorValue(L), ref.values[L]!],
    ] as const) {
      const f = feeds[name]!;
      assert.deepEqual(f.dims, [length, batch, KV, D], `${what}: ${name} dims`);
      assert.deepEqual(f.data, timeMajor(perSeq), `${what}: ${name}`);
    }
  }
}

describe('TimeMajorKv: the CPU KV cache', () => {
  test('random appends (1 to 5 positions), reorders (same batch, wider, narrower), growth, restores: always the reference', () => {
    for (let seed = 1; seed <= 40; seed++) {
      const rand = rng(seed);
      let kv = new TimeMajorKv(LAYERS, KV, D);
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
          const restored = new TimeMajorKv(LAYERS, KV, D);
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

  test('growth keeps a quarter (at least 32 positions) of room: appending one position at a time reallocates rarely', () => {
    const kv = new TimeMajorKv(1, 1, 2);
    kv.clear(1);
    let grows = 0;
    let capacity = kv.capacity;
    for (let t = 0; t < 2000; t++) {
      kv.append([Float32Array.of(t, -t)], [Float32Array.of(2 * t, 0)], 1);
      if (kv.capacity !== capacity) grows++;
      capacity = kv.capacity;
    }
    assert.ok(grows <= 20, `${grows} reallocations for 2000 positions`);
    const keys = kv.feeds()[hook.pastTimeMajorKey(0)]!.data;
    assert.equal(keys[2 * 1999], 1999);
    assert.equal(keys[2 * 1999 + 1], -1999);
  });

  test('a snapshot is a copy: what the cache does next leaves it as it was, and a restore copies it again', () => {
    const rand = rng(7);
    const kv = new TimeMajorKv(LAYERS, KV, D);
    kv.clear(1);
    const block = () => Array.from({ length: LAYERS }, () => newBlock(1, 3, rand).headMajor);
    kv.append(block(), block(), 3);
    const state: TimeMajorKvState = kv.snapshot();
    const saved = JSON.stringify(state);
    kv.reorder([0, 0, 0]);
    kv.append(
      Array.from({ length: LAYERS }, () => newBlock(3, 1, rand).headMajor),
      Array.from({ length: LAYERS }, () => newBlock(3, 1, rand).headMajor),
      1,
    );
    kv.reorder([2, 1, 0]);
    assert.equal(JSON.stringify(state), saved);
    const again = new TimeMajorKv(LAYERS, KV, D);
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

  test('wrong sizes and sequences are refused, not read past', () => {
    const kv = new TimeMajorKv(LAYERS, KV, D);
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

/** The model with its generation session's time-major inputs hidden: KvStepModel then passes present.* back as past. */
function throughPresent(model: LoadedModel): LoadedModel {
  const hidden = (s: Session): Session => ({ ...s, inputNames: s.inputNames.filter((n) => !n.startsWith('past_time_major.')) });
  return { ...model, generation: async () => hidden(await model.generation()) };
}

async function trace(m: StepModel, prompt: number[], beams: number): Promise<Float32Array[]> {
  const out = [await m.prefill(prompt)];
  await m.expand(beams);
  const orders = [
    [1, 0, 0],
    [2, 2, 1],
    [0, 1, 2],
    [1, 1, 0],
  ];
  for (let i = 0; i < 8; i++) {
    const tokens = Array.from({ length: beams }, (_, b) => 3 + ((i * 7 + b * 5) % 40));
    out.push(...(await m.step(tokens)).map((x) => x.slice()));
    await m.reorder(orders[i % orders.length]!.map((b) => b % beams).slice(0, beams));
  }
  return out;
}

describe('generation through the time-major cache equals generation through present.*, bit for bit', () => {
  for (const [dir, prompt] of [
    [path.join(FIXTURES, 'models', 'tiny-gpt2'), [5, 17, 42, 8, 99]],
    [path.join(FIXTURES, 'models', 'tiny-qwen2'), [5, 17, 42, 8, 99]],
    [path.join(HF_DIR, 'qwen2-window'), Array.from({ length: 14 }, (_, i) => 3 + ((i * 11) % 50))],
    // ONNX exports written by torch.onnx: the surgery's time-major cache (onnx/surgery.ts)
    [path.join(FIXTURES, 'onnx', 'tiny-gpt2-torch'), [5, 17, 42, 8, 99]],
    [path.join(FIXTURES, 'onnx', 'tiny-llama-torch'), [5, 17, 42, 8, 99]],
    // crosses LongRoPE's original context (64) while stepping: the cache is rebuilt from the sequences
    [path.join(HF_DIR, 'phi3-longrope-short'), Array.from({ length: 60 }, (_, i) => 3 + ((i * 13) % 90))],
  ] as const) {
    test(path.basename(dir), async () => {
      const model = await loadModel(dir, { threads: 1, executionProvider: 'cpu' });
      try {
        assert.ok(takesTimeMajorCache(await model.generation()), 'the CPU graph takes the time-major cache');
        assert.ok(!takesTimeMajorCache(await throughPresent(model).generation()));
        const viaTimeMajor = await trace(new KvStepModel(model), [...prompt], 3);
        const viaPresent = await trace(new KvStepModel(throughPresent(model)), [...prompt], 3);
        assert.equal(viaTimeMajor.length, 1 + 8 * 3);
        for (let i = 0; i < viaPresent.length; i++) assert.deepEqual(viaTimeMajor[i], viaPresent[i], `logits ${i}`);
      } finally {
        await model.release();
      }
    });
  }
});
