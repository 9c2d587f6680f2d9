#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda/cuda_check.hpp"
#include "cuda/matrix_add.cuh"
#include "fusellm/core/error.hpp"

namespace fusellm::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;

// y[r, c] = s[r, c] + (accumulate ? y[r, c] : 0): one fp32 add per element, the order of the
// in-place GEMM's beta = 1 (the product, then the earlier contents added once).
__global__ void matrix_add_kernel(float* __restrict__ y, int64_t y_ld, const float* __restrict__ s, int64_t s_ld,
                                  int64_t rows, int64_t cols, bool accumulate) {
  const int64_t n = rows * cols, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int64_t r = i / cols, c = i - r * cols;
    const float v = s[r * s_ld + c];
    y[r * y_ld + c] = accumulate ? y[r * y_ld + c] + v : v;
  }
}

}  // namespace

void matrix_add(float* y, int64_t y_ld, const float* s, int64_t s_ld, int64_t rows, int64_t cols, bool accumulate,
                cudaStream_t stream) {
  if (rows < 0 || cols < 0 || y_ld < cols || s_ld < cols)
    fail("matrix_add: [{}, {}] with leading dimensions {} (y) and {} (s)", rows, cols, y_ld, s_ld);
  if (rows == 0 || cols == 0) return;
  if (!y || !s) fail("matrix_add: a null pointer for [{}, {}]", rows, cols);
  const unsigned blocks = unsigned(std::min<int64_t>((rows * cols + kThreads - 1) / kThreads, kMaxBlocks));
  matrix_add_kernel<<<blocks, kThreads, 0, stream>>>(y, y_ld, s, s_ld, rows, cols, accumulate);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fusellm::cuda
