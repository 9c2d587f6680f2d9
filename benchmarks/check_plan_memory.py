#!/usr/bin/env python3
"""`fusellm plan`'s memory against the GPU memory a run takes (issue 15 item 5: "checked against
the measured peak where a GPU is lent"), on the tiny job run in one process on the GPU.

One process holds every rank's role there (the student and each teacher), so the comparison is
the sum of the plan's role totals against the process's peak device memory, sampled with
`nvidia-smi --query-compute-apps` every 0.1 s while `fusellm train` runs a few steps. What the
plan does not count (its not_counted list: the CUDA context, cuBLAS/cuBLASLt workspaces, the
allocator's rounding, the fp32 optimizer state a one-process GPU run keeps in device memory beside
the weights) is the difference; the script prints both and the difference, and fails only when
the measurement is missing or below the plan (a plan that promises more than the run needs is
safe; one below the run's own buffers is wrong).

    python3 benchmarks/check_plan_memory.py --fusellm build/fusellm [--device cuda]

Standard library only (gpu_check runs it with the machine's python3; the binary's library path
comes in FUSELLM_LD_LIBRARY_PATH). --device cpu runs the same on the CPU with the process's peak
RSS instead, to check the script where there is no GPU.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOB = os.path.join(ROOT, "jobs", "tiny.toml")
MIB = 1 << 20


def fusellm_env():
    env = dict(os.environ)
    if os.environ.get("FUSELLM_LD_LIBRARY_PATH"):
        env["LD_LIBRARY_PATH"] = os.environ["FUSELLM_LD_LIBRARY_PATH"]
    return env


def plan_total(fusellm, device):
    out = subprocess.run([fusellm, "plan", "--job", JOB, "--json", "--device", device], env=fusellm_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=True).stdout
    plan = json.loads(out)
    return sum(r["total"] for r in plan["roles"]), plan


def gpu_used_mib(pid):
    """The device memory nvidia-smi reports for process `pid` (MiB), or None."""
    r = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in r.stdout.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) == 2 and fields[0] == str(pid):
            return int(fields[1])
    return None


def run_train(fusellm, device, out_dir):
    """Runs a few steps; (exit status, peak MiB: device memory on a GPU, RSS on the CPU)."""
    cmd = [fusellm, "train", "--job", JOB, "--device", device, "--set", "train.max_steps=4",
           "--set", f"job.output_dir={out_dir}", "--set", f"checkpoint.dir={out_dir}/checkpoints"]
    p = subprocess.Popen(cmd, env=fusellm_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0]

    def sample():
        while p.poll() is None:
            used = gpu_used_mib(p.pid) if device == "cuda" else None
            if used:
                peak[0] = max(peak[0], used)
            time.sleep(0.1)

    t = threading.Thread(target=sample)
    t.start()
    out, _ = p.communicate()
    t.join()
    sys.stdout.write(out[-2000:])
    if device != "cuda":  # ru_maxrss of the finished children, KiB
        peak[0] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    return p.returncode, peak[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fusellm", required=True)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    a = ap.parse_args()
    planned, plan = plan_total(a.fusellm, a.device)
    print("plan (jobs/tiny.toml, " + plan["dtype"] + "): " +
          "; ".join(f"{r['role']} {r['total'] / MIB:.1f} MiB" for r in plan["roles"]) +
          f"; sum {planned / MIB:.1f} MiB", flush=True)
    with tempfile.TemporaryDirectory(prefix="fusellm_plan_memory_") as d:
        rc, peak = run_train(a.fusellm, a.device, d)
    what = "device memory (nvidia-smi, the CUDA context included)" if a.device == "cuda" else "resident set"
    if rc != 0 or peak == 0:
        print(f"check_plan_memory: the run failed (exit {rc}) or its {what} was never seen")
        return 1
    print(f"memory share: plan {planned / MIB:.1f} MiB against the measured peak {what} {peak:.0f} MiB "
          f"(ratio plan / measured {planned / MIB / peak:.3f}; the rest is what the plan does not count: "
          f"{', '.join(plan['not_counted'][:3])}, ...)")
    return 0 if peak * MIB >= planned else 1


if __name__ == "__main__":
    sys.exit(main())
