// clip_qkv's backward on the GPU (clamp_backward.cuh states the math).
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/clamp_backward.cuh"
#include "cuda/cuda_check.hpp"

namespace fusellm::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxGridY = 65535;

// dy[r, i] = |y[r, i]| < c ? dy[r, i] : 0 (model::clamp_backward, clamp_backward.cpp).
__global__ void clamp_backward_kernel(const float* y, int64_t ldy, float c, float* dy, int64_t lddy, int64_t rows,
                                      int64_t cols) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= cols) return;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y)
    if (!(fabsf(y[r * ldy + i]) < c)) dy[r * lddy + i] = 0.f;
}

}  // namespace

void clamp_backward(const float* y, int64_t ldy, float c, float* dy, int64_t lddy, int64_t rows, int64_t cols,
                    cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  const dim3 grid(unsigned((cols + kThreads - 1) / kThreads), unsigned(std::min<int64_t>(rows, kMaxGridY)));
  clamp_backward_kernel<<<grid, kThreads, 0, stream>>>(y, ldy, c, dy, lddy, rows, cols);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fusellm::cuda
