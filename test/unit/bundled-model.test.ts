// The bundled model (media/models/td-mini) through the engine's normal loader: its tokenizer
// round-trips held-out text of every corpus, and its loss on fixed held-out slices matches the
// model card (eval.json, computed in PyTorch) within 2%. The held-out text is vendored in
// test/fixtures/td-mini-heldout (its README: sources, licences, how it was cut).
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadModel, type LoadedModel } from '../../src/engine/model';
import { analyze } from '../../src/engine/analyze';
import { BUNDLED_MODEL, FIXTURES, readJson } from '../helpers';

interface Slice {
  file: string;
  kind: string;
  char_offset: number;
  char_length: number;
  sha256: string;
  n_tokens: number;
  loss: number;
}

interface Piece {
  role: 'heldout' | 'slice';
  path: string;
  offset: number;
  length: number;
  sha256: string;
}
interface CorpusFile {
  file: string;
  source_sha256: string;
  source_length: number;
  pieces: Piece[];
}

const HELDOUT = path.join(FIXTURES, 'td-mini-heldout');
const corpora = () => readJson<{ files: CorpusFile[] }>(path.join(HELDOUT, 'index.json')).files;
const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');

/** A piece's text, checked against the index (a damaged or line-end-converted copy fails here). */
function pieceText(p: Piece): string {
  const text = fs.readFileSync(path.join(HELDOUT, p.path), 'utf8');
  assert.equal(text.length, p.length, `length of ${p.path}`);
  assert.equal(sha256(text), p.sha256, `sha256 of ${p.path}`);
  return text;
}

/** Characters [offset, offset + length) of a corpus file, from the vendored piece that holds them. */
function corpusText(file: string, offset: number, length: number): string {
  const f = corpora().find((c) => c.file === file);
  const p = f?.pieces.find((x) => x.offset <= offset && offset + length <= x.offset + x.length);
  assert.ok(p, `test/fixtures/td-mini-heldout holds ${file}@${offset}+${length} (re-run its make.mjs after changing eval.json)`);
  return pieceText(p).slice(offset - p.offset, offset - p.offset + length);
}

describe('bundled model td-mini', () => {
  let model: LoadedModel;
  const evalJson = () => readJson<{ slices: Slice[] }>(path.join(BUNDLED_MODEL, 'eval.json'));
  before(async () => {
    model = await loadModel(BUNDLED_MODEL, { threads: 2, executionProvider: 'cpu' });
  });
  after(() => model?.release());

  test('is a Llama-style model with tied embeddings that goes through the normal loader', () => {
    assert.equal(model.info.architecture, 'llama');
    assert.equal(model.info.tied_embeddings, true);
    assert.ok(model.info.params > 4e6 && model.info.params < 12e6, `${model.info.params} parameters`);
    assert.ok(model.info.max_positions >= 512);
    assert.ok(
      fs.readdirSync(BUNDLED_MODEL).reduce((s, f) => s + fs.statSync(path.join(BUNDLED_MODEL, f)).size, 0) <= 40e6,
      'folder ≤ 40 MB',
    );
  });

  test('the tokenizer round-trips held-out text of every corpus exactly', () => {
    const files = corpora();
    assert.equal(files.length, 15, 'every corpus file td-mini was trained on');
    for (const f of files) {
      const p = f.pieces.find((x) => x.role === 'heldout')!;
      // the held-out split: the last 5% of the file, its first 60,000 characters
      assert.equal(p.offset, Math.floor(f.source_length * 0.95), `${f.file} starts at the held-out split`);
      assert.equal(p.length, Math.min(60_000, f.source_length - p.offset), `${f.file} length`);
      const held = pieceText(p);
      const ids = model.tokenizer.encodeIds(held, false);
      assert.equal(model.tokenizer.decode(ids), held, `round trip of ${f.file}`);
    }
  });

  test('loss on the held-out slices matches the model card within 2%', async () => {
    for (const s of evalJson().slices) {
      const text = corpusText(s.file, s.char_offset, s.char_length);
      assert.equal(sha256(text), s.sha256, `slice text of ${s.file}`);
      const ids = model.tokenizer.encodeIds(text, false);
      assert.equal(ids.length, s.n_tokens, `token count of ${s.file}`);
      const a = await analyze(model, { ids, topK: 1, maxTokens: 4096, patterns: false });
      const last = a.lens.rows - 1;
      const T = a.lens.pos;
      let sum = 0;
      for (let t = 0; t < T - 1; t++) sum -= a.lens.nextLogprob[last * T + t]!;
      const loss = sum / (T - 1);
      const rel = Math.abs(loss - s.loss) / s.loss;
      assert.ok(rel < 0.02, `${s.file}@${s.char_offset}: engine ${loss.toFixed(4)} vs card ${s.loss} (${(rel * 100).toFixed(3)}%)`);
    }
  });
});
