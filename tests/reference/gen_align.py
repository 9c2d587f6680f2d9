#!/usr/bin/env python3
"""Reference fixtures for token alignment and vocabulary mapping (tests/fixtures/align/).

Run from the repository root (tokenizers 0.20.3, numpy; tests/reference/requirements.txt):

    python3 tests/reference/gen_align.py                    # all fixtures
    python3 tests/reference/gen_align.py --original-only    # only <pair>.original.{json,bin}
    python3 tests/reference/gen_align.py --refresh-tokenizers  # copy the tokenizers afresh

Inputs: the tokenizers trained on local text by tests/reference/gen_tokenizers.py
(tests/fixtures/tokenizers/{bytelevel,sp_bpe}/tokenizer.json: a GPT-NeoX-style byte-level BPE and a
Llama-2-style SentencePiece BPE with byte fallback, 8,192 tokens each) and their held-out documents
(tests/fixtures/tokenizers/docs.jsonl: man pages in many languages, licenses, source files), plus a
few hand-written edge documents (empty, one character, CJK, emoji with ZWJ, combining marks, a
leading space, an in-text <|endoftext|>). The tokenizer.json files are copied next to the fixtures
so that the fixtures stay valid when the tokenizers are regenerated; a rerun keeps those copies
(the fixtures change only with the reference) unless --refresh-tokenizers is given.

For each direction (bytelevel -> sp_bpe, sp_bpe -> bytelevel) it writes <pair>.json (metadata and
an index of arrays) and <pair>.bin (the arrays, little endian):
  texts, token ids from the `tokenizers` library (with the post-processor's specials: <s> on the
  sp_bpe side), the reference byte ends, the vocabulary mapping (source model vocab = tokenizer +
  64 padding rows), and per configuration (em, mined, bytespan, em_current = EM with the
  original's current-token one-hot) the alignment (lo, hi, status) and the aligned rows
  (final status, per-row counts, target ids, probabilities of the kept rows; a fallback row is a
  one-hot, probability 1). em_current shares em's alignment and is written for the first pair only.
The source's top-k rows (k = 6) are not stored: both sides regenerate them from the seed with the
generator in align_reference.source_rows (splitmix64, integer weights, exact in float32); a
checksum of them is stored so that a drift is caught.

The original's rules (align_reference.py part 6, [distill].align_compat): <pair>.original.{json,bin}
holds, for the first ORIGINAL_DOCS held-out documents and the edge documents, one configuration
per rule alone and one with all of them (MinED; EM too with all), each with its vocabulary mapping
(under the strings/specials rules it depends on), alignment and aligned rows. The empty_row rule
takes the target model's own rows: made by the same generator over the target ids with seed
TARGET_SEED and the target vocabulary.
All numbers come from align_reference.py, written from DESIGN.md section 1, not from the C++.
"""
import json
import os
import shutil
import sys
import time

import numpy as np
import tokenizers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import align_reference as ref  # noqa: E402

assert tokenizers.__version__ == "0.20.3", tokenizers.__version__

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOK_DIR = os.path.join(ROOT, "tests", "fixtures", "tokenizers")
OUT = os.path.join(ROOT, "tests", "fixtures", "align")
SEED = 20240117
K = 6
PADDING_ROWS = 64
N_DOCS = 1000  # held-out documents taken, in file order
ORIGINAL_DOCS = 150  # held-out documents of the original-rules fixtures
TARGET_SEED = SEED + 1

EDGE_DOCS = [
    "",
    "a",
    " ",
    "\n",
    " leading space and  two spaces",
    "你好，世界。東京は日本の首都です。",
    "한국어 문장입니다.",
    "emoji 👍🏽 family 👨‍👩‍👧 flag 🇫🇷 keycap 1️⃣ done",
    "combining: e\u0301te\u0301, Tie\u0302\u0301ng Vie\u0323\u0302t, \u0915\u093f\u0924\u093e\u092c",
    "first doc<|endoftext|>second doc",
    "tabs\tand\r\nCRLF\r\n",
]

CONFIGS = [
    {"name": "em", "method": "em", "onehot_current": False},
    {"name": "mined", "method": "mined", "onehot_current": False},
    {"name": "bytespan", "method": "bytespan", "onehot_current": False},
    # The original's current-token one-hot; same alignment as "em" (not stored again). Only for
    # the first pair, to keep the fixtures small.
    {"name": "em_current", "method": "em", "onehot_current": True, "alignment_of": "em"},
]


# The original's rules: each alone, then all of them (align_reference.OriginalRules).
# empty_row under EM: the exact-only mapping leaves rows empty; MinED's full mapping rarely does.
ORIGINAL_CONFIGS = [{"name": "orig_" + r, "method": "em" if r == "empty_row" else "mined", "rules": r}
                    for r in ref.RULES] + [
    {"name": "orig_all_mined", "method": "mined", "rules": "all"},
    {"name": "orig_all_em", "method": "em", "rules": "all"},
]


def fnv1a(data, h=0xCBF29CE484222325):
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def fnv1a_np(arr, h=0xCBF29CE484222325):
    """FNV-1a 64 over the little-endian bytes of arr (vectorized over 8-byte groups is not
    possible: FNV is sequential; chunked Python loop)."""
    return fnv1a(np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes(), h)


class Writer:
    def __init__(self):
        self.chunks = []
        self.index = {}
        self.size = 0

    def add(self, name, arr):
        arr = np.ascontiguousarray(arr)
        dt = {np.dtype(np.int32): "i32", np.dtype(np.int64): "i64", np.dtype(np.uint8): "u8",
              np.dtype(np.uint16): "u16", np.dtype(np.float32): "f32"}[arr.dtype]
        data = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        pad = (-self.size) % 8
        if pad:
            self.chunks.append(b"\0" * pad)
            self.size += pad
        self.index[name] = {"dtype": dt, "offset": self.size, "count": int(arr.size)}
        self.chunks.append(data)
        self.size += len(data)


def write_config(w, cfg, src, tgt, src_docs, tgt_docs, texts, rows, mapping, rules=ref.FUSELLM,
                 target_rows=None):
    """Aligns and applies every document under one configuration; adds its arrays to w."""
    method = cfg["method"]
    lo_all, hi_all, st_all, fin_all, cnt_all, out_ids, out_probs = [], [], [], [], [], [], []
    for d, (ds, dt, text) in enumerate(zip(src_docs, tgt_docs, texts)):
        if method == "bytespan":
            lo, hi, st = ref.align_byte_spans(ds, dt, src, tgt,
                                              ref.byte_ends(ds, src, src.dummy_inserted(text)),
                                              ref.byte_ends(dt, tgt, tgt.dummy_inserted(text)))
        else:
            lo, hi, st = ref.align_dtw(ds, dt, src, tgt, method, mapping, rules)
        id_map = mapping["exact"] if method == "em" else mapping["full"]
        rid, rpr = rows[d]
        oi, op, fin, _ = ref.apply_alignment(
            dt, lo, st, rid, rpr, id_map, onehot_current=cfg.get("onehot_current", False) or rules.onehot_current,
            target_rows=target_rows[d] if rules.empty_row else None)
        lo_all += lo
        hi_all += hi
        st_all += st
        fin_all += fin
        cnt_all += [len(x) for x in oi]
        out_ids += [i for x in oi for i in x]
        # Fallback rows are one-hots: their probability (1.0) is not stored; an EMPTY row that
        # took the target's own row (rules.empty_row) stores its probabilities.
        out_probs += [p for x, f in zip(op, fin)
                      if f < ref.FB_MANY or (f == ref.FB_EMPTY and rules.empty_row) for p in x]
    if "alignment_of" not in cfg:
        # lo is doc-local (the test adds the document's source offset); hi as hi - lo.
        w.add(cfg["name"] + ".lo", np.array(lo_all, dtype=np.int32))
        w.add(cfg["name"] + ".span", np.array([h - l for l, h in zip(lo_all, hi_all)], dtype=np.uint16))
        w.add(cfg["name"] + ".status", np.array(st_all, dtype=np.uint8))
    w.add(cfg["name"] + ".final", np.array(fin_all, dtype=np.uint8))
    w.add(cfg["name"] + ".count", np.array(cnt_all, dtype=np.uint8))
    w.add(cfg["name"] + ".ids", np.array(out_ids, dtype=np.uint16 if len(tgt) < 65536 else np.int32))
    w.add(cfg["name"] + ".probs", np.array(out_probs, dtype=np.float32))
    counts = np.bincount(np.array(st_all, dtype=np.int64), minlength=14)
    print("  %-16s %s" % (cfg["name"], {k: int(v) for k, v in enumerate(counts) if v}))


def write_original(pair, src_name, tgt_name, src, tgt, enc, texts):
    """<pair>.original.{json,bin}: the original's rules, each alone and all together."""
    idx = list(range(min(ORIGINAL_DOCS, len(texts) - len(EDGE_DOCS)))) + \
        list(range(len(texts) - len(EDGE_DOCS), len(texts)))
    texts = [texts[i] for i in idx]
    src_docs = [enc[src_name][i] for i in idx]
    tgt_docs = [enc[tgt_name][i] for i in idx]
    text_bytes = [t.encode("utf-8") for t in texts]
    model_vocab = len(src) + PADDING_ROWS
    w = Writer()
    w.add("text_bytes", np.frombuffer(b"".join(text_bytes), dtype=np.uint8))
    w.add("text_offsets", np.cumsum([0] + [len(b) for b in text_bytes]).astype(np.int64))
    for side, docs in (("src", src_docs), ("tgt", tgt_docs)):
        w.add(side + "_ids", np.array([i for d in docs for i in d], dtype=np.int32))
        w.add(side + "_offsets", np.cumsum([0] + [len(d) for d in docs]).astype(np.int64))
    rows = [ref.source_rows(SEED, d, ids, K, model_vocab) for d, ids in enumerate(src_docs)]
    target_rows = [ref.source_rows(TARGET_SEED, d, ids, K, len(tgt)) for d, ids in enumerate(tgt_docs)]
    maps = {}
    configs = []
    t0 = time.time()
    for cfg in ORIGINAL_CONFIGS:
        rules = ref.OriginalRules(*cfg["rules"].split(","))
        key = ",".join(r for r in ("strings", "specials") if getattr(rules, r)) or "none"
        if key not in maps:
            t1 = time.time()
            maps[key] = ref.vocab_mapping(src, tgt, src_model_vocab=model_vocab,
                                          rules=ref.OriginalRules(*([] if key == "none" else key.split(","))))
            for a in ("exact", "full", "dist", "kind"):
                w.add("map[%s].%s" % (key, a), maps[key][a])
            kinds = np.bincount(maps[key]["kind"], minlength=4)
            print("  mapping [%s] in %.1f s: exact %d, mined %d, unmapped %d" %
                  (key, time.time() - t1, kinds[1], kinds[2], kinds[0]))
        write_config(w, cfg, src, tgt, src_docs, tgt_docs, texts, rows, maps[key], rules, target_rows)
        configs.append(dict(cfg, map=key))
    print("  original rules: %d configs in %.1f s" % (len(configs), time.time() - t0))
    meta = {
        "generator": "tests/reference/gen_align.py",
        "reference": "tests/reference/align_reference.py (part 6, OriginalRules)",
        "tokenizers_version": tokenizers.__version__,
        "seed": SEED,
        "target_seed": TARGET_SEED,
        "k": K,
        "docs": len(texts),
        "heldout_docs": len(texts) - len(EDGE_DOCS),
        "source": {"tokenizer": "tokenizers/%s.json" % src_name, "fingerprint": src.fingerprint(),
                   "kind": src.kind, "dummy_prefix": src.dummy_prefix, "model_vocab": model_vocab},
        "target": {"tokenizer": "tokenizers/%s.json" % tgt_name, "fingerprint": tgt.fingerprint(),
                   "kind": tgt.kind, "dummy_prefix": tgt.dummy_prefix},
        "configs": configs,
        "arrays": w.index,
    }
    with open(os.path.join(OUT, pair + ".original.bin"), "wb") as f:
        for c in w.chunks:
            f.write(c)
    with open(os.path.join(OUT, pair + ".original.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print("  wrote %s.original.{json,bin} (%.1f MB)" % (pair, w.size / 1e6))


def load_docs(n_docs):
    docs = []
    with open(os.path.join(TOK_DIR, "docs.jsonl"), encoding="utf-8") as f:
        for line in f:
            docs.append(json.loads(line)["text"])
            if len(docs) == n_docs:
                break
    return docs + EDGE_DOCS


def main():
    # --original-only: only the <pair>.original fixtures; a number: fewer documents (a quick try).
    original_only = "--original-only" in sys.argv
    refresh = "--refresh-tokenizers" in sys.argv
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n_docs = int(args[0]) if args else N_DOCS
    os.makedirs(os.path.join(OUT, "tokenizers"), exist_ok=True)
    names = ["bytelevel", "sp_bpe"]
    toks, vocabs = {}, {}
    for n in names:
        src = os.path.join(TOK_DIR, n, "tokenizer.json")
        dst = os.path.join(OUT, "tokenizers", n + ".json")
        if refresh or not os.path.exists(dst):
            shutil.copyfile(src, dst)
        toks[n] = tokenizers.Tokenizer.from_file(dst)
        vocabs[n] = ref.Vocab.from_tokenizer_json(dst, name="tokenizers/%s.json" % n)
        v = vocabs[n]
        for i in range(len(v)):
            assert toks[n].id_to_token(i) == v.tokens[i], (n, i)
        print("%s: %d tokens, kind %s, dummy prefix %s, fingerprint %s" %
              (n, len(v), v.kind, v.dummy_prefix, v.fingerprint()))
    texts = load_docs(n_docs)
    enc = {n: [toks[n].encode(t).ids for t in texts] for n in names}
    text_bytes = [t.encode("utf-8") for t in texts]

    for src_name, tgt_name in [("bytelevel", "sp_bpe"), ("sp_bpe", "bytelevel")]:
        pair = "%s_to_%s" % (src_name, tgt_name)
        src, tgt = vocabs[src_name], vocabs[tgt_name]
        if original_only:
            write_original(pair, src_name, tgt_name, src, tgt, enc, texts)
            continue
        model_vocab = len(src) + PADDING_ROWS
        w = Writer()
        w.add("text_bytes", np.frombuffer(b"".join(text_bytes), dtype=np.uint8))
        w.add("text_offsets", np.cumsum([0] + [len(b) for b in text_bytes]).astype(np.int64))
        for side, name, v in (("src", src_name, src), ("tgt", tgt_name, tgt)):
            ids = enc[name]
            w.add(side + "_ids", np.array([i for d in ids for i in d], dtype=np.int32))
            w.add(side + "_offsets", np.cumsum([0] + [len(d) for d in ids]).astype(np.int64))
            ends = [e for d, t in zip(ids, texts) for e in ref.byte_ends(d, v, v.dummy_inserted(t))]
            w.add(side + "_ends", np.array(ends, dtype=np.int32))
        desync = sum(1 for ds, dt, tb in zip(enc[src_name], enc[tgt_name], text_bytes)
                     if (ref.byte_ends(ds, src, src.dummy_inserted(tb.decode()))[-1:] or [0]) !=
                     (ref.byte_ends(dt, tgt, tgt.dummy_inserted(tb.decode()))[-1:] or [0]))
        print("%s: %d docs, %d src tokens, %d tgt tokens; %d docs whose byte totals differ "
              "(normalizers that change bytes)" % (pair, len(texts), sum(map(len, enc[src_name])),
                                                  sum(map(len, enc[tgt_name])), desync))

        t0 = time.time()
        mapping = ref.vocab_mapping(src, tgt, src_model_vocab=model_vocab)
        kinds = np.bincount(mapping["kind"], minlength=4)
        print("  mapping in %.1f s: exact %d, mined %d, unmapped %d (of which %d padding)" %
              (time.time() - t0, kinds[1], kinds[2], kinds[0], PADDING_ROWS))
        for key in ("exact", "full", "dist"):
            w.add("map_" + key, mapping[key])
        w.add("map_kind", mapping["kind"])

        # Source rows (regenerated by the test) and their checksum.
        rows = [ref.source_rows(SEED, d, ids, K, model_vocab) for d, ids in enumerate(enc[src_name])]
        all_ids = np.concatenate([r[0] for r in rows]) if rows else np.zeros((0, K), np.int32)
        all_probs = np.concatenate([r[1] for r in rows]) if rows else np.zeros((0, K), np.float32)
        rows_checksum = fnv1a_np(all_probs, fnv1a_np(all_ids))

        t0 = time.time()
        configs = CONFIGS if src_name == "bytelevel" else [c for c in CONFIGS if "alignment_of" not in c]
        for cfg in configs:
            write_config(w, cfg, src, tgt, enc[src_name], enc[tgt_name], texts, rows, mapping)
        print("  alignment + apply (4 configs) in %.1f s" % (time.time() - t0))

        meta = {
            "generator": "tests/reference/gen_align.py",
            "reference": "tests/reference/align_reference.py",
            "tokenizers_version": tokenizers.__version__,
            "seed": SEED,
            "k": K,
            "docs": len(texts),
            "heldout_docs": len(texts) - len(EDGE_DOCS),
            "source": {"tokenizer": "tokenizers/%s.json" % src_name, "fingerprint": src.fingerprint(),
                       "kind": src.kind, "dummy_prefix": src.dummy_prefix, "model_vocab": model_vocab},
            "target": {"tokenizer": "tokenizers/%s.json" % tgt_name, "fingerprint": tgt.fingerprint(),
                       "kind": tgt.kind, "dummy_prefix": tgt.dummy_prefix},
            "source_rows_checksum": "%016x" % rows_checksum,
            "configs": configs,
            "arrays": w.index,
        }
        with open(os.path.join(OUT, pair + ".bin"), "wb") as f:
            for c in w.chunks:
                f.write(c)
        with open(os.path.join(OUT, pair + ".json"), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")
        print("  wrote %s.{json,bin} (%.1f MB)" % (pair, w.size / 1e6))
        write_original(pair, src_name, tgt_name, src, tgt, enc, texts)


if __name__ == "__main__":
    main()
