#!/usr/bin/env python3
"""The Python reference side of benchmarks/bench_align.cpp (driven by benchmarks/run_align_bench.sh).

    python3 benchmarks/bench_align.py align [PAIR] [--docs N]
        tests/reference/align_reference.py (plain Python + numpy, the original's algorithm: full
        DTW matrix, Levenshtein per cell, memoized per string pair) on the documents of
        tests/fixtures/align/PAIR, the same top-k rows as the C++ side (k = 6, regenerated from
        the seed), alignment + apply; the Levenshtein memo is cleared before each method. Thread
        CPU time (time.thread_time) and wall time. --docs N: the first N documents only (the
        full set takes minutes); the rate is per target token either way.
    python3 benchmarks/bench_align.py mapping SRC.json TGT.json [--sample N]
        the reference vocabulary mapping (numpy, candidates by length group, the same result as
        brute force) on N source tokens drawn at random (seeded) from those with no exact match,
        extrapolated to all of them; the exact-match part is timed in full. Also the original's
        brute force (one plain-Python Levenshtein per target token) on 5 of them, extrapolated.
    python3 benchmarks/bench_align.py train OUTDIR
        trains the benchmark's 32,000 (SentencePiece-style BPE) and 50,000 (byte-level BPE)
        vocabularies with `tokenizers` on local text (licenses, man pages, C headers, the Python
        standard library) into OUTDIR/{sp32k,bl50k}.json.
Output: one JSON object per line.
"""
import glob
import gzip
import json
import os
import random
import re
import sys
import time

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import align_reference as ref  # noqa: E402


def read_fixture(stem):
    with open(stem + ".json", encoding="utf-8") as f:
        meta = json.load(f)
    with open(stem + ".bin", "rb") as f:
        blob = f.read()
    dts = {"i32": np.int32, "i64": np.int64, "u8": np.uint8, "u16": np.uint16, "f32": np.float32}

    def get(name):
        a = meta["arrays"][name]
        return np.frombuffer(blob, dtype=dts[a["dtype"]], count=a["count"], offset=a["offset"])
    return meta, get


def bench_align(pair, n_docs):
    stem = os.path.join(ROOT, "tests", "fixtures", "align", pair)
    meta, get = read_fixture(stem)
    fdir = os.path.dirname(stem)
    src = ref.Vocab.from_tokenizer_json(os.path.join(fdir, meta["source"]["tokenizer"]))
    tgt = ref.Vocab.from_tokenizer_json(os.path.join(fdir, meta["target"]["tokenizer"]))
    mapping = {"exact": get("map_exact"), "full": get("map_full")}
    tb, to = get("text_bytes").tobytes(), get("text_offsets")
    si, so, ti, tof = get("src_ids"), get("src_offsets"), get("tgt_ids"), get("tgt_offsets")
    D = meta["docs"] if n_docs is None else min(n_docs, meta["docs"])
    docs = []
    for d in range(D):
        text = tb[to[d]:to[d + 1]].decode("utf-8")
        a = [int(x) for x in si[so[d]:so[d + 1]]]
        b = [int(x) for x in ti[tof[d]:tof[d + 1]]]
        rows = ref.source_rows(meta["seed"], d, a, meta["k"], meta["source"]["model_vocab"])
        docs.append((text, a, b, rows))
    T = sum(len(b) for _, _, b, _ in docs)
    for method in ("em", "mined", "bytespan"):
        ref.levenshtein.cache_clear()
        c0, w0 = time.thread_time(), time.perf_counter()
        kept = 0
        for text, a, b, (rid, rpr) in docs:
            if method == "bytespan":
                lo, hi, st = ref.align_byte_spans(a, b, src, tgt, ref.byte_ends(a, src, src.dummy_inserted(text)),
                                                  ref.byte_ends(b, tgt, tgt.dummy_inserted(text)))
            else:
                lo, hi, st = ref.align_dtw(a, b, src, tgt, method, mapping)
            id_map = mapping["exact"] if method == "em" else mapping["full"]
            ref.apply_alignment(b, lo, st, rid, rpr, id_map)
            kept += sum(1 for x in st if x < ref.FB_MANY)
        cpu, wall = time.thread_time() - c0, time.perf_counter() - w0
        print(json.dumps({"bench": "align", "impl": "python-reference", "pair": pair, "method": method, "docs": D,
                          "target_tokens": T, "kept": kept, "seconds": wall, "thread_cpu_seconds": cpu,
                          "tokens_per_s": T / cpu}), flush=True)


def bench_mapping(src_path, tgt_path, sample):
    src = ref.Vocab.from_tokenizer_json(src_path)
    tgt = ref.Vocab.from_tokenizer_json(tgt_path)
    c0 = time.thread_time()
    index = ref._TargetIndex(tgt)
    queries = [i for i in range(len(src)) if not src.special(i) and src.normalized[i] not in index.exact
               and (src.tokens[i] or src.flags[i] & ref.FLAG_ADDED)]
    exact_cpu = time.thread_time() - c0
    rng = random.Random(1)
    picked = sorted(rng.sample(queries, min(sample, len(queries))))
    c0 = time.thread_time()
    ref.vocab_mapping(src, tgt, only=picked)
    per_query = (time.thread_time() - c0) / max(1, len(picked))
    est = exact_cpu + per_query * len(queries)
    # The original's algorithm as written (every target token, one Levenshtein call each; here the
    # plain-Python one), on a handful of the same queries.
    cands = [j for j in range(len(tgt)) if not tgt.special(j) and (tgt.tokens[j] or tgt.flags[j] & ref.FLAG_ADDED)]
    brute = picked[:5]
    c0 = time.thread_time()
    for i in brute:
        x = src.normalized[i]
        min(((ref.levenshtein.__wrapped__(x, tgt.normalized[j]), j) for j in cands))
    brute_per_query = (time.thread_time() - c0) / max(1, len(brute))
    print(json.dumps({"bench": "mapping", "impl": "python-reference", "source_vocab": len(src),
                      "target_vocab": len(tgt), "mined_queries": len(queries), "sampled": len(picked),
                      "seconds_per_query": per_query, "exact_part_seconds": exact_cpu,
                      "extrapolated_seconds": est, "brute_force_sampled": len(brute),
                      "brute_force_seconds_per_query": brute_per_query,
                      "brute_force_extrapolated_seconds": exact_cpu + brute_per_query * len(queries)}), flush=True)


def corpus(limit_bytes=120 << 20):
    """Local text, listed sorted (deterministic): licenses, C headers, Python sources, man pages."""
    pats = ["/usr/share/common-licenses/*", "/usr/include/**/*.h", "/usr/lib/python3*/**/*.py",
            "/usr/share/man/**/*.gz"]
    files = []
    for p in pats:
        files += sorted(glob.glob(p, recursive=True))
    rng = random.Random(0)
    rng.shuffle(files)
    total = 0
    for path in files:
        try:
            if path.endswith(".gz"):
                with gzip.open(path, "rb") as f:
                    data = f.read()
                data = re.sub(rb"\\f[BIRP]|^\.[A-Za-z]+ ?", b"", data, flags=re.M)
            else:
                with open(path, "rb") as f:
                    data = f.read()
            text = data.decode("utf-8")
        except (OSError, UnicodeDecodeError, EOFError):
            continue
        total += len(data)
        yield text
        if total >= limit_bytes:
            break


def train(outdir):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    os.makedirs(outdir, exist_ok=True)
    texts = list(corpus())
    bl = Tokenizer(models.BPE())
    bl.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bl.decoder = decoders.ByteLevel()
    bl.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=50000, min_frequency=2, show_progress=False, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bl.save(os.path.join(outdir, "bl50k.json"))
    sp = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    sp.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    sp.pre_tokenizer = pre_tokenizers.Split("\u2581", behavior="merged_with_next")
    sp.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    specials = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
    sp.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=32000, min_frequency=2, show_progress=False,
                                                      special_tokens=specials))
    path = os.path.join(outdir, "sp32k.json")
    sp.save(path)
    # The byte-fallback pieces were passed as special tokens only to reserve their ids; in
    # Llama's tokenizer.json they are plain vocabulary entries.
    with open(path, encoding="utf-8") as f:
        tj = json.load(f)
    tj["added_tokens"] = [a for a in tj["added_tokens"] if not a["content"].startswith("<0x")]
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)
    print(json.dumps({"bench": "train", "texts": len(texts), "bl50k": bl.get_vocab_size(),
                      "sp32k": sp.get_vocab_size()}), flush=True)


def main():
    args = sys.argv[1:]
    if not args:
        print(__doc__)
        return 2
    cmd = args[0]
    if cmd == "align":
        pair, n_docs = "bytelevel_to_sp_bpe", None
        rest = args[1:]
        while rest:
            if rest[0] == "--docs":
                n_docs = int(rest[1])
                rest = rest[2:]
            else:
                pair = rest[0]
                rest = rest[1:]
        bench_align(pair, n_docs)
    elif cmd == "mapping":
        sample = int(args[args.index("--sample") + 1]) if "--sample" in args else 200
        bench_mapping(args[1], args[2], sample)
    elif cmd == "train":
        train(args[1])
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
