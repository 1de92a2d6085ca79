// Token embeddings for the forward graph's `input_embeds`, read from the graph cache's weights
// file with ordinary reads instead of a Gather on the memory-mapped W_E.
//
// Why: a Gather touches only the rows of the tokens it looks up, but the kernel maps a page
// fault's whole neighbourhood (fault-around, and whole large folios on recent kernels with
// ext4), so every lookup made a large part of W_E resident in the forward session: measured,
// GPT-2-small, 107 MB of its 154 MB at 1024 tokens, 66 MB at 512, on top of the lens session's
// own copy of W_E (its unembedding). Rows read with pread() live in the page cache, not in the
// process. The forward graph still holds W_E for the final logits (tied models), which an
// analysis does not ask for (graph/gates.ts: logit_rows).
import * as fs from 'node:fs';
import { EngineError } from './errors';
import type { AnyTensor, NamedTensor, Session } from './runtime/ort';

/** Where W_E lies in a weights file: float32 rows of `cols`, row 0 at `offset`. */
export interface EmbeddingTable {
  file: string;
  offset: number;
  rows: number;
  cols: number;
}

export const INPUT_EMBEDS = 'input_embeds';

export class EmbeddingRows {
  private fd: number | null;

  /** Opens the file now: a cache entry removed while the model is loaded stays readable. */
  constructor(readonly table: EmbeddingTable) {
    this.fd = fs.openSync(table.file, 'r');
  }

  /** W_E[ids] for ids [batch, seq] → [batch, seq, cols] (float32). */
  read(ids: BigInt64Array): Float32Array {
    const { offset, rows, cols } = this.table;
    if (this.fd === null) throw new EngineError('RUNTIME', 'The model was released.');
    const rowBytes = cols * 4;
    const out = new Float32Array(ids.length * cols);
    const bytes = new Uint8Array(out.buffer);
    for (let i = 0; i < ids.length; i++) {
      const id = Number(ids[i]);
      if (!Number.isInteger(id) || id < 0 || id >= rows)
        throw new EngineError('BAD_REQUEST', `Token id ${ids[i]} is outside the vocabulary (0..${rows - 1}).`);
      this.readFully(bytes, i * rowBytes, rowBytes, offset + id * rowBytes, `the row of token ${id}`);
    }
    return out;
  }

  /** Rows [first, first + count) into `into` (≥ count·cols floats): one read of contiguous bytes. */
  readRange(first: number, count: number, into: Float32Array): Float32Array {
    const { offset, rows, cols } = this.table;
    if (this.fd === null) throw new EngineError('RUNTIME', 'The model was released.');
    if (
      !Number.isInteger(first) ||
      !Number.isInteger(count) ||
      first < 0 ||
      count < 0 ||
      first + count > rows ||
      into.length < count * cols
    )
      throw new EngineError('RUNTIME', `Rows ${first}..${first + count - 1} are outside the table (0..${rows - 1}) or the buffer.`);
    const want = count * cols * 4;
    this.readFully(new Uint8Array(into.buffer, into.byteOffset, want), 0, want, offset + first * cols * 4, `row ${first + count - 1}`);
    return into.subarray(0, count * cols);
  }

  /** `length` bytes at `position` of the file into bytes[at…] (reads may return short); `what` names them in the error. */
  private readFully(bytes: Uint8Array, at: number, length: number, position: number, what: string): void {
    let done = 0;
    while (done < length) {
      const n = fs.readSync(this.fd!, bytes, at + done, length - done, position + done);
      if (n === 0) throw new EngineError('BAD_WEIGHTS', `The graph cache's weights file ${this.table.file} ends before ${what}.`);
      done += n;
    }
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}

/**
 * A forward session fed `input_embeds` = W_E[input_ids] on every run that gives input_ids
 * (every caller: analysis, generation, interventions, queries); release() closes the file.
 */
export function withEmbeddingRows(session: Session, rows: EmbeddingRows): Session {
  const withEmbeds = <T extends AnyTensor>(feeds: Record<string, T>): Record<string, T | NamedTensor> => {
    const ids = feeds.input_ids as NamedTensor | undefined;
    if (!ids || INPUT_EMBEDS in feeds) return feeds;
    if (!(ids.data instanceof BigInt64Array)) throw new EngineError('RUNTIME', 'input_ids must be int64');
    return { ...feeds, [INPUT_EMBEDS]: { data: rows.read(ids.data), dims: [...ids.dims, rows.table.cols] } };
  };
  return {
    ...session,
    inputNames: session.inputNames.filter((n) => n !== INPUT_EMBEDS),
    run: (feeds, fetches, into) => session.run(withEmbeds(feeds), fetches, into),
    runKeeping: (feeds, fetches) => session.runKeeping(withEmbeds(feeds), fetches),
    async release() {
      rows.close();
      await session.release();
    },
  };
}
