#pragma once
// RMSNorm forward on the GPU, fp32 (Llama's LlamaRMSNorm):
//   y[t, c] = x[t, c] / sqrt(mean_c(x[t, :]^2) + eps) * w[c]
// One warp per row; the row is read once to accumulate the sum of squares, and once more to
// scale (from L1/L2 for rows up to a few thousand floats). The CPU reference is
// src/fusellm/model's rmsnorm; tests/backend/test_rmsnorm_cuda.cpp compares the two.
#include <cstdint>

namespace fusellm::cuda {

// Device pointers; launches on the default stream. Throws fusellm::Error on a CUDA error.
void rmsnorm_forward(float* y, const float* x, const float* w, int64_t rows, int64_t cols, float eps);

}  // namespace fusellm::cuda
