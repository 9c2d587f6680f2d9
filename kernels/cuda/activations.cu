#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/activations.cuh"
#include "cuda/cuda_check.hpp"

namespace fusellm::cuda {

namespace {

constexpr int kThreads = 256;

// act(x) as model/activations.cpp's act8() computes it: the sigmoid forms as x / (1 + exp(-a)),
// the GELU tanh forms through 0.5 (1 + tanh y) = sigmoid(2 y), exact GELU through erf, ReLU as
// x > 0 ? x : 0 (NaN gives 0, as on the CPU). expf/erff, not the fast intrinsics: the CPU's
// exp is within 2e-7 relative of the true value, so are these.
template <ActKind A>
__device__ float act(float x) {
  if constexpr (A == ActKind::SiLU) {
    return x / (1.f + expf(-x));
  } else if constexpr (A == ActKind::GeluTanh) {
    return x / (1.f + expf(-(2.f * 0.79788456080286536f * (x + 0.044715f * x * x * x))));
  } else if constexpr (A == ActKind::GeluFast) {
    return x / (1.f + expf(-(2.f * (x * 0.7978845608f * (1.f + 0.044715f * x * x)))));
  } else if constexpr (A == ActKind::QuickGelu) {
    return x / (1.f + expf(-(1.702f * x)));
  } else if constexpr (A == ActKind::ReLU) {
    return x > 0.f ? x : 0.f;
  } else {
    return 0.5f * x * (1.f + erff(x * 0.70710678118654752f));
  }
}

// out[r, c] = act(in[r, c]) (* in[r, n + c] when gated), c < n: model/activations.cpp, run<>().
// One thread per output element; it alone reads the inputs of its element and writes it, so out
// may be in (in place).
template <ActKind A, bool Gated>
__global__ void act_kernel(const float* in, int64_t ldi, float* out, int64_t ldo, int64_t rows, int64_t n) {
  const int64_t total = rows * n;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = idx / n, c = idx % n;
    const float* row = in + r * ldi;
    float v = act<A>(row[c]);
    if constexpr (Gated) v *= row[n + c];
    out[r * ldo + c] = v;
  }
}

unsigned blocks_for(int64_t n) { return unsigned(std::min<int64_t>((n + kThreads - 1) / kThreads, 1 << 20)); }

template <ActKind A, bool Gated>
void launch_as(const float* in, int64_t ldi, float* out, int64_t ldo, int64_t rows, int64_t n, cudaStream_t stream) {
  act_kernel<A, Gated><<<blocks_for(rows * n), kThreads, 0, stream>>>(in, ldi, out, ldo, rows, n);
}

template <bool Gated>
void launch(ActKind a, const float* in, int64_t ldi, float* out, int64_t ldo, int64_t rows, int64_t n,
            cudaStream_t stream) {
  if (rows * n == 0) return;
  switch (a) {
    case ActKind::SiLU: launch_as<ActKind::SiLU, Gated>(in, ldi, out, ldo, rows, n, stream); break;
    case ActKind::GeluErf: launch_as<ActKind::GeluErf, Gated>(in, ldi, out, ldo, rows, n, stream); break;
    case ActKind::GeluTanh: launch_as<ActKind::GeluTanh, Gated>(in, ldi, out, ldo, rows, n, stream); break;
    case ActKind::GeluFast: launch_as<ActKind::GeluFast, Gated>(in, ldi, out, ldo, rows, n, stream); break;
    case ActKind::QuickGelu: launch_as<ActKind::QuickGelu, Gated>(in, ldi, out, ldo, rows, n, stream); break;
    case ActKind::ReLU: launch_as<ActKind::ReLU, Gated>(in, ldi, out, ldo, rows, n, stream); break;
  }
  FUSELLM_CUDA_CHECK(cudaGetLastError());
}

// x = clamp(x, -c, c) as std::clamp does it (NaN stays NaN): model/activations.cpp, clamp().
__global__ void clamp_kernel(float* x, int64_t ldx, int64_t rows, int64_t cols, float c) {
  const int64_t total = rows * cols;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    float* p = x + (idx / cols) * ldx + idx % cols;
    const float v = *p;
    *p = v < -c ? -c : (c < v ? c : v);
  }
}

}  // namespace

void activation_forward(ActKind a, const float* x, int64_t ldx, float* out, int64_t ldo, int64_t rows, int64_t cols,
                        cudaStream_t stream) {
  launch<false>(a, x, ldx, out, ldo, rows, cols, stream);
}

void gated_activation_forward(ActKind a, const float* gate_up, int64_t ldg, float* out, int64_t ldo, int64_t rows,
                              int64_t n, cudaStream_t stream) {
  launch<true>(a, gate_up, ldg, out, ldo, rows, n, stream);
}

void clamp_forward(float* x, int64_t ldx, int64_t rows, int64_t cols, float c, cudaStream_t stream) {
  if (rows * cols == 0) return;
  clamp_kernel<<<blocks_for(rows * cols), kThreads, 0, stream>>>(x, ldx, rows, cols, c);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fusellm::cuda
