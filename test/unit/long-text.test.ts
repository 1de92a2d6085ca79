// A long text is tokenized from its start only (analyze.ts tokenize): the tokens kept must be
// exactly the first tokens of the whole text, for every tokenizer layout, and the truncation must
// say that the total was not counted.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { tokenize, tokenizedPrefixChars } from '../../src/engine/analyze';
import type { LoadedModel } from '../../src/engine/model';
import { TextTokenizer } from '../../src/engine/tokenizer';
import { truncationText } from '../../src/shared/analysis';
import { BUNDLED_MODEL, FIXTURES, readJson } from '../helpers';

const TOKENIZERS: Record<string, () => TextTokenizer> = {
  'tiny-gpt2 (GPT-2 byte-level BPE)': () => fromDir(path.join(FIXTURES, 'models', 'tiny-gpt2')),
  'tiny-llama (Llama 2 byte fallback)': () => fromDir(path.join(FIXTURES, 'models', 'tiny-llama')),
  'td-mini (its own byte-level BPE)': () => fromDir(BUNDLED_MODEL),
  ...Object.fromEntries(
    (
      [
        ['llama3-style', '<|begin_of_text|>', '<|end_of_text|>'],
        ['qwen-style', null, '<|endoftext|>'],
        ['gemma-style', '<bos>', '<eos>'],
        ['llama2-metaspace', '<s>', '</s>'],
      ] as const
    ).map(([name, bos, eos]) => [
      name,
      () => new TextTokenizer(readJson(path.join(FIXTURES, 'tokenizers', `${name}.json`)), { bos_token: bos, eos_token: eos }),
    ]),
  ),
};

function fromDir(dir: string): TextTokenizer {
  return new TextTokenizer(readJson(path.join(dir, 'tokenizer.json')), readJson(path.join(dir, 'tokenizer_config.json')));
}

/** What tokenize() reads of a model. */
function modelOf(tk: TextTokenizer): LoadedModel {
  return { tokenizer: tk, spec: { dVocab: tk.vocabSize, maxPositions: 1 << 20 } } as unknown as LoadedModel;
}

/**
 * A deterministic text of `n` characters that is hard on tokenizers: prose, code indentation and
 * runs of spaces, digits, punctuation runs, CJK, emoji (surrogate pairs), combining accents
 * (NFC), tabs and blank lines.
 */
function mixedText(n: number, seed: number): string {
  const pieces = [
    'the',
    'whale',
    'Ishmael',
    'harpoon',
    'sea',
    'and',
    'of',
    'def',
    'return',
    'x',
    '    ',
    '        ',
    '\t',
    '\n',
    '\n\n',
    '123',
    '4567',
    '3.14159',
    '...',
    '!!!',
    '?',
    '—',
    '“quoted”',
    "'s",
    "'ll",
    '日本語',
    '你好',
    '🙂',
    '👩‍💻',
    'e\u0301',
    'café',
    'naïve',
    '{',
    '}',
    '()',
    '=>',
    '::',
    '<0xE6>',
    'ünïcödé',
    'ÆØÅ',
    '\u00a0',
  ];
  let x = seed >>> 0;
  let out = '';
  while (out.length < n) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out += pieces[x % pieces.length]!;
    out += (x >>> 8) % 3 === 0 ? '' : ' ';
  }
  return out;
}

describe('long texts are tokenized from their start', () => {
  for (const [name, make] of Object.entries(TOKENIZERS)) {
    test(`${name}: the tokens kept are the whole text's first tokens, and the total is not counted`, () => {
      const tk = make();
      const caps = [1, 2, 3, 5, 8, 13, 21, 34, 55];
      const longest = tokenizedPrefixChars(caps.at(-1)!, tk.maxTokenChars());
      for (const seed of [1, 2, 3]) {
        const text = mixedText(longest * 2 + 777, seed);
        const whole = tk.encode(text);
        for (const cap of caps) {
          assert.ok(text.length > tokenizedPrefixChars(cap, tk.maxTokenChars()) && whole.length > cap);
          const r = tokenize(modelOf(tk), { text, topK: 5, maxTokens: cap, patterns: false });
          assert.deepEqual(r.tokens, whole.slice(0, cap), `seed ${seed}, ${cap} tokens`);
          assert.equal(r.text, text, 'the analysis keeps the whole text');
          assert.deepEqual(r.truncation, { kept: cap, total: null, chars: text.length }, `seed ${seed}, ${cap} tokens`);
        }
      }
    });
  }

  test('one pre-token piece across the cut (a run of one character or pair) keeps the same tokens', () => {
    for (const [name, make] of Object.entries(TOKENIZERS)) {
      const tk = make();
      const cap = 40;
      const limit = tokenizedPrefixChars(cap, tk.maxTokenChars());
      for (const run of ['A', ' ', 'ab', '\n', '日', '🙂', '1', '.']) {
        const text = 'Once upon a time ' + run.repeat(Math.ceil((limit * 2) / run.length));
        const r = tokenize(modelOf(tk), { text, topK: 5, maxTokens: cap, patterns: false });
        assert.deepEqual(r.tokens, tk.encode(text).slice(0, cap), `${name}, a run of ${JSON.stringify(run)}`);
        assert.equal(r.truncation?.total, null);
      }
    }
  });

  test('a text within the limit is tokenized whole and its total counted', () => {
    const tk = TOKENIZERS['td-mini (its own byte-level BPE)']!();
    const cap = 40;
    const text = mixedText(tokenizedPrefixChars(cap, tk.maxTokenChars()) - 10, 7);
    const whole = tk.encode(text);
    const r = tokenize(modelOf(tk), { text, topK: 5, maxTokens: cap, patterns: false });
    assert.deepEqual(r.tokens, whole.slice(0, cap));
    assert.deepEqual(r.truncation, { kept: cap, total: whole.length, chars: text.length });
    assert.equal(truncationText(r.truncation!), `the first 40 of ${whole.length.toLocaleString('en-US')} tokens`);
    // and a short one is not truncated at all
    assert.equal(tokenize(modelOf(tk), { text: 'Hello there.', topK: 5, maxTokens: cap, patterns: false }).truncation, null);
  });

  test('a prefix cut next to or inside a surrogate pair keeps the same tokens', () => {
    const tk = TOKENIZERS['tiny-gpt2 (GPT-2 byte-level BPE)']!();
    const cap = 8;
    const limit = tokenizedPrefixChars(cap, tk.maxTokenChars());
    // "🙂 " is three UTF-16 units: one of the three offsets puts the cut inside a pair
    for (const pad of ['', 'a', 'ab']) {
      const text = pad + '🙂 '.repeat(limit);
      const r = tokenize(modelOf(tk), { text, topK: 5, maxTokens: cap, patterns: false });
      assert.deepEqual(r.tokens, tk.encode(text).slice(0, cap));
      assert.equal(r.truncation?.total, null);
    }
  });

  test('the last long text encoded is remembered: the same ids, without encoding it again', () => {
    const tk = TOKENIZERS['td-mini (its own byte-level BPE)']!();
    const lib = (tk as unknown as { tok: { encode: (...a: unknown[]) => unknown } }).tok;
    const encode = lib.encode.bind(lib);
    let calls = 0;
    lib.encode = (...a: unknown[]) => {
      calls++;
      return encode(...a);
    };
    const text = mixedText(20_000, 11);
    const first = tk.encodeIds(text);
    assert.equal(calls, 1);
    const again = tk.encodeIds(text.slice(0)); // an equal string, as the next column sends it
    assert.equal(calls, 1, 'remembered');
    assert.deepEqual(again, first);
    again.push(-1); // a caller's changes do not reach the memo
    assert.deepEqual(tk.encodeIds(text), first);
    assert.equal(calls, 1);
    // without special tokens, or another text: encoded
    assert.deepEqual(tk.encodeIds(text, false), first.slice(first[0] === tk.bosId ? 1 : 0));
    assert.equal(calls, 2);
    tk.encodeIds(text + ' more');
    assert.equal(calls, 3);
    // short texts are not remembered (they encode in well under a millisecond)
    tk.encodeIds('short');
    tk.encodeIds('short');
    assert.equal(calls, 5);
  });

  test('the message names the text’s length when the total was not counted', () => {
    assert.equal(truncationText({ kept: 1024, total: null, chars: 400000 }), 'the first 1024 tokens of a 400,000-character text');
    assert.equal(truncationText({ kept: 1024, total: 5231, chars: 20000 }), 'the first 1024 of 5,231 tokens');
  });
});
