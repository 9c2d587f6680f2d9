// RMSNorm on the GPU against a plain CPU reference (double accumulation). Skips, saying why,
// when the machine has no usable CUDA device (CI and the development machines have none).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "cuda/cuda_check.hpp"
#include "cuda/rmsnorm.cuh"
#include "cuda_skip.hpp"

using namespace fusellm;

TEST(CudaRuntime, DeviceQueryNeverThrows) {
  // Must work with and without a GPU: this is how the program picks the CPU path.
  const int n = cuda::device_count();
  EXPECT_GE(n, 0);
  EXPECT_FALSE(cuda::device_description().empty());
}

TEST(CudaRMSNorm, MatchesCpuReference) {
  SKIP_WITHOUT_GPU();
  const int64_t rows = 1000, cols = 4096;
  const float eps = 1e-6f;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 2.f);
  std::vector<float> x(rows * cols), w(cols), y(rows * cols);
  for (auto& v : x) v = nd(rng);
  for (auto& v : w) v = nd(rng);
  float *dx, *dw, *dy;
  FUSELLM_CUDA_CHECK(cudaMalloc(&dx, x.size() * 4));
  FUSELLM_CUDA_CHECK(cudaMalloc(&dw, w.size() * 4));
  FUSELLM_CUDA_CHECK(cudaMalloc(&dy, y.size() * 4));
  FUSELLM_CUDA_CHECK(cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice));
  FUSELLM_CUDA_CHECK(cudaMemcpy(dw, w.data(), w.size() * 4, cudaMemcpyHostToDevice));
  FUSELLM_CUDA_CHECK(cudaMemset(dy, 0xff, y.size() * 4));  // poison: every element must be written
  cuda::rmsnorm_forward(dy, dx, dw, rows, cols, eps);
  FUSELLM_CUDA_CHECK(cudaMemcpy(y.data(), dy, y.size() * 4, cudaMemcpyDeviceToHost));
  cudaFree(dx);
  cudaFree(dw);
  cudaFree(dy);
  double max_err = 0, max_ref = 0;
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t c = 0; c < cols; ++c) ss += double(x[r * cols + c]) * x[r * cols + c];
    const double inv = 1.0 / std::sqrt(ss / cols + eps);
    for (int64_t c = 0; c < cols; ++c) {
      const double ref = x[r * cols + c] * inv * w[c];
      max_err = std::max(max_err, std::abs(ref - y[r * cols + c]));
      max_ref = std::max(max_ref, std::abs(ref));
    }
  }
  EXPECT_LE(max_err / max_ref, 1e-5) << "max |diff| " << max_err;
}
