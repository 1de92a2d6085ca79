// Generation: processors and samplers on hand-made logits, beam search on a hand-built
// model, and the KV cache against full recompute on every architecture family.
import { describe, test, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import {
  argmax,
  argsortDesc,
  frequencyPresencePenalty,
  minP,
  noRepeatNgram,
  nucleusOrder,
  repetitionPenalty,
  Rng,
  sampleMultinomial,
  shouldStop,
  softmax,
  temperature,
  topIndices,
  topK,
  topP,
} from '../../src/engine/generate/processors';
import {
  beamSearch,
  decodeSingle,
  forgetPromptState,
  KvStepModel,
  RecomputeStepModel,
  completionMetrics,
  stepStats,
  type DecodeOptions,
  type StepModel,
} from '../../src/engine/generate/generator';
import { generate } from '../../src/engine/generate';
import { Engine } from '../../src/engine/engine';
import { loadModel, type LoadedModel } from '../../src/engine/model';
import { cursorPromptStart, shiftedOffset, type Strategy } from '../../src/shared/generation';
import { FIXTURES, assertClose } from '../helpers';

const ctx = (ids: number[], promptLength = 0) => ({ ids, promptLength });
const kept = (x: Float32Array) => Array.from(x.keys()).filter((i) => x[i] !== -Infinity);
const logitsOf = (probs: number[]) => Float32Array.from(probs, Math.log);

describe('logits processors', () => {
  test('temperature divides the logits', () => {
    const x = Float32Array.of(2, -4, 1);
    temperature(2).apply(x, ctx([]));
    assert.deepEqual(Array.from(x), [1, -2, 0.5]);
    assert.throws(() => temperature(0), /temperature must be > 0/);
  });

  test('top-k keeps the k highest', () => {
    const x = Float32Array.of(1, 3, 2, 0);
    topK(2).apply(x, ctx([]));
    assert.deepEqual(kept(x), [1, 2]);
  });

  test('top-p keeps the smallest set reaching p', () => {
    const probs = [0.15, 0.5, 0.05, 0.3];
    const a = logitsOf(probs);
    topP(0.7).apply(a, ctx([]));
    assert.deepEqual(kept(a), [1, 3]); // 0.5 + 0.3 = 0.8 ≥ 0.7; 0.5 alone is not enough
    const b = logitsOf(probs);
    topP(0.5).apply(b, ctx([]));
    assert.deepEqual(kept(b), [1]);
    const c = logitsOf(probs);
    topP(0.96).apply(c, ctx([]));
    assert.deepEqual(kept(c), [0, 1, 2, 3]);
  });

  test('the vocabulary is not sorted per step: top-k, top-p, the alternatives and the beams select exactly what a full sort picks', () => {
    // the sorting implementations these replaced, as references
    const sortedFinite = (x: ArrayLike<number>) =>
      Array.from({ length: x.length }, (_, i) => i)
        .filter((i) => x[i]! > -Infinity)
        .sort((a, b) => x[b]! - x[a]! || a - b);
    const refTopK = (x: Float32Array, k: number) => {
      const finite = Array.from(x).filter((v) => v !== -Infinity);
      const t = k >= finite.length ? -Infinity : finite.sort((a, b) => b - a)[k - 1]!;
      for (let i = 0; i < x.length; i++) if (x[i]! < t) x[i] = -Infinity;
    };
    const refTopP = (x: Float32Array, p: number) => {
      const probs = softmax(x);
      const order = Array.from({ length: x.length }, (_, i) => i).sort((a, b) => x[b]! - x[a]! || a - b);
      let mass = 0;
      let keep = 0;
      while (keep < order.length) {
        mass += probs[order[keep]!]!;
        keep++;
        if (mass >= p - 1e-12) break;
      }
      for (let r = keep; r < order.length; r++) x[order[r]!] = -Infinity;
    };
    const rng = new Rng(7);
    for (let trial = 0; trial < 60; trial++) {
      const V = [5, 40, 300, 5000][trial % 4]!;
      // few distinct values (many ties), some -Infinity, and a spread from flat to peaked
      const spread = [0.1, 1, 4, 12][(trial >> 2) % 4]!;
      const x = Float32Array.from({ length: V }, () => (rng.next() < 0.1 ? -Infinity : Math.round(rng.next() * 20) * (spread / 20)));
      for (const m of [1, 3, 8, 64, V + 3]) assert.deepEqual(topIndices(x, m), sortedFinite(x).slice(0, m), `topIndices V=${V} m=${m}`);
      for (const k of [1, 2, 7, 50, 255, 300, V]) {
        const a = Float32Array.from(x);
        const b = Float32Array.from(x);
        topK(k).apply(a, ctx([]));
        refTopK(b, k);
        assert.deepEqual(a, b, `top-k ${k}, V=${V}`);
      }
      for (const p of [0.1, 0.5, 0.9, 0.99, 0.999999]) {
        const a = Float32Array.from(x);
        const b = Float32Array.from(x);
        topP(p).apply(a, ctx([]));
        refTopP(b, p);
        assert.deepEqual(a, b, `top-p ${p}, V=${V}, spread ${spread}`);
      }
      // the full sort (top-p's fallback) against comparing logits then indices, with ±0 and ±Infinity among them
      const y = x.map((v, i) => (i % 7 === 3 ? -0 : i % 11 === 5 ? 0 : i % 13 === 8 ? Infinity : v));
      assert.deepEqual(
        Array.from(argsortDesc(y)),
        Array.from({ length: V }, (_, i) => i).sort((a, b) => y[b]! - y[a]! || a - b),
        `argsortDesc V=${V}`,
      );
      const raw = x.map((v) => (v === -Infinity ? -30 : v));
      assert.deepEqual(
        stepStats(raw, 0, 5).top.map((t) => t.id),
        sortedFinite(raw).slice(0, 5),
        'alternatives',
      );
    }
  });

  test("a wide nucleus in a GPT-2-sized vocabulary: only the buckets that hold it are sorted, with the full sort's result", () => {
    const V = 50257;
    const rng = new Rng(11);
    let bucketed = 0;
    for (const spread of [0.5, 2, 4, 8])
      for (const ties of [false, true]) {
        // roughly normal logits (a random or a high-temperature model), some tied, some -Infinity, ±0
        const x = Float32Array.from({ length: V }, (_, i) => {
          if (i % 97 === 13) return -Infinity;
          if (i % 89 === 7) return i % 2 ? 0 : -0;
          const v = (rng.next() + rng.next() + rng.next() - 1.5) * spread;
          return ties ? Math.round(v * 8) / 8 : v;
        });
        const full = argsortDesc(x);
        const probs = softmax(x);
        for (const p of [0.3, 0.9, 0.95, 0.999]) {
          const c = nucleusOrder(x, probs, p);
          // a prefix of the full order, holding the nucleus
          assert.deepEqual(Array.from(c), Array.from(full.subarray(0, c.length)), `prefix, spread ${spread} p ${p}`);
          assert.ok(c.reduce((a, i) => a + probs[i]!, 0) >= p, `holds p, spread ${spread} p ${p}`);
          if (c.length < V) bucketed++;
          const a = Float32Array.from(x);
          topP(p).apply(a, ctx([]));
          let mass = 0;
          let keep = 0;
          while (mass < p - 1e-12) mass += probs[full[keep++]!]!;
          const b = Float32Array.from(x);
          for (let r = keep; r < V; r++) b[full[r]!] = -Infinity;
          // nuclei under a third of the vocabulary are found in their buckets (wider ones sort everything)
          if (keep < V / 3) assert.ok(c.length < keep * 1.2, `bucketed: spread ${spread} p ${p}, nucleus ${keep}`);
          assert.deepEqual(a, b, `top-p ${p}, spread ${spread}, ties ${ties}`);
        }
      }
    assert.ok(bucketed >= 28, `the bucketed path ran in ${bucketed} of 32 cases`);
  });

  test("a step's entropy from one pass of exponentials equals −Σ p·ln p, from flat to peaked", () => {
    for (const V of [2, 7, 1000, 50257])
      for (const spread of [0.01, 1, 5, 30, 200]) {
        let s = V * 31 + spread;
        const raw = Float32Array.from({ length: V }, () => {
          s = (s * 16807) % 2147483647;
          return (s / 2147483647 - 0.5) * spread;
        });
        raw[V >> 1] = spread; // one clear favourite when the spread is wide
        const max = Math.max(...raw);
        const lse = max + Math.log(raw.reduce((a, v) => a + Math.exp(v - max), 0));
        let h = 0;
        for (const v of raw) h -= Math.exp(v - lse) * (v - lse);
        const st = stepStats(raw, 1, 3);
        assert.ok(Math.abs(st.entropy - h) <= 1e-12 * Math.max(1, h), `V=${V} spread ${spread}: ${st.entropy} vs ${h}`);
        assert.equal(st.lse, lse);
        assert.equal(st.prob, Math.exp(raw[1]! - lse));
      }
  });

  test('min-p drops tokens below min_p × top probability', () => {
    const x = logitsOf([0.5, 0.3, 0.15, 0.05]);
    minP(0.2).apply(x, ctx([]));
    assert.deepEqual(kept(x), [0, 1, 2]);
  });

  test('repetition penalty divides positive and multiplies negative logits of seen tokens', () => {
    const x = Float32Array.of(2, -2, 1, 5);
    repetitionPenalty(2).apply(x, ctx([0, 1, 1]));
    assert.deepEqual(Array.from(x), [1, -4, 1, 5]);
  });

  test('frequency and presence penalties count generated tokens only', () => {
    const x = Float32Array.of(0, 0, 0);
    frequencyPresencePenalty(0.5, 1).apply(x, ctx([2, 0, 0, 1], 1));
    assert.deepEqual(Array.from(x), [-2, -1.5, 0]);
  });

  test('no-repeat n-gram bans completing a seen n-gram', () => {
    const x = Float32Array.of(0, 0, 0, 0, 0, 0, 0);
    noRepeatNgram(2).apply(x, ctx([5, 6, 3, 5]));
    assert.deepEqual(kept(x), [0, 1, 2, 3, 4, 5]); // "5 6" seen → 6 banned after 5
    const y = Float32Array.of(0, 0, 0, 0);
    noRepeatNgram(3).apply(y, ctx([1, 2, 3, 1, 2]));
    assert.deepEqual(kept(y), [0, 1, 2]);
  });
});

describe('samplers and stopping', () => {
  test('the seeded RNG is reproducible and uniform', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const xs = Array.from({ length: 1000 }, () => a.next());
    assert.deepEqual(
      xs,
      Array.from({ length: 1000 }, () => b.next()),
    );
    assert.notDeepEqual(
      xs.slice(0, 10),
      Array.from({ length: 10 }, () => new Rng(43).next()),
    );
    const mean = xs.reduce((s, v) => s + v, 0) / xs.length;
    assert.ok(Math.abs(mean - 0.5) < 0.05, `mean ${mean}`);
    assert.ok(xs.every((v) => v >= 0 && v < 1));
  });

  test('multinomial sampling follows the distribution', () => {
    const probs = [0.1, 0.6, 0.3];
    const rng = new Rng(7);
    const counts = [0, 0, 0];
    const n = 20000;
    for (let i = 0; i < n; i++) counts[sampleMultinomial(logitsOf(probs), rng)]!++;
    counts.forEach((c, i) => assert.ok(Math.abs(c / n - probs[i]!) < 0.015, `token ${i}: ${c / n}`));
    const masked = Float32Array.of(-Infinity, 0, -Infinity);
    for (let i = 0; i < 100; i++) assert.equal(sampleMultinomial(masked, rng), 1);
  });

  test('greedy is argmax; softmax sums to 1', () => {
    assert.equal(argmax(Float32Array.of(0.1, 5, 2)), 1);
    const p = softmax(Float32Array.of(1, 2, -Infinity));
    assertClose([p[0]! + p[1]! + p[2]!], [1], 1e-12, 'softmax sum');
    assert.equal(p[2], 0);
  });

  test('stopping criteria', () => {
    const c = { maxNewTokens: 3, eosIds: [0], stopStrings: ['\n\n'] };
    assert.equal(shouldStop(c, { newIds: [5, 0], text: 'a' }), 'eos');
    assert.equal(shouldStop(c, { newIds: [5, 6], text: 'a\n\nb' }), 'stop_string');
    assert.equal(shouldStop(c, { newIds: [5, 6, 7], text: 'abc' }), 'max_new_tokens');
    assert.equal(shouldStop(c, { newIds: [5], text: 'a' }), null);
  });
});

/** A hand-built model: next-token probabilities depend on the last token only. */
class ToyModel implements StepModel {
  vocabSize = 4; // 0 = EOS, 1 = A, 2 = B, 3 = C
  private seqs: number[][] = [];
  constructor(private readonly table: Record<number, number[]>) {}
  get length() {
    return this.seqs[0]?.length ?? 0;
  }
  private logits(seq: number[]) {
    return logitsOf(this.table[seq[seq.length - 1]!]!);
  }
  async prefill(p: readonly number[]) {
    this.seqs = [[...p]];
    return this.logits(this.seqs[0]!);
  }
  expand(n: number) {
    this.seqs = Array.from({ length: n }, () => [...this.seqs[0]!]);
  }
  reorder(from: readonly number[]) {
    this.seqs = from.map((b) => [...this.seqs[b]!]);
  }
  async step(tokens: readonly number[]) {
    tokens.forEach((t, b) => this.seqs[b]!.push(t));
    return this.seqs.map((s) => this.logits(s));
  }
}

// start (token 3 as BOS here): A 0.55, B 0.45. After A: flat. After B: EOS 0.9.
const TABLE = { 3: [0.0, 0.55, 0.45, 0.0 + 1e-9], 1: [0.33, 0.33, 0.0 + 1e-9, 0.34], 2: [0.9, 0.05, 0.04, 0.01], 0: [1, 1e-9, 1e-9, 1e-9] };

function opts(strategy: Strategy, extra: Partial<DecodeOptions> = {}): DecodeOptions {
  return {
    strategy,
    promptIds: [3],
    maxNewTokens: 2,
    eosIds: [0],
    stopStrings: [],
    topAlternatives: 2,
    decode: (ids) => ids.map((i) => 'EABC'[i]).join(''),
    tokenText: (i) => 'EABC'[i]!,
    ...extra,
  };
}

describe('beam search', () => {
  test('finds the most probable sequence where greedy does not', async () => {
    const greedy = await decodeSingle(new ToyModel(TABLE), opts({ label: 'greedy', kind: 'greedy' }));
    assert.equal(greedy.text, 'AC'); // 0.55 × 0.34 = 0.187
    const beam = await beamSearch(new ToyModel(TABLE), opts({ label: 'beam', kind: 'beam', beams: 2, lengthPenalty: 0 }));
    assert.equal(beam.text, 'BE'); // 0.45 × 0.9 = 0.405, the true best
    assertClose([beam.score!], [Math.log(0.45 * 0.9)], 1e-6, 'beam score');
    // exhaustive check: no sequence of ≤ 2 tokens is more probable
    let best = -Infinity;
    for (const a of [0, 1, 2, 3]) {
      const pa = TABLE[3][a]!;
      if (a === 0) best = Math.max(best, Math.log(pa));
      else for (const b of [0, 1, 2, 3]) best = Math.max(best, Math.log(pa * TABLE[a as 1 | 2 | 3][b]!));
    }
    assertClose([beam.score!], [best], 1e-6, 'beam = exhaustive best');
    assert.equal(beam.stopReason, 'eos');
  });

  test('length penalty favours longer hypotheses and all beams are tracked', async () => {
    const longer = await beamSearch(
      new ToyModel(TABLE),
      opts({ label: 'b', kind: 'beam', beams: 3, lengthPenalty: 2 }, { maxNewTokens: 3 }),
    );
    assert.ok(longer.steps.length >= 2);
    assert.equal(longer.steps.length, longer.text.length);
  });

  test('records raw probabilities, alternatives and metrics', async () => {
    const g = await decodeSingle(new ToyModel(TABLE), opts({ label: 'greedy', kind: 'greedy' }));
    assertClose([g.steps[0]!.prob], [0.55], 1e-6, 'p(A)');
    assert.deepEqual(
      g.steps[0]!.top.map((t) => t.id),
      [1, 2],
    );
    const m = completionMetrics([1, 2, 3, 4, 1, 2, 3, 4].map((id) => ({ id, text: '', prob: 0.5, entropy: 0, top: [] })));
    assert.equal(m.meanSurprisalBits, 1);
    assert.equal(m.repetitionRate, 1);
    assert.deepEqual(m.loopStart, { step: 0, period: 4 });
  });

  test('forced prefix (decoding-walk fork) continues from the forced token', async () => {
    const fork = await decodeSingle(new ToyModel(TABLE), opts({ label: 'greedy', kind: 'greedy' }, { forcedIds: [2] }));
    assert.equal(fork.text, 'BE');
  });
});

describe('KV cache equals full recompute', () => {
  const models: LoadedModel[] = [];
  after(async () => Promise.all(models.map((m) => m.release())));
  for (const name of ['tiny-gpt2', 'tiny-llama', 'tiny-qwen2', 'tiny-neox', 'tiny-neox-seq']) {
    test(name, async () => {
      const model = await loadModel(path.join(FIXTURES, 'models', name), { threads: 1, executionProvider: 'cpu' });
      models.push(model);
      const kv = new KvStepModel(model);
      const re = new RecomputeStepModel(model);
      const prompt = [5, 17, 42, 8, 99];
      assertClose(await kv.prefill(prompt), await re.prefill(prompt), 1e-4, 'prefill logits');
      // 3 beams that diverge, get reordered and continue
      kv.reorder([0, 0, 0]);
      re.reorder([0, 0, 0]);
      for (const [step, tokens] of [
        [0, [3, 4, 5]],
        [1, [6, 7, 8]],
        [2, [9, 9, 9]],
      ] as const) {
        const a = await kv.step(tokens);
        const b = await re.step(tokens);
        for (let i = 0; i < 3; i++) assertClose(a[i]!, b[i]!, 1e-4, `step ${step} beam ${i}`);
        kv.reorder([2, 0, 0]);
        re.reorder([2, 0, 0]);
      }
      // same greedy and beam completions through both
      const strat: Strategy = { label: 'beam', kind: 'beam', beams: 3 };
      const viaKv = await generate(model, { promptIds: prompt, strategy: strat, maxNewTokens: 6 });
      const viaRe = await generate(
        model,
        { promptIds: prompt, strategy: strat, maxNewTokens: 6 },
        undefined,
        undefined,
        new RecomputeStepModel(model),
      );
      assert.deepEqual(
        viaKv.steps.map((s) => s.id),
        viaRe.steps.map((s) => s.id),
      );
    });
  }

  test('seeded sampling is reproducible; streaming reports every step', async () => {
    const model = models[1]!;
    const s: Strategy = { label: 'top-p', kind: 'sample', topP: 0.9, temperature: 0.8, seed: 5 };
    const seen: number[] = [];
    const a = await generate(model, { promptIds: [1, 2, 3], strategy: s, maxNewTokens: 12 }, (st) => seen.push(st.id));
    const b = await generate(model, { promptIds: [1, 2, 3], strategy: s, maxNewTokens: 12 });
    assert.deepEqual(
      a.steps.map((x) => x.id),
      b.steps.map((x) => x.id),
    );
    assert.deepEqual(
      seen,
      a.steps.map((x) => x.id),
    );
    const ctl = new AbortController();
    ctl.abort();
    const c = await generate(model, { promptIds: [1, 2, 3], strategy: s, maxNewTokens: 12 }, undefined, ctl.signal);
    assert.equal(c.stopReason, 'cancelled');
  });
});

describe('a prompt longer than the context window leaves room for', () => {
  let model: LoadedModel;
  after(async () => model?.release());
  const greedy: Strategy = { label: 'greedy', kind: 'greedy' };
  // tiny-llama's context window is 64 positions
  const long = Array.from({ length: 100 }, (_, i) => 3 + ((i * 7) % 90));

  test('keeps its end and still generates every token asked for, and says what it dropped', async () => {
    model = await loadModel(path.join(FIXTURES, 'models', 'tiny-llama'), { threads: 1, executionProvider: 'cpu' });
    assert.equal(model.spec.maxPositions, 64);
    const c = await generate(model, { promptIds: long, strategy: greedy, maxNewTokens: 10 });
    assert.equal(c.steps.length, 10, 'ten new tokens, not the one a full window would leave');
    assert.equal(c.stopReason, 'max_new_tokens');
    assert.deepEqual(c.promptIds, long.slice(100 + 10 - 64));
    assert.deepEqual(c.promptCut, { total: 100, contextLength: 64, text: model.tokenizer.decode(long.slice(46)) });
    // the same as being given only that end
    const end = await generate(model, { promptIds: long.slice(46), strategy: greedy, maxNewTokens: 10 });
    assert.equal(end.promptCut, undefined);
    assert.deepEqual(end.steps, c.steps);
    // a prompt that fits with the new tokens is not cut, even when it fills the window
    const full = await generate(model, { promptIds: long.slice(0, 54), strategy: greedy, maxNewTokens: 10 });
    assert.equal(full.promptCut, undefined);
    assert.equal(full.steps.length, 10);
    // from text: the tokenizer's ids, cut the same way
    const text = 'Once upon a time there was a little dog. '.repeat(12);
    const ids = model.tokenizer.encodeIds(text);
    assert.ok(ids.length > 64, `${ids.length} tokens`);
    const t = await generate(model, { text, strategy: greedy, maxNewTokens: 5 });
    assert.deepEqual(t.promptIds, ids.slice(ids.length + 5 - 64));
    assert.equal(t.promptCut?.total, ids.length);
  });

  test('more new tokens than the window holds: one prompt token is kept and the stop says the context is full', async () => {
    const c = await generate(model, { promptIds: long, strategy: greedy, maxNewTokens: 80 });
    assert.deepEqual(c.promptIds, [long[99]]);
    assert.equal(c.steps.length, 63);
    assert.equal(c.stopReason, 'context_full');
    assert.deepEqual(c.promptCut, { total: 100, contextLength: 64, text: model.tokenizer.decode([long[99]!]) });
    // the new tokens come first, even for a prompt that would fit alone
    const short = await generate(model, { promptIds: [5, 6], strategy: greedy, maxNewTokens: 80 });
    assert.deepEqual(short.promptIds, [6]);
    assert.equal(short.steps.length, 63);
    assert.equal(short.promptCut?.total, 2);
  });
});

describe('the prompt state of one completion serves the next (Compare Completions columns)', () => {
  const engine = new Engine();
  after(() => engine.dispose());
  const prompt = [5, 17, 42, 8, 99, 3, 61];
  const greedy: Strategy = { label: 'greedy', kind: 'greedy' };
  const beam: Strategy = { label: 'beam', kind: 'beam', beams: 3 };
  const sample: Strategy = { label: 'sample', kind: 'sample', temperature: 0.9, repetitionPenalty: 1.3, seed: 11 };

  test('the same prompt is not run again, and every column gets the bits of a fresh run', async () => {
    await engine.load({ dir: path.join(FIXTURES, 'models', 'tiny-llama'), threads: 1, executionProvider: 'cpu' });
    const model = engine.requireModel();
    const fresh = async (strategy: Strategy) => {
      forgetPromptState(model);
      const c = await engine.generate({ promptIds: prompt, strategy, maxNewTokens: 8 });
      assert.equal(c.timings.promptReused, undefined, `${strategy.label}: a fresh run`);
      return c;
    };
    const expected = [await fresh(greedy), await fresh(beam), await fresh(sample)];
    forgetPromptState(model);
    const columns = [];
    for (const strategy of [greedy, beam, sample]) columns.push(await engine.generate({ promptIds: prompt, strategy, maxNewTokens: 8 }));
    assert.deepEqual(
      columns.map((c) => c.timings.promptReused ?? false),
      [false, true, true],
    );
    // steps hold every probability, entropy and alternative: exactly equal, not close
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(columns[i]!.steps, expected[i]!.steps, `column ${i}`);
      assert.equal(columns[i]!.score, expected[i]!.score);
    }
    // the sampler's repetition penalty rewrote its copy of the prompt's logits: the next column's are intact
    const again = await engine.generate({ promptIds: prompt, strategy: greedy, maxNewTokens: 8 });
    assert.equal(again.timings.promptReused, true);
    assert.deepEqual(again.steps, expected[0]!.steps);
  });

  test('another prompt, an ablation or an analysis in between runs the prompt again', async () => {
    await engine.generate({ promptIds: prompt, strategy: greedy, maxNewTokens: 2 });
    const other = await engine.generate({ promptIds: [...prompt, 4], strategy: greedy, maxNewTokens: 2 });
    assert.equal(other.timings.promptReused, undefined, 'a longer prompt');
    const withHeadAblated = () =>
      engine.generate({
        promptIds: [...prompt, 4],
        strategy: greedy,
        maxNewTokens: 2,
        ablation: { heads: [{ layer: 0, head: 0 }], mode: 'zero' },
      });
    const ablated = await withHeadAblated();
    assert.equal(ablated.timings.promptReused, undefined, 'the same prompt with a head ablated');
    const ablatedAgain = await withHeadAblated();
    assert.equal(ablatedAgain.timings.promptReused, true, 'the same ablation again');
    // what-if's ablated copies alternate clean and ablated columns: both prompt states are kept
    const ablation = { heads: [{ layer: 1, head: 1 }], mode: 'zero' as const };
    const alternating = [];
    for (const ab of [undefined, ablation, undefined, ablation])
      alternating.push(await engine.generate({ promptIds: prompt, strategy: greedy, maxNewTokens: 2, ...(ab ? { ablation: ab } : {}) }));
    assert.deepEqual(
      alternating.map((c) => c.timings.promptReused ?? false),
      [false, false, true, true], // (the two kept above were the longer prompt's)
    );
    assert.deepEqual(alternating[2]!.steps, alternating[0]!.steps);
    assert.deepEqual(alternating[3]!.steps, alternating[1]!.steps);
    // a third prompt state pushes out the least recently used one (the clean prompt's)
    await engine.generate({ promptIds: [9, 9, 9], strategy: greedy, maxNewTokens: 1 });
    const ablatedKept = await engine.generate({ promptIds: prompt, strategy: greedy, maxNewTokens: 2, ablation });
    const cleanGone = await engine.generate({ promptIds: prompt, strategy: greedy, maxNewTokens: 2 });
    assert.equal(ablatedKept.timings.promptReused, true);
    assert.equal(cleanGone.timings.promptReused, undefined);
    await engine.analyze({ ids: prompt, topK: 3, maxTokens: 64, patterns: false });
    const after = await engine.generate({ promptIds: [...prompt, 4], strategy: greedy, maxNewTokens: 2, ablation: ablatedAgain.ablation });
    assert.equal(after.timings.promptReused, undefined, 'an analysis frees the kept state');
  });
});

describe('the prompt before the cursor (Compare Completions with nothing selected)', () => {
  test('begins at a line, else a word, not inside one', () => {
    const start = (text: string, chars: number) => text.slice(cursorPromptStart(text, chars));
    assert.equal(start('short text', 100), 'short text', 'the whole document when it is shorter');
    const lines = 'alpha beta\ngamma delta\nepsilon zeta eta theta\n';
    assert.equal(start(lines, 23), 'epsilon zeta eta theta\n', 'a cut at a line start stays');
    assert.equal(start(lines, 30), 'epsilon zeta eta theta\n', 'a cut inside a line: the next line');
    assert.equal(start('gamma delta\r\nepsilon zeta eta theta iota', 35), 'epsilon zeta eta theta iota', 'CRLF');
    // the next line would leave less than half of the characters: the next word instead
    assert.equal(start(lines + 'iota kappa', 30), 'zeta eta theta\niota kappa');
    const oneLine = 'lorem ipsum dolor sit amet consectetur adipiscing elit';
    assert.equal(start(oneLine, 20), 'adipiscing elit');
    assert.equal(start(oneLine + '\nsed do', 20), 'elit\nsed do');
    assert.equal(start('ab cd efgh', 4), 'efgh', 'already after a space');
    assert.equal(start('ab cd ' + 'x'.repeat(40), 20), 'x'.repeat(20), 'no boundary near: where the count ends');
    // never inside a surrogate pair
    const emoji = '🙂'.repeat(30);
    const s = start(emoji, 15);
    assert.equal(s.length, 14);
    assert.equal([...s].join(''), '🙂'.repeat(7));
  });
});

describe("a completion's insertion point follows the document's edits", () => {
  test('edits before it move it, edits after it do not, an edit around it loses it', () => {
    const edit = (rangeOffset: number, rangeLength: number, textLength: number) => ({ rangeOffset, rangeLength, textLength });
    assert.equal(shiftedOffset(100, []), 100);
    assert.equal(shiftedOffset(100, [edit(0, 0, 5)]), 105, 'typed above');
    assert.equal(shiftedOffset(100, [edit(10, 20, 0)]), 80, 'deleted above');
    assert.equal(shiftedOffset(100, [edit(80, 20, 3)]), 83, 'replaced text ending at it');
    assert.equal(shiftedOffset(100, [edit(100, 0, 40)]), 140, 'inserted at it (an earlier Insert): the next goes after');
    assert.equal(shiftedOffset(100, [edit(100, 10, 0)]), 100, 'deleted just after it');
    assert.equal(shiftedOffset(100, [edit(120, 5, 50)]), 100, 'edited below');
    assert.equal(shiftedOffset(100, [edit(90, 20, 4)]), null, 'replaced around it');
    // one event with several edits (multi-cursor typing), in the offsets before the event
    assert.equal(shiftedOffset(100, [edit(150, 0, 1), edit(50, 0, 1), edit(10, 0, 1)]), 102);
    // replaying an edit sequence on a string keeps the point between the same characters
    let doc = 'The old sailor looked at the sea.|Then he went home.';
    let at = doc.indexOf('|');
    for (const [o, l, t] of [
      [0, 0, 'Once, '],
      [4, 3, 'the young'],
      [at + 6, 2, 'she'],
    ] as const) {
      const next = shiftedOffset(at, [edit(o, l, t.length)]);
      doc = doc.slice(0, o) + t + doc.slice(o + l);
      assert.ok(next !== null);
      at = next;
      assert.equal(doc[at], '|', `after ${JSON.stringify(t)}: ${doc}`);
    }
  });
});
