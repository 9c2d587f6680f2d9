#!/usr/bin/env python3
"""A training checkpoint written by fusellm before the checkpoint store was reshaped (issue 10):
the fixture of tests/unit/train/test_old_checkpoint.cpp and tests/integration/test_old_checkpoint.cpp,
which check that such checkpoints still load, and resume bit for bit, with the current code.

    python3 tests/reference/gen_ckpt_v1.py --fusellm <build of commit 8ba198a>/fusellm

1. Writes tests/fixtures/ckpt_v1/target/: a tiny Llama (hidden 8, one layer, fp32, seeded) with a
   byte-level BPE tokenizer of 280 tokens trained on corpus.jsonl, and corpus.jsonl itself (the
   first DOCS documents of examples/demo/corpus.jsonl, each cut to CHARS characters).
2. Runs the given fusellm binary on tests/fixtures/ckpt_v1/job.toml (CLM only, 6 steps, a
   checkpoint every 3 steps, all kept): tests/fixtures/ckpt_v1/checkpoint/{step-3,step-6,latest}.
   The binary must be built from a commit before the reshape (the committed fixture: 8ba198a,
   "layout: ..."), else the fixture proves nothing.

Deterministic: the model is seeded, the tokenizer trainer and fusellm are deterministic; the
stored job text holds the absolute paths of the checkout that generated it.
"""
import argparse, json, os, shutil, subprocess

import torch
import transformers
import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

assert torch.__version__.startswith("2.5.1"), torch.__version__
assert transformers.__version__ == "4.46.3", transformers.__version__
assert tokenizers.__version__ == "0.20.3", tokenizers.__version__

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "ckpt_v1")
DOCS, CHARS, VOCAB = 6, 240, 280


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fusellm", required=True, help="fusellm binary built before the reshape")
    args = ap.parse_args()
    torch.set_num_threads(1)

    docs = []
    with open(os.path.join(ROOT, "examples", "demo", "corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            docs.append(json.loads(line)["text"][:CHARS])
            if len(docs) == DOCS:
                break
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"text": d}) + "\n")

    target = os.path.join(OUT, "target")
    shutil.rmtree(target, ignore_errors=True)
    os.makedirs(target)
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(docs, trainers.BpeTrainer(
        vocab_size=VOCAB, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<|endoftext|>"],
        show_progress=False))
    tok.save(os.path.join(target, "tokenizer.json"))

    cfg = transformers.LlamaConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=8, intermediate_size=16, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64, rope_theta=10000.0,
        tie_word_embeddings=False, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(cfg).save_pretrained(target, safe_serialization=True)

    ck = os.path.join(OUT, "checkpoint")
    shutil.rmtree(ck, ignore_errors=True)
    shutil.rmtree(os.path.join(ROOT, "runs", "ckpt_v1"), ignore_errors=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([args.fusellm, "train", "--job", os.path.join(OUT, "job.toml"), "-q", "--no-export"], check=True,
                   env=env)
    os.remove(os.path.join(ck, "fusellm.lock"))  # train's lock on the directory, not part of a checkpoint
    print("wrote", ck, sorted(os.listdir(ck)))


if __name__ == "__main__":
    main()
