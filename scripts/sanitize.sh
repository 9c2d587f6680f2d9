#!/usr/bin/env bash
# Builds the unit tests and the fusellm binary (which the CLI tests run) with GCC, AddressSanitizer
# and UndefinedBehaviorSanitizer in a build dir of their own, then runs the whole ctest suite
# there. The libFuzzer targets run under the same sanitizers in scripts/fuzz.sh.
# UBSan must not recover, else a report scrolls by and the test still passes.
# _GLIBCXX_ASSERTIONS adds bounds checks to std::vector/span/string operator[], which ASan
# misses inside a vector's capacity.
#
#   scripts/sanitize.sh [build-dir]             default build-asan
#   SANITIZE_JOBS=2 SANITIZE_CTEST_JOBS=2 ...   build and ctest parallelism (default nproc)
#   SANITIZE_CTEST_ARGS="-R Cli" ...            extra ctest arguments
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(realpath -m "${1:-$root/build-asan}")
jobs=${SANITIZE_JOBS:-$(nproc)}
kokkos=${Kokkos_ROOT:-$root/.deps/kokkos}

# -O1: fast enough for the 50-step training tests, and keeps stack traces readable.
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -D_GLIBCXX_ASSERTIONS"
mkdir -p "$build"
# shellcheck disable=SC2086
CC=gcc CXX=g++ cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Sanitize \
  -DCMAKE_C_FLAGS_SANITIZE="-O1 -g" -DCMAKE_CXX_FLAGS_SANITIZE="-O1 -g" \
  -DCMAKE_C_FLAGS="$san" -DCMAKE_CXX_FLAGS="$san" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DFUSELLM_CUDA=OFF -DFUSELLM_BENCHMARKS=OFF -DFUSELLM_TESTS=ON -DKokkos_ROOT="$kokkos" \
  ${FUSELLM_CMAKE_ARGS:-} >"$build/configure.log" 2>&1 || { cat "$build/configure.log"; exit 2; }

start=$SECONDS
cmake --build "$build" -j "$jobs"
echo "[sanitize] build: $((SECONDS - start)) s"

# Leak checking is on, with no suppression: libgomp, Kokkos, OpenBLAS and HDF5 (not instrumented)
# leave nothing LeakSanitizer reports in these tests. Should one ever need it, suppress it by its
# library in an LSAN_OPTIONS=suppressions= file, with the reason, never a fusellm function.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OMP_PROC_BIND=false OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
start=$SECONDS
status=0
# shellcheck disable=SC2086
ctest --test-dir "$build" --output-on-failure -j "${SANITIZE_CTEST_JOBS:-$(nproc)}" --timeout 1800 \
  ${SANITIZE_CTEST_ARGS:-} || status=$?
echo "[sanitize] ctest: $((SECONDS - start)) s"
exit $status
