// nn.Embedding's backward on the GPU (embedding_backward.cuh states the math and the atomics).
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/cuda_check.hpp"
#include "cuda/embedding_backward.cuh"

namespace fusellm::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxGridY = 65535;

// dtable[ids[t], c] += dx[t, c] (model::embedding_backward, embedding.cpp); grid.x over columns,
// grid.y striding over tokens.
__global__ void embedding_backward_kernel(const int32_t* ids, const float* dx, int64_t lddx, float* dtable,
                                          int64_t ldtable, int64_t vocab, int64_t T, int64_t cols) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  for (int64_t t = blockIdx.y; t < T; t += gridDim.y) {
    const int64_t id = ids[t];
    if (id < 0 || id >= vocab) continue;
    atomicAdd(dtable + id * ldtable + c, dx[t * lddx + c]);
  }
}

}  // namespace

void embedding_backward(const int32_t* ids, const float* dx, int64_t lddx, float* dtable, int64_t ldtable,
                        int64_t vocab, int64_t T, int64_t cols, cudaStream_t stream) {
  if (T == 0 || cols == 0) return;
  const dim3 grid(unsigned((cols + kThreads - 1) / kThreads), unsigned(std::min<int64_t>(T, kMaxGridY)));
  embedding_backward_kernel<<<grid, kThreads, 0, stream>>>(ids, dx, lddx, dtable, ldtable, vocab, T, cols);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fusellm::cuda
