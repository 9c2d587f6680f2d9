# Sourced by run_forward_bench.sh and run_train_bench.sh, which compare fusellm with PyTorch on the
# same random ~40M-parameter Llama-style checkpoint: the build dir (first argument, default
# build), the knobs (THREADS, ROUNDS, ITERS, SEQ, PYTHON, FUSELLM_BENCH_MODEL), the benchmark
# target $1 built, the checkpoint generated once by bench_forward.py (never committed), and a
# line naming the CPU and its load.
#   source llama40m_bench_env.sh TARGET [BUILD_DIR]
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${2:-$ROOT/build}"
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
THREADS="${THREADS:-1 2}"
ROUNDS="${ROUNDS:-3}"
ITERS="${ITERS:-10}"
SEQ="${SEQ:-512}"
PY="${PYTHON:-python3}"
MODEL="${FUSELLM_BENCH_MODEL:-$BUILD/bench-models/llama40m}"

if ! out=$(cmake --build "$BUILD" --target "$1" 2>&1); then
  echo "$out" >&2
  exit 1
fi
if [ ! -f "$MODEL/model.safetensors" ]; then
  "$PY" "$ROOT/benchmarks/bench_forward.py" create "$MODEL"
fi
cpu_line() {
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
}
