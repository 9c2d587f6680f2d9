#pragma once
// x[i] *= s over n floats (device): the fused classifier's dL/dz scaled by 1 / (sequences in the
// optimizer step), as train_step.cpp's sequence_loss scales it on the host (one fp32 multiply per
// element, the same bits). Host declaration; kernel in scale.cu.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace fusellm::cuda {

void scale(float* x, int64_t n, float s, cudaStream_t stream = nullptr);

}  // namespace fusellm::cuda
