// The bundled model (media/models/td-mini) through the engine's normal loader: its tokenizer
// round-trips held-out text of every corpus, and its loss on fixed held-out slices (read from
// ../shared/data) matches the model card (eval.json, computed in PyTorch) within 2%.
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadModel, type LoadedModel } from '../../src/engine/model';
import { analyze } from '../../src/engine/analyze';
import { BUNDLED_MODEL, SHARED_DATA, readJson } from '../helpers';

interface Slice {
  file: string;
  kind: string;
  char_offset: number;
  char_length: number;
  sha256: string;
  n_tokens: number;
  loss: number;
}

const skip =
  (!fs.existsSync(path.join(BUNDLED_MODEL, 'model.safetensors')) && 'the bundled model is not built') ||
  (!fs.existsSync(SHARED_DATA) && 'needs ../shared/data');

describe('bundled model td-mini', { skip }, () => {
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
    const files = fs
      .readdirSync(SHARED_DATA)
      .flatMap((d) =>
        fs.statSync(path.join(SHARED_DATA, d)).isDirectory() ? fs.readdirSync(path.join(SHARED_DATA, d)).map((f) => path.join(d, f)) : [],
      )
      .filter((f) => /\.txt$/.test(f));
    assert.ok(files.length >= 10);
    for (const f of files) {
      const text = fs.readFileSync(path.join(SHARED_DATA, f), 'utf8');
      const held = text.slice(Math.floor(text.length * 0.95)).slice(0, 60_000); // held-out split: the last 5%
      const ids = model.tokenizer.encodeIds(held, false);
      assert.equal(model.tokenizer.decode(ids), held, `round trip of ${f}`);
    }
  });

  test('loss on the held-out slices matches the model card within 2%', async () => {
    for (const s of evalJson().slices) {
      const text = fs.readFileSync(path.join(SHARED_DATA, s.file), 'utf8').slice(s.char_offset, s.char_offset + s.char_length);
      assert.equal(createHash('sha256').update(text, 'utf8').digest('hex'), s.sha256, `slice text of ${s.file}`);
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
