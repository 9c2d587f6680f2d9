"""A distribution cache written by fusellm before issue 10 (tests/fixtures/cache_v1/).

Issue 10 changed the in-memory type of the rows (data/teacher_rows.hpp) but not the cache file
(fusellm.distribution_cache.v1). This keeps one cache the old code wrote, and the values in it read
independently of fusellm (h5dump's raw little-endian dumps), so test_distribution_cache can show
that the new reader reads an old cache to the bit.

  python tests/reference/gen_cache_v1.py --fusellm /path/to/old/build/fusellm

--fusellm: a binary built from commit 8ba198a (the layout commit, before the rows type). Runs
`fusellm teach` of the demo's neox source into the llama target tokenization, k = 4, segments of
at most 48 tokens, the first 3 segments (an unfinished cache: the case `train --limit` reads).
"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "cache_v1"

JOB = """[job]
name = "cache_v1"
output_dir = "{tmp}/run"

[[source]]
name = "llama"
path = "{root}/examples/demo/llama"

[[source]]
name = "neox"
path = "{root}/examples/demo/neox"

[target]
init_from = "llama"

[corpus]
path = "{root}/examples/demo/corpus.jsonl"
max_len = 64
margin = 16

[distill]
top_k = 4

[cache]
dir = "{tmp}/cache"
"""

# dataset -> numpy dtype of h5dump's little-endian binary dump
DATASETS = {
    "ids": "<i4", "probs": "<u2", "target_ids": "<i4", "status": "u1", "row_offsets": "<i8",
    "segment_ids": "<i8", "doc": "<i8", "piece": "<i4", "ce": "<f8", "ce_tokens": "<i8", "bytes": "<i8",
}


def dump(h5, name, tmp):
    out = os.path.join(tmp, name + ".bin")
    subprocess.run(["h5dump", "-d", "/" + name, "-b", "LE", "-o", out, h5], check=True, stdout=subprocess.DEVNULL)
    return np.fromfile(out, dtype=DATASETS[name])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fusellm", required=True)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        job = os.path.join(tmp, "job.toml")
        pathlib.Path(job).write_text(JOB.format(tmp=tmp, root=ROOT))
        env = dict(os.environ, OMP_NUM_THREADS="1")
        subprocess.run([args.fusellm, "teach", "--job", job, "--source", "neox", "--limit", "3", "-q"], check=True,
                       env=env)
        h5 = os.path.join(tmp, "cache", "neox.h5")
        v = {n: dump(h5, n, tmp) for n in DATASETS}
        k = 4
        segs = []
        for i in range(len(v["segment_ids"])):
            b, e = int(v["row_offsets"][i]), int(v["row_offsets"][i + 1])
            segs.append({
                "segment": int(v["segment_ids"][i]), "doc": int(v["doc"][i]), "piece": int(v["piece"][i]),
                "ce": float(v["ce"][i]), "ce_tokens": int(v["ce_tokens"][i]), "bytes": int(v["bytes"][i]),
                "target_ids": v["target_ids"][b:e].tolist(), "status": v["status"][b:e].tolist(),
                "ids": v["ids"][b * k:e * k].tolist(), "probs_fp16_bits": v["probs"][b * k:e * k].tolist(),
            })
        OUT.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(h5, OUT / "neox.h5")
        shutil.copyfile(h5 + ".xxh64", OUT / "neox.h5.xxh64")
        (OUT / "expected.json").write_text(json.dumps({"k": k, "complete": False, "segments": segs}) + "\n")


if __name__ == "__main__":
    main()
