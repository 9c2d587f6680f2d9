#pragma once
// RMSNorm forward on the GPU, fp32 (Llama's LlamaRMSNorm):
//   y[t, c] = x[t, c] / sqrt(mean_c(x[t, :]^2) + eps) * w[c]
// One warp per row; the row is read once to accumulate the sum of squares, and once more to
// scale (from L1/L2 for rows up to a few thousand floats). The CPU reference is
// src/fusellm/model's rmsnorm; tests/backend/test_rmsnorm_cuda.cpp compares the two.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace fusellm::cuda {

// Strided rows (x and y with leading dimensions ldx, ldy; y may be x), queued on `stream`, with the
// CPU's rounding steps (inv = 1 / sqrt(ss / n + eps), y = w * (x * inv)): the decoder's backend's
// (model/cuda/cuda_backend.cpp). Device pointers; throws fusellm::Error on a CUDA error.
void rmsnorm_forward_strided(const float* x, int64_t ldx, const float* w, float eps, float* y, int64_t ldy,
                             int64_t rows, int64_t cols, cudaStream_t stream);

// The same over contiguous rows, on the default stream.
void rmsnorm_forward(float* y, const float* x, const float* w, int64_t rows, int64_t cols, float eps);

}  // namespace fusellm::cuda
