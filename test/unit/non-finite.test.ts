// A model whose numbers stop being finite (NaN or infinite weights, or an overflow) is refused
// with where it starts, in analyses and in every decoding strategy, instead of NaN percentages.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { assertFiniteStep, assertFiniteWalk, firstNonFinite } from '../../src/engine/analysis/finite';
import { analyze } from '../../src/engine/analyze';
import { generate } from '../../src/engine/generate';
import { loadModel } from '../../src/engine/model';
import type { Strategy } from '../../src/shared/generation';
import { FIXTURES, rejectsWith, tmpDir } from '../helpers';

/** A copy of tiny-gpt2 with one float32 of one tensor set to `value`. */
function withBadWeight(tensor: string, index: number, value: number): string {
  const dir = path.join(tmpDir(), 'tiny-gpt2');
  fs.cpSync(path.join(FIXTURES, 'models', 'tiny-gpt2'), dir, { recursive: true });
  const file = path.join(dir, 'model.safetensors');
  const bytes = fs.readFileSync(file);
  const n = Number(bytes.readBigUInt64LE(0));
  const entry = (JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; data_offsets: number[] }>)[
    tensor
  ]!;
  assert.equal(entry.dtype, 'F32');
  bytes.writeFloatLE(value, 8 + n + entry.data_offsets[0]! + 4 * index);
  fs.writeFileSync(file, bytes);
  return dir;
}

const load = (dir: string) => loadModel(dir, { threads: 1, executionProvider: 'cpu' });
const IDS = [5, 17, 42, 17, 42, 9];

describe('non-finite numbers are refused with where they start', () => {
  test('firstNonFinite: the first row, then position, and what the value is', () => {
    const x = new Float32Array(2 * 3 * 4).fill(1);
    assert.equal(firstNonFinite(x, 2, 3, 4), null);
    x[(1 * 3 + 2) * 4 + 1] = -Infinity;
    assert.deepEqual(firstNonFinite(x, 2, 3, 4), { row: 1, pos: 2, value: '-Infinity' });
    x[(1 * 3 + 0) * 4 + 3] = NaN;
    assert.deepEqual(firstNonFinite(x, 2, 3, 4), { row: 1, pos: 0, value: 'NaN' });
    x[(0 * 3 + 1) * 4] = Infinity;
    assert.deepEqual(firstNonFinite(x, 2, 3, 4), { row: 0, pos: 1, value: 'Infinity' });
    // only the [rows, T, width] prefix is read (a pooled buffer may be longer)
    const y = new Float32Array(13).fill(0);
    y[12] = NaN;
    assert.equal(firstNonFinite(y, 2, 3, 2), null);
  });

  test('the messages: the stream against the read-out, and float16 weights get their remedy', () => {
    const shape = { rows: 2, T: 2, d: 2 };
    const text = (p: number) => ['a', 'b'][p]!;
    assert.doesNotThrow(() => assertFiniteWalk(Float32Array.of(1, 2, 3, 4, 5, 6, 7, 8), new Float32Array(4), shape, text));
    // a stream with NaN and its entropy finite cannot happen (the final norm mixes the row); the entropy is the gate
    const resid = Float32Array.of(1, 2, 3, 4, 5, 6, Infinity, 8);
    const entropy = Float32Array.of(1, 1, 1, NaN);
    assert.throws(
      () => assertFiniteWalk(resid, entropy, shape, text, 'float16'),
      (e: Error & { code?: string }) =>
        e.code === 'BAD_WEIGHTS' &&
        /residual stream is not finite \(Infinity\) from L0 \(the output of block 0\) at position 1 \("b"\)/.test(e.message) &&
        /weightPrecision .* to float32/.test(e.message),
    );
    assert.throws(
      () => assertFiniteWalk(Float32Array.of(1, 2, 3, 4, 5, 6, 7, 8), Float32Array.of(1, NaN, 1, NaN), shape, text),
      (e: Error) =>
        /read-out .* not finite from the embeddings \(emb\) at position 1 \("b"\)/.test(e.message) && !/float32/.test(e.message),
    );
    assert.doesNotThrow(() => assertFiniteStep(-3.5, 0));
    assert.throws(() => assertFiniteStep(NaN, 0), /logits are not finite \(NaN or infinite\) after the prompt/);
    assert.throws(() => assertFiniteStep(NaN, 4), /after generated token 4/);
  });

  test("an analysis names the block where the stream turns NaN, and the read-out's fault apart from the stream's", async () => {
    const block = await load(withBadWeight('transformer.h.1.mlp.c_proj.bias', 3, NaN));
    try {
      await rejectsWith(
        analyze(block, { ids: IDS, topK: 3, maxTokens: 100, patterns: false }),
        'BAD_WEIGHTS',
        /residual stream is not finite \(NaN\) from L1 \(the output of block 1\) at position 0 /,
      );
    } finally {
      await block.release();
    }
    // an infinite embedding row of a token in the text: the stream, from the embeddings, at its first position
    const emb = await load(withBadWeight('transformer.wte.weight', 17 * 32 + 4, Infinity));
    try {
      await rejectsWith(
        analyze(emb, { ids: IDS, topK: 3, maxTokens: 100, patterns: false }),
        'BAD_WEIGHTS',
        /residual stream is not finite \(Infinity\) from the embeddings \(emb\) at position 1 /,
      );
    } finally {
      await emb.release();
    }
    // the (tied) unembedding row of a token not in the text: a finite stream, non-finite logits
    const readOut = await load(withBadWeight('transformer.wte.weight', 200 * 32, NaN));
    try {
      await rejectsWith(
        analyze(readOut, { ids: IDS, topK: 3, maxTokens: 100, patterns: false }),
        'BAD_WEIGHTS',
        /read-out \(final norm and unembedding\) gives logits that are not finite from the embeddings \(emb\) at position 0 /,
      );
    } finally {
      await readOut.release();
    }
  });

  test('every decoding strategy refuses non-finite logits after the prompt', async () => {
    const model = await load(withBadWeight('transformer.wte.weight', 200 * 32, NaN));
    const strategies: Strategy[] = [
      { label: 'greedy', kind: 'greedy' },
      { label: 'top-p', kind: 'sample', topP: 0.9, temperature: 0.8, seed: 1 },
      { label: 'beam', kind: 'beam', beams: 3 },
      { label: 'beam, penalised', kind: 'beam', beams: 2, repetitionPenalty: 1.3 },
    ];
    try {
      for (const strategy of strategies)
        await rejectsWith(
          generate(model, { promptIds: IDS, strategy, maxNewTokens: 4 }),
          'BAD_WEIGHTS',
          /next-token logits are not finite \(NaN or infinite\) after the prompt/,
        );
    } finally {
      await model.release();
    }
  });
});
