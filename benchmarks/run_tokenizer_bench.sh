#!/usr/bin/env bash
# Tokenization throughput: fusellm (bench_tokenizer) against the Rust `tokenizers` library
# (bench_tokenizer.py), single-threaded, same held-out documents (tests/fixtures/tokenizers/docs.jsonl,
# each document encoded separately), same machine, one pinned core each.
#
#   benchmarks/run_tokenizer_bench.sh [BUILD_DIR] [FIXTURE...]
#     BUILD_DIR  a CMake build dir holding benchmarks/bench_tokenizer (default: build)
#     FIXTURE    bytelevel sp_bpe split_digits spm_model (default: all four)
#   MIN_SECONDS=3  time per measurement (best pass is reported)
#   JOIN=50        also measure on long documents: every JOIN consecutive docs concatenated
#                  (~6 KB each, as a 2k-token training segment); JOIN=0 to skip
#   CPU=0          core to pin both to (taskset), empty to not pin
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shift || true
fixtures=("$@")
[ ${#fixtures[@]} -eq 0 ] && fixtures=(bytelevel sp_bpe split_digits spm_model)
bin="$build/benchmarks/bench_tokenizer"
[ -x "$bin" ] || { echo "no $bin: cmake --build $build --target bench_tokenizer" >&2; exit 1; }
min=${MIN_SECONDS:-3}
pin=()
if [ -n "${CPU-0}" ] && command -v taskset >/dev/null; then pin=(taskset -c "${CPU:-0}"); fi
export TOKENIZERS_PARALLELISM=false RAYON_NUM_THREADS=1 OMP_NUM_THREADS=1

docs=tests/fixtures/tokenizers/docs.jsonl
join=${JOIN:-50}
long=""
if [ "$join" -gt 0 ]; then
  long=$(mktemp /tmp/tokbench_long.XXXXXX.jsonl)
  trap 'rm -f "$long"' EXIT
  python3 - "$docs" "$long" "$join" <<'PY'
import json, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
t = [json.loads(l)["text"] for l in open(src, encoding="utf-8") if l.strip()]
with open(dst, "w", encoding="utf-8") as f:
    for i in range(0, len(t), n):
        f.write(json.dumps({"text": "".join(t[i:i + n])}, ensure_ascii=False) + "\n")
PY
fi

echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ)  $(uname -m)  $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "# pinned: ${pin[*]:-no}; min seconds per measurement: $min"
run_table() {  # $1: docs file, $2: label
printf '%-13s %12s %12s %12s %14s %14s %9s %9s\n' fixture "fusellm MB/s" "lib MB/s" "batch MB/s" "fusellm tok/s" "lib tok/s" "vs loop" "vs batch"
for f in "${fixtures[@]}"; do
  c=$("${pin[@]}" "$bin" --fixture "$f" --docs "$1" --min-seconds "$min" --json)
  p=$("${pin[@]}" python3 benchmarks/bench_tokenizer.py --fixture "$f" --docs "$1" --min-seconds "$min" --json)
  python3 - "$f" "$c" "$p" <<'PY'
import json, sys
f, c, p = sys.argv[1], json.loads(sys.argv[2]), [json.loads(l) for l in sys.argv[3].splitlines()]
loop = next(r for r in p if r["impl"].endswith(" encode"))
batch = next(r for r in p if r["impl"].endswith("encode_batch"))
if not c["tokens"] == loop["tokens"] == batch["tokens"]:
    print(f"# WARNING {f}: token counts differ: fusellm {c['tokens']}, library {loop['tokens']}/{batch['tokens']}")
print(f"{f:<13} {c['mb_per_s']:12.2f} {loop['mb_per_s']:12.2f} {batch['mb_per_s']:12.2f} "
      f"{c['tokens_per_s']:14.0f} {loop['tokens_per_s']:14.0f} {c['mb_per_s'] / loop['mb_per_s']:8.2f}x "
      f"{c['mb_per_s'] / batch['mb_per_s']:8.2f}x")
PY
done
}
echo "## $(wc -l < "$docs") held-out documents, each encoded separately"
run_table "$docs"
if [ -n "$long" ]; then
  echo "## the same text as $(wc -l < "$long") long documents (every $join joined)"
  run_table "$long"
fi
echo "# ratio = fusellm / tokenizers $(python3 -c 'import tokenizers; print(tokenizers.__version__)') (encode per doc in a loop; encode_batch with RAYON_NUM_THREADS=1); fixture docs: $docs"
