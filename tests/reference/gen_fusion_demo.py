#!/usr/bin/env python3
"""The model folders of the fusion demo (scripts/demo.sh, README "The demo"): a config.json and a
tokenizer per model, no weights (the demo initializes and trains them: `fusellm init`,
`fusellm train`). Writes examples/fusion_demo/models/<name>/{config.json, tokenizer.json,
tokenizer_config.json}.

Tokenizers, trained on the demo corpus's snapshot (examples/fusion_demo/corpus.tar.gz, made by
scripts/demo/corpus.pl --snapshot; the source and fusion splits of all three domains), with the
pipelines of the paper's source models (the same functions as tests/reference/gen_tokenizer_shapes.py,
whose fixtures check fusellm against `tokenizers`/`sentencepiece` on those pipelines):
  llama   Llama-2's tokenizer.json: sentencepiece BPE (byte fallback, split digits, dummy prefix),
          converted by transformers' LlamaConverter; 2048 pieces. The target and the Llama source.
  neox    GPT-NeoX-20B's tokenizer.json shape (NFC, byte-level BPE); 3072 tokens. Pythia's.
  mpt     the same shape (MPT-7B ships GPT-NeoX-20B's tokenizer) with its own 4096-token
          vocabulary, trained on the text in another order: a third, different tokenizer.
Configs: the transformers config classes at tiny sizes (LlamaConfig, GPTNeoXConfig with Pythia's
rotary_pct 0.25 and parallel residual, MptConfig with ALiBi and no biases).

Run from the repository root:  python3 tests/reference/gen_fusion_demo.py
"""
import json
import os
import random
import sys
import tarfile
import tempfile
from pathlib import Path

import transformers
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_tokenizer_shapes as shapes  # noqa: E402  (asserts the pinned versions)

assert transformers.__version__ == "4.46.3", transformers.__version__
REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "examples/fusion_demo/models"
CTX = 256


def corpus_lines():
    """The snapshot's documents as lines, in name order (deterministic)."""
    lines = []
    with tarfile.open(REPO / "examples/fusion_demo/corpus.tar.gz") as t:
        for m in sorted(t.getmembers(), key=lambda m: m.name):
            if m.isfile():
                text = t.extractfile(m).read().decode("utf-8")
                lines += [ln for ln in text.split("\n") if ln.strip()]
    return lines


def write(name, tok_json, config, tokenizer_config):
    d = OUT / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "tokenizer.json").write_text(json.dumps(tok_json, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    vocab = Tokenizer.from_file(str(d / "tokenizer.json")).get_vocab_size()
    config.vocab_size = vocab
    config.save_pretrained(str(d))
    (d / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=1) + "\n")
    print(f"{name}: vocab {vocab}")


def llama_tokenizer(lines):
    shapes.SPM_VOCAB = 2048
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "spm"
        d.mkdir()
        (d / "tokenizer.model").write_bytes(shapes.train_spm(lines, shapes.LLAMA2_SPM, tmp, "demo"))
        return shapes.convert_llama2_json(d, tmp)


def neox_tokenizer(lines, vocab):
    shapes.NEOX_VOCAB = vocab
    return shapes.train_neox(lines)


def main():
    lines = corpus_lines()
    specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True,
                "tokenizer_class": "LlamaTokenizerFast", "legacy": True}
    write("llama", llama_tokenizer(lines),
          transformers.LlamaConfig(hidden_size=128, intermediate_size=352, num_hidden_layers=4,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=CTX,
                                   rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=1,
                                   eos_token_id=2),
          specials)
    neox = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
            "tokenizer_class": "GPTNeoXTokenizerFast"}
    write("neox", neox_tokenizer(lines, 3072),
          transformers.GPTNeoXConfig(hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                                     num_attention_heads=4, max_position_embeddings=CTX, rotary_pct=0.25,
                                     use_parallel_residual=True, tie_word_embeddings=False, bos_token_id=0,
                                     eos_token_id=0),
          neox)
    shuffled = list(lines)
    random.Random(7).shuffle(shuffled)
    write("mpt", neox_tokenizer(shuffled, 4096),
          transformers.MptConfig(d_model=128, n_heads=4, n_layers=4, expansion_ratio=4, max_seq_len=CTX,
                                 no_bias=True, attn_config={"alibi": True, "alibi_bias_max": 8}, bos_token_id=0,
                                 eos_token_id=0),
          neox)


if __name__ == "__main__":
    main()
