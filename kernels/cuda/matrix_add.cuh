#pragma once
// y = s (+ y): a row-major [rows, cols] fp32 result computed elsewhere (an aligned scratch buffer
// of the bf16 GEMMs, for an output cuBLASLt cannot write in place: a gradient tensor at an offset
// of the flat buffer that is not 16-byte aligned) stored into, or added to, its destination.
// Each element once, in one pass; y and s must not overlap. Host declaration; kernel in
// matrix_add.cu.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace fusellm::cuda {

void matrix_add(float* y, int64_t y_ld, const float* s, int64_t s_ld, int64_t rows, int64_t cols, bool accumulate,
                cudaStream_t stream = nullptr);

}  // namespace fusellm::cuda
