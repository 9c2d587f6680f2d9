#!/usr/bin/env python3
"""What `tokenizers` 0.20.3's BertNormalizer does to every Unicode code point, for
tests/unit/tokenizer/test_bert_normalizer.cpp: tests/fixtures/tokenizer_unit/bert_normalizer.json.

Run from the repository root:

    python3 tests/reference/gen_bert_normalizer.py           # writes the fixture
    python3 tests/reference/gen_bert_normalizer.py --check   # regenerates in memory and compares

BertNormalizer runs four stages in order, each switched by one flag: clean_text (drop control/
format/private-use chars, NUL and U+FFFD; whitespace -> " "), handle_chinese_chars (" c " around a
CJK ideograph), strip_accents (NFD, then drop Mn marks), lowercase (char::to_lowercase). Every
stage maps each char on its own, so the fixture keeps, per stage, the library's output for every
code point 0..0x10FFFF (surrogates excluded: not chars) where it is not the code point itself,
and this script checks, for all 16 flag combinations and every code point, that the library's
BertNormalizer gives exactly the stages' outputs composed in that order. The C++ test runs
fusellm's BertNormalizer for all 16 combinations over every code point against that composition.

Format: {"stages": {stage: [[first, last, out], ...]}}: code points first..last (a run) map to
`out`, a list of items, each an int d (the char cp + d) or a string (that text). Items are ints
except for " ", so that a run maps to one entry (A..Z -> [32], U+3400.. -> [" ", 0, " "]).
Unlisted code points map to themselves; [] means the code point is removed.

The library is called on batches of code points joined by "#" (a char no stage changes, removes or
produces; a starter, so NFD does not reorder marks across it); the number of pieces is checked, and
every listed code point plus a seeded sample of the others is checked against a call on the code
point alone.
"""
import argparse
import json
import random
import sys
from pathlib import Path

import tokenizers
from tokenizers import normalizers

assert tokenizers.__version__ == "0.20.3", tokenizers.__version__

OUT = Path(__file__).resolve().parents[2] / "tests/fixtures/tokenizer_unit/bert_normalizer.json"
STAGES = ["clean_text", "handle_chinese_chars", "strip_accents", "lowercase"]
CODE_POINTS = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
SEP = "#"
BATCH = 4096
SEED = 20251203


def bert(flags):
    return normalizers.BertNormalizer(**{s: s in flags for s in STAGES})


def outputs(norm):
    """{cp: output} for every code point, from batched calls (see the module doc)."""
    out = {}
    f = norm.normalize_str
    for i in range(0, len(CODE_POINTS), BATCH):
        cps = CODE_POINTS[i:i + BATCH]
        pieces = f(SEP.join(chr(c) for c in cps)).split(SEP)
        if len(pieces) != len(cps) + sum(c == ord(SEP) for c in cps):
            raise AssertionError(f"batch at U+{cps[0]:04X}: {len(pieces)} pieces for {len(cps)} code points")
        k = 0
        for c in cps:
            if c == ord(SEP):  # "#" maps to itself: two empty pieces around it
                assert pieces[k] == "" and pieces[k + 1] == "", f"U+0023 -> {pieces[k:k + 2]}"
                out[c] = SEP
                k += 2
            else:
                out[c] = pieces[k]
                k += 1
    return out


def check_alone(norm, out, name, listed):
    rng = random.Random(f"{SEED} {name}")
    sample = set(listed) | set(rng.sample(CODE_POINTS, 5000))
    for c in sorted(sample):
        alone = norm.normalize_str(chr(c))
        if alone != out[c]:
            raise AssertionError(f"{name}: U+{c:04X} alone -> {alone!r}, in a batch -> {out[c]!r}")


def encode(c, s):
    return [" " if ch == " " else ord(ch) - c for ch in s]


def runs(out):
    rows = []
    for c in CODE_POINTS:
        if out[c] == chr(c):
            continue
        e = encode(c, out[c])
        if rows and rows[-1][1] == c - 1 and rows[-1][2] == e:
            rows[-1][1] = c
        else:
            rows.append([c, c, e])
    return rows


def compose(stage_out, flags, c):
    s = chr(c)
    for st in STAGES:
        if st in flags:
            s = "".join(stage_out[st][ord(ch)] for ch in s)
    return s


def generate():
    stage_out = {}
    for st in STAGES:
        n = bert({st})
        stage_out[st] = outputs(n)
        check_alone(n, stage_out[st], st, [c for c in CODE_POINTS if stage_out[st][c] != chr(c)])
    for mask in range(16):
        flags = {st for k, st in enumerate(STAGES) if mask >> k & 1}
        n = bert(flags)
        got = outputs(n)
        check_alone(n, got, f"combination {sorted(flags)}", [])
        bad = [c for c in CODE_POINTS if got[c] != compose(stage_out, flags, c)]
        if bad:
            raise AssertionError(f"{sorted(flags)}: the stages do not compose at " +
                                 ", ".join(f"U+{c:04X}" for c in bad[:20]))
    return {"tokenizers_version": tokenizers.__version__, "code_points": "0..0x10FFFF without surrogates",
            "stages": {st: runs(stage_out[st]) for st in STAGES}}


def dump(obj):
    lines = ["{", f'"tokenizers_version": {json.dumps(obj["tokenizers_version"])},',
             f'"code_points": {json.dumps(obj["code_points"])},', '"stages": {']
    for i, st in enumerate(STAGES):
        rows = ",\n".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in obj["stages"][st])
        lines.append(f'"{st}": [\n{rows}\n]' + ("," if i + 1 < len(STAGES) else ""))
    lines += ["}", "}"]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    obj = generate()
    text = dump(obj)
    assert json.loads(text) == obj
    if a.check:
        same = OUT.exists() and OUT.read_text(encoding="utf-8") == text
        print("same" if same else "DIFFER", OUT)
        sys.exit(0 if same else 1)
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT} ({len(text)} bytes; runs per stage: " +
          ", ".join(f"{st} {len(obj['stages'][st])}" for st in STAGES) + ")")


if __name__ == "__main__":
    main()
