// Token spans: each token's character range in the input, for editor decorations.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { TextTokenizer, alignTokens } from '../../src/engine/tokenizer';
import { bytesLabel, labelBytes, splitCharacters } from '../../src/shared/bytes';
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

describe('token texts: bytes that are not a whole character', () => {
  const enc = new TextEncoder();
  const hex = (...b: number[]) => bytesLabel(Uint8Array.from(b));

  test('whole UTF-8 characters decode as themselves; every other byte is <0xHH>', () => {
    for (const t of ['', 'a', ' the', 'wörld', '你好', '🙂', '\u0000\n\t', '\u07ff\u0800\uffff', '\u{10ffff}', 'x\ud7ff\ue000'])
      assert.equal(bytesLabel(enc.encode(t)), t);
    const e = enc.encode('日'); // E6 97 A5
    assert.equal(bytesLabel(e.subarray(0, 2)), '<0xE6><0x97>');
    assert.equal(bytesLabel(e.subarray(2)), '<0xA5>');
    assert.equal(bytesLabel(Uint8Array.of(0x20, ...enc.encode('🙂').subarray(0, 1))), ' <0xF0>');
    assert.equal(bytesLabel(Uint8Array.of(...e.subarray(1), ...enc.encode('ab'))), '<0x97><0xA5>ab');
    // not UTF-8: overlong forms, surrogates, above U+10FFFF, bytes no character starts with
    assert.equal(hex(0xc0, 0x80), '<0xC0><0x80>');
    assert.equal(hex(0xe0, 0x80, 0x80), '<0xE0><0x80><0x80>');
    assert.equal(hex(0xed, 0xa0, 0x80), '<0xED><0xA0><0x80>');
    assert.equal(hex(0xf0, 0x80, 0x80, 0x80), '<0xF0><0x80><0x80><0x80>');
    assert.equal(hex(0xf4, 0x90, 0x80, 0x80), '<0xF4><0x90><0x80><0x80>');
    assert.equal(hex(0xf5, 0xff, 0x0a), '<0xF5><0xFF>\n');
    // a truncated character before a whole one
    assert.equal(hex(0xe6, 0x97, 0xe6, 0x97, 0xa5), '<0xE6><0x97>日');
  });

  test('agrees with the WHATWG decoder wherever that decodes without U+FFFD', () => {
    const strict = new TextDecoder('utf-8', { fatal: true });
    let seed = 20261207;
    const rand = (n: number) => Math.floor((((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) / 2 ** 24) * n);
    // whole characters of every length at the edges of their ranges, and bytes that begin,
    // continue or cannot be part of one
    const chars = ['A', '\u007f', 'é', '\u07ff', '\u0800', '日', '\ud7ff', '\ue000', '\uffff', '\u{10000}', '🙂', '\u{10ffff}'].map((c) => [
      ...enc.encode(c),
    ]);
    const bytes = [0x80, 0xbf, 0xc0, 0xc2, 0xdf, 0xe0, 0xe6, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff, 0x90, 0xa0, 0x9f, 0x8f];
    let valid = 0;
    for (let n = 0; n < 4000; n++) {
      const b = Uint8Array.from(
        Array.from({ length: 1 + rand(4) }, () => (rand(10) < 7 ? chars[rand(chars.length)]! : [bytes[rand(bytes.length)]!])).flat(),
      );
      let text: string | null = null;
      try {
        text = strict.decode(b);
      } catch {
        // not UTF-8: the label holds a <0xHH>, and every byte again
      }
      const label = bytesLabel(b);
      if (text !== null) {
        valid++;
        assert.equal(label, text, `bytes ${[...b].map((x) => x.toString(16))}`);
      } else {
        assert.match(label, /<0x[0-9A-F]{2}>/);
        const back = label
          .split(/(<0x[0-9A-F]{2}>)/)
          .flatMap((part) => (/^<0x..>$/.test(part) ? [parseInt(part.slice(3, 5), 16)] : [...enc.encode(part)]));
        assert.deepEqual(back, [...b], `the label ${label} keeps every byte`);
      }
    }
    assert.ok(valid > 200, `${valid} valid sequences drawn`);
  });

  test('byte-level BPE (GPT-2) and SentencePiece byte fallback (Llama 2) name their bytes', () => {
    const gpt2 = tokenizer('tiny-gpt2');
    const ids = gpt2.encodeIds('日本語 🙂', false);
    const texts = ids.map((id) => gpt2.tokenText(id));
    assert.ok(
      texts.some((t) => /<0x[0-9A-F]{2}>/.test(t)),
      `some token of ${JSON.stringify(texts)} splits a character`,
    );
    assert.ok(!texts.join('').includes('\ufffd'));
    assert.equal(gpt2.decode(ids), '日本語 🙂');
    const dir = path.join(FIXTURES, 'tokenizers');
    const llama = new TextTokenizer(readJson(path.join(dir, 'llama2-metaspace.json')), {});
    const lids = llama.encodeIds('日', false);
    const ltexts = lids.map((id) => llama.tokenText(id));
    assert.ok(ltexts.join('').includes('<0xE6><0x97><0xA5>'), JSON.stringify(ltexts));
  });
});

describe('the characters a run of byte pieces spells', () => {
  test('labelBytes reads bytesLabel back; splitCharacters names what each piece is part of', () => {
    const enc = new TextEncoder();
    for (const t of [Uint8Array.of(0xe6, 0x97), Uint8Array.of(0x20, 0xf0), enc.encode('a 日 <0x'), Uint8Array.of(0xff, 0x41)])
      assert.deepEqual(labelBytes(bytesLabel(t)), t);
    const steps = [' the', '<0xE6><0x97>', '<0xA5>', ' <0xF0><0x9F>', '<0x99>', '<0x82>!', ' end', '<0xE6>'];
    assert.deepEqual(
      steps.map((_, i) => splitCharacters(steps, i)),
      ['', '日', '日', '🙂', '🙂', '🙂', '', ''], // the last: a character cut off by the end
    );
    // a piece that both ends one character and begins the next
    const two = ['<0xE6><0x97>', '<0xA5><0xE6>', '<0x9C><0xAC>'];
    assert.deepEqual(
      two.map((_, i) => splitCharacters(two, i)),
      ['日', '日本', '本'],
    );
  });
});
