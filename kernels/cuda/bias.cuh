#pragma once
// The linear layer's bias on the GPU, fp32 (the GEMM itself is cuBLAS's, in
// src/fusellm/model/cuda/cuda_backend.cpp):
//   bias_add:          y[r, c] += b[c]                 (model/matmul.cpp, add_bias after the sgemm)
//   bias_column_sums:  db[c] += sum_r dy[r, c]        (model/linear_backward.cpp, bias_backward)
// Device pointers, strided rows, queued on `stream`.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace fusellm::cuda {

void bias_add(float* y, int64_t ldy, const float* b, int64_t rows, int64_t cols, cudaStream_t stream);
// Deterministic: a fixed summation order (8 interleaved partial sums per column, added in order),
// not the CPU's row-by-row order.
void bias_column_sums(const float* dy, int64_t lddy, int64_t rows, int64_t cols, float* db, cudaStream_t stream);

}  // namespace fusellm::cuda
