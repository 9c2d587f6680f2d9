#!/usr/bin/env bash
# Forward-pass throughput, fusellm (fp32, OpenBLAS + OpenMP) vs PyTorch/transformers (fp32) on the
# same random ~40M-parameter Llama-style checkpoint at sequence length 512, same thread count.
#
#   benchmarks/run_forward_bench.sh [BUILD_DIR]        (default: build)
#   THREADS="1 2" ROUNDS=3 ITERS=10 SEQ=512 benchmarks/run_forward_bench.sh build-model
#
# The checkpoint (160 MB) is generated once into $BUILD_DIR/bench-models/ by bench_forward.py,
# never committed. Each round runs fusellm then PyTorch for each thread count (interleaved, so
# a noisy neighbour hurts both alike); each run reports the median of ITERS timed passes after
# 2 warmups, and the ratio printed is fusellm tokens/s over PyTorch tokens/s per round.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/llama40m_bench_env.sh" bench_forward "${1:-}"

tps() { sed -n 's/.* \([0-9.]*\) tokens\/s.*/\1/p'; }
echo "model $MODEL, seq $SEQ, $ITERS timed passes per run, $ROUNDS rounds"
cpu_line
for round in $(seq 1 "$ROUNDS"); do
  for t in $THREADS; do
    c=$(OMP_NUM_THREADS=$t "$BUILD/benchmarks/bench_forward" "$MODEL" --seq "$SEQ" --iters "$ITERS")
    p=$(OMP_NUM_THREADS=$t "$PY" "$ROOT/benchmarks/bench_forward.py" run "$MODEL" --seq "$SEQ" --threads "$t" \
          --iters "$ITERS" 2>/dev/null | tail -1)
    echo "round $round  $c"
    echo "round $round  $p"
    echo "round $round  threads=$t ratio fusellm/pytorch = $(echo "$c $p" | awk -v a="$(echo "$c" | tps)" \
          -v b="$(echo "$p" | tps)" 'BEGIN { printf "%.2fx", a / b }')"
  done
done
