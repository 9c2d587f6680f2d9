#include <cuda_runtime.h>

#include "cuda/cuda_check.hpp"
#include "cuda/layernorm.cuh"

namespace fusellm::cuda {

namespace {

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 8;  // 8 warps = 256 threads

__device__ float warp_sum(float v) {
  for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// model/layernorm.cpp, layernorm(): mu = mean(x), inv = 1 / sqrt(mean((x - mu)^2) + eps),
// y = (x - mu) * inv * w (+ b), with the CPU's rounding steps. One warp per row; each lane reads
// and writes the same columns, so y may be x.
__global__ void layernorm_kernel(const float* x, int64_t ldx, const float* __restrict__ w,
                                 const float* __restrict__ b, float eps, float* y, int64_t ldy, int64_t rows,
                                 int64_t cols) {
  const int lane = threadIdx.x % kWarp;
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  if (row >= rows) return;
  const float* xr = x + row * ldx;
  float* yr = y + row * ldy;
  float s = 0.f;
  for (int64_t c = lane; c < cols; c += kWarp) s += xr[c];
  const float mu = warp_sum(s) / float(cols);
  float ss = 0.f;
  for (int64_t c = lane; c < cols; c += kWarp) ss += (xr[c] - mu) * (xr[c] - mu);
  const float inv = 1.f / sqrtf(warp_sum(ss) / float(cols) + eps);
  if (b) {
    for (int64_t c = lane; c < cols; c += kWarp) yr[c] = (xr[c] - mu) * inv * w[c] + b[c];
  } else {
    for (int64_t c = lane; c < cols; c += kWarp) yr[c] = (xr[c] - mu) * inv * w[c];
  }
}

}  // namespace

void layernorm_forward(const float* x, int64_t ldx, const float* w, const float* b, float eps, float* y,
                       int64_t ldy, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows == 0) return;
  const unsigned blocks = unsigned((rows + kRowsPerBlock - 1) / kRowsPerBlock);
  layernorm_kernel<<<blocks, kRowsPerBlock * kWarp, 0, stream>>>(x, ldx, w, b, eps, y, ldy, rows, cols);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fusellm::cuda
