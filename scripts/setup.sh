#!/usr/bin/env bash
# Installs what fusellm needs on a Debian 12 machine (as root), builds Kokkos with OpenMP
# from Debian's own trilinos source package into .deps/kokkos, then configures and builds.
#   bash scripts/setup.sh            # deps + build (Release) into build/
#   FUSELLM_SKIP_APT=1 ...           # skip apt-get (deps already there)
#   FUSELLM_BUILD_DIR=dir ...        # another build directory
#   FUSELLM_CMAKE_ARGS="..." ...     # extra CMake arguments (e.g. -DFUSELLM_CUDA=ON)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${FUSELLM_BUILD_DIR:-$ROOT/build}
JOBS=${FUSELLM_JOBS:-$(nproc)}

APT_PACKAGES=(build-essential cmake ninja-build pkg-config ca-certificates
  libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools libtrilinos-kokkos-dev
  libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev libopenblas-dev
  libtomlplusplus-dev libcli11-dev libspdlog-dev libfmt-dev libonig-dev
  libsentencepiece-dev libicu-dev clang libclang-rt-14-dev python3 xz-utils
  slurm-wlm  # slurmctld, slurmd, sbatch, srun (with PMIx): the Slurm tests start a cluster (tests/slurm)
  iproute2  # ip: the two-node Slurm test's network namespaces, veths and bridge (tests/slurm/netns.sh)
  libzip-dev  # PyTorch's zip checkpoints, pytorch_model.bin (src/fusellm/io/torch_zip.cpp)
  perl jq gnuplot-nox)  # the demo: its corpus (Pod::Text, Digest::SHA), its report (JSON) and plots

if [[ -z "${FUSELLM_SKIP_APT:-}" ]]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "[setup] apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# Kokkos with the OpenMP backend (Debian's libtrilinos-kokkos-dev is Serial-only).
# Built from Debian's own trilinos 13.2 source package (Kokkos 3.4.1) with a private apt
# configuration so /etc/apt stays untouched. Skipped when Kokkos_ROOT is given (clusters
# bring Kokkos 4.x, possibly with CUDA).
KOKKOS_PREFIX=${Kokkos_ROOT:-$ROOT/.deps/kokkos}
if [[ -z "${Kokkos_ROOT:-}" && ! -f "$KOKKOS_PREFIX/lib/cmake/Kokkos/KokkosConfig.cmake" ]]; then
  D=$ROOT/.deps/src
  mkdir -p "$D/apt/lists/partial" "$D/apt/cache/archives/partial" "$D/apt/sources.list.d"
  echo "deb-src http://deb.debian.org/debian bookworm main" > "$D/apt/sources.list"
  APTO=(-o Dir::Etc::SourceList="$D/apt/sources.list" -o Dir::Etc::SourceParts="$D/apt/sources.list.d"
        -o Dir::State::Lists="$D/apt/lists" -o Dir::Cache="$D/apt/cache" -o APT::Sandbox::User=root)
  if ! ls "$D"/trilinos_*.orig.tar.gz >/dev/null 2>&1; then
    echo "[setup] fetching Debian's trilinos source package (for Kokkos)"
    apt-get "${APTO[@]}" update -qq
    (cd "$D" && apt-get "${APTO[@]}" source --download-only -qq trilinos)
  fi
  TARBALL=$(ls "$D"/trilinos_*.orig.tar.gz | head -n1)
  rm -rf "$D/kokkos-src" && mkdir -p "$D/kokkos-src"
  tar -xzf "$TARBALL" -C "$D/kokkos-src" --strip-components=1 --wildcards '*/packages/kokkos/*'
  echo "[setup] building Kokkos (OpenMP + Serial) into $KOKKOS_PREFIX"
  cmake -S "$D/kokkos-src/packages/kokkos" -B "$D/kokkos-build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$KOKKOS_PREFIX" \
    -DKokkos_ENABLE_OPENMP=ON -DKokkos_ENABLE_SERIAL=ON -DCMAKE_CXX_STANDARD=17 \
    -DBUILD_SHARED_LIBS=ON >/dev/null
  cmake --build "$D/kokkos-build" -j "$JOBS" >/dev/null
  cmake --install "$D/kokkos-build" >/dev/null
fi

echo "[setup] configuring $BUILD"
# shellcheck disable=SC2086
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=${FUSELLM_BUILD_TYPE:-Release} \
  -DKokkos_ROOT="$KOKKOS_PREFIX" ${FUSELLM_CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD" -j "$JOBS" ${FUSELLM_TARGETS:+--target $FUSELLM_TARGETS}
echo "[setup] built: $BUILD/fusellm"
