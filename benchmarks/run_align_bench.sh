#!/usr/bin/env bash
# Token alignment + application to the top-k rows (EM, MinED, byte spans) and the vocabulary-mapping
# build: fusellm (benchmarks/bench_align) against the Python reference (benchmarks/bench_align.py,
# tests/reference/align_reference.py), same documents, same rows, same machine.
#
#   benchmarks/run_align_bench.sh [BUILD_DIR]       (default BUILD_DIR: build)
#     PAIRS="bytelevel_to_sp_bpe sp_bpe_to_bytelevel"   fixtures of tests/fixtures/align
#     REPS=9            best of REPS for the C++ side
#     SAMPLE=100        source tokens the Python mapping is timed on (then extrapolated)
#     SKIP_MAPPING=1    alignment only
#
# One core: Kokkos::Serial against the single-threaded reference, both as thread CPU time (so a
# loaded machine's descheduling does not count). Two threads: Kokkos::OpenMP, wall time.
# The mapping benchmark trains a 50,000-token byte-level BPE and a 32,000-token SentencePiece-style
# BPE on local text once (BUILD_DIR/bench_align_vocab, a few minutes) and maps 50k -> 32k (MPT ->
# Llama-2, as in the paper) and 32k -> 50k.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
bin="$build/benchmarks/bench_align"
[ -x "$bin" ] || { echo "no $bin: cmake --build $build --target bench_align" >&2; exit 1; }
export OMP_PROC_BIND=false OMP_WAIT_POLICY=passive TOKENIZERS_PARALLELISM=false
pairs=(${PAIRS:-bytelevel_to_sp_bpe sp_bpe_to_bytelevel})
reps=${REPS:-9}

echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ)  $(nproc) cores  $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')  load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# alignment + apply, k = 6; rates in target tokens/s; 1 core = thread CPU time, 2 threads = wall"
printf '%-22s %-9s %8s %12s %14s %9s %14s %9s\n' pair method docs "python 1c" "fusellm 1c" speedup "fusellm 2t" speedup
for pair in "${pairs[@]}"; do
  c=$(OMP_NUM_THREADS=2 "$bin" align "$pair" --reps "$reps")
  p=$(OMP_NUM_THREADS=1 python3 benchmarks/bench_align.py align "$pair")
  python3 - "$pair" "$c" "$p" <<'PY'
import json, sys
pair, c, p = sys.argv[1], [json.loads(l) for l in sys.argv[2].splitlines()], [json.loads(l) for l in sys.argv[3].splitlines()]
for ref in p:
    m = ref["method"]
    ser = next(r for r in c if r["method"] == m and r["space"] == "Serial")
    omp = [r for r in c if r["method"] == m and r["space"] == "OpenMP"]
    assert ser["kept"] == ref["kept"] and ser["target_tokens"] == ref["target_tokens"], (ser, ref)
    py = ref["target_tokens"] / ref["thread_cpu_seconds"]
    one = ser["target_tokens"] / ser["thread_cpu_seconds"]
    line = f"{pair:<22} {m:<9} {ref['docs']:8d} {py:12.0f} {one:14.0f} {one / py:8.0f}x"
    if omp:
        two = omp[0]["target_tokens"] / omp[0]["seconds"]
        line += f" {two:14.0f} {two / py:8.0f}x"
    print(line)
PY
done

[ "${SKIP_MAPPING:-}" = 1 ] && exit 0
vocab="$build/bench_align_vocab"
if [ ! -f "$vocab/bl50k.json" ] || [ ! -f "$vocab/sp32k.json" ]; then
  echo "# training the 50k / 32k benchmark vocabularies into $vocab" >&2
  python3 benchmarks/bench_align.py train "$vocab" >&2
fi
echo
echo "# vocabulary mapping build (exact + MinED). Python, thread CPU time, extrapolated to all tokens needing"
echo "# MinED: 'brute' = the original's algorithm (every target, one plain-Python Levenshtein each) timed on 5"
echo "# of them; 'python' = tests/reference/align_reference.py (numpy, by length group) on SAMPLE of them."
echo "# fusellm builds the whole mapping: 1c = Serial thread CPU time, 2t = OpenMP wall time."
printf '%-16s %9s %9s %16s %16s %12s %9s %9s %12s\n' "source->target" exact MinED "brute (extrap.)" "python (extrap.)" "fusellm 1c" "vs brute" "vs ref" "fusellm 2t"
for dir in "bl50k sp32k" "sp32k bl50k"; do
  set -- $dir
  c=$(OMP_NUM_THREADS=2 "$bin" mapping "$vocab/$1.json" "$vocab/$2.json" --reps 1)
  p=$(OMP_NUM_THREADS=1 python3 benchmarks/bench_align.py mapping "$vocab/$1.json" "$vocab/$2.json" --sample "${SAMPLE:-100}")
  python3 - "$1->$2" "$c" "$p" <<'PY'
import json, sys
name, c, p = sys.argv[1], [json.loads(l) for l in sys.argv[2].splitlines()], json.loads(sys.argv[3])
ser = next(r for r in c if r["space"] == "Serial")
omp = [r for r in c if r["space"] == "OpenMP"]
assert ser["mined"] == p["mined_queries"], (ser, p)
py = p["extrapolated_seconds"]
one = ser["thread_cpu_seconds"]
brute = p["brute_force_extrapolated_seconds"]
line = (f"{name:<16} {ser['exact']:9d} {ser['mined']:9d} {brute:14.0f} s {py:14.0f} s {one:10.2f} s"
        f" {brute / one:8.0f}x {py / one:8.0f}x")
if omp:
    line += f" {omp[0]['seconds']:10.2f} s"
print(line)
PY
done
