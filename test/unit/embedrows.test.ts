// Token embeddings read from the graph cache's weights file (embedrows.ts): the rows asked for,
// clear errors for an id outside the vocabulary or a short file, and the wrapped session feeds
// input_embeds to every run that gives input_ids.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EmbeddingRows, withEmbeddingRows } from '../../src/engine/embedrows';
import type { NamedTensor, Session } from '../../src/engine/runtime/ort';
import { rejectsWith, tmpDir } from '../helpers';

function tableFile(rows: number, cols: number, offset: number): string {
  const f = path.join(tmpDir(), 'weights.bin');
  const data = Float32Array.from({ length: rows * cols }, (_, i) => i + 0.5);
  fs.writeFileSync(f, Buffer.concat([Buffer.alloc(offset, 7), Buffer.from(data.buffer)]));
  return f;
}

describe('embedding rows from the weights file', () => {
  test('W_E[ids] in order, repeated ids included', () => {
    const rows = new EmbeddingRows({ file: tableFile(5, 3, 64), offset: 64, rows: 5, cols: 3 });
    assert.deepEqual(Array.from(rows.read(BigInt64Array.of(4n, 0n, 4n))), [12.5, 13.5, 14.5, 0.5, 1.5, 2.5, 12.5, 13.5, 14.5]);
    rows.close();
  });

  test('an id outside the vocabulary, and a file shorter than its graph says', async () => {
    const file = tableFile(5, 3, 0);
    const rows = new EmbeddingRows({ file, offset: 0, rows: 5, cols: 3 });
    await rejectsWith(() => rows.read(BigInt64Array.of(5n)), 'BAD_REQUEST', /Token id 5 is outside the vocabulary \(0\.\.4\)/);
    await rejectsWith(() => rows.read(BigInt64Array.of(-1n)), 'BAD_REQUEST', /outside the vocabulary/);
    rows.close();
    const long = new EmbeddingRows({ file, offset: 0, rows: 9, cols: 3 });
    await rejectsWith(() => long.read(BigInt64Array.of(7n)), 'BAD_WEIGHTS', /ends before the row of token 7/);
    long.close();
  });

  test('a range of rows in one read (the blocked lens reads W_U so), and clear errors outside the table', async () => {
    const file = tableFile(5, 3, 64);
    const rows = new EmbeddingRows({ file, offset: 64, rows: 5, cols: 3 });
    const into = new Float32Array(4 * 3).fill(-1);
    assert.deepEqual(Array.from(rows.readRange(2, 3, into)), [6.5, 7.5, 8.5, 9.5, 10.5, 11.5, 12.5, 13.5, 14.5]);
    assert.deepEqual(Array.from(into.subarray(9)), [-1, -1, -1], 'nothing written past the rows asked for');
    assert.deepEqual(Array.from(rows.readRange(0, 1, into)), [0.5, 1.5, 2.5]);
    await rejectsWith(() => rows.readRange(3, 3, into), 'RUNTIME', /outside the table/);
    await rejectsWith(() => rows.readRange(0, 5, into), 'RUNTIME', /or the buffer/);
    rows.close();
    const long = new EmbeddingRows({ file, offset: 64, rows: 9, cols: 3 });
    await rejectsWith(() => long.readRange(4, 3, new Float32Array(9)), 'BAD_WEIGHTS', /ends before row 6/);
    long.close();
  });

  test('the file is opened at once: a cache entry removed while the model is loaded stays readable', () => {
    const file = tableFile(3, 2, 0);
    const rows = new EmbeddingRows({ file, offset: 0, rows: 3, cols: 2 });
    fs.rmSync(path.dirname(file), { recursive: true });
    assert.deepEqual(Array.from(rows.read(BigInt64Array.of(2n))), [4.5, 5.5]);
    rows.close();
    assert.throws(() => rows.read(BigInt64Array.of(0n)), /released/);
  });

  test('the session feeds input_embeds from input_ids (unless given), hides that input, closes the file', async () => {
    const seen: Record<string, NamedTensor>[] = [];
    let released = false;
    const inner = {
      inputNames: ['input_ids', 'input_embeds'],
      run: async (feeds: Record<string, NamedTensor>) => (seen.push(feeds), {}),
      runKeeping: async (feeds: Record<string, NamedTensor>) => (seen.push(feeds), {}),
      release: async () => void (released = true),
    } as unknown as Session;
    const rows = new EmbeddingRows({ file: tableFile(4, 2, 0), offset: 0, rows: 4, cols: 2 });
    const s = withEmbeddingRows(inner, rows);
    assert.deepEqual(s.inputNames, ['input_ids']);
    await s.run({ input_ids: { data: BigInt64Array.of(1n, 3n), dims: [1, 2] } }, []);
    assert.deepEqual(seen[0]!.input_embeds!.dims, [1, 2, 2]);
    assert.deepEqual(Array.from(seen[0]!.input_embeds!.data as Float32Array), [2.5, 3.5, 6.5, 7.5]);
    await s.runKeeping({ input_ids: { data: BigInt64Array.of(0n, 2n), dims: [2, 1] } }, []);
    assert.deepEqual(seen[1]!.input_embeds!.dims, [2, 1, 2]);
    const given = { data: new Float32Array(2), dims: [1, 1, 2] };
    await s.run({ input_ids: { data: BigInt64Array.of(1n), dims: [1, 1] }, input_embeds: given }, []);
    assert.equal(seen[2]!.input_embeds, given);
    await s.release();
    assert.ok(released);
  });
});
