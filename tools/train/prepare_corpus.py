#!/usr/bin/env python3
"""Step 1: corpus preparation for td-mini.

Reads the public-domain / permissively licensed texts in ../shared/data (see each SOURCE.md),
splits every file into a train part and a held-out part (the held-out part is the LAST 5% of each
file's characters, starting at the first line boundary at or after 95% of the file), cleans the
text (verse references stripped from the two Bibles) and cuts it into documents. The documents are
joined with <|endoftext|> later, when the corpus is tokenized (encode_corpus.mjs).

Outputs (scratch, gitignored) in tools/train/work/corpus/:
  train/<source>.jsonl, heldout/<source>.jsonl   one JSON object per document: {"file", "text"}
  splits.json                                     per file: char length, held-out start offset
  tok_sample.txt.jsonl                            ~8 MB training-only subsample for BPE training
"""
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DATA = os.environ.get("TD_DATA", os.path.normpath(os.path.join(REPO, "..", "shared", "data")))
WORK = os.path.join(HERE, "work")
OUT = os.path.join(WORK, "corpus")

HELDOUT_FRACTION = 0.05

# source name -> (files relative to DATA, kind, sampling weight in the training mix)
SOURCES = {
    "austen": ([f"austen/{n}.txt" for n in ["emma", "mansfieldpark", "northangerabbey",
                                            "persuasion", "prideprejudice", "sensesensibility"]],
               "prose", 0.10),
    "bible-kjv": (["bible-kjv/kjv.txt"], "prose", 0.05),
    "bible-web": (["bible-web/web.txt"], "prose", 0.05),
    "jargon": (["jargon/jargon.txt"], "prose", 0.05),
    "moby-dick": (["moby-dick/moby-dick.txt"], "prose", 0.06),
    "sotu": (["sotu/sotu.txt"], "prose", 0.12),
    "tinyshakespeare": (["tinyshakespeare/input.txt"], "prose", 0.06),
    "tinystories-val-subset": (["tinystories-val-subset/tinystories_val.txt"], "prose", 0.08),
    "python-stdlib": (["python-stdlib/python3.11-stdlib.py.txt"], "code", 0.28),
    "python-docs": (["python-docs/python3.11-docs-rst.txt"], "code", 0.15),
}
assert abs(sum(w for _, _, w in SOURCES.values()) - 1.0) < 1e-9

KJV_REF = re.compile(r"^\S+?\d+:\d+ ", re.M)           # "Ge1:1 ", "1Sm3:4 "
WEB_REF = re.compile(r"^.*? \d+:\d+: ", re.M)          # "Genesis 1:1: ", "I Samuel 3:4: "
KJV_BOOK = re.compile(r"^(\S+?)\d+:\d+ ")
WEB_BOOK = re.compile(r"^(.*?) \d+:\d+: ")


def split_point(text):
    """Held-out part starts at the first line start at or after 95% of the characters."""
    cut = int(len(text) * (1 - HELDOUT_FRACTION))
    nl = text.find("\n", cut)
    return len(text) if nl < 0 else nl + 1


def bible_docs(text, book_re, ref_re):
    """One document per book; verse references removed, one verse per line."""
    docs, cur, cur_book = [], [], None
    for line in text.split("\n"):
        if not line:
            continue
        m = book_re.match(line)
        book = m.group(1) if m else cur_book
        if book != cur_book and cur:
            docs.append("\n".join(cur) + "\n")
            cur = []
        cur_book = book
        cur.append(ref_re.sub("", line, count=1))
    if cur:
        docs.append("\n".join(cur) + "\n")
    return docs


def split_on_header(text, header_re):
    """Cut before every line matching header_re (the header line stays with its document)."""
    starts = [m.start() for m in header_re.finditer(text)]
    if not starts or starts[0] != 0:
        starts = [0] + starts
    docs = [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)])]
    return [d for d in docs if d.strip()]


def to_docs(source, text):
    if source == "bible-kjv":
        return bible_docs(text, KJV_BOOK, KJV_REF)
    if source == "bible-web":
        return bible_docs(text, WEB_BOOK, WEB_REF)
    if source == "python-stdlib":
        return split_on_header(text, re.compile(r"^# ===== Lib/", re.M))
    if source == "python-docs":
        return split_on_header(text, re.compile(r"^===== ", re.M))
    if source == "sotu":
        return split_on_header(text, re.compile(r"^=== \d{4}_", re.M))
    # austen (one document per novel file), jargon, moby-dick, tinyshakespeare, tinystories
    return [text] if text.strip() else []


def main():
    os.makedirs(os.path.join(OUT, "train"), exist_ok=True)
    os.makedirs(os.path.join(OUT, "heldout"), exist_ok=True)
    splits = {"heldout_fraction": HELDOUT_FRACTION, "files": {}, "sources": {}}
    sample = []
    for source, (files, kind, weight) in SOURCES.items():
        stats = {"kind": kind, "weight": weight, "files": files,
                 "train_chars": 0, "heldout_chars": 0, "train_bytes": 0, "heldout_bytes": 0,
                 "train_docs": 0, "heldout_docs": 0}
        out = {"train": open(os.path.join(OUT, "train", source + ".jsonl"), "w", encoding="utf-8"),
               "heldout": open(os.path.join(OUT, "heldout", source + ".jsonl"), "w", encoding="utf-8")}
        train_texts = []
        for rel in files:
            with open(os.path.join(DATA, rel), encoding="utf-8") as f:
                raw = f.read()
            sp = split_point(raw)
            splits["files"][rel] = {"source": source, "kind": kind, "chars": len(raw),
                                    "heldout_start_char": sp,
                                    "heldout_start_utf16": len(raw[:sp].encode("utf-16-le")) // 2,
                                    "heldout_start_byte": len(raw[:sp].encode("utf-8"))}
            for split, part in (("train", raw[:sp]), ("heldout", raw[sp:])):
                docs = to_docs(source, part)
                for d in docs:
                    out[split].write(json.dumps({"file": rel, "text": d}, ensure_ascii=False) + "\n")
                    stats[split + "_chars"] += len(d)
                    stats[split + "_bytes"] += len(d.encode("utf-8"))
                stats[split + "_docs"] += len(docs)
                if split == "train":
                    train_texts.append("".join(docs))
        for f in out.values():
            f.close()
        splits["sources"][source] = stats
        # tokenizer-training subsample: weight * 8 MB taken as 16 evenly spaced chunks (train part only)
        want = int(weight * 8_000_000)
        joined = "".join(train_texts)
        n_chunks = 16
        clen = min(len(joined) // n_chunks, want // n_chunks)
        for i in range(n_chunks):
            a = (len(joined) - clen) * i // (n_chunks - 1)
            sample.append({"source": source, "text": joined[a:a + clen]})
        print(f"{source:24s} train {stats['train_bytes']:>9d} B  heldout {stats['heldout_bytes']:>8d} B  "
              f"docs {stats['train_docs']}/{stats['heldout_docs']}", flush=True)
    with open(os.path.join(OUT, "tok_sample.jsonl"), "w", encoding="utf-8") as f:
        for s in sample:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    with open(os.path.join(OUT, "splits.json"), "w") as f:
        json.dump(splits, f, indent=1)
    print("tokenizer sample chars:", sum(len(s["text"]) for s in sample))


if __name__ == "__main__":
    sys.exit(main())
