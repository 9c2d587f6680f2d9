#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda/cuda_check.hpp"
#include "cuda/scale.cuh"
#include "fusellm/core/error.hpp"

namespace fusellm::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;

__global__ void scale_kernel(float* __restrict__ x, int64_t n, float s) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) x[i] = __fmul_rn(x[i], s);
}

}  // namespace

void scale(float* x, int64_t n, float s, cudaStream_t stream) {
  if (n < 0 || (n > 0 && !x)) fail("scale: {} elements at {}", n, static_cast<const void*>(x));
  if (n == 0) return;
  const unsigned blocks = unsigned(std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxBlocks));
  scale_kernel<<<blocks, kThreads, 0, stream>>>(x, n, s);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fusellm::cuda
