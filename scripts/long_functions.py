#!/usr/bin/env python3
"""Lists functions in src/ longer than a limit (default 80 lines) that do not say why.

A function is a body whose opening line ends with '{' after a ')' (or is a lambda/struct-free
definition) at any indentation and whose closing '}' is at the same indentation; that matches
this code base's clang-format style. A long function passes when one of the 3 lines above its
first line holds a comment containing "long:" (the reason it is long). Exit status 1 when any
function fails, so CI can run it: `python3 scripts/long_functions.py`.
"""
import os
import re
import sys

LIMIT = int(os.environ.get("FUSELLM_MAX_FUNCTION_LINES", "80"))
HEAD = re.compile(r"^(\s*)(?!if\b|for\b|while\b|switch\b|else\b|do\b|catch\b|namespace\b|struct\b|class\b|enum\b)"
                  r"[^;{}]*\)[^;{}]*\{\s*(//.*)?$")


def functions(lines):
    i = 0
    while i < len(lines):
        m = HEAD.match(lines[i])
        if m and not lines[i].lstrip().startswith(("//", "#", "[")):
            # the signature may start on earlier lines (continued parameters, initializer lists);
            # the body closes at the indentation of its first line
            start = i
            while start > 0 and lines[start - 1].strip() and not lines[start - 1].rstrip().endswith((";", "{", "}")) \
                    and not lines[start - 1].lstrip().startswith(("//", "#")):
                start -= 1
            indent = re.match(r"\s*", lines[start]).group(0)
            for j in range(i + 1, len(lines)):
                if lines[j].startswith(indent + "}") and not lines[j].startswith(indent + " "):
                    yield start, j
                    i = j
                    break
        i += 1


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "src"
    bad = 0
    for d, _, files in os.walk(root):
        for f in sorted(files):
            if not f.endswith((".cpp", ".hpp", ".cu", ".cuh")):
                continue
            path = os.path.join(d, f)
            lines = open(path, encoding="utf-8").read().split("\n")
            for s, e in functions(lines):
                n = e - s + 1
                if n <= LIMIT:
                    continue
                why = any("long:" in lines[k] for k in range(max(0, s - 3), s + 1))
                if not why:
                    bad += 1
                    print(f"{path}:{s + 1}: {n} lines: {lines[s].strip()[:90]}")
    if bad:
        print(f"{bad} function(s) over {LIMIT} lines without a `// long: <why>` comment above them")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
