#!/usr/bin/env python3
"""Tokenization throughput of the Rust `tokenizers` library, single-threaded, on the held-out
documents of a fixture (tests/fixtures/tokenizers/docs.jsonl): `encode` per document in a loop,
and `encode_batch` over all documents with one Rayon thread. The C++ side is bench_tokenizer.cpp;
benchmarks/run_tokenizer_bench.sh runs both.

    TOKENIZERS_PARALLELISM=false RAYON_NUM_THREADS=1 python3 benchmarks/bench_tokenizer.py \
        [--fixture bytelevel] [--min-seconds 3] [--json]

The environment must be set before the library is imported (the thread pool is created once);
this script sets both if they are missing and re-executes itself.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

if os.environ.get("RAYON_NUM_THREADS") != "1" or os.environ.get("TOKENIZERS_PARALLELISM") != "false":
    os.environ["RAYON_NUM_THREADS"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.execv(sys.executable, [sys.executable] + sys.argv)

import tokenizers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def best_pass(fn, min_seconds):
    fn()  # warm-up
    best, total, reps = float("inf"), 0.0, 0
    while total < min_seconds or reps < 3:
        t0 = time.perf_counter()
        n = fn()
        dt = time.perf_counter() - t0
        best, total, reps = min(best, dt), total + dt, reps + 1
    return best, reps, n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixture", default="bytelevel")
    ap.add_argument("--tokenizer", help="tokenizer.json (default: the fixture's)")
    ap.add_argument("--docs", default=str(REPO / "tests/fixtures/tokenizers/docs.jsonl"))
    ap.add_argument("--min-seconds", type=float, default=3.0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    path = a.tokenizer or str(REPO / "tests/fixtures/tokenizers" / a.fixture / "tokenizer.json")
    tok = Tokenizer.from_file(path)
    docs = [json.loads(l)["text"] for l in open(a.docs, encoding="utf-8") if l.strip()]
    nbytes = sum(len(d.encode("utf-8")) for d in docs)

    def loop():
        return sum(len(tok.encode(d).ids) for d in docs)

    def batch():
        return sum(len(e.ids) for e in tok.encode_batch(docs))

    out = []
    for mode, fn in (("encode", loop), ("encode_batch", batch)):
        best, reps, ntok = best_pass(fn, a.min_seconds)
        out.append({"impl": f"tokenizers {tokenizers.__version__} {mode}", "tokenizer": path,
                    "docs": len(docs), "bytes": nbytes, "tokens": ntok, "threads": 1,
                    "best_seconds": best, "repeats": reps, "mb_per_s": nbytes / best / 1e6,
                    "tokens_per_s": ntok / best})
    for r in out:
        if a.json:
            print(json.dumps(r))
        else:
            print(f"{r['impl']:<36} {r['docs']} docs, {r['bytes'] / 1e6:.2f} MB, {r['tokens']} tokens, "
                  f"1 thread, best of {r['repeats']}: {r['best_seconds']:.4f} s  ->  "
                  f"{r['mb_per_s']:.2f} MB/s, {r['tokens_per_s']:.0f} tokens/s")


if __name__ == "__main__":
    main()
