#!/usr/bin/env python3
"""Reference tokenizers and expected encodings for the C++ tokenizer (tests/fixtures/tokenizers/).

Run from the repository root:

    python3 tests/reference/gen_tokenizers.py            # writes tests/fixtures/tokenizers/
    python3 tests/reference/gen_tokenizers.py --check    # regenerate in a temp dir, compare

What it does:
  1. Builds a corpus from real text on this machine: man pages (/usr/share/man, every language
     directory, troff markup stripped roughly), /usr/share/common-licenses, /usr/share/doc/*/copyright,
     C headers (/usr/include), tab-indented C/make files (headers, /usr/share/doc/*/examples,
     /usr/share/dpkg/*.mk), Perl modules, the Python standard library (.py), the Python test suite's files that
     hold non-ASCII text (including test/cjkencodings/*-utf8.txt). Files are listed sorted and
     sampled with a fixed seed.
  2. Cuts every file into documents: exact substrings of the file cut at paragraph (blank line)
     boundaries, else line boundaries, of a random size (mostly 20..360 bytes, 2% up to 1.6 KB; kept short so that the fixtures stay near 15 MB).
  3. Holds out >= 5,000 documents (stratified by source) that are never used for training, and
     trains on (a capped sample of) the rest.
  4. A few documents are modified, in training and held-out alike, to cover what local text lacks
     or has too little of (documented here because it is not verbatim local text):
       - NFD: a document with non-ASCII text is decomposed (unicodedata NFD) -> combining marks,
         as text from macOS file systems looks. Exercises NFC with offsets.
       - emoji: one of the EMOJI_SNIPPETS lines below (realistic chat/commit-message lines with
         emoji, ZWJ sequences, skin tones, flags, keycaps, variation selectors) is spliced in at a
         line boundary.
       - combining: one of COMBINING_SNIPPETS (Vietnamese, Hindi, Thai, Hebrew with niqqud,
         Arabic with harakat, IPA, in decomposed or naturally combining form) is spliced in.
       - CRLF: the document's line endings become \\r\\n (text from Windows).
       - EOT: two documents joined by "<|endoftext|>" (a packed corpus), so the bytelevel
         tokenizer's special token is split out mid-text.
  5. Trains four tokenizers and writes, per tokenizer dir, tokenizer.json (and tokenizer.model for
     spm_model) and expected.jsonl (line i = document i of docs.jsonl):
       {"ids": [...], "offsets": [[b, e], ...]}                       from tok.encode(text)
       "decoded": tok.decode(ids, skip_special_tokens=True)           only when != text
     offsets are the Python library's (character, i.e. code point, offsets into the input text).
     For spm_model also:
       "slow_ids": ids of transformers' slow LlamaTokenizer (sentencepiece)   only when != ids
       "spm_ids":  [bos] + sentencepiece.encode(text) (the raw .model path)    only when != slow ids
       "spm_decoded": sentencepiece.decode(spm ids)                          only when != text
     (absent slow_ids = ids; absent spm_ids = slow_ids). The converted tokenizer.json and
     sentencepiece disagree on documents that start with a space: the Metaspace pre-tokenizer
     does not prepend "▁" to text that already starts with one, sentencepiece's dummy prefix does.
     Every number in the fixtures comes from the libraries; nothing is written by hand.

Tokenizers:
  bytelevel     GPT-NeoX/Pythia style byte-level BPE: NFC normalizer, ByteLevel pre-tokenizer
                (add_prefix_space=false, trim_offsets, use_regex), ByteLevel post-processor and
                decoder, <|endoftext|> and <|padding|> special, "  " a normalized non-special added
                token (as gpt-neox-20b's tokenizer.json has).
  sp_bpe        Llama-2 style SentencePiece BPE in tokenizer.json form: normalizer
                Sequence[Prepend("▁"), Replace(" ", "▁")], no pre-tokenizer, BPE with
                byte_fallback and fuse_unk, <unk> <s> </s> then <0x00>..<0xFF> at ids 0..258,
                TemplateProcessing "<s> $A", decoder Sequence[Replace("▁"," "), ByteFallback,
                Fuse, Strip(" ",1,0)]. Trained with a whitespace-run-aware Split so merges do not
                cross word boundaries (as sentencepiece's), then given Llama-2's pipeline.
  split_digits  Llama-3 style: no normalizer, Sequence[Split(Llama-3 regex, Isolated),
                Digits(individual_digits=true), ByteLevel(add_prefix_space=false, use_regex=false)],
                BPE with ignore_merges=true, post-processor Sequence[ByteLevel(trim_offsets=false),
                TemplateProcessing "<|begin_of_text|> $A"].
  spm_model     a real sentencepiece model (model_type=bpe, byte_fallback, split_digits,
                identity normalization, Llama-2's trainer options) saved as tokenizer.model, and its
                tokenizer.json converted by transformers' LlamaTokenizerFast(legacy=False)
                (Metaspace pre-tokenizer, prepend_scheme "first").
"""
import argparse
import filecmp
import gzip
import hashlib
import json
import os
import random
import re
import shutil
import sys
import tempfile
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

import tokenizers
import transformers
import sentencepiece
import google.protobuf

PINS = {"tokenizers": "0.20.3", "transformers": "4.46.3", "sentencepiece": "0.2.0",
        "protobuf": "5.28.3"}
_have = {"tokenizers": tokenizers.__version__, "transformers": transformers.__version__,
         "sentencepiece": sentencepiece.__version__, "protobuf": google.protobuf.__version__}
for _k, _v in PINS.items():
    assert _have[_k] == _v, f"{_k} {_have[_k]} != pinned {_v} (tests/reference/requirements.txt)"

from tokenizers import Tokenizer, Regex, AddedToken, decoders, models, normalizers
from tokenizers import pre_tokenizers, processors, trainers

SEED = 20240917
REPO = Path(__file__).resolve().parents[2]
PY_LIB = Path(os.__file__).parent  # the Python standard library of the interpreter running this

N_HELDOUT_TARGET = 5400
TRAIN_CAP_BYTES = 24_000_000      # training text for the `tokenizers` trainers
SPM_TRAIN_CAP_BYTES = 8_000_000   # training text for the sentencepiece trainer (slower)
VOCAB = 8192
SPM_VOCAB = 8000

EMOJI_SNIPPETS = [
    "Build fixed 🎉 thanks @maria",
    "👍🏽 LGTM, merging.",
    "Release 2.3.1 🚀🚀🚀",
    "⚠️ This option is deprecated and will be removed in 3.0.",
    "✅ tests pass  ❌ lint fails",
    "Happy birthday! 🎂🥳🎈",
    "We ❤️ open source.",
    "👩‍💻 pair programming with 👨🏿‍💻 today",
    "Family: 👨‍👩‍👧‍👦",
    "Flags: 🇩🇪 🇫🇷 🇯🇵 🇧🇷 🇺🇦",
    "Press 1️⃣ for English, 2️⃣ para español, #️⃣ to repeat.",
    "the build is 🔥🔥 fast now",
    "Bug 🐛 in parser → fixed in commit a1b2c3d",
    "I'm 😂😂😂 at this error message",
    "Weather: ☀️ 23°C, tomorrow 🌧️ 17°C",
    "🏳️‍🌈 Pride month meetup at 18:30",
    "Coffee ☕ + keyboard ⌨️ = code 💻",
    "see 📎 attachment (report_2023.pdf, 1.2 MB)",
    "🙏🏻 Thank you all for 10k ⭐ on GitHub!",
    "Score: 🥇 Alice 98, 🥈 Bob 91, 🥉 Carol 87",
    "🧑🏽‍🔬 lab notes: pH 7.4, 37 °C",
    "Deploy went fine 😅 mostly",
    "Note 📝: run `make check` before pushing",
    "猫が好きです 🐱🐈",
    "Привет! 👋 Как дела?",
    "Ça marche très bien 👌",
    "🤖 generated by the CI bot",
    "🇬🇧🏴󠁧󠁢󠁳󠁣󠁴󠁿 teams in the final",
]

COMBINING_SNIPPETS = [
    "Tiếng Việt là ngôn ngữ chính thức của Việt Nam.",
    "Hà Nội, Thành phố Hồ Chí Minh, Đà Nẵng",
    "हिन्दी भारत की राजभाषाओं में से एक है।",
    "नमस्ते दुनिया, यह एक परीक्षण है।",
    "ภาษาไทยเป็นภาษาราชการของประเทศไทย",
    "שָׁלוֹם עֲלֵיכֶם",
    "بِسْمِ ٱللَّٰهِ",
    "IPA: [ˈfoʊnə̃tɪks] [t̪ʰ] [ɛ̃]",
    "Ångström, Å, a\u030a, n\u0303, e\u0301, o\u0308, c\u0327",
    "Z\u0351\u036b\u0343a\u0310\u0352l\u0351g\u0310o\u0306 text",
    "q\u0307\u0323 and the combining grapheme joiner a\u034fb",
    "தமிழ் மொழி",
    "한국어 자모: \u1112\u1161\u11ab\u1100\u1173\u11af",
]


# ----------------------------------------------------------------------------------------------
# Reading local text
# ----------------------------------------------------------------------------------------------
TROFF_NAMED = {
    "em": "—", "en": "–", "bu": "•", "co": "©", "rg": "®", "lq": "“", "rq": "”", "oq": "‘",
    "cq": "’", "aq": "'", "dq": '"', "hy": "-", "mi": "-", "ti": "~", "ha": "^", "rs": "\\",
    "Fo": "«", "Fc": "»", "fo": "‹", "fc": "›", "de": "°", "tm": "™", "->": "→", "<-": "←",
    "**": "∗", "pl": "+", "eq": "=", "sl": "/", "ba": "|", "br": "│", "ul": "_", "sc": "§",
    "ps": "¶", "ga": "`", "ua": "↑", "da": "↓", "mu": "×", "di": "÷", "+-": "±", ">=": "≥",
    "<=": "≤", "!=": "≠", "bq": "„", "Bq": "‚", "lA": "⇐", "rA": "⇒", "hA": "⇔", "<>": "↔",
    "ss": "ß", "'e": "é", "`e": "è", "'a": "á", ":a": "ä", ":o": "ö", ":u": "ü", "ct": "¢",
    "Po": "£", "Eu": "€", "eu": "€", "Ye": "¥", "if": "∞", "ap": "∼", "~=": "≅", "pc": "·",
    "dg": "†", "dd": "‡", "OK": "✓", "ci": "○", "sq": "□", "lh": "☜", "rh": "☞", "fm": "′",
}
MAN_TEXT_MACROS_SPACED = {"B", "I", "SM", "SB", "Nm", "Fl", "Ar", "Op", "Pa", "Xr", "Nd", "It",
                          "Em", "Cm", "Li", "Ql", "Dq", "Sq", "Va", "Ev", "Fn", "Fa", "Ft", "Dv",
                          "Er", "Ic", "Ms", "Tn", "Dl", "D1", "Ad", "An", "Cd", "Lk", "Mt", "Sy",
                          "Vt", "In", "Pq", "Aq", "Bq", "Brq", "Qq", "UR", "MT", "OP", "SY", "Dd",
                          "Os", "Ta", "No", "Ns", "Ux", "Bx", "At", "Fx", "Nx", "Ox", "Bsx", "St"}
MAN_TEXT_MACROS_JOINED = {"BR", "RB", "IR", "RI", "BI", "IB"}
MAN_HEAD_MACROS = {"SH", "SS", "Sh", "Ss"}
MAN_BREAK_MACROS = {"PP", "LP", "P", "TP", "IP", "HP", "Pp", "Lp", "sp", "Bl", "El", "Bd",
                    "Ed", "RS", "RE", "TQ", "EX", "EE"}
_esc_re = re.compile(
    r"\\(?:f(?:\[[^\]]*\]|\(..|.)|s[-+]?\d+|s\[[^\]]*\]|\*(?:\[[^\]]*\]|\(..|.)|n[-+]?(?:\(..|\[[^\]]*\]|.)"
    r"|\((..)|\[([^\]]*)\]|(.)|$)")


TROFF_ACCENTS = {"'": "\u0301", "`": "\u0300", "^": "\u0302", "~": "\u0303", ":": "\u0308",
                 ",": "\u0327", "o": "\u030a", "v": "\u030c", "/": "\u0338"}
TROFF_LETTERS = {"/o": "ø", "/O": "Ø", "AE": "Æ", "ae": "æ", "OE": "Œ", "oe": "œ", "-D": "Đ",
                 "Sd": "ð", "TP": "Þ", "Tp": "þ", ".i": "ı", "r!": "¡", "r?": "¿"}


def _troff_escape(m):
    two, bracket, one = m.group(1), m.group(2), m.group(3)
    if two is not None:
        if two in TROFF_LETTERS:
            return TROFF_LETTERS[two]
        if two[0] in TROFF_ACCENTS and two[1].isalpha() and two not in TROFF_NAMED:
            # groff composite glyphs: \(~a -> ã, \(,c -> ç, \('e -> é, \(:A -> Ä, \(oa -> å
            return unicodedata.normalize("NFC", two[1] + TROFF_ACCENTS[two[0]])
        return TROFF_NAMED.get(two, "")
    if bracket is not None:
        if re.fullmatch(r"u[0-9A-Fa-f]{4,6}", bracket):
            return chr(int(bracket[1:], 16))
        return TROFF_NAMED.get(bracket, "")
    if one is not None:
        return {"-": "-", "e": "\\", "\\": "\\", " ": " ", "~": " ", "0": " ", "t": "\t",
                "'": "´", "`": "`", ".": ".", '"': ""}.get(one, "")
    return ""


def _split_args(s):
    return [a[1:-1] if len(a) >= 2 and a[0] == '"' and a[-1] == '"' else a
            for a in re.findall(r'"[^"]*"|\S+', s)]


def strip_troff(src):
    out, skipping = [], False
    for line in src.split("\n"):
        if skipping:
            if line.startswith(".."):
                skipping = False
            continue
        if line.startswith(('.\\"', "'\\\"", '.\\#', '\\"')):
            continue
        if line[:1] in (".", "'") and len(line) > 1 and line[1] != "." and not line[1].isspace():
            m = re.match(r"[.'](\S+)\s*(.*)$", line)
            name, rest = (m.group(1), m.group(2)) if m else ("", "")
            if name in ("de", "de1", "ig", "am"):
                skipping = True
                continue
            rest = _esc_re.sub(_troff_escape, rest)
            if name in MAN_HEAD_MACROS:
                out.extend(["", " ".join(_split_args(rest))])
            elif name in MAN_TEXT_MACROS_JOINED:
                out.append("".join(_split_args(rest)))
            elif name in MAN_TEXT_MACROS_SPACED:
                out.append(" ".join(_split_args(rest)))
            elif name in MAN_BREAK_MACROS:
                out.append("")
                if name == "IP" and rest:
                    args = _split_args(rest)
                    if args:
                        out.append(args[0])
            elif name == "br":
                continue
            continue  # other requests (.TH, .nr, .if, .ds, .ft, .in, .nf, .fi, ...) dropped
        out.append(_esc_re.sub(_troff_escape, line))
    text = "\n".join(out)
    text = re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"
    return text


def read_text(path):
    try:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile):
        return None
    text = text.replace("\x00", "")
    return text if text.strip() else None


def list_sources(rng):
    """(category, path, kind) for every file used, sorted, sampled with rng."""
    srcs = []
    man = Path("/usr/share/man")
    for d in sorted(p for p in man.iterdir() if p.is_dir()):
        files = sorted(p for p in d.rglob("*.gz") if p.is_file() and not p.is_symlink())
        if d.name.startswith("man"):
            srcs += [("man/en", p, "man") for p in files]
        else:
            srcs += [(f"man/{d.name}", p, "man") for p in files]
    # English man pages dominate (~20k); sample them.
    en = [s for s in srcs if s[0] == "man/en"]
    keep = set(id(s) for s in rng.sample(en, min(len(en), 2600)))
    srcs = [s for s in srcs if s[0] != "man/en" or id(s) in keep]
    lic = Path("/usr/share/common-licenses")
    srcs += [("licenses", p, "plain") for p in sorted(lic.iterdir()) if p.is_file()]
    srcs += [("copyright", p, "plain") for p in sorted(Path("/usr/share/doc").glob("*/copyright"))
             if p.is_file()]
    inc = sorted(p for p in Path("/usr/include").rglob("*") if p.is_file()
                 and p.suffix in (".h", ".hpp", ".hh", ".hxx", "") and not p.is_symlink())
    srcs += [("include", p, "plain") for p in rng.sample(inc, min(len(inc), 1800))]
    # tab-indented C and make files (headers that indent with tabs, examples, dpkg's .mk files)
    chosen = set(p for c, p, _ in srcs)
    tabbed = []
    for p in inc + sorted(Path("/usr/share/doc").glob("*/examples/**/*")) + \
            sorted(Path("/usr/share/dpkg").glob("*.mk")):
        if p in chosen or not p.is_file() or p.is_symlink() or p.suffix == ".gz":
            continue
        if p.suffix not in (".c", ".h", ".mk", "") and not p.name.startswith("Makefile"):
            continue
        try:
            head = p.read_bytes()[:65536]
        except OSError:
            continue
        if head.count(b"\n\t") >= 10:
            tabbed.append(p)
    srcs += [("c-tabs", p, "plain") for p in rng.sample(tabbed, min(len(tabbed), 400))]
    perl = sorted(p for d in ("/usr/share/perl5", "/usr/share/perl") for p in Path(d).rglob("*")
                  if p.is_file() and not p.is_symlink() and p.suffix in (".pm", ".pl", ".pod"))
    srcs += [("perl", p, "plain") for p in rng.sample(perl, min(len(perl), 500))]
    test_dir = PY_LIB / "test"
    py = sorted(p for p in PY_LIB.rglob("*.py") if "site-packages" not in p.parts
                and test_dir not in p.parents)
    srcs += [("python", p, "plain") for p in rng.sample(py, min(len(py), 900))]
    # Python's test suite: files with non-ASCII text (CJK, emoji, accents, RTL, ...).
    tfiles = sorted(p for p in test_dir.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                    and (p.suffix in (".py", ".txt") or p.parent.name == "cjkencodings"))
    for p in tfiles:
        if p.parent.name == "cjkencodings" and not p.name.endswith("-utf8.txt"):
            continue
        try:
            t = p.read_bytes().decode("utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if any(ord(c) > 127 for c in t):
            srcs.append(("pytest-nonascii", p, "plain"))
    return srcs


# ----------------------------------------------------------------------------------------------
# Documents
# ----------------------------------------------------------------------------------------------
def draw_size(rng):
    r = rng.random()
    if r < 0.65:
        return rng.randint(20, 110)
    if r < 0.98:
        return rng.randint(110, 360)
    return rng.randint(360, 1600)


def cut_documents(text, rng):
    """Exact substrings of `text` (cut at blank lines, else newlines, else spaces)."""
    docs, pos, n = [], 0, len(text)
    while pos < n:
        want = draw_size(rng)
        end = pos + want
        if end >= n:
            docs.append(text[pos:])
            break
        window = text[pos:end]
        cut = -1
        # mostly at a paragraph or line end; sometimes mid-line (docs not ending in a newline)
        pats = ("\n\n", "\n", " ") if rng.random() < 0.9 else (" ", "\n")
        for pat in pats:
            k = window.rfind(pat)
            if k > 0:
                cut = k if pat == " " else k + len(pat)  # a cut space starts the next doc
                break
        if cut <= 0:
            cut = want
        docs.append(text[pos:pos + cut])
        pos += cut
    return [d for d in docs if d.strip()]


CJK_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
EMOJI_RE = re.compile(r"[\U0001F000-\U0001FAFF\u2600-\u27BF\u200d\ufe0f\u2B50\u2B55]")
ACCENT_RE = re.compile(r"[\u00c0-\u024f]")
CYRILLIC_RE = re.compile(r"[\u0400-\u04ff]")


def features(t):
    f = set()
    if CJK_RE.search(t):
        f.add("cjk")
    if EMOJI_RE.search(t):
        f.add("emoji")
    if any(unicodedata.combining(c) for c in t):
        f.add("combining")
    if ACCENT_RE.search(t):
        f.add("accented")
    if CYRILLIC_RE.search(t):
        f.add("cyrillic")
    if any(ord(c) > 0xFFFF for c in t):
        f.add("astral")
    if "\t" in t:
        f.add("tab")
    if "\t\t" in t:
        f.add("tab-run")
    if "  " in t:
        f.add("space-run")
    if "    " in t:
        f.add("space-run4")
    if "\n\n" in t:
        f.add("newline-run")
    if "\r\n" in t:
        f.add("crlf")
    if re.search(r"\d", t):
        f.add("digit")
    if re.search(r"\d{4,}", t):
        f.add("digit-run4")
    if t[:1].isspace():
        f.add("leading-ws")
    if t[-1:].isspace():
        f.add("trailing-ws")
    if "<|endoftext|>" in t:
        f.add("special-text")
    if unicodedata.normalize("NFC", t) != t:
        f.add("not-nfc")
    if all(ord(c) < 128 for c in t):
        f.add("ascii-only")
    return f


def splice(doc, snippet, rng):
    lines = doc.split("\n")
    k = rng.randrange(len(lines) + 1)
    lines.insert(k, snippet)
    return "\n".join(lines)


def transform(docs, rng, allow_eot):
    """Apply the documented modifications to a fraction of docs (list of [src, text])."""
    out = []
    i = 0
    while i < len(docs):
        src, t = docs[i]
        r = rng.random()
        if r < 0.035:
            src, t = src + "+emoji", splice(t, rng.choice(EMOJI_SNIPPETS), rng)
        elif r < 0.055:
            src, t = src + "+combining", splice(t, rng.choice(COMBINING_SNIPPETS), rng)
        elif r < 0.065:
            src, t = src + "+crlf", t.replace("\r\n", "\n").replace("\n", "\r\n")
        elif r < 0.075 and allow_eot and i + 1 < len(docs):
            src2, t2 = docs[i + 1]
            src, t = src + "+eot+" + src2, t + "<|endoftext|>" + t2
            i += 1
        elif r < 0.135 and unicodedata.normalize("NFD", t) != t:
            src, t = src + "+nfd", unicodedata.normalize("NFD", t)
        out.append([src, t])
        i += 1
    return out


HELDOUT_QUOTA = {  # per category; other non-English man pages share MAN_OTHER_QUOTA
    "man/en": 1000, "licenses": 100, "copyright": 400, "include": 380, "python": 400,
    "perl": 220, "c-tabs": 240, "pytest-nonascii": 280, "man/ja": 200, "man/ko": 140,
    "man/zh_CN": 140, "man/zh_TW": 100, "man/ru": 90, "man/uk": 90,
}
MAN_OTHER_QUOTA = 1400


def build_corpus():
    rng = random.Random(SEED)
    srcs = list_sources(rng)
    by_cat = defaultdict(list)  # cat -> list of [src, text]
    for cat, path, kind in srcs:
        t = read_text(path)
        if t is None:
            continue
        if kind == "man":
            t = strip_troff(t)
        rel = str(path)
        for pre in ("/usr/share/man/", "/usr/share/doc/", "/usr/share/common-licenses/",
                    "/usr/include/", "/usr/share/", str(PY_LIB) + "/"):
            if rel.startswith(pre):
                rel = rel[len(pre):]
                break
        for j, d in enumerate(cut_documents(t, rng)):
            by_cat[cat].append([f"{cat}:{rel}#{j}", d])
    # held-out quotas
    cats = sorted(by_cat)
    quota = dict(HELDOUT_QUOTA)
    others = [c for c in cats if c.startswith("man/") and c not in HELDOUT_QUOTA]
    tot_other = sum(len(by_cat[c]) for c in others)
    for c in others:
        # proportional to size, but at least 60 (or a third of what there is)
        q = max(60, round(MAN_OTHER_QUOTA * len(by_cat[c]) / max(1, tot_other)))
        quota[c] = min(q, len(by_cat[c]) // 3)
    heldout, train = [], []
    for c in cats:
        docs = by_cat[c]
        idx = list(range(len(docs)))
        rng.shuffle(idx)
        q = min(quota.get(c, 0), len(docs) // 2)
        heldout += [docs[i] for i in sorted(idx[:q])]
        train += [docs[i] for i in idx[q:]]
    rng.shuffle(heldout)
    rng.shuffle(train)
    heldout = transform(heldout, rng, allow_eot=True)
    train = transform(train, rng, allow_eot=True)
    return heldout, train


def cap(docs, limit):
    out, n = [], 0
    for _, t in docs:
        b = len(t.encode("utf-8"))
        if n + b > limit:
            break
        out.append(t)
        n += b
    return out


# ----------------------------------------------------------------------------------------------
# Tokenizers
# ----------------------------------------------------------------------------------------------
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]


def train_bytelevel(texts):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True,
                                                 use_regex=True)
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=True)
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=True)
    tr = trainers.BpeTrainer(vocab_size=VOCAB - 1, min_frequency=2, show_progress=False,
                             special_tokens=["<|endoftext|>", "<|padding|>"],
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, tr)
    # gpt-neox-20b has "  " as a normalized, non-special added token at the end of its vocab.
    tok.add_tokens([AddedToken("  ", normalized=True, special=False)])
    # The Python constructors of processors/decoders.ByteLevel ignore add_prefix_space (they write
    # true); gpt-neox-20b's file has false, which changes the trimmed offsets of a first token
    # that starts with a space.
    j = json.loads(tok.to_str())
    j["post_processor"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                           "use_regex": True}
    j["decoder"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                    "use_regex": True}
    return Tokenizer.from_str(json.dumps(j, ensure_ascii=False))


def train_sp_bpe(texts):
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"),
                                           normalizers.Replace(" ", "▁")])
    # For training only: split into sentencepiece-like pieces (a word with its leading "▁";
    # whitespace runs on their own, minus the "▁" that starts the next word), so that merges do
    # not cross word boundaries but whitespace-only pieces ("▁▁▁▁") are learned, as sentencepiece
    # with allow_whitespace_only_pieces does.
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"▁+(?=▁[^▁])|▁?[^▁]+|▁+"), "isolated")
    # Keep ~600 most frequent characters (the rest byte-fall-back, as rare characters do in
    # Llama). The trainer breaks ties at the cut in hash order, so cut where counts differ.
    counts = Counter()
    for t in texts:
        counts.update("▁" + t.replace(" ", "▁"))
    desc = sorted(counts.values(), reverse=True)
    limit = 600
    while limit < len(desc) and desc[limit - 1] == desc[limit]:
        limit += 1
    tr = trainers.BpeTrainer(vocab_size=VOCAB, min_frequency=2, show_progress=False,
                             special_tokens=["<unk>", "<s>", "</s>"] + BYTE_TOKENS,
                             limit_alphabet=limit, max_token_length=16)
    tok.train_from_iterator(texts, tr)
    # Now Llama-2's pipeline: no pre-tokenizer, <s> template, byte fallback decoder; only
    # <unk> <s> </s> are added tokens (the byte tokens are plain vocabulary, ids 3..258).
    j = json.loads(tok.to_str())
    j["added_tokens"] = [a for a in j["added_tokens"] if a["content"] in ("<unk>", "<s>", "</s>")]
    for a in j["added_tokens"]:
        a["normalized"] = False
    j["pre_tokenizer"] = None
    j["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                   {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                 {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "<s>", "type_id": 1}},
                 {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
    }
    j["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    v = j["model"]["vocab"]
    assert v["<unk>"] == 0 and v["<s>"] == 1 and v["</s>"] == 2 and v["<0x00>"] == 3 \
        and v["<0xFF>"] == 258, "unexpected special-token ids"
    return Tokenizer.from_str(json.dumps(j, ensure_ascii=False))


def train_split_digits(texts):
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=VOCAB, min_frequency=2, show_progress=False,
                             special_tokens=["<|begin_of_text|>", "<|end_of_text|>"],
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, tr)
    bot = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
        processors.TemplateProcessing(
            single="<|begin_of_text|> $A",
            pair="<|begin_of_text|> $A:0 <|begin_of_text|>:1 $B:1",
            special_tokens=[("<|begin_of_text|>", bot)]),
    ])
    return tok


def train_spm(texts, outdir, tmp):
    # sentencepiece trains on lines; documents' lines, deterministic order, no sampling.
    inp = Path(tmp) / "spm_train.txt"
    with open(inp, "w", encoding="utf-8") as f:
        for t in texts:
            for line in t.replace("\r", "").split("\n"):
                if line.strip():
                    f.write(line[:4000] + "\n")
    sentencepiece.set_random_generator_seed(SEED)
    cwd = os.getcwd()
    os.chdir(tmp)  # the model stores its input and prefix paths: keep them free of the temp name
    try:
        sentencepiece.SentencePieceTrainer.train(
            input="spm_train.txt", model_prefix="spm", model_type="bpe", vocab_size=SPM_VOCAB,
            byte_fallback=True, split_digits=True, character_coverage=0.99995,
            normalization_rule_name="identity", add_dummy_prefix=True,
            remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
            split_by_unicode_script=True, split_by_number=True, split_by_whitespace=True,
            max_sentencepiece_length=16, max_sentence_length=4192, unk_id=0, bos_id=1, eos_id=2,
            pad_id=-1, input_sentence_size=0, shuffle_input_sentence=False, num_threads=1,
            minloglevel=2)
    finally:
        os.chdir(cwd)
    shutil.copy(Path(tmp) / "spm.model", outdir / "tokenizer.model")
    from transformers import LlamaTokenizer, LlamaTokenizerFast
    slow = LlamaTokenizer(vocab_file=str(outdir / "tokenizer.model"), legacy=False,
                          add_prefix_space=True)
    # add_prefix_space must be given: left as None, the converter writes prepend_scheme "never".
    fast = LlamaTokenizerFast(vocab_file=str(outdir / "tokenizer.model"), legacy=False,
                              add_prefix_space=True, from_slow=True)
    hf = Path(tmp) / "hf"
    fast.save_pretrained(str(hf))
    shutil.copy(hf / "tokenizer.json", outdir / "tokenizer.json")
    sp = sentencepiece.SentencePieceProcessor(model_file=str(outdir / "tokenizer.model"))
    return slow, sp


# ----------------------------------------------------------------------------------------------
def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")


def save_tokenizer(tok, d):
    d.mkdir(parents=True, exist_ok=True)
    # pretty-printed as the library writes it (and as hub files are)
    tok.save(str(d / "tokenizer.json"), pretty=True)


def write_expected(tok, docs, d, extra=None):
    """extra(i, text, enc) -> dict of extra fields for that line."""
    n_dec_diff = 0
    with open(d / "expected.jsonl", "w", encoding="utf-8") as f:
        for i, t in enumerate(docs):
            enc = tok.encode(t)
            rec = {"ids": enc.ids, "offsets": [list(o) for o in enc.offsets]}
            dec = tok.decode(enc.ids, skip_special_tokens=True)
            if dec != t:
                rec["decoded"] = dec
                n_dec_diff += 1
            if extra:
                rec.update(extra(i, t, enc))
            f.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
    return n_dec_diff


def generate(out):
    out.mkdir(parents=True, exist_ok=True)
    heldout, train = build_corpus()
    assert len(heldout) >= 5000, len(heldout)
    heldout_texts = [t for _, t in heldout]
    held = set(heldout_texts)
    train = [d for d in train if d[1] not in held]  # never train on a held-out text
    with open(out / "docs.jsonl", "w", encoding="utf-8") as f:
        for src, t in heldout:
            f.write(json.dumps({"text": t, "source": src}, ensure_ascii=False) + "\n")

    # coverage report
    feat = Counter()
    for t in heldout_texts:
        feat.update(features(t))
    cats = Counter(src.split(":")[0] for src, _ in heldout)
    stats = {"heldout_docs": len(heldout),
             "heldout_bytes": sum(len(t.encode()) for t in heldout_texts),
             "train_docs_available": len(train), "features": dict(sorted(feat.items())),
             "sources": dict(sorted(cats.items()))}
    for k, lo in (("cjk", 200), ("emoji", 100), ("combining", 100), ("accented", 300),
                  ("tab", 150), ("space-run", 500), ("newline-run", 500), ("digit", 1000),
                  ("not-nfc", 50), ("crlf", 30), ("special-text", 20), ("astral", 100)):
        assert feat[k] >= lo, f"held-out docs: only {feat[k]} with {k} (want >= {lo})"

    texts = cap(train, TRAIN_CAP_BYTES)
    stats["train_docs_used"] = len(texts)
    stats["train_bytes_used"] = sum(len(t.encode()) for t in texts)
    results = {}

    for name, fn in (("bytelevel", train_bytelevel), ("sp_bpe", train_sp_bpe),
                     ("split_digits", train_split_digits)):
        print(f"training {name} ...", file=sys.stderr)
        tok = fn(texts)
        d = out / name
        save_tokenizer(tok, d)
        tok = Tokenizer.from_file(str(d / "tokenizer.json"))  # encode with what was written
        ndiff = write_expected(tok, heldout_texts, d)
        results[name] = {"vocab_size": tok.get_vocab_size(), "decoded_differs": ndiff}

    print("training spm_model ...", file=sys.stderr)
    d = out / "spm_model"
    d.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        slow, sp = train_spm(cap(train, SPM_TRAIN_CAP_BYTES), d, tmp)
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    bos = sp.bos_id()
    agree = Counter()

    def spm_extra(i, t, enc):
        rec = {}
        slow_ids = slow(t)["input_ids"]
        spm_ids = [bos] + sp.encode(t)
        agree["slow==fast"] += slow_ids == enc.ids
        agree["spm==fast"] += spm_ids == enc.ids
        agree["spm==slow"] += spm_ids == slow_ids
        if slow_ids != enc.ids:
            rec["slow_ids"] = slow_ids
        if spm_ids != slow_ids:
            rec["spm_ids"] = spm_ids
        spm_dec = sp.decode(spm_ids)  # sentencepiece drops the control piece <s>
        agree["spm_decode==text"] += spm_dec == t
        if spm_dec != t:
            rec["spm_decoded"] = spm_dec
        return rec

    ndiff = write_expected(tok, heldout_texts, d, spm_extra)
    results["spm_model"] = {"vocab_size": tok.get_vocab_size(), "decoded_differs": ndiff,
                            "agreement_over_docs": dict(agree)}
    stats["tokenizers"] = results
    write_json(out / "stats.json", stats)
    return stats


def tree_digest(d):
    h = hashlib.sha256()
    for p in sorted(d.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(d)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(REPO / "tests/fixtures/tokenizers"))
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temp dir and compare with --out")
    a = ap.parse_args()
    if a.check:
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp))
            same = []
            for p in sorted(Path(tmp).rglob("*")):
                if p.is_file():
                    q = Path(a.out) / p.relative_to(tmp)
                    ok = q.exists() and filecmp.cmp(p, q, shallow=False)
                    same.append(ok)
                    print(("same   " if ok else "DIFFER ") + str(p.relative_to(tmp)))
            sys.exit(0 if all(same) else 1)
    stats = generate(Path(a.out))
    print(json.dumps(stats, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
