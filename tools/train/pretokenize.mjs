// Step 2a: pre-tokenize the tokenizer-training subsample with the SAME ByteLevel pre-tokenizer
// (GPT-2 regex, byte-to-unicode mapping) that @huggingface/tokenizers uses at inference, and
// write word counts for the Python BPE trainer.
// usage: node tools/train/pretokenize.mjs <tok_sample.jsonl> <word_counts.json>
import { readFileSync, writeFileSync } from 'node:fs';
import { ByteLevelPreTokenizer } from '@huggingface/tokenizers';

const [, , inPath, outPath] = process.argv;
const pre = new ByteLevelPreTokenizer({ type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true });
const counts = new Map();
let nWords = 0;
for (const line of readFileSync(inPath, 'utf8').split('\n')) {
  if (!line) continue;
  const { text } = JSON.parse(line);
  for (const w of pre.pre_tokenize_text(text, {})) {
    counts.set(w, (counts.get(w) ?? 0) + 1);
    nWords++;
  }
}
writeFileSync(outPath, JSON.stringify(Object.fromEntries(counts)));
console.log(`pre-tokenized ${nWords} words, ${counts.size} unique -> ${outPath}`);
