// gtest main for Kokkos tests: initializes Kokkos once (all enabled backends) around the run.
// Kernel tests are typed tests over the execution spaces built here (Serial and, when the
// Kokkos build has it, OpenMP), so one test body runs on every backend (STYLE.md, Cabana).
#include <gtest/gtest.h>

#include <Kokkos_Core.hpp>

#include "fusellm/core/openmp_env.hpp"

int main(int argc, char** argv) {
  fusellm::default_openmp_binding();
  Kokkos::ScopeGuard kokkos(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
