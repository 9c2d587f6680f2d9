#include <cuda_runtime.h>

#include "cuda/cuda_check.hpp"
#include "cuda/rmsnorm.cuh"

namespace fusellm::cuda {

namespace {
constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 8;  // 8 warps = 256 threads

// y = w * (x * inv), inv = 1 / sqrt(mean(x^2) + eps): model/rmsnorm.cpp, rmsnorm(), with its
// rounding steps. One warp per row; each lane reads and writes the same columns, so y may be x.
__global__ void rmsnorm_strided_kernel(const float* x, int64_t ldx, const float* __restrict__ w, float eps,
                                       float* y, int64_t ldy, int64_t rows, int64_t cols) {
  const int lane = threadIdx.x % kWarp;
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  if (row >= rows) return;
  const float* xr = x + row * ldx;
  float* yr = y + row * ldy;
  float ss = 0.f;
  for (int64_t c = lane; c < cols; c += kWarp) ss += xr[c] * xr[c];
  for (int off = kWarp / 2; off > 0; off /= 2) ss += __shfl_xor_sync(0xffffffffu, ss, off);
  const float inv = 1.f / sqrtf(ss / float(cols) + eps);
  for (int64_t c = lane; c < cols; c += kWarp) yr[c] = w[c] * (xr[c] * inv);
}
}  // namespace

void rmsnorm_forward_strided(const float* x, int64_t ldx, const float* w, float eps, float* y, int64_t ldy,
                             int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows == 0) return;
  const unsigned blocks = unsigned((rows + kRowsPerBlock - 1) / kRowsPerBlock);
  rmsnorm_strided_kernel<<<blocks, kRowsPerBlock * kWarp, 0, stream>>>(x, ldx, w, eps, y, ldy, rows, cols);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
}

void rmsnorm_forward(float* y, const float* x, const float* w, int64_t rows, int64_t cols, float eps) {
  rmsnorm_forward_strided(x, cols, w, eps, y, cols, rows, cols, nullptr);
}

}  // namespace fusellm::cuda
