#!/usr/bin/env python3
"""Fixtures for the fusion kernels (kernels/kokkos/{topk_softmax,sequence_ce,fusion,fused_classifier}.hpp).

Writes tests/fixtures/fused_loss/: meta.json (shapes, dtypes, scalars) and one raw little-endian
array per file (<case>.<name>.bin). Read by tests/backend/test_fusion_common.hpp.

  fused_loss  PyTorch autograd of   lambda * F.cross_entropy(z, gold, ignore_index=-100)
                                  + (1 - lambda) * soft-label CE(z, P)  (masked like the CLM term)
              with random logits, gold ids (some ignored), sparse targets (some rows summing < 1,
              empty slots, an empty row); loss terms and dL/dz. Computed in float64.
  topk        torch.topk + softmax(values / temperature); with keep_tail the full-softmax
              probabilities of the kept ids and the tail 1 - sum.
  sequence_ce F.cross_entropy(reduction="none") per position, per-segment sums and counts.
  fusion      MinCE / AvgCE / per-position MinCE by a plain numpy transcription of DESIGN.md's
              definitions (dense [T, V] results).

Pinned stack: tests/reference/requirements.txt (torch 2.5.1, numpy 1.26.4). Run from the repo root:
    python3 tests/reference/gen_fused_loss.py
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "fused_loss")
IGNORE = -100

meta = {"generator": "tests/reference/gen_fused_loss.py", "torch": torch.__version__,
        "numpy": np.__version__, "cases": {}}


def save(case, name, arr):
    arr = np.ascontiguousarray(arr)
    dt = {np.dtype("float32"): "float32", np.dtype("float64"): "float64",
          np.dtype("int32"): "int32", np.dtype("int64"): "int64"}[arr.dtype]
    fn = f"{case}.{name}.bin"
    arr.astype(arr.dtype.newbyteorder("<")).tofile(os.path.join(OUT, fn))
    meta["cases"].setdefault(case, {"arrays": {}, "scalars": {}})["arrays"][name] = {
        "file": fn, "dtype": dt, "shape": list(arr.shape)}


def scalar(case, name, v):
    meta["cases"].setdefault(case, {"arrays": {}, "scalars": {}})["scalars"][name] = v


def sparse_targets(rng, T, V, k, mass_lo=1.0, empty_rows=(), holes=0.0):
    """Rows of k distinct ids with probabilities summing to a random mass in [mass_lo, 1], sorted
    descending (ties by id), some slots empty (-1)."""
    ids = np.full((T, k), -1, np.int32)
    pr = np.zeros((T, k), np.float32)
    for i in range(T):
        if i in empty_rows:
            continue
        n = k if holes == 0.0 else max(1, int(rng.integers(1, k + 1)))
        sel = rng.choice(V, size=n, replace=False)
        p = rng.random(n) ** 2 + 1e-3
        p = p / p.sum() * (1.0 if mass_lo >= 1.0 else rng.uniform(mass_lo, 1.0))
        order = sorted(range(n), key=lambda a: (-np.float32(p[a]), sel[a]))
        ids[i, :n] = sel[order]
        pr[i, :n] = p[order].astype(np.float32)
    return ids, pr


def fused_loss_case(name, rng, T, V, k, lam, reduction, scale=3.0, ignore_frac=0.2, mass_lo=0.5,
                    empty_rows=(), holes=0.3):
    z = (rng.standard_normal((T, V)) * scale).astype(np.float32)
    gold = rng.integers(0, V, T).astype(np.int32)
    gold[rng.random(T) < ignore_frac] = IGNORE
    ids, pr = sparse_targets(rng, T, V, k, mass_lo, empty_rows, holes)
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    gt = torch.tensor(gold, dtype=torch.int64)
    dense = torch.zeros(T, V, dtype=torch.float64)
    for i in range(T):
        for j in range(k):
            if ids[i, j] >= 0:
                dense[i, ids[i, j]] += float(pr[i, j])
    mask = (gt != IGNORE).to(torch.float64)
    n = int(mask.sum())
    clm = F.cross_entropy(zt, gt, ignore_index=IGNORE, reduction="sum")
    soft = (F.cross_entropy(zt, dense, reduction="none") * mask).sum()
    if reduction == "mean":
        clm, soft = clm / n, soft / n
    loss = lam * clm + (1 - lam) * soft
    loss.backward()
    for a, v in [("logits", z), ("gold", gold), ("target_ids", ids), ("target_probs", pr),
                 ("grad", zt.grad.numpy().astype(np.float32))]:
        save(name, a, v)
    scalar(name, "kind", "fused_loss")
    scalar(name, "lambda", lam)
    scalar(name, "reduction", reduction)
    scalar(name, "loss", float(loss))
    scalar(name, "clm", float(clm))
    scalar(name, "fusion", float(soft))
    scalar(name, "tokens", n)


def topk_case(name, rng, T, V, k, temp, keep_tail, scale=4.0):
    z = (rng.standard_normal((T, V)) * scale).astype(np.float32)
    zt = torch.tensor(z)
    vals, idx = torch.topk(zt, k, dim=-1)
    if keep_tail:
        full = torch.softmax(zt.double() / temp, dim=-1)
        probs = torch.gather(full, 1, idx)
        tail = (1.0 - probs.sum(-1)).clamp_min(0.0)
        save(name, "tail", tail.numpy().astype(np.float32))
    else:
        probs = torch.softmax(vals.double() / temp, dim=-1)
    save(name, "logits", z)
    save(name, "ids", idx.numpy().astype(np.int32))
    save(name, "probs", probs.numpy().astype(np.float32))
    scalar(name, "kind", "topk")
    scalar(name, "k", k)
    scalar(name, "temperature", temp)
    scalar(name, "keep_tail", keep_tail)


def sequence_ce_case(name, rng, N, V, offsets, scale=3.0):
    z = (rng.standard_normal((N, V)) * scale).astype(np.float32)
    gold = rng.integers(0, V, N).astype(np.int32)
    gold[rng.random(N) < 0.15] = IGNORE
    ce = F.cross_entropy(torch.tensor(z, dtype=torch.float64), torch.tensor(gold, dtype=torch.int64),
                         ignore_index=IGNORE, reduction="none").numpy()
    off = np.array(offsets, np.int64)
    sums = np.array([ce[off[d]:off[d + 1]].sum() for d in range(len(off) - 1)], np.float64)
    counts = np.array([(gold[off[d]:off[d + 1]] >= 0).sum() for d in range(len(off) - 1)], np.int64)
    nbytes = rng.integers(1, 5 * V, len(off) - 1).astype(np.int64)
    # Token-weighted mean over all segments (one packed sequence) and bits per byte.
    scalar(name, "packed_ce", float(sums.sum() / counts.sum()))
    scalar(name, "packed_bits_per_byte", float(sums.sum() / nbytes.sum() / np.log(2.0)))
    for a, v in [("logits", z), ("gold", gold), ("offsets", off), ("ce_position", ce.astype(np.float32)),
                 ("ce_sum", sums), ("count", counts), ("bytes", nbytes)]:
        save(name, a, v)
    scalar(name, "kind", "sequence_ce")


# ---- fusion: DESIGN.md section 1, in plain numpy ---------------------------------------------------
def densify(ids, pr, V):
    d = np.zeros((ids.shape[0], V), np.float64)
    for i in range(ids.shape[0]):
        for j in range(ids.shape[1]):
            if ids[i, j] >= 0:
                d[i, ids[i, j]] += pr[i, j]
    return d


def fusion_case(name, rng, T, V, ks, offsets, ce, pos_ce):
    K = len(ks)
    off = np.array(offsets, np.int64)
    B = len(off) - 1
    srcs = []
    for j, k in enumerate(ks):
        if k == 1:  # a source that fell back to one-hot everywhere
            ids = rng.integers(0, V, (T, 1)).astype(np.int32)
            pr = np.ones((T, 1), np.float32)
        else:
            ids, pr = sparse_targets(rng, T, V, k, 1.0, holes=0.3)
        srcs.append((ids, pr))
        save(name, f"ids{j}", ids)
        save(name, f"probs{j}", pr)
    ce = np.array(ce, np.float32).reshape(K, B)
    pos_ce = np.array(pos_ce, np.float32).reshape(K, T)
    dense = [densify(i, p, V) for i, p in srcs]
    reward = np.exp(-ce.astype(np.float64))                  # r_j = exp(-CE_j)
    choice = np.argmax(reward, axis=0).astype(np.int32)     # largest reward, first on ties
    w = np.exp(reward - reward.max(0)) / np.exp(reward - reward.max(0)).sum(0)  # softmax_j(r_j)
    minc = np.zeros((T, V))
    avgc = np.zeros((T, V))
    for b in range(B):
        for i in range(off[b], off[b + 1]):
            minc[i] = dense[choice[b]][i]
            avgc[i] = sum(w[j, b] * dense[j][i] for j in range(K))
    pchoice = np.argmin(pos_ce, axis=0).astype(np.int32)    # lowest CE per position, first on ties
    posc = np.stack([dense[pchoice[i]][i] for i in range(T)])
    for a, v in [("offsets", off), ("scores", ce), ("position_ce", pos_ce),
                 ("minCE_choice", choice), ("minCE_dense", minc.astype(np.float32)),
                 ("avgCE_weights", w.T.astype(np.float32)), ("avgCE_dense", avgc.astype(np.float32)),
                 ("position_choice", pchoice), ("position_dense", posc.astype(np.float32))]:
        save(name, a, v)
    scalar(name, "kind", "fusion")
    scalar(name, "K", K)
    scalar(name, "V", V)


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith(".bin"):
            os.remove(os.path.join(OUT, f))
    rng = np.random.default_rng(20240131)
    fused_loss_case("loss_mean", rng, T=16, V=53, k=5, lam=0.9, reduction="mean", empty_rows=(3,))
    fused_loss_case("loss_sum", rng, T=9, V=130, k=12, lam=0.7, reduction="sum", scale=6.0)
    fused_loss_case("loss_kV", rng, T=3, V=7, k=7, lam=0.0, reduction="mean", ignore_frac=0.0,
                    mass_lo=1.0, holes=0.0)
    fused_loss_case("loss_clm_only", rng, T=12, V=33, k=4, lam=1.0, reduction="mean")
    fused_loss_case("loss_wide", rng, T=5, V=3000, k=10, lam=0.9, reduction="mean", scale=8.0)
    topk_case("topk_small", rng, T=6, V=40, k=5, temp=1.0, keep_tail=False)
    topk_case("topk_temp", rng, T=7, V=1000, k=10, temp=0.7, keep_tail=False)
    topk_case("topk_tail", rng, T=5, V=777, k=10, temp=1.3, keep_tail=True)
    topk_case("topk_k40", rng, T=3, V=300, k=40, temp=1.0, keep_tail=False)
    topk_case("topk_kV", rng, T=2, V=12, k=12, temp=1.0, keep_tail=True)
    sequence_ce_case("ce_packed", rng, N=30, V=61, offsets=[0, 4, 4, 17, 30])
    sequence_ce_case("ce_wide", rng, N=6, V=2500, offsets=[0, 6])
    T = 20
    fusion_case("fusion3", rng, T=T, V=40, ks=[4, 6, 1], offsets=[0, 7, 7, 20],
                ce=[[2.0, 1.5, 0.9], [2.5, 9.0, 0.3], [2.0, 3.0, 0.9]],
                pos_ce=np.round(rng.uniform(0, 3, 3 * T), 1))
    with open(os.path.join(OUT, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {len(meta['cases'])} cases, {total} bytes to {os.path.relpath(OUT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
