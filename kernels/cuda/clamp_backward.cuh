#pragma once
// Backward of MPT's clip_qkv on the GPU, fp32, in place: dy <- dy * [|y| < c], from the clamp's
// output y, as the CPU reference (src/fusellm/model/clamp_backward.cpp, model::clamp_backward)
// takes the mask. Device pointers; row-major with leading dimensions in elements; queued on
// `stream`. Throws fusellm::Error on a CUDA error.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace fusellm::cuda {

void clamp_backward(const float* y, int64_t ldy, float c, float* dy, int64_t lddy, int64_t rows, int64_t cols,
                    cudaStream_t stream);

}  // namespace fusellm::cuda
