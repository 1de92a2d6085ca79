// Token spans: each token's character range in the input, for editor decorations.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { TextTokenizer, alignTokens } from '../../src/engine/tokenizer';
import { FIXTURES, readJson } from '../helpers';

function tokenizer(name: string): TextTokenizer {
  const dir = path.join(FIXTURES, 'models', name);
  return new TextTokenizer(readJson(path.join(dir, 'tokenizer.json')), readJson(path.join(dir, 'tokenizer_config.json')));
}

describe('token spans', () => {
  test('byte-level BPE spans tile the text exactly, including multi-byte characters', () => {
    const tk = tokenizer('tiny-gpt2');
    const text = 'Hello wörld — 你好!\n\tdef f(x):  return x';
    const spans = tk.encode(text);
    let at = 0;
    for (const s of spans) {
      assert.ok(s.start <= s.end);
      assert.ok(s.start <= at + 0 && s.end >= at, `span ${s.start}-${s.end} continues from ${at}`);
      at = s.end;
    }
    assert.equal(at, text.length);
    // tokens that split a multi-byte character map to the whole character
    const joined = spans.map((s) => text.slice(s.start, s.end));
    assert.ok(joined.join('').length >= text.length);
    assert.equal(tk.decode(spans.map((s) => s.id)), text);
  });

  test('alignment skips a SentencePiece dummy prefix and BOS', () => {
    const enc = new TextEncoder();
    const spans = alignTokens('Once upon', [
      { bytes: enc.encode('<s>'), special: true },
      { bytes: enc.encode(' Once'), special: false },
      { bytes: enc.encode(' upon'), special: false },
    ]);
    assert.deepEqual(spans, [
      { start: 0, end: 0 },
      { start: 0, end: 4 },
      { start: 4, end: 9 },
    ]);
  });

  test('byte-fallback tokens cover their character', () => {
    const enc = new TextEncoder();
    const e = enc.encode('é'); // 2 bytes
    const spans = alignTokens('aé', [
      { bytes: enc.encode('a'), special: false },
      { bytes: e.subarray(0, 1), special: false },
      { bytes: e.subarray(1, 2), special: false },
    ]);
    assert.deepEqual(spans, [
      { start: 0, end: 1 },
      { start: 1, end: 2 },
      { start: 1, end: 2 },
    ]);
  });

  test('vocabulary size and special tokens', () => {
    const tk = tokenizer('tiny-llama');
    assert.ok(tk.vocabSize > 256);
    const eos = tk.encodeIds('<|endoftext|>', false);
    assert.equal(eos.length, 1);
    assert.ok(tk.isSpecial(eos[0]!));
  });
});
