#!/usr/bin/env python3
"""Trains the shipped demo checkpoints (examples/demo/*): tiny causal LMs of two families with two
different tokenizers, trained briefly with PyTorch + transformers on real local English text
(licenses and English man pages of this machine), then saved by save_pretrained as bf16
safetensors with their tokenizer.json. `fusellm demo` scores examples/demo/sample.txt with them;
the fusion issues use them as a source/target pair.

    python3 tests/reference/gen_demo_models.py [--minutes 3] [--score-only]

The shipped checkpoints were trained with --minutes 5 on a shared 2-core machine; training is
bounded by time, so a rerun gives other (similar) weights. --score-only keeps the weights and
remakes sample.txt and reference_score.json.

Pinned: see tests/reference/requirements.txt. Deterministic up to PyTorch's CPU kernels
(seeded; single-threaded training).
"""
import argparse, glob, gzip, json, os, random, re, shutil, subprocess, sys, time

import torch
import transformers
import tokenizers

assert torch.__version__.startswith("2.5.1"), torch.__version__
assert transformers.__version__ == "4.46.3", transformers.__version__
assert tokenizers.__version__ == "0.20.3", tokenizers.__version__

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "examples", "demo")


def man_text(path):
    raw = gzip.open(path, "rb").read().decode("utf-8", "replace")
    lines = []
    for ln in raw.splitlines():
        if ln.startswith(".\\\"") or ln.startswith("'\\\""):
            continue
        ln = re.sub(r"^\.[A-Za-z]+\s?", "", ln)
        ln = re.sub(r"\\f[BIRP]|\\-|\\\(..|\\&|\\e", lambda m: "-" if m.group(0) == "\\-" else "", ln)
        if ln.strip():
            lines.append(ln)
    return "\n".join(lines)


def corpus():
    docs = []
    for p in sorted(glob.glob("/usr/share/common-licenses/*")):
        if os.path.isfile(p):
            docs.append(open(p, encoding="utf-8", errors="replace").read())
    for p in sorted(glob.glob("/usr/share/man/man1/*.gz"))[:1500]:
        try:
            docs.append(man_text(p))
        except Exception:
            pass
    return [d for d in docs if len(d) > 200]


def train(model, ids, minutes, lr=3e-3, seq=128, batch=16, seed=0):
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    data = torch.tensor(ids, dtype=torch.long)
    t0, step = time.time(), 0
    model.train()
    while time.time() - t0 < minutes * 60:
        starts = torch.randint(0, len(data) - seq - 1, (batch,))
        x = torch.stack([data[s:s + seq] for s in starts])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 50 == 0:
            print(f"  step {step} loss {loss.item():.3f}", flush=True)
    model.eval()
    return model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--score-only", action="store_true",
                    help="keep the trained checkpoints; rewrite sample.txt and reference_score.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    random.seed(0)
    docs = corpus()
    random.shuffle(docs)
    # The sample is a section-8 man page: training reads only licenses and section-1 pages, so
    # it is held out; 1,500 bytes fit one 512-token window of either tokenizer.
    page = man_text("/usr/share/man/man8/apt-get.8.gz")
    sample = page[page.index('"DESCRIPTION"') + len('"DESCRIPTION"') + 1:][:1500]
    train_text = "\n\n".join(docs[1:])
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "sample.txt"), "w", encoding="utf-8") as f:
        f.write(sample)

    specs = [
        # (dir, tokenizer fixture, config)
        ("llama", "sp_bpe", transformers.LlamaConfig(
            hidden_size=128, intermediate_size=352, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=512, rope_theta=10000.0,
            tie_word_embeddings=False)),
        ("neox", "bytelevel", transformers.GPTNeoXConfig(
            hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
            max_position_embeddings=512, rotary_pct=0.25, use_parallel_residual=True,
            tie_word_embeddings=False)),
    ]
    for name, tokname, cfg in specs:
        tokdir = os.path.join(ROOT, "tests", "fixtures", "tokenizers", tokname)
        tok = transformers.PreTrainedTokenizerFast(tokenizer_file=os.path.join(tokdir, "tokenizer.json"))
        cfg.vocab_size = len(tok)
        ids = [] if args.score_only else tok(train_text[:3_000_000])["input_ids"]
        print(f"{name}: {len(ids)} training tokens, vocab {cfg.vocab_size}", flush=True)
        d = os.path.join(OUT, name)
        if not args.score_only:
            torch.manual_seed(0)
            model = transformers.AutoModelForCausalLM.from_config(cfg)
            model = train(model, ids, args.minutes)
            shutil.rmtree(d, ignore_errors=True)
            model.to(torch.bfloat16).save_pretrained(d, safe_serialization=True)
            for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
                if os.path.exists(os.path.join(tokdir, f)):
                    shutil.copy(os.path.join(tokdir, f), d)
        tok = transformers.PreTrainedTokenizerFast(tokenizer_file=os.path.join(d, "tokenizer.json"))
        # The reference numbers the demo prints, from transformers itself (fp32 upcast of the
        # bf16 weights), so a reader can compare fusellm's output against them.
        m32 = transformers.AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32)
        enc = tok(sample, return_tensors="pt", return_token_type_ids=False)
        with torch.no_grad():
            out = m32(**enc, labels=enc["input_ids"])
        n = enc["input_ids"].shape[1] - 1
        nll = out.loss.item() * n
        ref = {"tokens": int(enc["input_ids"].shape[1]), "perplexity": float(torch.exp(out.loss)),
               "bits_per_byte": nll / 0.6931471805599453 / len(sample.encode("utf-8"))}
        json.dump(ref, open(os.path.join(d, "reference_score.json"), "w"), indent=1)
        print(f"{name}: {ref}", flush=True)


if __name__ == "__main__":
    main()
