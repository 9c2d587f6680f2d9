#!/usr/bin/env python3
"""How many vocabulary-map entries the byte-fallback rule changes (align_reference.py part 2).

    python3 tests/reference/byte_fallback_effect.py SOURCE/tokenizer.json TARGET/tokenizer.json

Builds the mapping with fusellm's candidates (a byte-fallback entry `<0xHH>` only where no regular
token spells that byte) and with every non-special target token a candidate (fusellm before the
fix: `<0x32>` has "2"'s bytes and a lower id, so "2" went to it), and prints the entries whose
target differs, with a few examples. numpy only.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import align_reference as ref  # noqa: E402


def every_non_special(tgt, rules=ref.FUSELLM):
    return [j for j in range(len(tgt)) if not tgt.hole(j) and not tgt.special(j)]


def main():
    src = ref.Vocab.from_tokenizer_json(sys.argv[1])
    tgt = ref.Vocab.from_tokenizer_json(sys.argv[2])
    fixed = ref.vocab_mapping(src, tgt)
    candidates = ref.mapping_candidates
    ref.mapping_candidates = every_non_special
    try:
        before = ref.vocab_mapping(src, tgt)
    finally:
        ref.mapping_candidates = candidates
    diff = np.nonzero((fixed["full"] != before["full"]) | (fixed["exact"] != before["exact"]))[0]
    print("%d of %d source entries map elsewhere once byte-fallback entries yield to regular tokens" %
          (len(diff), len(src)))
    for i in diff[:10]:
        print("  %r: %r -> %r" % (src.tokens[i], tgt.tokens[before["full"][i]], tgt.tokens[fixed["full"][i]]))


if __name__ == "__main__":
    main()
