#!/usr/bin/env bash
# The GPU check (issue 15): every CUDA test and benchmark built here, run on a lent GPU machine in
# ONE call of the device tool. That machine has CUDA (nvcc, the driver) and PyTorch's cuBLAS, cuDNN
# and NCCL inside its Python packages, but none of our Debian libraries and no package registry
# (../shared/TOOLCHAIN.md), so the check has two halves:
#
#   bash scripts/gpu_check.sh pack [BUILD_DIR]
#       here, after a build with -DFUSELLM_CUDA=ON: packs the CUDA test and benchmark binaries and
#       the shared libraries they load, minus glibc and CUDA's own (the ldd closure), stripped and
#       xz-compressed, as .gpu/pack.tar.xz (ignored by git; the device tool carries it; about 30 MB:
#       OpenBLAS and ICU's data are most of it) and prints its size.
#   bash scripts/gpu_check.sh slim | unslim
#       here, around the device call: the tool sends the tracked tree too, 64 MiB in all with what
#       is carried, and the tracked tree is about 63 MiB (tests/fixtures, examples/demo: the GPU check
#       reads only tests/fixtures/models). `slim` takes those out of git's index (the files stay; commit nothing
#       meanwhile) and ignores them in .git/info/exclude; `unslim` puts both back.
#   bash scripts/gpu_check.sh run
#       there, as the device tool's command with carry [".gpu"]: finds CUDA's libraries (the
#       toolkit's and the ones in python3's site-packages), runs every binary, then the benchmarks
#       against PyTorch + transformers (benchmarks/bench_forward_cuda.py, bench_train_cuda.py) and
#       the online job (bench_online_cuda.py), fusellm plan's memory against the tiny job's measured
#       peak (check_plan_memory.py), then compute-sanitizer memcheck and racecheck on the
#       kernel tests; logs in $OUT (one file per step) and a table of the results printed last.
#
# A device call, from the repository root here:
#   bash scripts/gpu_check.sh pack && bash scripts/gpu_check.sh slim
#   <device run: command "bash scripts/gpu_check.sh run", carry [".gpu"], timeout_s 600>
#   (GPU_CHECK_BUDGET=N bash scripts/gpu_check.sh run: stop starting steps N s in, default 540;
#    GPU_CHECK_SANITIZED="test_a_cuda ...": no sanitizers on those, clean before and unchanged)
#   bash scripts/gpu_check.sh unslim
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STAGE=$ROOT/.gpu/stage   # pack's staging folder, here
PACK=/tmp/fusellm_gpu    # where run unpacks it, there
# What `slim` leaves behind: every fixture folder but models/ and grads/ (10 MB, which
# test_decoder_cuda reads: the families' reference logits and the trainable checkpoints);
# examples/demo (13 MB) travels, test_teach_cuda teaches its sources.
SLIM_PATHS=($(cd "$ROOT" && ls -d tests/fixtures/*/ tests/fixtures/* 2>/dev/null | sed 's|/$||' | sort -u | grep -Ev '^tests/fixtures/(models|grads)$'))

# glibc and the dynamic loader are the machine's own; CUDA's libraries come from its toolkit and
# PyTorch's packages (same major version, 13: the SONAMEs match); libstdc++ and libgcc_s travel in
# lib-std/, used only where the machine's are older than Debian 12's (GLIBCXX_3.4.30, GCC 12),
# as the H200's was on 2026-12-04 (ldd found every other library; the first call's log).
is_system_lib() {
  case $(basename "$1") in
    linux-vdso* | ld-linux* | libc.so* | libm.so* | libpthread* | libdl.so* | librt.so* | libutil.so*) return 0 ;;
    libcuda.so* | libcudart* | libcublas* | libcudnn* | libnccl* | libnvrtc* | libnvJitLink* | libcufft*) return 0 ;;
  esac
  return 1
}

pack() {
  local build=${1:-$ROOT/build}
  [[ -f $build/CMakeCache.txt ]] || { echo "gpu_check: no build in $build (bash scripts/setup.sh with FUSELLM_CMAKE_ARGS=-DFUSELLM_CUDA=ON)" >&2; exit 1; }
  grep -q '^FUSELLM_CUDA:BOOL=ON' "$build/CMakeCache.txt" || { echo "gpu_check: $build was configured without -DFUSELLM_CUDA=ON" >&2; exit 1; }
  local PACK=$STAGE
  rm -rf "$ROOT/.gpu" && mkdir -p "$PACK/bin" "$PACK/lib" "$PACK/lib-std"
  local bins=()
  while IFS= read -r f; do bins+=("$f"); done < <(find "$build" -type f -perm -u+x \( -name 'test_*_cuda' -o -name 'bench_*_cuda' \) | sort)
  bins+=("$build/fusellm")
  local b l
  for b in "${bins[@]}"; do
    cp "$b" "$PACK/bin/" && strip --strip-unneeded "$PACK/bin/$(basename "$b")"
    while read -r l; do
      [[ -f $l ]] || continue
      if [[ $(basename "$l") == libstdc++* || $(basename "$l") == libgcc_s* ]]; then
        cp -L "$l" "$PACK/lib-std/"
      elif ! is_system_lib "$l"; then
        cp -L "$l" "$PACK/lib/"
      fi
    done < <(ldd "$b" | awk '/=>/ {print $3}')
  done
  strip --strip-unneeded "$PACK"/lib/*.so* 2>/dev/null || true
  # Open MPI's and Kokkos's plugins are not loaded: the binaries run without mpirun there.
  printf '%s\n' "${bins[@]##*/}" > "$PACK/binaries.txt"
  tar -C "$PACK" -cJf "$ROOT/.gpu/pack.tar.xz" bin lib lib-std binaries.txt && rm -rf "$PACK"
  echo "gpu_check: packed $(echo "${bins[@]}" | wc -w) binaries and their libraries into .gpu/pack.tar.xz ($(du -sh "$ROOT/.gpu/pack.tar.xz" | cut -f1)):"
  printf '  %s\n' "${bins[@]##*/}"
  local mib=$(( $(du -sk "$ROOT/.gpu" | cut -f1) / 1024 ))
  if (( mib > 40 )); then echo "gpu_check: .gpu is $mib MiB: with the tree, over what the device tool carries (64 MiB)" >&2; exit 1; fi
}

slim() {
  cd "$ROOT" || exit 1
  git rm -r -q --cached "${SLIM_PATHS[@]}"
  mkdir -p .git/info
  for p in "${SLIM_PATHS[@]}"; do echo "/$p/" >> .git/info/exclude; done  # git allows no comment after a pattern
  echo "gpu_check: the tree that travels is now $(git ls-files -z | xargs -0 stat -c %s | awk '{s+=$1} END {printf "%.1f MiB", s/1048576}') (run 'unslim' after the call; commit nothing meanwhile)"
}

unslim() {
  cd "$ROOT" || exit 1
  git reset -q -- "${SLIM_PATHS[@]}"
  local p
  for p in "${SLIM_PATHS[@]}"; do [[ -f .git/info/exclude ]] && sed -i "\\|^/$p/\$|d" .git/info/exclude; done
  git status --short -- "${SLIM_PATHS[@]}" | head -n 3
  echo "gpu_check: index restored"
}

# --- there -------------------------------------------------------------------------------------
declare -a RESULTS=()
note() { RESULTS+=("$(printf '%-44s %s' "$1" "$2")"); }

# step NAME LOGFILE CMD...: runs CMD, its output to $OUT/LOGFILE (appended) and to the terminal's
# tail, within 240 s and within what is left of the call's budget ($GPU_CHECK_BUDGET seconds from
# the start, default 540: the device tool's limit is what the caller gave; a step that would start
# with under 15 s left is reported as not run, so the summary is always written).
step() {
  local name=$1 log=$OUT/$2; shift 2
  local left=$((DEADLINE - SECONDS))
  if ((left < 15)); then note "$name" "NOT RUN (the call's time budget is spent)"; return 1; fi
  local limit=$((left - 10 < 240 ? left - 10 : 240))
  local from=$(( $(cat "$log" 2>/dev/null | wc -l) + 1 ))
  echo "== $name: $*" >> "$log"
  local t0=$SECONDS
  timeout "$limit" "$@" >>"$log" 2>&1
  local rc=$?
  local verdict="ok"; ((rc == 0)) || verdict="FAILED rc=$rc"
  ((rc == 124)) && verdict="TIMED OUT ($limit s)"
  note "$name" "$verdict ($((SECONDS - t0)) s)"
  tail -n +"$from" "$log" | tail -n 25
  return $rc
}

find_cuda_libs() {
  local dirs=() d sp
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do [[ -d $d ]] && dirs+=("$d"); done
  sp=$(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null)
  for d in $sp; do
    for l in "$d"/nvidia/*/lib; do [[ -d $l ]] && dirs+=("$l"); done
  done
  local IFS=:
  echo "${dirs[*]}"
}

run_there() {
  OUT=${OUT:-/tmp/gpu_check_out}; mkdir -p "$OUT"
  DEADLINE=$((SECONDS + ${GPU_CHECK_BUDGET:-540}))
  [[ -f $ROOT/.gpu/pack.tar.xz ]] || { echo "gpu_check: no .gpu/pack.tar.xz here: run 'bash scripts/gpu_check.sh pack' first and carry .gpu" >&2; exit 1; }
  rm -rf "$PACK" && mkdir -p "$PACK"
  tar -C "$PACK" -xJf "$ROOT/.gpu/pack.tar.xz" ||
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$ROOT/.gpu/pack.tar.xz" "$PACK" || exit 1
  local cuda_libs; cuda_libs=$(find_cuda_libs)
  export LD_LIBRARY_PATH=$PACK/lib:$cuda_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  if ! strings "$(ldconfig -p | awk '/libstdc\+\+\.so\.6 .*x86-64/ {print $NF; exit}')" 2>/dev/null | grep -q GLIBCXX_3.4.30; then
    export LD_LIBRARY_PATH=$PACK/lib-std:$LD_LIBRARY_PATH
    echo "gpu_check: this machine's libstdc++ is older than GCC 12's: using the carried one"
  fi
  chmod +x "$PACK"/bin/*
  export PATH=$PACK/bin:$PATH OMP_NUM_THREADS=8 OMP_PROC_BIND=false
  {
    echo "date: $(date -u)"; uname -a
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    nvcc --version | tail -n 2
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    for b in $(cat "$PACK/binaries.txt"); do echo "-- ldd $b (not found):"; ldd "$PACK/bin/$b" | grep 'not found'; done
  } 2>&1 | tee "$OUT/machine.txt"

  cd "$ROOT" || exit 1
  step "fusellm version (finds the GPU)" fusellm.log fusellm version
  local b
  for b in $(grep '^test_' "$PACK/binaries.txt"); do
    step "$b" tests.log "$PACK/bin/$b" --gtest_color=no
  done
  # The benchmarks before the sanitizers, so their numbers come back even when time runs short.
  for b in $(grep '^bench_' "$PACK/binaries.txt"); do
    step "$b" bench.log "$PACK/bin/$b"
  done
  # A teacher's forward pass against PyTorch + transformers on a ~1B Llama (the machine's own
  # python3, torch and transformers; python runs without the binaries' library path).
  if grep -q '^bench_forward_cuda$' "$PACK/binaries.txt" && env -u LD_LIBRARY_PATH python3 -c 'import torch, transformers' 2>/dev/null; then
    step "forward vs transformers (1B Llama)" bench.log env -u LD_LIBRARY_PATH FUSELLM_LD_LIBRARY_PATH="$LD_LIBRARY_PATH" \
      PYTHONUNBUFFERED=1 python3 "$ROOT/benchmarks/bench_forward_cuda.py" --bin "$PACK/bin/bench_forward_cuda"
  fi
  # The student's training step against transformers' (bf16 and fp32) on the same Llama, with MFU
  # against the bf16 matrix-product rate measured in the same run (about 60 s).
  if grep -q '^bench_train_cuda$' "$PACK/binaries.txt" && env -u LD_LIBRARY_PATH python3 -c 'import torch, transformers' 2>/dev/null; then
    step "train step vs transformers (1B Llama)" bench.log env -u LD_LIBRARY_PATH FUSELLM_LD_LIBRARY_PATH="$LD_LIBRARY_PATH" \
      PYTHONUNBUFFERED=1 python3 "$ROOT/benchmarks/bench_train_cuda.py" --bin "$PACK/bin/bench_train_cuda"
  fi
  # The online job, one teacher and the student sharing the GPU: one process (no MPI launcher
  # travels), against the student alone from the teacher's cache (python's standard library only).
  if grep -q '^fusellm$' "$PACK/binaries.txt" && command -v python3 >/dev/null; then
    step "online job, teacher + student on one GPU" bench.log env -u LD_LIBRARY_PATH FUSELLM_LD_LIBRARY_PATH="$LD_LIBRARY_PATH" \
      PYTHONUNBUFFERED=1 python3 "$ROOT/benchmarks/bench_online_cuda.py" --fusellm "$PACK/bin/fusellm" --device cuda
  fi
  # fusellm plan's memory against the peak device memory of the tiny job run in one process on the
  # GPU (nvidia-smi's per-process figure, sampled): issue 15 item 5's check of the plan.
  if grep -q '^fusellm$' "$PACK/binaries.txt" && command -v python3 >/dev/null; then
    step "plan memory vs measured (tiny job)" bench.log env -u LD_LIBRARY_PATH FUSELLM_LD_LIBRARY_PATH="$LD_LIBRARY_PATH" \
      PYTHONUNBUFFERED=1 python3 "$ROOT/benchmarks/check_plan_memory.py" --fusellm "$PACK/bin/fusellm" --device cuda
  fi
  # The sanitizers on the kernel tests (not NCCL's: it is its own library's business), except
  # those listed in $GPU_CHECK_SANITIZED (binaries whose kernels are unchanged since a clean run:
  # memcheck makes test_fused_classifier_cuda take 100 s); then on the micro-benchmarks of
  # dev/cuda in their --small mode (correctness checks only).
  if command -v compute-sanitizer >/dev/null; then
    for b in $(grep -E '^test_.*_cuda$' "$PACK/binaries.txt" | grep -v nccl); do
      if [[ " ${GPU_CHECK_SANITIZED:-} " == *" $b "* ]]; then note "sanitizers $b" "skipped (clean before, unchanged)"; continue; fi
      step "memcheck $b" sanitizer.log compute-sanitizer --tool memcheck --error-exitcode 1 "$PACK/bin/$b" --gtest_color=no
      step "racecheck $b" sanitizer.log compute-sanitizer --tool racecheck --error-exitcode 1 "$PACK/bin/$b" --gtest_color=no
    done
    for b in $(grep '^bench_' "$PACK/binaries.txt"); do
      grep -q -- '--small' "$PACK/bin/$b" 2>/dev/null || continue
      step "memcheck $b --small" sanitizer.log compute-sanitizer --tool memcheck --error-exitcode 1 "$PACK/bin/$b" --small
      step "racecheck $b --small" sanitizer.log compute-sanitizer --tool racecheck --error-exitcode 1 "$PACK/bin/$b" --small
    done
  else
    note "compute-sanitizer" "not on this machine"
  fi
  {
    echo; echo "== gpu_check results ($(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null))"
    printf '%s\n' "${RESULTS[@]}"
    echo "-- benchmark lines:"; grep -E 'ratio|GB/s|TFLOP|tokens/s|MFU|share' "$OUT/bench.log" 2>/dev/null
    echo "-- test counts:"; grep -E '^\[  (PASSED|FAILED|SKIPPED)  \]' "$OUT/tests.log" 2>/dev/null
  } | tee "$OUT/summary.txt"
}

case ${1:-} in
  pack) shift; pack "$@" ;;
  slim) slim ;;
  unslim) unslim ;;
  run) run_there ;;
  *) echo "usage: scripts/gpu_check.sh pack [BUILD_DIR] | slim | unslim | run" >&2; exit 2 ;;
esac
