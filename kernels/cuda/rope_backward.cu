// RoPE's backward on the GPU (rope_backward.cuh states the math).
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/cuda_check.hpp"
#include "cuda/rope_backward.cuh"

namespace fusellm::cuda {

namespace {

constexpr int kThreads = 128;
constexpr int kMaxGridY = 65535;

// One thread per (head, pair i) of a row: the rotation by -theta_i of model::apply_rope_backward
// (rope_backward.cpp). grid.x covers heads * half pairs, grid.y strides over rows.
__global__ void rope_backward_kernel(const float* cos, const float* sin, int64_t half, float* dx, int64_t lddx,
                                     int64_t rows, int64_t col0, int64_t heads, int64_t head_dim) {
  const int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= heads * half) return;
  const int64_t head = k / half, i = k % half;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    float* a = dx + r * lddx + col0 + head * head_dim + i;
    float* b = a + half;
    const float cs = cos[r * half + i], sn = sin[r * half + i];
    const float d1 = *a, d2 = *b;
    *a = d1 * cs + d2 * sn;
    *b = d2 * cs - d1 * sn;
  }
}

}  // namespace

void rope_backward(const float* cos, const float* sin, int64_t half, float* dx, int64_t lddx, int64_t rows,
                   int64_t col0, int64_t heads, int64_t head_dim, cudaStream_t stream) {
  if (rows == 0 || heads == 0 || half == 0) return;
  const dim3 grid(unsigned((heads * half + kThreads - 1) / kThreads), unsigned(std::min<int64_t>(rows, kMaxGridY)));
  rope_backward_kernel<<<grid, kThreads, 0, stream>>>(cos, sin, half, dx, lddx, rows, col0, heads, head_dim);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fusellm::cuda
