#pragma once
// Backward of RMSNorm and LayerNorm on the GPU, fp32: the same math as the CPU reference
// (src/fusellm/model/rmsnorm_backward.cpp and layernorm_backward.cpp, model::rmsnorm_backward and
// model::layernorm_backward), per row of n values with g = dy * w:
//   rmsnorm:   r = 1 / sqrt(mean(x^2) + eps),               xhat = x r
//              dx (+)= r (g - xhat mean(g xhat))
//   layernorm: mu = mean(x), r = 1 / sqrt(mean((x - mu)^2) + eps), xhat = (x - mu) r
//              dx (+)= r (g - mean(g) - xhat mean(g xhat))
//   dw += sum_rows dy xhat,  db += sum_rows dy   (layernorm with a bias)
// The weight and bias gradients are deterministic: per chunk of rows, each column's partial sum
// in fp64 in a fixed order, then the chunks added in order (no atomics), so reruns are
// bit-identical. dx may alias dy (the row statistics and weight gradients are taken first).
//
// Device pointers; matrices row-major with leading dimensions in elements. `workspace` is device
// memory of at least norm_backward_workspace_bytes(rows, cols) bytes, 8-byte aligned (cudaMalloc's
// alignment), used only by the kernels queued on `stream` by the same call. Throws
// fusellm::Error on a CUDA error.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace fusellm::cuda {

size_t norm_backward_workspace_bytes(int64_t rows, int64_t cols);

void rmsnorm_backward(const float* x, int64_t ldx, const float* w, float eps, const float* dy, int64_t lddy,
                      float* dx, int64_t lddx, float* dw, int64_t rows, int64_t cols, bool accumulate,
                      void* workspace, cudaStream_t stream);

// db nullptr: the norm has no bias (MPT).
void layernorm_backward(const float* x, int64_t ldx, const float* w, float eps, const float* dy, int64_t lddy,
                        float* dx, int64_t lddx, float* dw, float* db, int64_t rows, int64_t cols,
                        bool accumulate, void* workspace, cudaStream_t stream);

}  // namespace fusellm::cuda
