#pragma once
// The execution spaces every Kokkos kernel test runs on: TYPED_TEST_SUITE(X, ExecSpaces).
#include <gtest/gtest.h>

#include <Kokkos_Core.hpp>

namespace fusellm::testing {
using ExecSpaces = ::testing::Types<Kokkos::Serial
#if defined(KOKKOS_ENABLE_OPENMP)
                                    , Kokkos::OpenMP
#endif
                                    >;
}  // namespace fusellm::testing
