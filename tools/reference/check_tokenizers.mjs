// Checks that the fixture tokenizers load in @huggingface/tokenizers (tokenizers.js) and agree
// with the goldens written by make_goldens.py.
//
//   node tools/reference/check_tokenizers.mjs [<stories260K HF dir from tools/convert/llama2c>]
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tokenizer } from '@huggingface/tokenizers';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const models = path.join(repo, 'test', 'fixtures', 'models');
const goldens = path.join(repo, 'test', 'fixtures', 'goldens');
const readJson = (p) => JSON.parse(fs.readFileSync(p, 'utf8'));
const load = (dir) => new Tokenizer(readJson(path.join(dir, 'tokenizer.json')), readJson(path.join(dir, 'tokenizer_config.json')));
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
let failures = 0;
const check = (ok, msg) => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${msg}`);
  if (!ok) failures++;
};

for (const name of fs.readdirSync(models).sort()) {
  const t = load(path.join(models, name));
  const g = readJson(path.join(goldens, `${name}.json`));
  const ids = t.encode(g.text).ids;
  check(same(ids, g.ids), `${name}: encode(text) == golden ids (${ids.length} tokens)`);
  check(t.decode(g.ids) === g.text, `${name}: decode(golden ids) == text`);
  check(
    g.ids.every((i) => i < g.d_vocab),
    `${name}: ids < d_vocab ${g.d_vocab}`,
  );
}

const hfDir = process.argv[2];
if (hfDir) {
  const t = load(hfDir);
  const g = readJson(path.join(goldens, 'stories260K.json'));
  const once = t.encode('Once upon a time', { add_special_tokens: false }).ids;
  check(same(once, g.encode_once_upon_a_time), `stories260K: encode("Once upon a time", no specials) = ${JSON.stringify(once)}`);
  const withBos = t.encode('Once upon a time').ids;
  check(same(withBos, [1, ...g.encode_once_upon_a_time]), `stories260K: default encode prepends BOS: ${JSON.stringify(withBos)}`);
  for (const c of g.encode_cases) {
    const ids = t.encode(c.text, { add_special_tokens: false }).ids;
    check(same(ids, c.ids), `stories260K: encode ${JSON.stringify(c.text)} == llama2.c encode()`);
    check(t.decode(ids) === c.text, `stories260K: decode round-trips ${JSON.stringify(c.text)}`);
  }
  const src = fs.readFileSync(path.join(repo, '..', 'shared', 'data', 'stories260K', 'SOURCE.md'), 'utf8');
  const published = /Greedy sample[\s\S]*?```\n([\s\S]*?)```/.exec(src)?.[1] ?? '';
  const text = t.decode(g.greedy_ids);
  check(
    text === g.greedy_text && published.startsWith(text),
    `stories260K: decode(greedy_ids) is the published sample's first ${text.length} chars`,
  );
  check(
    t.decode([1, ...g.greedy_ids], { skip_special_tokens: true }) === text,
    'stories260K: decode([BOS, ...], skip_special_tokens) == same text',
  );
}
console.log(failures ? `${failures} FAILED` : 'all tokenizer checks passed');
process.exit(failures ? 1 : 0);
