// Step 3: tokenize the prepared corpus with @huggingface/tokenizers (the exact tokenizer the
// extension uses at inference), so training ids == inference ids by construction.
// Each source becomes one uint16 little-endian stream: EOT doc1 EOT doc2 EOT ... docN EOT
// (EOT = <|endoftext|> = id 0).
// usage: node tools/train/encode_corpus.mjs <corpus_dir> <tokenizer_dir> <out_dir>
import { readFileSync, writeFileSync, readdirSync, mkdirSync } from 'node:fs';
import { join, basename } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';

const [, , corpusDir, tokDir, outDir] = process.argv;
const tok = new Tokenizer(
  JSON.parse(readFileSync(join(tokDir, 'tokenizer.json'), 'utf8')),
  JSON.parse(readFileSync(join(tokDir, 'tokenizer_config.json'), 'utf8')),
);
const EOT = tok.token_to_id('<|endoftext|>');
if (EOT !== 0) throw new Error('expected <|endoftext|> = 0');
const stats = {};
for (const split of ['train', 'heldout']) {
  mkdirSync(join(outDir, split), { recursive: true });
  for (const f of readdirSync(join(corpusDir, split))
    .filter((n) => n.endsWith('.jsonl'))
    .sort()) {
    const source = basename(f, '.jsonl');
    const t0 = Date.now();
    const ids = [EOT];
    let bytes = 0,
      docs = 0;
    for (const line of readFileSync(join(corpusDir, split, f), 'utf8').split('\n')) {
      if (!line) continue;
      const { text } = JSON.parse(line);
      const enc = tok.encode(text, { add_special_tokens: false }).ids;
      for (const id of enc) {
        if (!(id >= 1 && id < 65536)) throw new Error(`bad id ${id} in ${source}`);
        ids.push(id);
      }
      ids.push(EOT);
      bytes += Buffer.byteLength(text, 'utf8');
      docs++;
    }
    const arr = Uint16Array.from(ids);
    writeFileSync(join(outDir, split, source + '.bin'), Buffer.from(arr.buffer));
    (stats[source] ??= {})[split] = { docs, bytes, tokens: ids.length, bytes_per_token: +(bytes / (ids.length - docs - 1)).toFixed(3) };
    console.log(`${split} ${source}: ${docs} docs, ${bytes} bytes -> ${ids.length} tokens (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
  }
}
writeFileSync(join(outDir, 'stats.json'), JSON.stringify(stats, null, 1));
