// Check: the tokenizer loads in @huggingface/tokenizers and round-trips exactly,
// decode(encode(x)) === x, for the held-out part of every corpus file (and each whole raw file with
// --all), plus a few edge cases. Exits non-zero on any mismatch.
// usage: node tools/train/check_tokenizer.mjs <tokenizer_dir> <splits.json> <data_dir> [--all]
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';

const [, , tokDir, splitsPath, dataDir, flag] = process.argv;
const tj = JSON.parse(readFileSync(join(tokDir, 'tokenizer.json'), 'utf8'));
const tc = JSON.parse(readFileSync(join(tokDir, 'tokenizer_config.json'), 'utf8'));
const tok = new Tokenizer(tj, tc);
const V = Object.keys(tj.model.vocab).length;
let failures = 0;
function check(name, text) {
  const ids = tok.encode(text, { add_special_tokens: false }).ids;
  const bad = ids.filter((i) => !(Number.isInteger(i) && i >= 0 && i < V));
  const back = ids.length ? tok.decode(ids) : '';
  const ok = bad.length === 0 && back === text;
  if (!ok) {
    failures++;
    let k = 0;
    while (k < text.length && text[k] === back[k]) k++;
    console.log(
      `FAIL ${name}: ${bad.length} bad ids; first diff at char ${k}: ${JSON.stringify(text.slice(k, k + 40))} vs ${JSON.stringify(back.slice(k, k + 40))}`,
    );
  }
  return ids.length;
}
const splits = JSON.parse(readFileSync(splitsPath, 'utf8'));
let nChars = 0,
  nTok = 0;
for (const [rel, info] of Object.entries(splits.files)) {
  const raw = readFileSync(join(dataDir, rel), 'utf8');
  // JS strings index UTF-16 code units: use the recorded UTF-16 offset
  const held = raw.slice(info.heldout_start_utf16);
  nChars += held.length;
  nTok += check(`${rel} [held-out]`, held);
  if (flag === '--all') check(`${rel} [whole file]`, raw);
}
const edge = [
  '',
  ' ',
  '\n\n\n',
  '    def f(x):\n        return x\n',
  'héllo wörld — “quotes” ☃ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 😀',
  'a<|endoftext|>b',
  '\t\ttabs\r\nCRLF\u00a0nbsp',
  "it's we'll they're I'M",
];
for (const e of edge) check(`edge ${JSON.stringify(e)}`, e);
const eot = tok.encode('x<|endoftext|>y', { add_special_tokens: false }).ids;
if (!eot.includes(0)) {
  failures++;
  console.log('FAIL: <|endoftext|> not mapped to id 0');
}
if (tok.encode('hello', { add_special_tokens: true }).ids[0] === 0) {
  failures++;
  console.log('FAIL: BOS added automatically');
}
console.log(
  `round-trip: ${Object.keys(splits.files).length} held-out files, ${nChars} chars, ${nTok} tokens (${(nChars / nTok).toFixed(2)} chars/token), vocab ${V}: ${failures ? failures + ' FAILURES' : 'all exact'}`,
);
process.exit(failures ? 1 : 0);
