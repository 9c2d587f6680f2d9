// The plain MLP's activation backward on the GPU (activation_backward.cuh states the math).
// Elementwise; expf/erff at full precision, against the CPU's vectorized exp (relative error
// < 2e-7): the two differ by a few ulps.
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/activation_backward.cuh"
#include "cuda/cuda_check.hpp"
#include "fusellm/core/error.hpp"

namespace fusellm::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxGridY = 65535;

__device__ __forceinline__ float sigmoid(float f) { return 1.f / (1.f + expf(-f)); }

// act'(a), as model::activation_backward's derivative8 (activation_backward.cpp).
template <ActKind A>
__device__ __forceinline__ float derivative(float a) {
  if constexpr (A == ActKind::GeluErf) {
    const float inv_sqrt2 = 0.70710678118654752f, inv_sqrt2pi = 0.39894228040143268f;
    return 0.5f * (1.f + erff(a * inv_sqrt2)) + a * inv_sqrt2pi * expf(-0.5f * a * a);
  } else if constexpr (A == ActKind::ReLU) {
    return a > 0.f ? 1.f : 0.f;
  } else {
    // act(a) = a sigmoid(f(a)): act'(a) = s + a s (1 - s) f'(a)
    float f, df;
    if constexpr (A == ActKind::SiLU) {
      f = a, df = 1.f;
    } else if constexpr (A == ActKind::QuickGelu) {
      f = 1.702f * a, df = 1.702f;
    } else {  // GeluTanh, GeluFast: f = 2 k (a + c a^3)
      constexpr float k = A == ActKind::GeluTanh ? 0.79788456080286536f : 0.7978845608f;
      f = 2.f * k * (a + 0.044715f * a * a * a);
      df = 2.f * k * (1.f + 3.f * 0.044715f * a * a);
    }
    const float s = sigmoid(f);
    return s + a * s * (1.f - s) * df;
  }
}

// dh[r, c] *= act'(pre[r, c]); grid.x over columns, grid.y striding over rows.
template <ActKind A>
__global__ void activation_backward_kernel(const float* pre, int64_t ldpre, float* dh, int64_t lddh, int64_t rows,
                                           int64_t cols) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) dh[r * lddh + c] *= derivative<A>(pre[r * ldpre + c]);
}

template <ActKind A>
void launch(const float* pre, int64_t ldpre, float* dh, int64_t lddh, int64_t rows, int64_t cols,
            cudaStream_t stream) {
  const dim3 grid(unsigned((cols + kThreads - 1) / kThreads), unsigned(std::min<int64_t>(rows, kMaxGridY)));
  activation_backward_kernel<A><<<grid, kThreads, 0, stream>>>(pre, ldpre, dh, lddh, rows, cols);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void activation_backward(ActKind a, const float* pre, int64_t ldpre, float* dh, int64_t lddh, int64_t rows,
                         int64_t cols, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  switch (a) {
    case ActKind::SiLU: return launch<ActKind::SiLU>(pre, ldpre, dh, lddh, rows, cols, stream);
    case ActKind::GeluErf: return launch<ActKind::GeluErf>(pre, ldpre, dh, lddh, rows, cols, stream);
    case ActKind::GeluTanh: return launch<ActKind::GeluTanh>(pre, ldpre, dh, lddh, rows, cols, stream);
    case ActKind::GeluFast: return launch<ActKind::GeluFast>(pre, ldpre, dh, lddh, rows, cols, stream);
    case ActKind::QuickGelu:
      return launch<ActKind::QuickGelu>(pre, ldpre, dh, lddh, rows, cols, stream);
    case ActKind::ReLU: return launch<ActKind::ReLU>(pre, ldpre, dh, lddh, rows, cols, stream);
  }
  fail("activation_backward (cuda): unknown activation {}", int(a));
}

}  // namespace fusellm::cuda
