#!/usr/bin/env python3
"""Step 2b: train a GPT-2-style byte-level BPE tokenizer and write it in Hugging Face format.

Input: word counts produced by pretokenize.mjs (the words are already in the ByteLevel
byte-to-unicode alphabet, pre-tokenized with the GPT-2 regex by @huggingface/tokenizers itself).

Vocabulary layout (VOCAB_SIZE = 8192):
  id 0            <|endoftext|>  (special; BOS / EOS / document separator)
  ids 1..256      the 256 single bytes, in byte order (byte b -> id b + 1)
  ids 257..8191   merged tokens, in merge order

Algorithm: classic BPE over (word, count) pairs with incremental pair-count updates: a pair ->
count table, a pair -> set(word index) index and a lazy max-heap; on each merge only the words that
contain the merged pair are rewritten and their pair counts adjusted. Ties on count are broken by
the lexicographically smallest (left, right) token-string pair, so the result is deterministic.

usage: python3 train_tokenizer.py <word_counts.json> <out_dir>
"""
import heapq
import json
import os
import sys
import time

VOCAB_SIZE = 8192
EOT = "<|endoftext|>"


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable unicode char mapping (same as HF ByteLevel)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def train_bpe(word_counts, vocab_size):
    b2u = bytes_to_unicode()
    id_to_tok = [EOT] + [b2u[b] for b in range(256)]
    tok_to_id = {t: i for i, t in enumerate(id_to_tok)}
    # words as lists of ids; deterministic order
    items = sorted(word_counts.items())
    words = [[tok_to_id[c] for c in w] for w, _ in items]
    counts = [c for _, c in items]

    pair_counts = {}
    where = {}
    for wi, (syms, c) in enumerate(zip(words, counts)):
        for p in zip(syms, syms[1:]):
            pair_counts[p] = pair_counts.get(p, 0) + c
            where.setdefault(p, set()).add(wi)

    def key(p):
        # max count first, then the smallest (left string, right string)
        return (-pair_counts[p], id_to_tok[p[0]], id_to_tok[p[1]])

    heap = [(key(p), p) for p in pair_counts]
    heapq.heapify(heap)
    merges = []
    t0 = time.time()
    while len(id_to_tok) < vocab_size and heap:
        k, p = heapq.heappop(heap)
        cur = pair_counts.get(p, 0)
        if cur <= 0:
            continue
        if k[0] != -cur:  # stale entry; re-push with the current count
            heapq.heappush(heap, (key(p), p))
            continue
        if cur < 2:
            break
        a, b = p
        new_tok = id_to_tok[a] + id_to_tok[b]
        if new_tok in tok_to_id:       # same string reached by a different merge
            nid = tok_to_id[new_tok]
        else:
            nid = len(id_to_tok)
            id_to_tok.append(new_tok)
            tok_to_id[new_tok] = nid
        merges.append((id_to_tok[a], id_to_tok[b]))
        changed = {}
        for wi in where.pop(p, ()):
            syms = words[wi]
            c = counts[wi]
            # remove old pairs of this word
            for q in zip(syms, syms[1:]):
                pair_counts[q] -= c
                changed[q] = True
            out = []
            i = 0
            n = len(syms)
            while i < n:
                if i + 1 < n and syms[i] == a and syms[i + 1] == b:
                    out.append(nid)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            words[wi] = out
            for q in zip(out, out[1:]):
                pair_counts[q] = pair_counts.get(q, 0) + c
                where.setdefault(q, set()).add(wi)
                changed[q] = True
        pair_counts.pop(p, None)
        for q in changed:
            if q == p:
                continue
            cq = pair_counts.get(q, 0)
            if cq > 0:
                heapq.heappush(heap, (key(q), q))
            else:
                pair_counts.pop(q, None)
                where.pop(q, None)
        if len(merges) % 1000 == 0:
            print(f"  {len(merges)} merges, vocab {len(id_to_tok)}, last {new_tok!r} x{cur}, "
                  f"{time.time() - t0:.1f}s", flush=True)
    return id_to_tok, merges


def tokenizer_json(id_to_tok, merges):
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": 0, "content": EOT, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": False,
                  "byte_fallback": False, "ignore_merges": False,
                  "vocab": {t: i for i, t in enumerate(id_to_tok)},
                  "merges": [f"{a} {b}" for a, b in merges]},
    }


def tokenizer_config(max_len):
    return {
        "add_bos_token": False,
        "add_eos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {"0": {"content": EOT, "lstrip": False, "normalized": False,
                                       "rstrip": False, "single_word": False, "special": True}},
        "bos_token": EOT,
        "eos_token": EOT,
        "unk_token": EOT,
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_len,
        "tokenizer_class": "GPT2Tokenizer",
    }


def main():
    wc_path, out_dir = sys.argv[1], sys.argv[2]
    with open(wc_path, encoding="utf-8") as f:
        wc = json.load(f)
    t0 = time.time()
    id_to_tok, merges = train_bpe(wc, VOCAB_SIZE)
    print(f"trained: vocab {len(id_to_tok)}, merges {len(merges)}, {time.time() - t0:.1f}s")
    assert len(id_to_tok) == VOCAB_SIZE, "sample too small for the requested vocab size"
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_json(id_to_tok, merges), f, ensure_ascii=False, indent=1)
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_config(512), f, ensure_ascii=False, indent=2)


if __name__ == "__main__":
    main()
