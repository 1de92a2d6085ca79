// Tokenizer bridge for the Python scripts: runs @huggingface/tokenizers (the tokenizer the
// extension uses) so every id in eval/samples is exactly what inference produces.
// stdin: {"tokenizer_dir": "...", "encode": ["text", ...], "decode": [[ids], ...]}
// stdout: {"encode": [[ids], ...], "decode": ["text", ...]}
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';

const req = JSON.parse(readFileSync(0, 'utf8'));
const tok = new Tokenizer(
  JSON.parse(readFileSync(join(req.tokenizer_dir, 'tokenizer.json'), 'utf8')),
  JSON.parse(readFileSync(join(req.tokenizer_dir, 'tokenizer_config.json'), 'utf8')),
);
const out = {
  encode: (req.encode ?? []).map((t) => tok.encode(t, { add_special_tokens: false }).ids),
  decode: (req.decode ?? []).map((ids) => (ids.length ? tok.decode(ids) : '')),
};
process.stdout.write(JSON.stringify(out));
