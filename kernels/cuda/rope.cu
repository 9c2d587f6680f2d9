#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/cuda_check.hpp"
#include "cuda/rope.cuh"

namespace fusellm::cuda {

namespace {

constexpr int kThreads = 256;

// model/rope.cpp, apply_rope(): one thread per rotated pair (row r, head k, i < half), in place;
// each pair is read and written by its thread only.
__global__ void rope_kernel(float* x, int64_t ldx, int64_t rows, int64_t col0, int64_t heads, int64_t head_dim,
                            const float* __restrict__ cs, const float* __restrict__ sn, int64_t half) {
  const int64_t n = rows * heads * half;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < n; idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = idx % half, k = (idx / half) % heads, r = idx / (half * heads);
    float* a = x + r * ldx + col0 + k * head_dim + i;
    const float c = cs[r * half + i], s = sn[r * half + i];
    const float x1 = a[0], x2 = a[half];
    a[0] = x1 * c - x2 * s;
    a[half] = x2 * c + x1 * s;
  }
}

}  // namespace

void rope_forward(float* x, int64_t ldx, int64_t rows, int64_t col0, int64_t heads, int64_t head_dim,
                  const float* cos, const float* sin, int64_t half, cudaStream_t stream) {
  const int64_t n = rows * heads * half;
  if (n == 0) return;
  const unsigned blocks = unsigned(std::min<int64_t>((n + kThreads - 1) / kThreads, 1 << 20));
  rope_kernel<<<blocks, kThreads, 0, stream>>>(x, ldx, rows, col0, heads, head_dim, cos, sin, half);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fusellm::cuda
