#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/cuda_check.hpp"
#include "cuda/embedding.cuh"

namespace fusellm::cuda {

namespace {

constexpr int kThreads = 256;

// x[t, c] = table[ids[t], c] (+ pos_table[positions[t], c]): model/embedding.cpp, embed(). One
// block per token (grid-strided), its threads across the row: coalesced reads of the table row.
__global__ void embed_kernel(const int32_t* __restrict__ ids, const float* __restrict__ table, int64_t ldt,
                             const int32_t* __restrict__ positions, const float* __restrict__ pos_table,
                             int64_t ldp, float* __restrict__ x, int64_t ldx, int64_t T, int64_t cols) {
  for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
    const float* e = table + int64_t(ids[t]) * ldt;
    float* xr = x + t * ldx;
    if (pos_table) {
      const float* p = pos_table + int64_t(positions[t]) * ldp;
      for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) xr[c] = e[c] + p[c];
    } else {
      for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) xr[c] = e[c];
    }
  }
}

}  // namespace

void embed_forward(const int32_t* ids, const float* table, int64_t ldt, const int32_t* positions,
                   const float* pos_table, int64_t ldp, float* x, int64_t ldx, int64_t T, int64_t cols,
                   cudaStream_t stream) {
  if (T == 0 || cols == 0) return;
  const unsigned blocks = unsigned(std::min<int64_t>(T, 65535));
  embed_kernel<<<blocks, kThreads, 0, stream>>>(ids, table, ldt, positions, pos_table, ldp, x, ldx, T, cols);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fusellm::cuda
