#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.cpp) with clang, ASan and UBSan in a build dir
# of their own, then runs each for FUZZ_SECONDS seconds from its seed corpus
# (tests/fuzz/corpus/<target>/) and its dictionary (tests/fuzz/<target>.dict) when present.
# Exits non-zero when any target crashes; the crashing input is left under
# <build>/fuzz-artifacts/<target>/ and can be replayed with `<build>/tests/fuzz/<target> FILE`.
#
#   scripts/fuzz.sh [build-dir]          default build-fuzz
#   FUZZ_SECONDS=600 FUZZ_TARGETS="fuzz_safetensors_header" scripts/fuzz.sh
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(realpath -m "${1:-$root/build-fuzz}")
seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_BUILD_JOBS:-2}

# The library is instrumented for coverage (fuzzer-no-link) and checked by ASan/UBSan; only the
# targets link the libFuzzer main (tests/fuzz/CMakeLists.txt). UBSan must not recover, else a
# report scrolls by and the run still counts as clean.
mkdir -p "$build"
san="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DFUSELLM_FUZZ=ON -DFUSELLM_KOKKOS=OFF -DFUSELLM_TESTS=OFF -DFUSELLM_BENCHMARKS=OFF -DFUSELLM_MPI=OFF \
  -DCMAKE_C_FLAGS="$san" -DCMAKE_CXX_FLAGS="$san" >"$build/configure.log" 2>&1 ||
  { cat "$build/configure.log"; exit 2; }

if [[ -n "${FUZZ_TARGETS:-}" ]]; then
  read -r -a targets <<<"$FUZZ_TARGETS"
else
  targets=()
  for src in "$root"/tests/fuzz/fuzz_*.cpp; do targets+=("$(basename "$src" .cpp)"); done
fi
cmake --build "$build" -j "$jobs" --target "${targets[@]}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for t in "${targets[@]}"; do
  # New inputs go to a work corpus in the build dir; the committed seeds are only read.
  work="$build/fuzz-corpus/$t"
  artifacts="$build/fuzz-artifacts/$t"
  log="$build/fuzz-logs/$t.log"
  mkdir -p "$work" "$artifacts" "$(dirname "$log")"
  args=(-max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=4096
        -artifact_prefix="$artifacts/" -print_final_stats=1)
  [[ -f "$root/tests/fuzz/$t.dict" ]] && args+=(-dict="$root/tests/fuzz/$t.dict")
  corpora=("$work")
  [[ -d "$root/tests/fuzz/corpus/$t" ]] && corpora+=("$root/tests/fuzz/corpus/$t")
  echo "== $t: ${seconds}s (log: $log)"
  if "$build/tests/fuzz/$t" "${args[@]}" "${corpora[@]}" >"$log" 2>&1; then
    grep -E '^(Done|stat::number_of_executed_units|stat::new_units_added)' "$log" || true
  else
    echo "!! $t crashed; last lines of $log:"
    tail -n 60 "$log"
    ls "$artifacts"
    status=1
  fi
done
exit $status
