#pragma once
// Kokkos' OpenMP backend prints a multi-line warning on stdout when OMP_PROC_BIND is unset. On
// stdout it corrupts machine-readable output (JSON lines, gtest's test listing that ctest reads
// test names from). Unbound threads are also what a shared node wants, so default the variable
// to "false" before Kokkos starts, leaving any value the user set untouched.
#include <cstdlib>

namespace fusellm {
inline void default_openmp_binding() { ::setenv("OMP_PROC_BIND", "false", /*overwrite=*/0); }
}  // namespace fusellm
