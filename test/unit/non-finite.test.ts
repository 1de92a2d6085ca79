// A model whose numbers stop being finite (NaN or infinite weights, or an overflow) is refused
// with where it starts, in analyses and in every decoding strategy, instead of NaN percentages.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  assertFiniteStep,
  assertFiniteWalk,
  firstNonFinite,
  nonFiniteWeights,
  tensorLayer,
  weightsVerdict,
} from '../../src/engine/analysis/finite';
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

  test("the messages: the stream against the read-out, each with the weights' verdict for its block", () => {
    const shape = { rows: 2, T: 2, d: 2 };
    const text = (p: number) => ['a', 'b'][p]!;
    const verdict = (layer: number | null) => `VERDICT(${layer})`;
    assert.doesNotThrow(() => assertFiniteWalk(Float32Array.of(1, 2, 3, 4, 5, 6, 7, 8), new Float32Array(4), shape, text, verdict));
    // a stream with NaN and its entropy finite cannot happen (the final norm mixes the row); the entropy is the gate
    const resid = Float32Array.of(1, 2, 3, 4, 5, 6, Infinity, 8);
    const entropy = Float32Array.of(1, 1, 1, NaN);
    assert.throws(
      () => assertFiniteWalk(resid, entropy, shape, text, verdict),
      (e: Error & { code?: string }) =>
        e.code === 'BAD_WEIGHTS' &&
        /residual stream is not finite \(Infinity\) from L0 \(the output of block 0\) at position 1 \("b"\) on\. VERDICT\(0\)$/.test(
          e.message,
        ),
    );
    assert.throws(
      () => assertFiniteWalk(Float32Array.of(1, 2, 3, 4, 5, 6, 7, 8), Float32Array.of(1, NaN, 1, NaN), shape, text, verdict),
      (e: Error) =>
        /read-out .* not finite from the embeddings \(emb\) at position 1 \("b"\) on, out of a finite residual stream\. VERDICT\(null\)$/.test(
          e.message,
        ),
    );
    assert.doesNotThrow(() => assertFiniteStep(-3.5, 0));
    assert.throws(() => assertFiniteStep(NaN, 0), /logits are not finite \(NaN or infinite\) after the prompt/);
    assert.throws(() => assertFiniteStep(NaN, 4, 'float16'), /after generated token 4\. .*weightPrecision .* to float32/);
  });

  test("the weights' verdict: the tensors of that block that are not finite, or an overflow, or the generic causes", () => {
    assert.equal(tensorLayer('model.layers.12.mlp.down_proj.weight'), 12);
    assert.equal(tensorLayer('transformer.h.0.attn.c_attn.bias'), 0);
    assert.equal(tensorLayer('lm_head.weight'), null);
    assert.equal(tensorLayer('transformer.wte.weight'), null);
    const dir = withBadWeight('transformer.h.1.mlp.c_proj.bias', 3, NaN);
    assert.deepEqual(nonFiniteWeights(dir, 1).bad, [{ name: 'transformer.h.1.mlp.c_proj.bias', count: 1, total: 32 }]);
    assert.deepEqual(nonFiniteWeights(dir, 0).bad, []);
    assert.match(
      weightsVerdict(dir, 1),
      /In the checkpoint, "transformer\.h\.1\.mlp\.c_proj\.bias" \(1 of 32 values\) of block 1 holds NaN or infinite values: it is damaged/,
    );
    assert.match(
      weightsVerdict(dir, 0),
      /^No weight of block 0 in the checkpoint is NaN or infinite, so a value overflowed there \(its largest weight: .*\)\.$/,
    );
    // an overflow: a huge but finite weight is named as the likely source
    const huge = withBadWeight('transformer.h.0.attn.c_attn.weight', 0, 3e38);
    assert.equal(
      weightsVerdict(huge, 0),
      'No weight of block 0 in the checkpoint is NaN or infinite, so a value overflowed there (its largest weight: 3.00e+38, in "transformer.h.0.attn.c_attn.weight").',
    );
    assert.match(
      weightsVerdict(dir, null, 'float16'),
      /^No weight of the embeddings, final norm and read-out .* overflowed there \(its largest weight: .*\)\. The weights run in float16 .* to float32\.$/,
    );
    // weights that cannot be read (no safetensors: an ONNX export's folder): the generic causes
    assert.match(weightsVerdict(tmpDir(), 1), /^Its weights may hold NaN or infinite values .* or a value overflowed\.$/);
  });

  test("an analysis names the block where the stream turns NaN, and the read-out's fault apart from the stream's", async () => {
    const block = await load(withBadWeight('transformer.h.1.mlp.c_proj.bias', 3, NaN));
    try {
      await rejectsWith(
        analyze(block, { ids: IDS, topK: 3, maxTokens: 100, patterns: false }),
        'BAD_WEIGHTS',
        /residual stream is not finite \(NaN\) from L1 \(the output of block 1\) at position 0 .* on\. In the checkpoint, "transformer\.h\.1\.mlp\.c_proj\.bias" \(1 of 32 values\) of block 1 holds/,
      );
    } finally {
      await block.release();
    }
    // a huge but finite weight: the stream overflows in its block, and the weight is named
    const huge = await load(withBadWeight('transformer.h.0.attn.c_attn.weight', 0, 3e38));
    try {
      await rejectsWith(
        analyze(huge, { ids: IDS, topK: 3, maxTokens: 100, patterns: false }),
        'BAD_WEIGHTS',
        /not finite \(NaN\) from L0 \(the output of block 0\) .* so a value overflowed there \(its largest weight: 3\.00e\+38, in "transformer\.h\.0\.attn\.c_attn\.weight"\)/,
      );
    } finally {
      await huge.release();
    }
    // an infinite embedding row of a token in the text: the stream, from the embeddings, at its first position
    const emb = await load(withBadWeight('transformer.wte.weight', 17 * 32 + 4, Infinity));
    try {
      await rejectsWith(
        analyze(emb, { ids: IDS, topK: 3, maxTokens: 100, patterns: false }),
        'BAD_WEIGHTS',
        /residual stream is not finite \(Infinity\) from the embeddings \(emb\) at position 1 .* "transformer\.wte\.weight" \(1 of 9600 values\) of the embeddings, final norm and read-out holds/,
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
        /read-out \(final norm and unembedding\) gives logits that are not finite from the embeddings \(emb\) at position 0 .* "transformer\.wte\.weight" \(1 of 9600 values\)/,
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
