#pragma once
// Backward of the plain MLP's activation on the GPU, fp32, in place: dh <- dh * act'(pre), the CPU
// reference's math (src/fusellm/model/activation_backward.cpp, model::activation_backward), for
// every activation of model::Activation:
//   gelu (erf)         act'(a) = Phi(a) + a phi(a)
//   gelu tanh / fast   act'(a) = s + a s (1 - s) 2 k (1 + 3 c a^2),  s = sigmoid(2 k (a + c a^3))
//   silu               act'(a) = s + a s (1 - s),                   s = sigmoid(a)
//   quick_gelu         act'(a) = s + 1.702 a s (1 - s),             s = sigmoid(1.702 a)
//   relu               act'(a) = [a > 0]
// Device pointers; row-major with leading dimensions in elements; queued on `stream`. Throws
// fusellm::Error on a CUDA error or an unknown activation.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda/act_kind.cuh"

namespace fusellm::cuda {

void activation_backward(ActKind a, const float* pre, int64_t ldpre, float* dh, int64_t lddh, int64_t rows,
                         int64_t cols, cudaStream_t stream);

}  // namespace fusellm::cuda
