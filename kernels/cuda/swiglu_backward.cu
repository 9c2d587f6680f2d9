// The SwiGLU gate's backward on the GPU (swiglu_backward.cuh states the math).
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/cuda_check.hpp"
#include "cuda/swiglu_backward.cuh"

namespace fusellm::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxGridY = 65535;

// da = dh b s (1 + a (1 - s)), db = dh a s (model::swiglu_backward, swiglu_backward.cpp); expf
// at full precision against the CPU's vectorized exp (a few ulps apart).
__global__ void swiglu_backward_kernel(const float* gate_up, int64_t ldgu, const float* dh, int64_t lddh,
                                       float* dgate_up, int64_t lddgu, int64_t rows, int64_t n) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= n) return;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const float a = gate_up[r * ldgu + c], b = gate_up[r * ldgu + n + c], d = dh[r * lddh + c];
    const float s = 1.f / (1.f + expf(-a));
    dgate_up[r * lddgu + c] = d * b * s * (1.f + a * (1.f - s));
    dgate_up[r * lddgu + n + c] = d * a * s;
  }
}

}  // namespace

void swiglu_backward(const float* gate_up, int64_t ldgu, const float* dh, int64_t lddh, float* dgate_up,
                     int64_t lddgu, int64_t rows, int64_t n, cudaStream_t stream) {
  if (rows == 0 || n == 0) return;
  const dim3 grid(unsigned((n + kThreads - 1) / kThreads), unsigned(std::min<int64_t>(rows, kMaxGridY)));
  swiglu_backward_kernel<<<grid, kThreads, 0, stream>>>(gate_up, ldgu, dh, lddh, dgate_up, lddgu, rows, n);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fusellm::cuda
