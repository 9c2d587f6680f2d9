#!/usr/bin/env python3
"""PyTorch side of the forward-pass benchmark (benchmarks/run_forward_bench.sh).

  bench_forward.py create DIR          writes a random ~40M-parameter Llama-style checkpoint
  bench_forward.py run DIR [options]   fp32 forward tokens/s of transformers on that checkpoint

`run` uses transformers' default attention (sdpa), torch.inference_mode, the thread count given
(torch.set_num_threads), a few warmup passes, and reports the median of N timed passes, on the
same token ids as bench_forward.cpp (ids[i] = (i * 7919 + 13) % vocab); it also prints the process
CPU time per pass, which a shared machine's other load does not inflate.
"""
import argparse
import statistics
import time

import torch


def create(path):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=16384, hidden_size=512, intermediate_size=1408, num_hidden_layers=8,
                      num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=2048,
                      rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(path, safe_serialization=True)
    print(f"{path}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")


def run(path, seq, threads, warmup, iters):
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
    model.eval()
    vocab = model.config.vocab_size
    ids = torch.tensor([[(i * 7919 + 13) % vocab for i in range(seq)]], dtype=torch.long)
    times, cpu_times = [], []
    with torch.inference_mode():
        for i in range(warmup + iters):
            c0 = time.process_time()
            t0 = time.perf_counter()
            logits = model(ids).logits
            dt = time.perf_counter() - t0
            dc = time.process_time() - c0
            if i >= warmup:
                times.append(dt)
                cpu_times.append(dc)
    assert logits.shape == (1, seq, vocab)
    med, cpu = statistics.median(times), statistics.median(cpu_times)
    print(f"pytorch threads={threads} seq={seq} median {med * 1e3:.1f} ms  {seq / med:.1f} tokens/s  "
          f"(process cpu {cpu * 1e3:.1f} ms/pass; attn={model.config._attn_implementation}, torch {torch.__version__})")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create")
    c.add_argument("dir")
    r = sub.add_parser("run")
    r.add_argument("dir")
    r.add_argument("--seq", type=int, default=512)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--warmup", type=int, default=2)
    r.add_argument("--iters", type=int, default=10)
    a = ap.parse_args()
    if a.cmd == "create":
        create(a.dir)
    else:
        run(a.dir, a.seq, a.threads, a.warmup, a.iters)


if __name__ == "__main__":
    main()
