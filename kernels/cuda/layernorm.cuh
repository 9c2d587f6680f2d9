#pragma once
// LayerNorm forward on the GPU, fp32, the CUDA form of src/fusellm/model/layernorm.cpp's
// layernorm() (torch.nn.LayerNorm; MPT's has no bias):
//   mu = mean(x), var = mean((x - mu)^2) (biased), y = (x - mu) / sqrt(var + eps) * w (+ b)
// per row, two passes over the row as the CPU does. Device pointers, strided rows, queued on
// `stream`; y may be x.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace fusellm::cuda {

// b nullptr: no bias.
void layernorm_forward(const float* x, int64_t ldx, const float* w, const float* b, float eps, float* y,
                       int64_t ldy, int64_t rows, int64_t cols, cudaStream_t stream);

}  // namespace fusellm::cuda
