#pragma once
// The CUDA tests' first line: skip, saying why, on a machine without a usable GPU (CI and the
// development machines have none; cuda::device_count() reports 0 instead of failing).
#include <gtest/gtest.h>

#include "cuda/cuda_check.hpp"

#define SKIP_WITHOUT_GPU()                   \
  if (::fusellm::cuda::device_count() == 0) \
  GTEST_SKIP() << "no CUDA device: " << ::fusellm::cuda::device_description()
