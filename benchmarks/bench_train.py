#!/usr/bin/env python3
"""PyTorch side of the training-step benchmark (benchmarks/run_train_bench.sh).

  bench_train.py DIR [--seq 512] [--threads 1] [--warmup 2] [--iters 10] [--fusion]

One full optimizer step per iteration on one sequence (micro batch 1), fp32 on the CPU, as the HF
Trainer does it: optimizer.zero_grad() (set_to_none, torch's default), forward of
LlamaForCausalLM (transformers' default attention implementation, printed: sdpa), the loss,
backward, torch.nn.utils.clip_grad_norm_(1.0), torch.optim.AdamW (lr 1e-5, betas (0.9, 0.95),
eps 1e-8, weight decay 0.1 except biases and norm weights; foreach left at its default, which
on CPU tensors is the single-tensor loop).

Loss: CLM by default, through labels= (LlamaForCausalLM's shifted cross-entropy, what the
Trainer uses). --fusion: 0.9 CLM + 0.1 soft-label cross-entropy against sparse top-10 targets,
computed explicitly from log_softmax. Same ids and targets as bench_train.cpp.

Memory: peak RSS (resource.getrusage ru_maxrss: the whole process, including the Python
interpreter, torch's libraries and the safetensors load), the RSS before the model is loaded, and
the same analytic sum as bench_train.cpp (4 bytes x (params + grads + 2 moments) + the
activations fusellm's backward keeps); torch's autograd keeps more than that (it saves the
RMSNorm outputs, the SiLU output, the softmax statistics...), which this does not count.
"""
import argparse
import resource
import statistics
import time

import torch


def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return -1.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--fusion", action="store_true")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    from transformers import AutoModelForCausalLM

    baseline = rss_mib()
    model = AutoModelForCausalLM.from_pretrained(a.dir, torch_dtype=torch.float32)
    model.train()
    after_load = rss_mib()
    cfg = model.config
    T, V = a.seq, cfg.vocab_size
    ids = torch.tensor([[(i * 7919 + 13) % V for i in range(T)]], dtype=torch.long)
    if a.fusion:
        K = 10
        tid = torch.tensor([[(t * 131 + j * 977 + 7) % V for j in range(K)] for t in range(T)], dtype=torch.long)
        tp = torch.tensor([[(10 - j) / 55.0 for j in range(K)] for _ in range(T)], dtype=torch.float32)

    decay = [p for n, p in model.named_parameters() if "norm" not in n and "bias" not in n]
    no_decay = [p for n, p in model.named_parameters() if "norm" in n or "bias" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-5, betas=(0.9, 0.95), eps=1e-8)

    times, cpu_times = [], []
    for i in range(a.warmup + a.iters):
        c0 = time.process_time()
        t0 = time.perf_counter()
        opt.zero_grad()
        if a.fusion:
            logits = model(ids).logits[0]
            logp = torch.log_softmax(logits, dim=-1)[:-1]
            clm = torch.nn.functional.nll_loss(logp, ids[0, 1:])
            fus = -(tp[:-1] * logp.gather(-1, tid[:-1])).sum(-1).mean()
            loss = 0.9 * clm + 0.1 * fus
        else:
            loss = model(ids, labels=ids).loss
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        dt = time.perf_counter() - t0
        dc = time.process_time() - c0
        if i >= a.warmup:
            times.append(dt)
            cpu_times.append(dc)

    med, cpu = statistics.median(times), statistics.median(cpu_times)
    P = sum(p.numel() for p in model.parameters())
    Hd, I, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    H, KV = cfg.num_attention_heads, cfg.num_key_value_heads
    D = Hd // H
    per_layer = 2 * T * Hd + T * (H + 2 * KV) * D + T * H * D + T * 2 * I
    acts = L * per_layer + T * Hd + T * V
    state_mib, acts_mib = 16.0 * P / 2**20, 4.0 * acts / 2**20
    s = state_mib + acts_mib
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    mode = "fusion(lambda=0.9,k=10)" if a.fusion else "clm(lambda=1)"
    print(f"pytorch threads={a.threads} seq={T} {mode} median {med * 1e3:.1f} ms  {T / med:.1f} tokens/s  "
          f"(process cpu {cpu * 1e3:.1f} ms/step; {P / 1e6:.1f}M parameters; loss {loss.item():.4f} "
          f"grad_norm {gnorm.item():.3f}; attn={cfg._attn_implementation}, torch {torch.__version__})")
    print(f"pytorch memory MiB: peak RSS {peak:.1f}  sum {s:.1f} (params+grads+2 moments {state_mib:.1f}, "
          f"activations {acts_mib:.1f})  peak/sum = {peak / s:.2f}x  (baseline RSS before the model {baseline:.1f}; "
          f"after load RSS {after_load:.1f}; (peak - baseline)/sum = {(peak - baseline) / s:.2f}x)")


if __name__ == "__main__":
    main()
