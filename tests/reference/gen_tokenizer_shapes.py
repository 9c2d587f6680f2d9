#!/usr/bin/env python3
"""Tokenizers with the pipeline settings of the paper's published source-model tokenizers, and what
the reference libraries give for hard texts: tests/fixtures/tokenizer_shapes/, read by
tests/unit/tokenizer/test_tokenizer_shapes.cpp.

Run from the repository root:

    python3 tests/reference/gen_tokenizer_shapes.py            # writes tests/fixtures/tokenizer_shapes/
    python3 tests/reference/gen_tokenizer_shapes.py --check    # regenerates in a temp dir and compares

Shapes (the vocabulary is trained here on local text; every other setting is the published file's):
  llama2_json      meta-llama/Llama-2-7b-hf tokenizer.json: normalizer Sequence[Prepend("▁"),
                   Replace(" ", "▁")], pre_tokenizer null, BPE(byte_fallback, fuse_unk, unk "<unk>"),
                   added tokens <unk> <s> </s> (special, normalized false), post-processor
                   TemplateProcessing "<s> $A" / "<s> $A <s>:1 $B:1", decoder Sequence[Replace("▁", " "),
                   ByteFallback, Fuse, Strip(" ", 1, 0)]. Made as HF made it: a sentencepiece model
                   trained with Llama-2's trainer/normalizer options (llama2_model below), converted by
                   transformers' LlamaConverter (LlamaTokenizerFast, legacy=True). The generator asserts
                   that every pipeline field equals LLAMA2_PIPELINE (what the published file has).
                   Expected: `tokenizers`' encode (ids, code-point offsets) and decode.
  llama2_json_normalized_specials
                   the same with <unk> <s> </s> normalized=true, as hf-internal-testing/llama-tokenizer
                   and early LLaMA conversions have them: the special tokens are then matched in the
                   normalized text (after Prepend/Replace), which changes the ids around them.
  llama2_model     the same tokenizer.model alone, read the way the original FuseLLM reads a
                   tokenizer.model: transformers' slow LlamaTokenizer (legacy=True, the default when
                   tokenizer_config.json has no `legacy`, as for Llama-2 and OpenLLaMA).
  openllama_model  a sentencepiece model with OpenLLaMA v2's options (BPE, byte_fallback,
                   split_digits, remove_extra_whitespaces=false, allow_whitespace_only_pieces=true:
                   runs of spaces are kept, unlike OpenLLaMA v1) in a directory that holds only
                   tokenizer.model, as openlm-research/open_llama_7b_v2 ships it.
                   For both *_model shapes: "ids" are the slow LlamaTokenizer's; "offsets" are
                   sentencepiece's piece spans (encode_as_immutable_proto, code points) of each chunk
                   the slow tokenizer hands to sentencepiece (the text split on <unk> <s> </s> written
                   literally), shifted by the chunk's start, with [start, end) of the special token for
                   a special token and [0, 0] for the added <s>; the generator asserts that the ids of
                   that composition equal the slow tokenizer's. "decoded" is sentencepiece's decode of the
                   ids without control/unknown pieces. "spm_ids" = [bos] + sentencepiece.encode(text),
                   recorded where it differs (the raw library does not split on special-token text).
  neox_json        EleutherAI/gpt-neox-20b tokenizer.json (MPT-7B and Pythia use it): normalizer NFC,
                   pre-tokenizer/post-processor/decoder ByteLevel(add_prefix_space false, trim_offsets
                   true; use_regex absent = true), BPE without unk/byte fallback (dropout null,
                   fuse_unk false), <|endoftext|> = 0 and <|padding|> = 1 in the model vocabulary and as
                   special non-normalized added tokens, and the 23 space-run added tokens (24 spaces down
                   to 2, consecutive ids after the model vocabulary; special false, normalized true), as
                   in the published file (50254..50276 there). Trained with the `tokenizers` BpeTrainer,
                   then those fields written as the published JSON has them (key sets and merges in the
                   "a b" string form included).

Every text is encoded with add_special_tokens=True ("ids", "offsets"; for tokenizer.json shapes
"decoded" = decode(ids, skip_special_tokens=True) and "decoded_keep_special" = decode(ids,
skip_special_tokens=False) where that differs) and False ("ids_plain", only
where it differs from ids without the template's leading tokens: <s> for the Llama shapes, none for
neox_json). Texts: HARD_TEXTS below (whitespace runs,
tabs, newlines, CRLF, digits, combining marks, NFC/NFD, emoji sequences, characters only byte
fallback can encode, control and invisible characters, the special tokens written in text, "▁" in
text, code), DOC_SAMPLE documents of tests/fixtures/tokenizers/docs.jsonl (held-out real text) and
N_RANDOM seeded random concatenations of FRAGMENTS (whitespace, special-token text, combining marks,
astral and control characters next to each other).
Every id, offset and decoded string comes from the libraries; nothing is written by hand.
"""
import argparse
import filecmp
import io
import json
import os
import random
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

import tokenizers
import transformers
import sentencepiece
import google.protobuf

PINS = {"tokenizers": "0.20.3", "transformers": "4.46.3", "sentencepiece": "0.2.0", "protobuf": "5.28.3"}
_have = {"tokenizers": tokenizers.__version__, "transformers": transformers.__version__,
         "sentencepiece": sentencepiece.__version__, "protobuf": google.protobuf.__version__}
for _k, _v in PINS.items():
    assert _have[_k] == _v, f"{_k} {_have[_k]} != pinned {_v} (tests/reference/requirements.txt)"

from tokenizers import AddedToken, Tokenizer, pre_tokenizers, trainers, models, decoders

SEED = 20250214
REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "tests/fixtures/tokenizers/docs.jsonl"
PY_TEST = Path(os.__file__).parent / "test"
SPM_VOCAB = 2000
NEOX_VOCAB = 2000
DOC_SAMPLE = 60
N_RANDOM = 120  # random concatenations of FRAGMENTS in the committed fixture (--random for more)

# ---- the published files' pipeline fields (what the generated tokenizer.json must have) -----------
LLAMA2_PIPELINE = {
    "normalizer": {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "▁"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
    "pre_tokenizer": None,
    "post_processor": {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
    "decoder": {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
}
LLAMA2_MODEL_OPTIONS = {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                        "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True}
LLAMA2_SPECIALS = ["<unk>", "<s>", "</s>"]

NEOX_BYTELEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True}
NEOX_MODEL_OPTIONS = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False}
NEOX_SPACE_RUNS = [" " * n for n in range(24, 1, -1)]  # 50254 = 24 spaces ... 50276 = 2 spaces

# sentencepiece trainer options of Llama-2's tokenizer.model (its trainer_spec / normalizer_spec),
# except the corpus, the vocabulary size and the thread/sentence-count settings.
LLAMA2_SPM = dict(model_type="bpe", byte_fallback=True, split_digits=True, character_coverage=0.99995,
                  normalization_rule_name="identity", add_dummy_prefix=True, remove_extra_whitespaces=False,
                  allow_whitespace_only_pieces=True, split_by_unicode_script=True, split_by_number=True,
                  split_by_whitespace=True, treat_whitespace_as_suffix=False, max_sentencepiece_length=16,
                  max_sentence_length=4192, vocabulary_output_piece_score=True, hard_vocab_limit=True,
                  unk_id=0, bos_id=1, eos_id=2, pad_id=-1, unk_piece="<unk>", bos_piece="<s>",
                  eos_piece="</s>")
# OpenLLaMA v2: BPE with byte fallback and split digits, whitespace kept (remove_extra_whitespaces
# false, whitespace-only pieces allowed: the v1 tokenizer merged space runs, v2 does not).
OPENLLAMA_SPM = dict(LLAMA2_SPM, character_coverage=0.9999)

HARD_TEXTS = [
    "", " ", "  ", "   ", "\n", "\t", "\r\n", " \n ", "\n\n\n",
    "Hello world", " Hello world", "  Hello world", "Hello world ", "Hello world   ",
    "a  b   c    d     e", "word" + " " * 30 + "word", " " * 25, " " * 49 + "x",
    "\tindented\n\t\tdouble\n   \tmixed \t ", "line one\nline two\r\nline three\rfour",
    "int main(void) {\n    return 0;\n}\n", "def f(x):\n        return x  # comment\n\n\n",
    "1234567890", "3.14159 2.71828 -42 +7 1e-9", "v2.0.1-rc3 0x1F 0b1010", "１２３ ٣٤٥ ⅻ ²½",
    "café cafe\u0301 naïve nai\u0308ve Ångström A\u030angstro\u0308m", "ﬁ ﬂ Ǆ ẞ ß",
    "Tiếng Việt có dấu", "हिन्दी भाषा", "ภาษาไทย", "שָׁלוֹם", "بِسْمِ", "Z\u0351\u036b\u0343a\u0310l\u0351g\u0310o\u0306",
    "日本語の文章です。", "한국어 \u1112\u1161\u11ab\u1100\u1173\u11af", "中文，标点！", "Привет, мир!",
    "😀👍🏽 👨\u200d👩\u200d👧\u200d👦 🇩🇪🇫🇷 1️⃣ #️⃣ ❤️ 🏳️\u200d🌈",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙 🂡 𓂀 \U0010FFFD", "\u200b\u200c\u200d\ufeff\u00a0\u3000\u2028\u2029",
    "\x00\x01\x07\x1b[0m\x7f\u0085", "‽ ‼ ⁇ ⁈ … — – ‘’ “” «» ¿¡",
    "<s>", "</s>", "<unk>", "<s>Hello</s>", "a<s>b</s>c<unk>d", " <s> spaced </s> ", "<s><s></s></s>",
    "<s >not special</ s>", "<<s>>", "<|endoftext|>", "<|padding|>", "one<|endoftext|>two",
    " <|endoftext|> <|padding|> ", "<|endoftext|><|endoftext|>", "<|endoftext|" + "|>",
    "▁", "▁▁hello", "a▁b ▁ c", " ▁ ", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "!!!!!!!!!!", "-" * 40,
    "don't won't it's I'm we're they've he'd", "https://example.com/path?q=1&r=2#frag",
    "C:\\Program Files\\x86\\", "e-mail: a.b@c.de, tel. +49 (0)30 123-456",
]


# ---- corpus ---------------------------------------------------------------------------------------
def training_lines(rng):
    """Lines of local text: every file of /usr/share/common-licenses, a seeded sample of /usr/include
    headers, and the Python test suite's UTF-8 CJK files (so that some non-ASCII pieces are learned)."""
    files = sorted(p for p in Path("/usr/share/common-licenses").iterdir() if p.is_file() and not p.is_symlink())
    headers = sorted(p for p in Path("/usr/include").rglob("*.h") if p.is_file() and not p.is_symlink())
    files += rng.sample(headers, min(len(headers), 300))
    files += sorted((PY_TEST / "cjkencodings").glob("*-utf8.txt"))
    lines = []
    for p in files:
        try:
            text = p.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        lines += [line for line in text.replace("\r", "").split("\n") if line.strip()]
    return lines


# Pieces the random texts are glued from: whitespace of every kind and length, special-token text
# and near misses, digits, marks that combine with what precedes them, astral characters.
FRAGMENTS = [" ", "  ", "   ", " " * 7, " " * 24, " " * 26, "\t", "\t\t", "\n", "\n\n", "\r\n", "\r", " \n",
             "\u00a0", "\u3000", "\u200b", "<s>", "</s>", "<unk>", "<|endoftext|>", "<|padding|>", "<s", "s>",
             "<|", "▁", "▁▁", "0", "12", "345", "2024", "\u0301", "\u0308", "\u0327", "\u093f", "\u0e31",
             "\u200d", "\ufe0f", "\U0001F3FD", "\U0001F600", "\U0001F1E9", "\U0001D518", "\U0010FFFD", "\x00",
             "\x7f", "\u0085", "ﬁ", "Å", "e", "a", "the", "The", "ing", "int", "return", "(", ")", "{", "}",
             ";", ",", ".", "'s", "'", '"', "-", "_", "/", "\\", "#", "日本", "語", "한", "Ж", "ß", "é"]


def random_texts(n, rng):
    out = []
    for _ in range(n):
        k = rng.randint(1, 14)
        out.append("".join(rng.choice(FRAGMENTS) for _ in range(k)))
    return out


def test_texts(n_random):
    docs = [json.loads(line)["text"] for line in DOCS.read_text(encoding="utf-8").splitlines() if line]
    # a deterministic spread over the held-out set (it is sorted by source), capped in size
    step = len(docs) // DOC_SAMPLE
    sample = [d for d in docs[::step] if len(d) <= 600][:DOC_SAMPLE]
    rand = random_texts(n_random, random.Random(SEED + 1))
    return [{"text": t, "kind": "hard"} for t in HARD_TEXTS] + [{"text": t, "kind": "doc"} for t in sample] + \
        [{"text": t, "kind": "random"} for t in rand]


# ---- tokenizers -----------------------------------------------------------------------------------
def train_spm(lines, options, tmp, name):
    inp = Path(tmp) / f"{name}.txt"
    inp.write_text("".join(line[:4000] + "\n" for line in lines), encoding="utf-8")
    sentencepiece.set_random_generator_seed(SEED)
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        input=str(inp), model_writer=model, vocab_size=SPM_VOCAB, input_sentence_size=0,
        shuffle_input_sentence=False, num_threads=1, minloglevel=2, **options)
    data = model.getvalue()
    # keep the model free of the temporary path (the trainer stores its input file name)
    from sentencepiece import sentencepiece_model_pb2 as pb
    m = pb.ModelProto()
    m.ParseFromString(data)
    m.trainer_spec.input[:] = [f"{name}.txt"]
    return m.SerializeToString()


def slow_llama(model_dir):
    from transformers import LlamaTokenizer
    return LlamaTokenizer(vocab_file=str(model_dir / "tokenizer.model"), legacy=True)


def convert_llama2_json(model_dir, tmp, normalized_specials=False):
    from transformers import LlamaTokenizerFast
    # add_prefix_space must be given: left as None, the 4.46 converter drops the Prepend normalizer
    # (the converter of mid-2023, which wrote Llama-2's file, always prepended).
    fast = LlamaTokenizerFast(vocab_file=str(model_dir / "tokenizer.model"), legacy=True, from_slow=True,
                              add_prefix_space=True)
    hf = Path(tmp) / "hf"
    fast.save_pretrained(str(hf))
    j = json.loads((hf / "tokenizer.json").read_text(encoding="utf-8"))
    for k, v in LLAMA2_PIPELINE.items():
        assert j[k] == v, f"LlamaConverter wrote {k} = {j[k]}, the published Llama-2 file has {v}"
    m = j["model"]
    for k, v in LLAMA2_MODEL_OPTIONS.items():
        assert m[k] == v, f"model.{k} = {m[k]} != {v}"
    # the published file's key set (it predates `ignore_merges`) and merges as "a b" strings
    m.pop("ignore_merges", None)
    assert not any(" " in a or " " in b for a, b in m["merges"])
    m["merges"] = [f"{a} {b}" for a, b in m["merges"]]
    j["model"] = {**LLAMA2_MODEL_OPTIONS, "vocab": m["vocab"], "merges": m["merges"]}
    assert [(a["id"], a["content"]) for a in j["added_tokens"]] == list(enumerate(LLAMA2_SPECIALS))
    j["added_tokens"] = [{"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": normalized_specials, "special": True} for i, c in enumerate(LLAMA2_SPECIALS)]
    return j


def write_llama2_json(out, name, normalized_specials, texts, tmp):
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    j = convert_llama2_json(out / "llama2_model", tmp, normalized_specials)
    (d / "tokenizer.json").write_text(json.dumps(j, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    slow = slow_llama(out / "llama2_model")
    recs, agree = [], Counter()
    for t in texts:
        r = fast_record(tok, t["text"], 1)
        agree["fast==slow"] += r["ids"] == slow(t["text"])["input_ids"]
        recs.append(r)
    write_jsonl(d / "expected.jsonl", recs)
    return {"vocab_size": tok.get_vocab_size(), **agree}


def train_neox(lines):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=NEOX_VOCAB, min_frequency=2, show_progress=False,
                             special_tokens=["<|endoftext|>", "<|padding|>"],
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, tr)
    j = json.loads(tok.to_str())
    m = j["model"]
    assert m["vocab"]["<|endoftext|>"] == 0 and m["vocab"]["<|padding|>"] == 1
    merges = [x if isinstance(x, str) else f"{x[0]} {x[1]}" for x in m["merges"]]
    n = len(m["vocab"])
    added = [{"id": i, "special": True, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False} for i, c in enumerate(["<|endoftext|>", "<|padding|>"])]
    added += [{"id": n + k, "special": False, "content": s, "single_word": False, "lstrip": False,
               "rstrip": False, "normalized": True} for k, s in enumerate(NEOX_SPACE_RUNS)]
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": {"type": "NFC"}, "pre_tokenizer": dict(NEOX_BYTELEVEL),
            "post_processor": dict(NEOX_BYTELEVEL), "decoder": dict(NEOX_BYTELEVEL),
            "model": {**NEOX_MODEL_OPTIONS, "vocab": m["vocab"], "merges": merges}}


# ---- expectations ---------------------------------------------------------------------------------
def fast_record(tok, text, lead):
    e = tok.encode(text)
    p = tok.encode(text, add_special_tokens=False)
    rec = {"ids": e.ids, "offsets": [list(o) for o in e.offsets],
           "decoded": tok.decode(e.ids, skip_special_tokens=True)}
    keep = tok.decode(e.ids, skip_special_tokens=False)
    if keep != rec["decoded"]:
        rec["decoded_keep_special"] = keep
    if p.ids != e.ids[lead:]:  # lead: how many tokens the shape's template prepends
        rec["ids_plain"] = p.ids
    return rec


def spm_record(slow, sp, text, agree):
    """The slow LlamaTokenizer's ids; offsets from sentencepiece's spans of the chunks it encodes."""
    ids = slow(text)["input_ids"]
    plain = slow(text, add_special_tokens=False)["input_ids"]
    specials = {t: slow.convert_tokens_to_ids(t) for t in LLAMA2_SPECIALS}
    # the slow tokenizer's split (PreTrainedTokenizer.tokenize: tokens_trie.split on its added tokens)
    chunks = slow.tokens_trie.split(text)
    got, offs, pos = [sp.bos_id()], [[0, 0]], 0
    for c in chunks:
        if c in specials:
            got.append(specials[c])
            offs.append([pos, pos + len(c)])
        elif c:
            proto = sp.encode_as_immutable_proto(c)
            for piece in proto.pieces:
                got.append(piece.id)
                offs.append([pos + piece.begin, pos + piece.end])
        pos += len(c)
    rec = {"ids": ids}
    if got == ids:
        rec["offsets"] = offs
        agree["offsets_composed"] += 1
    else:
        agree["offsets_not_composed"] += 1
    if plain != ids[1:]:
        rec["ids_plain"] = plain
    kept = [i for i in ids if not (sp.is_control(i) or sp.is_unknown(i))]
    rec["decoded"] = sp.decode(kept)
    spm_ids = [sp.bos_id()] + sp.encode(text)
    if spm_ids != ids:
        rec["spm_ids"] = spm_ids
        agree["spm_differs_from_slow"] += 1
    return rec


def transformers_neox_agreement(d, tok, texts):
    """How transformers' GPTNeoXTokenizerFast (what AutoTokenizer gives for MPT-7B and Pythia) compares
    with the file run by `tokenizers`: its update_post_processor() replaces the ByteLevel post-processor
    with TemplateProcessing("$A:0"), so the ids are the same but the offsets are not trimmed (" " ->
    (0, 1) instead of (1, 1)). Recorded for the README; fusellm follows the file."""
    from transformers import GPTNeoXTokenizerFast
    fast = GPTNeoXTokenizerFast(tokenizer_file=str(d / "tokenizer.json"))
    agree = Counter()
    for t in texts:
        a, b = fast(t["text"], return_offsets_mapping=True), tok.encode(t["text"])
        agree["transformers_ids_differ"] += a["input_ids"] != b.ids
        agree["transformers_offsets_differ"] += [list(o) for o in a["offset_mapping"]] != [list(o) for o in b.offsets]
    return {"transformers_post_processor": type(fast.backend_tokenizer.post_processor).__name__, **agree}


def write_jsonl(path, recs):
    with open(path, "w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")


def generate(out, n_random=N_RANDOM):
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    lines = training_lines(rng)
    texts = test_texts(n_random)
    write_jsonl(out / "texts.jsonl", texts)
    stats = {"training_lines": len(lines), "training_bytes": sum(len(x.encode()) + 1 for x in lines),
             "texts": len(texts), "shapes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, opts in (("llama2_model", LLAMA2_SPM), ("openllama_model", OPENLLAMA_SPM)):
            print(f"training {name} ...", file=sys.stderr)
            d = out / name
            d.mkdir(parents=True, exist_ok=True)
            (d / "tokenizer.model").write_bytes(train_spm(lines, opts, tmp, name))
            slow = slow_llama(d)
            sp = sentencepiece.SentencePieceProcessor(model_file=str(d / "tokenizer.model"))
            agree = Counter()
            write_jsonl(d / "expected.jsonl", [spm_record(slow, sp, t["text"], agree) for t in texts])
            stats["shapes"][name] = {"pieces": sp.get_piece_size(), **dict(sorted(agree.items()))}

        for name, normalized in (("llama2_json", False), ("llama2_json_normalized_specials", True)):
            print(f"converting {name} ...", file=sys.stderr)
            stats["shapes"][name] = write_llama2_json(out, name, normalized, texts, tmp)

    print("training neox_json ...", file=sys.stderr)
    d = out / "neox_json"
    d.mkdir(parents=True, exist_ok=True)
    (d / "tokenizer.json").write_text(json.dumps(train_neox(lines), ensure_ascii=False, indent=2) + "\n",
                                      encoding="utf-8")
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    write_jsonl(d / "expected.jsonl", [fast_record(tok, t["text"], 0) for t in texts])
    stats["shapes"]["neox_json"] = {"vocab_size": tok.get_vocab_size(), **transformers_neox_agreement(d, tok, texts)}
    (out / "stats.json").write_text(json.dumps(stats, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return stats


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(REPO / "tests/fixtures/tokenizer_shapes"))
    ap.add_argument("--check", action="store_true", help="regenerate into a temp dir and compare with --out")
    ap.add_argument("--random", type=int, default=N_RANDOM,
                    help="how many random texts (a larger set into another --out is a stress test: "
                         "FUSELLM_TOKSHAPES_FIXTURES=dir test_tokenizer_shapes)")
    a = ap.parse_args()
    if a.check:
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp), a.random)
            same = []
            for p in sorted(Path(tmp).rglob("*")):
                if p.is_file():
                    q = Path(a.out) / p.relative_to(tmp)
                    ok = q.exists() and filecmp.cmp(p, q, shallow=False)
                    same.append(ok)
                    print(("same   " if ok else "DIFFER ") + str(p.relative_to(tmp)))
            sys.exit(0 if all(same) else 1)
    print(json.dumps(generate(Path(a.out), a.random), indent=1))


if __name__ == "__main__":
    main()
