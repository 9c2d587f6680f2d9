#!/usr/bin/env python3
"""What `tokenizers` 0.20.3's per-character normalizers and punctuation test do to every Unicode
code point, for tests/unit/tokenizer/test_unicode_normalizers.cpp:
tests/fixtures/tokenizer_unit/unicode_normalizers.json.

Run from the repository root:

    python3 tests/reference/gen_unicode_normalizers.py           # writes the fixture
    python3 tests/reference/gen_unicode_normalizers.py --check   # regenerates in memory and compares

Every code point 0..0x10FFFF is covered (surrogates excluded: not chars).

BertNormalizer runs four stages in order, each switched by one flag: clean_text (drop control/
format/private-use chars, NUL and U+FFFD; whitespace -> " "), handle_chinese_chars (" c " around a
CJK ideograph), strip_accents (NFD, then drop Mn marks), lowercase (char::to_lowercase). Every
stage maps each char on its own, so "stages" keeps, per stage, the library's output for every code
point, and this script checks, for all 16 flag combinations and every code point, that the
library's BertNormalizer gives exactly the stages' outputs composed in that order. The C++ test
runs fusellm's BertNormalizer for all 16 combinations over every code point against that
composition.

"normalizers" keeps the library's NFD, NFKD, NFC, NFKC and StripAccents of every code point (the
Lowercase normalizer is BertNormalizer's lowercase stage). To keep the file small, NFKD lists only
the code points where it differs from NFD, and NFKC only those where it differs from NFC.

"punctuation" lists the code points that the library's Punctuation pre-tokenizer (the same test as
BertPreTokenizer's) splits off, as runs [first, last]; found by splitting "a" + the code points
joined by "a" + "a" ("a" is no punctuation): a piece of one char other than "a" is one.

Format: runs [first, last, out]: code points first..last map to `out`, a list of items, each an int
d (the char cp + d) or a string (that text). Items are ints except for " ", so that a run maps to
one entry (A..Z -> [32], U+3400.. -> [" ", 0, " "]). Unlisted code points map to themselves (NFKD:
to their NFD, NFKC: to their NFC); [] means the code point is removed.

The library is called on batches of code points joined by a separator that the normalizer does not
change, remove, produce or compose with, and a starter (so that NFD does not reorder marks across
it): "#" for BertNormalizer, U+0001 for the others (NFKD makes "#" of U+FE5F). The number of pieces
is checked, and every listed code point plus a seeded sample of the others is checked against a
call on the code point alone.
"""
import argparse
import json
import random
import sys
from pathlib import Path

import tokenizers
from tokenizers import normalizers, pre_tokenizers

assert tokenizers.__version__ == "0.20.3", tokenizers.__version__

OUT = Path(__file__).resolve().parents[2] / "tests/fixtures/tokenizer_unit/unicode_normalizers.json"
STAGES = ["clean_text", "handle_chinese_chars", "strip_accents", "lowercase"]
PLAIN = {"NFD": normalizers.NFD(), "NFKD": normalizers.NFKD(), "NFC": normalizers.NFC(), "NFKC": normalizers.NFKC(),
         "StripAccents": normalizers.StripAccents()}
BASE = {"NFKD": "NFD", "NFKC": "NFC"}  # listed only where they differ from these
CODE_POINTS = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
SEP = "#"       # BertNormalizer batches
PLAIN_SEP = "\x01"  # NFKD/NFKC give "#" for U+FE5F and U+FF03; nothing gives U+0001
BATCH = 4096
SEED = 20251203


def bert(flags):
    return normalizers.BertNormalizer(**{s: s in flags for s in STAGES})


def outputs(norm, sep):
    """{cp: output} for every code point, from batched calls (see the module doc)."""
    out = {}
    f = norm.normalize_str
    for i in range(0, len(CODE_POINTS), BATCH):
        cps = CODE_POINTS[i:i + BATCH]
        pieces = f(sep.join(chr(c) for c in cps)).split(sep)
        if len(pieces) != len(cps) + sum(c == ord(sep) for c in cps):
            raise AssertionError(f"batch at U+{cps[0]:04X}: {len(pieces)} pieces for {len(cps)} code points")
        k = 0
        for c in cps:
            if c == ord(sep):  # the separator maps to itself: two empty pieces around it
                assert pieces[k] == "" and pieces[k + 1] == "", f"U+{c:04X} -> {pieces[k:k + 2]}"
                out[c] = sep
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


def punctuation():
    cps = [c for c in CODE_POINTS if c != ord("a")]
    p = pre_tokenizers.Punctuation()
    found = set()
    for i in range(0, len(cps), BATCH):
        batch = cps[i:i + BATCH]
        pieces = p.pre_tokenize_str("a" + "a".join(chr(c) for c in batch) + "a")
        found.update(ord(t) for t, _ in pieces if len(t) == 1 and t != "a")
    for c in random.Random(f"{SEED} punctuation").sample(cps, 2000) + sorted(found):
        alone = [t for t, _ in p.pre_tokenize_str("a" + chr(c) + "a")]
        assert (alone == ["a", chr(c), "a"]) == (c in found), f"punctuation U+{c:04X}: alone {alone}"
    rows = []
    for c in sorted(found):
        if rows and rows[-1][1] == c - 1:
            rows[-1][1] = c
        else:
            rows.append([c, c])
    return rows


def runs(out, base=None):
    rows = []
    for c in CODE_POINTS:
        if out[c] == (base[c] if base else chr(c)):
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
        stage_out[st] = outputs(n, SEP)
        check_alone(n, stage_out[st], st, [c for c in CODE_POINTS if stage_out[st][c] != chr(c)])
    for mask in range(16):
        flags = {st for k, st in enumerate(STAGES) if mask >> k & 1}
        n = bert(flags)
        got = outputs(n, SEP)
        check_alone(n, got, f"combination {sorted(flags)}", [])
        bad = [c for c in CODE_POINTS if got[c] != compose(stage_out, flags, c)]
        if bad:
            raise AssertionError(f"{sorted(flags)}: the stages do not compose at " +
                                 ", ".join(f"U+{c:04X}" for c in bad[:20]))
    plain = {}
    for name, n in PLAIN.items():
        plain[name] = outputs(n, PLAIN_SEP)
        check_alone(n, plain[name], name, [c for c in CODE_POINTS if plain[name][c] != chr(c)])
    return {"tokenizers_version": tokenizers.__version__, "code_points": "0..0x10FFFF without surrogates",
            "stages": {st: runs(stage_out[st]) for st in STAGES},
            "normalizers": {name: runs(plain[name], plain[BASE[name]] if name in BASE else None) for name in PLAIN},
            "punctuation": punctuation()}


def dump(obj):
    lines = ["{", f'"tokenizers_version": {json.dumps(obj["tokenizers_version"])},',
             f'"code_points": {json.dumps(obj["code_points"])},']
    for k, (section, names) in enumerate([("stages", STAGES), ("normalizers", list(PLAIN))]):
        lines.append(f'"{section}": {{')
        for i, st in enumerate(names):
            rows = ",\n".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in obj[section][st])
            lines.append(f'"{st}": [\n{rows}\n]' + ("," if i + 1 < len(names) else ""))
        lines.append("},")
    lines.append('"punctuation": ' + json.dumps(obj["punctuation"], separators=(",", ":")))
    lines.append("}")
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
    print(f"wrote {OUT} ({len(text)} bytes; runs: " +
          ", ".join(f"{st} {len(obj['stages'][st])}" for st in STAGES) + ", " +
          ", ".join(f"{n} {len(obj['normalizers'][n])}" for n in PLAIN) + ")")


if __name__ == "__main__":
    main()
