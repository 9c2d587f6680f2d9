#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/bias.cuh"
#include "cuda/cuda_check.hpp"

namespace fusellm::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kCols = 32, kRowGroups = 8;  // bias_column_sums' block: 32 columns x 8 row groups

// y[r, c] += b[c]: model/matmul.cpp, add_bias(). One thread per element.
__global__ void bias_add_kernel(float* y, int64_t ldy, const float* __restrict__ b, int64_t rows, int64_t cols) {
  const int64_t total = rows * cols;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = idx / cols, c = idx % cols;
    y[r * ldy + c] += b[c];
  }
}

// db[c] += sum_r dy[r, c]: model/linear_backward.cpp, bias_backward(). A block takes 32 columns;
// its thread (x, y) sums the rows y, y + 8, y + 16, ... of column x in order (coalesced across
// x), then row group 0 adds the 8 partial sums in order: deterministic.
__global__ void bias_column_sums_kernel(const float* __restrict__ dy, int64_t lddy, int64_t rows, int64_t cols,
                                        float* db) {
  __shared__ float part[kRowGroups][kCols];
  const int64_t c = int64_t(blockIdx.x) * kCols + threadIdx.x;
  float s = 0.f;
  if (c < cols)
    for (int64_t r = threadIdx.y; r < rows; r += kRowGroups) s += dy[r * lddy + c];
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    float total = 0.f;
    for (int g = 0; g < kRowGroups; ++g) total += part[g][threadIdx.x];
    db[c] += total;
  }
}

}  // namespace

void bias_add(float* y, int64_t ldy, const float* b, int64_t rows, int64_t cols, cudaStream_t stream) {
  const int64_t n = rows * cols;
  if (n == 0) return;
  const unsigned blocks = unsigned(std::min<int64_t>((n + kThreads - 1) / kThreads, 1 << 20));
  bias_add_kernel<<<blocks, kThreads, 0, stream>>>(y, ldy, b, rows, cols);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
}

void bias_column_sums(const float* dy, int64_t lddy, int64_t rows, int64_t cols, float* db, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  const unsigned blocks = unsigned((cols + kCols - 1) / kCols);
  bias_column_sums_kernel<<<blocks, dim3(kCols, kRowGroups), 0, stream>>>(dy, lddy, rows, cols, db);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fusellm::cuda
