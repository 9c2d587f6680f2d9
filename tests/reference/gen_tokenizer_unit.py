#!/usr/bin/env python3
"""Small hand-built tokenizer.json files, one per pipeline feature, and what the Python `tokenizers`
library (pinned 0.20.3) gives for a few inputs each: tests/fixtures/tokenizer_unit/cases.json,
read by tests/unit/tokenizer/test_tokenizer_unit.cpp.

Run from the repository root:

    python3 tests/reference/gen_tokenizer_unit.py           # writes the fixture
    python3 tests/reference/gen_tokenizer_unit.py --check   # regenerates in memory and compares

Each case is {"name", "tokenizer": <tokenizer.json object>, "inputs": [{"text", "add_special_tokens",
"ids", "tokens", "offsets", "decoded", "decoded_keep_special"}]}. `tokens` are the library's token
values, `offsets` its code-point offsets, `decoded` = decode(ids, skip_special_tokens=True),
`decoded_keep_special` = decode(ids, skip_special_tokens=False). Every number comes from the library.
"refused" lists tokenizer.json files the library refuses to load ({"name", "part", "field", "tokenizer",
"library_error"}): fusellm must refuse them too, naming the field.
"""
import argparse
import json
import sys
from pathlib import Path

import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

assert tokenizers.__version__ == "0.20.3", tokenizers.__version__

OUT = Path(__file__).resolve().parents[2] / "tests/fixtures/tokenizer_unit/cases.json"
SPM_DIR = OUT.parent / "spm"  # a tiny SentencePiece model (tokenizer.model only) and its expectations

# Inputs every case sees: accents (precomposed and combining), CJK, emoji (ZWJ, skin tone, flag),
# runs of spaces/tabs/newlines, digits, punctuation, leading/trailing whitespace.
COMMON = [
    "Hello world",
    "  two  spaces\tand\ttabs\n\nnew lines  ",
    "caf\u00e9 cafe\u0301 na\u00efve \u00c5ngstr\u00f6m",
    "\u65e5\u672c\u8a9e\u306e\u6587 \ud55c\uad6d\uc5b4 \u4e2d\u6587",
    "emoji \U0001F600\U0001F44D\U0001F3FD \U0001F468\u200d\U0001F469\u200d\U0001F467 \U0001F1E9\U0001F1EA!",
    "digits 12345 3.14 \u00b2\u00bd",
    "don't stop, it's 5pm; ok?",
    "",
]

BYTE_ALPHABET = sorted(pre_tokenizers.ByteLevel.alphabet())
BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]


def vocab_of(tokens):
    v = {}
    for t in tokens:
        if t not in v:
            v[t] = len(v)
    return v


def bpe(tokens, merges, **kw):
    """BPE over an explicit token list (ids in order) and merges [(a, b)], every merge result added."""
    toks = list(tokens)
    for a, b in merges:
        prefix = kw.get("continuing_subword_prefix") or ""
        m = a + b[len(prefix):]
        if m not in toks:
            toks.append(m)
    return models.BPE(vocab_of(toks), list(merges), **kw)


def byte_level_bpe(merges=()):
    return bpe(BYTE_ALPHABET, merges)


def chars_of(texts):
    s = set()
    for t in texts:
        s.update(t)
    return sorted(s)


CASES = []


def case(name, tok, texts=(), special=(True,), common=True, json_patch=None):
    CASES.append((name, tok, list(texts) + (COMMON if common else []), special, json_patch))


# ---- models ------------------------------------------------------------------------------------
def m_bytelevel_merges():
    t = Tokenizer(byte_level_bpe([("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("l", "l"), ("ll", "o"), ("e", "r")]))
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    return t


case("bpe_string_merges", m_bytelevel_merges(), ["the other hello theller", "lllll ttthe"])


def m_list_merges():
    # Same model; the fixture stores merges in the newer [a, b] list form (json_patch below).
    return m_bytelevel_merges()


def to_list_merges(j):
    j["model"]["merges"] = [m.split(" ") if isinstance(m, str) else m for m in j["model"]["merges"]]
    return j


case("bpe_list_merges", m_list_merges(), ["the other hello theller"], json_patch=to_list_merges)


def m_byte_fallback(fuse):
    base = ["<unk>", "<s>", "</s>"] + BYTE_TOKENS + ["▁", "a", "b", "c", "h", "e", "l", "o", "w", "r", "d"]
    t = Tokenizer(bpe(base, [("▁", "h"), ("e", "l"), ("▁h", "el"), ("l", "o"), ("▁", "w")], unk_token="<unk>",
                      byte_fallback=True, fuse_unk=fuse))
    t.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    t.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                   decoders.Strip(" ", 1, 0)])
    return t


case("bpe_byte_fallback", m_byte_fallback(True), ["hello world", "h\u00e9llo \U0001F600"])


def m_unk(fuse, bytes_partial):
    base = ["<unk>", "a", "b", "c", " "] + (["<0xC3>"] if bytes_partial else [])
    t = Tokenizer(bpe(base, [("a", "b")], unk_token="<unk>", fuse_unk=fuse, byte_fallback=bytes_partial))
    return t


case("bpe_unk_fused", m_unk(True, False), ["abxyzab", "xx a yy", "\u00e9\u00e8c"])
case("bpe_unk_not_fused", m_unk(False, False), ["abxyzab", "xx a yy"])
case("bpe_unk_partial_byte_fallback", m_unk(False, True), ["\u00e9\u00e8c \u00e9", "x\u00e9"])


def m_affixes():
    base = ["[UNK]", "h", "##e", "##l", "##o", "w", "##r", "##d", "h</w>", "##o</w>", "##d</w>", "##l</w>", "o", "e",
            "l", "d", "##h", "##w", "r", "##e</w>"]
    t = Tokenizer(bpe(base, [("##l", "##o</w>"), ("h", "##e"), ("he", "##l"), ("w", "##o"), ("wo", "##r")],
                      unk_token="[UNK]", continuing_subword_prefix="##", end_of_word_suffix="</w>"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    t.decoder = decoders.BPEDecoder(suffix="</w>")
    return t


case("bpe_prefix_suffix", m_affixes(), ["hello world", "hell lo", "e"])


def m_ignore_merges():
    t = Tokenizer(bpe(BYTE_ALPHABET + ["Ġhello"], [("Ġ", "h"), ("e", "l"), ("Ġh", "el")], ignore_merges=True))
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    t.decoder = decoders.ByteLevel()
    return t


case("bpe_ignore_merges", m_ignore_merges(), ["hello hel hellohello"])

# ---- normalizers -------------------------------------------------------------------------------
NORM_TEXTS = ["\uFB01 \u2460 \uFF76\uFF9E \u212B \u1E0B\u0323 q\u0307\u0323 a\u0323\u0302",
              "\u0130stanbul \u03a3\u0391\u03a3 Stra\u00dfe \u1E9E", "\u00a0nbsp\u3000ideographic ",
              "\u1100\u1161\u11a8 \uac00", "Z\u0351\u036b\u0343a\u0310l\u0351g\u0310o"]


def char_split_tok(norm):
    # One token per char through the byte-level alphabet: offsets show every alignment.
    t = Tokenizer(byte_level_bpe())
    t.normalizer = norm
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex("."), "isolated"),
                                               pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    t.decoder = decoders.ByteLevel()
    return t


for nname, n in [("nfc", normalizers.NFC()), ("nfd", normalizers.NFD()), ("nfkc", normalizers.NFKC()),
                 ("nfkd", normalizers.NFKD()), ("lowercase", normalizers.Lowercase()),
                 ("strip", normalizers.Strip()), ("strip_left", normalizers.Strip(left=True, right=False)),
                 ("strip_accents", normalizers.Sequence([normalizers.NFD(), normalizers.StripAccents()])),
                 ("replace_string", normalizers.Replace(" ", "\u2581")),
                 ("replace_regex", normalizers.Replace(Regex(r"\s+"), "_")),
                 ("replace_regex_delete", normalizers.Replace(Regex(r"[aeiou]\u0301?"), "")),
                 ("prepend", normalizers.Prepend("\u2581")),
                 ("bert", normalizers.BertNormalizer()),
                 ("bert_keep_case", normalizers.BertNormalizer(lowercase=False, strip_accents=False)),
                 ("byte_level", normalizers.ByteLevel()),
                 ("sequence", normalizers.Sequence([normalizers.NFKD(), normalizers.Lowercase(),
                                                    normalizers.StripAccents(), normalizers.NFC(),
                                                    normalizers.Prepend("^"), normalizers.Replace("e", "EE")]))]:
    if nname == "byte_level":
        t = Tokenizer(byte_level_bpe())
        t.normalizer = n
        t.pre_tokenizer = pre_tokenizers.Split(Regex("."), "isolated")
        t.decoder = decoders.ByteLevel()
    else:
        t = char_split_tok(n)
    case("normalizer_" + nname, t, NORM_TEXTS)


# Quirks of the library kept on purpose: a Replace whose pattern matches the empty string at the
# very start inserts chars with a zero-width alignment; the library's later `transform`s then work
# on the original's range only (pieces made of such chars get their transformed text prepended).
for qname, qnorm, qpre in [
        ("quirk_insert_at_start_bytelevel", normalizers.Replace(Regex("^"), "X"),
         pre_tokenizers.Sequence([pre_tokenizers.Split(Regex("."), "isolated"),
                                  pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])),
        ("quirk_insert_at_start_whitespace", normalizers.Replace(Regex("^"), "X"), pre_tokenizers.Whitespace()),
        ("quirk_lookahead_lowercase", normalizers.Sequence([normalizers.Replace(Regex("(?=b)"), "_"),
                                                            normalizers.Lowercase()]),
         pre_tokenizers.Sequence([pre_tokenizers.Split(Regex("."), "isolated"),
                                  pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]))]:
    t = Tokenizer(byte_level_bpe())
    t.normalizer = qnorm
    t.pre_tokenizer = qpre
    t.decoder = decoders.ByteLevel()
    case(qname, t, ["ab", "Bb bB", "\u00e9 b"])  # (text starting with "b" makes the last one panic)

# ---- pre-tokenizers ----------------------------------------------------------------------------
def byte_pre(pre, post=None):
    t = Tokenizer(byte_level_bpe([("Ġ", "t"), ("h", "e"), ("Ġt", "he")]))
    t.pre_tokenizer = pre
    if post is not None:
        t.post_processor = post
    t.decoder = decoders.ByteLevel()
    return t


case("pre_bytelevel", byte_pre(pre_tokenizers.ByteLevel(add_prefix_space=False)), ["the  the\n\n the   "])
case("pre_bytelevel_prefix", byte_pre(pre_tokenizers.ByteLevel(add_prefix_space=True)), ["the the", " the"])
case("pre_bytelevel_no_regex", byte_pre(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)),
     ["the the"])
SPLIT_TEXTS = ["a--b-c-", "-a--b-c", "axxbxc", "aacb", "a, b,, c."]
for b in ["removed", "isolated", "merged_with_previous", "merged_with_next", "contiguous"]:
    case("pre_split_regex_" + b, byte_pre(pre_tokenizers.Split(Regex(r"-|x+|(?=b)|,\s*"), b)), SPLIT_TEXTS)
case("pre_split_string_invert", byte_pre(pre_tokenizers.Split("-", "isolated", invert=True)), SPLIT_TEXTS)
case("pre_split_string_special_chars", byte_pre(pre_tokenizers.Split("a.b", "removed")), ["a.b axb a.ba.b"])
case("pre_digits_individual", byte_pre(pre_tokenizers.Digits(individual_digits=True)), ["a123b45 \u0663\u00b2"])
case("pre_digits_contiguous", byte_pre(pre_tokenizers.Digits(individual_digits=False)), ["a123b45 \u0663\u00b2"])
case("pre_whitespace", byte_pre(pre_tokenizers.Whitespace()), ["a\u200db c_d e-f"])
case("pre_whitespace_split", byte_pre(pre_tokenizers.WhitespaceSplit()), ["a\u00a0b\u3000c\u200bd"])
case("pre_punctuation", byte_pre(pre_tokenizers.Punctuation()), ["a,b\u00bfc\u00abd\u00bbe+f$g\u2014h"])
case("pre_punctuation_contiguous", byte_pre(pre_tokenizers.Punctuation("contiguous")), ["a,,b...c"])
case("pre_char_delimiter", byte_pre(pre_tokenizers.CharDelimiterSplit("x")), ["axbxxc"])
case("pre_bert", byte_pre(pre_tokenizers.BertPreTokenizer()), ["Hello, world! (ok)"])
case("pre_sequence", byte_pre(pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                       pre_tokenizers.Digits(True),
                                                       pre_tokenizers.ByteLevel(add_prefix_space=True,
                                                                                use_regex=False)])),
     ["ab12 cd3"])


def metaspace_tok(scheme, split):
    base = ["<unk>"] + BYTE_TOKENS + ["▁", "a", "b", "h", "e", "l", "o", "w", "r", "d"]
    t = Tokenizer(bpe(base, [("▁", "h"), ("e", "l"), ("▁h", "el"), ("l", "o")], unk_token="<unk>",
                      byte_fallback=True))
    t.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme=scheme, split=split)
    t.decoder = decoders.Metaspace(prepend_scheme=scheme, split=split)
    t.add_special_tokens(["<s>"])
    return t


for scheme in ["always", "first", "never"]:
    for split in [True, False]:
        case(f"pre_metaspace_{scheme}_{'split' if split else 'nosplit'}", metaspace_tok(scheme, split),
             ["hello  world", " hello", "<s>hello <s> world"])


# ---- added tokens ------------------------------------------------------------------------------
def added_tok():
    t = Tokenizer(byte_level_bpe([("Ġ", "t"), ("h", "e"), ("Ġt", "he")]))
    t.normalizer = normalizers.Lowercase()
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    t.add_special_tokens(["<s>", "</s>", AddedToken("<mask>", lstrip=True, special=True),
                          AddedToken("<sep>", rstrip=True, special=True)])
    t.add_tokens([AddedToken("New York", normalized=True), AddedToken("RAW", normalized=False),
                  AddedToken("the", single_word=True), AddedToken("<s>x", normalized=False),
                  AddedToken("  ", normalized=True)])
    return t


case("added_tokens", added_tok(),
     ["<s>I saw new york and NEW YORK</s>", "a  <mask> b<sep>   c", "RAW raw theme the other<s>x<s>",
      "tothe the,the", "<s><s>x</s>"], special=(True, False))

# ---- post-processors ---------------------------------------------------------------------------
case("post_template", (lambda: (lambda t: (setattr(t, "post_processor", processors.TemplateProcessing(
    single="<s> $A </s>", pair="<s> $A </s> $B:1", special_tokens=[("<s>", 1), ("</s>", 2)])), t)[1])(
    metaspace_tok("first", True)))(), ["hello"], special=(True, False))
case("post_bytelevel_trim", byte_pre(pre_tokenizers.ByteLevel(add_prefix_space=True),
                                     processors.ByteLevel(trim_offsets=True)), ["the  the   "])
case("post_bytelevel_no_trim", byte_pre(pre_tokenizers.ByteLevel(add_prefix_space=True),
                                        processors.ByteLevel(trim_offsets=False)), ["the  the   "])


def roberta():
    t = byte_pre(pre_tokenizers.ByteLevel(add_prefix_space=True))
    t.add_special_tokens(["<s>", "</s>", AddedToken("<mask>", lstrip=True, special=True)])
    t.post_processor = processors.RobertaProcessing(("</s>", t.token_to_id("</s>")), ("<s>", t.token_to_id("<s>")))
    return t


case("post_roberta", roberta(), ["the <mask> the"], special=(True, False))


def bert_post():
    t = byte_pre(pre_tokenizers.Whitespace())
    t.add_special_tokens(["[CLS]", "[SEP]"])
    t.post_processor = processors.BertProcessing(("[SEP]", t.token_to_id("[SEP]")), ("[CLS]", t.token_to_id("[CLS]")))
    return t


case("post_bert", bert_post(), ["the the"], special=(True, False))


def post_sequence():
    t = byte_pre(pre_tokenizers.ByteLevel(add_prefix_space=False))
    t.add_special_tokens(["<|begin_of_text|>"])
    t.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=True),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A $B:1",
                                      special_tokens=[("<|begin_of_text|>", t.token_to_id("<|begin_of_text|>"))])])
    return t


case("post_sequence", post_sequence(), [" the  the "], special=(True, False))


# ---- decoders ----------------------------------------------------------------------------------
def dec_tok(dec, extra=()):
    t = metaspace_tok("always", True)
    t.decoder = dec
    return t


case("decoder_metaspace", dec_tok(decoders.Metaspace()), ["a b  c"])
case("decoder_replace_regex", dec_tok(decoders.Sequence([decoders.Replace(Regex("▁+"), " "), decoders.ByteFallback(),
                                                          decoders.Fuse()])), ["a b  c \u00e9"])
# (Strip with stop > 0 panics in the library on an empty token, so only start here.)
case("decoder_strip", dec_tok(decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse(), decoders.Strip(" ", 2, 0)])),
     ["a b  c", " x"])
case("decoder_byte_fallback_invalid", dec_tok(decoders.ByteFallback()), ["\u00e9 \U0001F600"])
case("decoder_wordpiece", dec_tok(decoders.WordPiece(prefix="▁", cleanup=True)), ["a b . c , d"])
case("decoder_none", (lambda t: (setattr(t, "decoder", None), t)[1])(metaspace_tok("always", True)), ["a b"])


# ---- empty search strings ----------------------------------------------------------------------
# Every place where the library searches for a string that a tokenizer.json can leave empty:
#   BPEDecoder suffix ""  Rust's `token.replace("", r)` inserts r at every char boundary, both ends
#                         included ("ab" -> " a b "; the last token's r is "", so it is unchanged).
#   WordPiece prefix ""   every token `starts_with("")`; `replacen("", "", 1)` leaves it unchanged.
#   Replace "" / Regex "" an empty regex: matches the empty string at every char boundary.
#   Split "" / Regex ""   the same matches, so every char is its own piece whatever the behavior.
#   Prepend ""            nothing is inserted, but the first char is re-aligned as an inserted one.
#   an added token ""     ignored (not in the vocabulary, never matched).
# Char fields (Metaspace replacement, CharDelimiterSplit delimiter, Strip content) cannot be empty:
# the library refuses the file (REFUSED below).
EMPTY_TEXTS = ["ab c", "hello world. don't , stop", "\u00e9\u65e5 x"]
case("empty_bpe_decoder_suffix", dec_tok(decoders.BPEDecoder(suffix="")), EMPTY_TEXTS)
case("empty_wordpiece_decoder_prefix", dec_tok(decoders.WordPiece(prefix="", cleanup=False)), EMPTY_TEXTS)
case("empty_wordpiece_decoder_prefix_cleanup", dec_tok(decoders.WordPiece(prefix="", cleanup=True)), EMPTY_TEXTS)
case("empty_replace_decoder_string", dec_tok(decoders.Sequence([decoders.Replace("", "_"), decoders.Fuse()])),
     EMPTY_TEXTS)
case("empty_replace_decoder_regex", dec_tok(decoders.Replace(Regex(""), "")), EMPTY_TEXTS)
case("empty_replace_normalizer_string", char_split_tok(normalizers.Replace("", "_")), EMPTY_TEXTS + NORM_TEXTS)
case("empty_replace_normalizer_regex_delete", char_split_tok(normalizers.Replace(Regex(""), "")), EMPTY_TEXTS)
case("empty_prepend", char_split_tok(normalizers.Prepend("")), EMPTY_TEXTS + NORM_TEXTS)
for b in ["removed", "isolated", "merged_with_previous", "merged_with_next", "contiguous"]:
    case("empty_split_string_" + b, byte_pre(pre_tokenizers.Split("", b)), EMPTY_TEXTS)
case("empty_split_regex_invert", byte_pre(pre_tokenizers.Split(Regex(""), "removed", invert=True)), EMPTY_TEXTS)


def with_empty_added_token(j):
    j["added_tokens"].append({"id": max([a["id"] for a in j["added_tokens"]] + [len(j["model"]["vocab"])]) + 1,
                              "content": "", "single_word": False, "lstrip": False, "rstrip": False,
                              "normalized": False, "special": True})
    return j


case("empty_added_token", added_tok(), EMPTY_TEXTS + ["<s>a</s>"], special=(True, False),
     json_patch=with_empty_added_token)

# Files the library refuses: an empty char field. (part, JSON) -> the library's error is recorded;
# fusellm must refuse them too, naming the field.
REFUSED = [
    ("pre_tokenizer", "replacement", {"type": "Metaspace", "replacement": "", "prepend_scheme": "always",
                                      "split": True}),
    ("pre_tokenizer", "delimiter", {"type": "CharDelimiterSplit", "delimiter": ""}),
    ("decoder", "replacement", {"type": "Metaspace", "replacement": "", "prepend_scheme": "always", "split": True}),
    ("decoder", "content", {"type": "Strip", "content": "", "start": 1, "stop": 0}),
]


def refused():
    base = json.loads(byte_pre(pre_tokenizers.ByteLevel(add_prefix_space=False)).to_str())
    out = []
    for part, field, obj in REFUSED:
        j = json.loads(json.dumps(base))
        j[part] = obj
        try:
            Tokenizer.from_str(json.dumps(j))
        except Exception as e:  # the library's own message, for the record
            out.append({"name": f"empty_{part}_{obj['type']}_{field}", "part": part, "field": field,
                        "tokenizer": j, "library_error": str(e)})
            continue
        raise AssertionError(f"the library loads {part} {obj}: no longer refused, update REFUSED")
    return out


def render(name, tok, texts, special, patch):
    j = json.loads(tok.to_str())
    if patch:
        j = patch(j)
    tok = Tokenizer.from_str(json.dumps(j))
    inputs = []
    for text in texts:
        for add in special:
            e = tok.encode(text, add_special_tokens=add)
            inputs.append({"text": text, "add_special_tokens": add, "ids": e.ids, "tokens": e.tokens,
                           "offsets": [list(o) for o in e.offsets],
                           "decoded": tok.decode(e.ids, skip_special_tokens=True),
                           "decoded_keep_special": tok.decode(e.ids, skip_special_tokens=False)})
    return {"name": name, "vocab_size": tok.get_vocab_size(), "tokenizer": j, "inputs": inputs}


SPM_TEXTS = ["Hello world", "hello  world\tand\nnew lines", " leading space", "caf\u00e9 na\u00efve 12345",
             "\u65e5\u672c\u8a9e \U0001F600", "a<s>b</s>c <unk> d", "", "the quick brown fox jumps over the lazy dog"]


def generate_spm():
    """Trains a tiny sentencepiece BPE model (byte_fallback) and records what transformers' slow
    LlamaTokenizer (legacy) gives (ids), the byte spans sentencepiece reports for its pieces (as
    code point offsets, where the ids are [bos] + sentencepiece's), and sentencepiece's decode."""
    import io
    import sentencepiece
    import transformers
    assert sentencepiece.__version__ == "0.2.0" and transformers.__version__ == "4.46.3"
    lines = [t for t in COMMON + SPM_TEXTS + NORM_TEXTS if t.strip()] * 20
    model = io.BytesIO()
    sentencepiece.set_random_generator_seed(1)
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, model_type="bpe", vocab_size=420, byte_fallback=True,
        character_coverage=0.98, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, minloglevel=2,
        normalization_rule_name="identity", split_digits=True)
    data = model.getvalue()
    sp = sentencepiece.SentencePieceProcessor(model_proto=data)
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "tokenizer.model").write_bytes(data)
        slow = transformers.LlamaTokenizer(vocab_file=str(Path(tmp) / "tokenizer.model"), legacy=True)
        inputs = []
        for text in SPM_TEXTS + COMMON:
            ids = slow(text)["input_ids"]
            # decoding: sentencepiece's own, without control/unknown pieces (the slow tokenizer's
            # decode adds its own space handling on top, which fusellm does not mirror)
            kept = [i for i in ids if not (sp.is_control(i) or sp.is_unknown(i))]
            rec = {"text": text, "ids": ids, "decoded": sp.decode(kept)}
            if ids == [sp.bos_id()] + sp.encode(text):
                # sentencepiece's piece spans (the Python wrapper reports them in code points)
                proto = sp.encode_as_immutable_proto(text)
                offs = [[0, 0]] + [[p.begin, p.end] for p in proto.pieces]
                rec["offsets"] = offs
            inputs.append(rec)
    return data, {"vocab_size": sp.get_piece_size(), "inputs": inputs}


def generate():
    names = [c[0] for c in CASES]
    assert len(names) == len(set(names)), "duplicate case names"
    return {"tokenizers_version": tokenizers.__version__, "cases": [render(*c) for c in CASES], "refused": refused()}


def dump(obj):
    return json.dumps(obj, ensure_ascii=False, indent=None, separators=(",", ":")) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    text = dump(generate())
    spm_model, spm_expected = generate_spm()
    spm_text = dump(spm_expected)
    if a.check:
        same = OUT.exists() and OUT.read_text(encoding="utf-8") == text
        same_spm = (SPM_DIR / "expected.json").exists() and \
            (SPM_DIR / "expected.json").read_text(encoding="utf-8") == spm_text and \
            (SPM_DIR / "tokenizer.model").read_bytes() == spm_model
        print("same" if same else "DIFFER", OUT)
        print("same" if same_spm else "DIFFER", SPM_DIR)
        sys.exit(0 if same and same_spm else 1)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    SPM_DIR.mkdir(parents=True, exist_ok=True)
    (SPM_DIR / "tokenizer.model").write_bytes(spm_model)
    (SPM_DIR / "expected.json").write_text(spm_text, encoding="utf-8")
    print(f"wrote {OUT} ({len(CASES)} cases, {len(text)} bytes) and {SPM_DIR}")


if __name__ == "__main__":
    main()
