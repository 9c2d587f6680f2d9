#pragma once
// Rotary position embedding on the GPU, fp32, the CUDA form of src/fusellm/model/rope.cpp's
// apply_rope() (rotate_half layout, partial rotary): for each row r, each of `heads` heads of
// width head_dim starting at column col0, and i < half (rotary_dim = 2 half <= head_dim):
//   a = x[i], b = x[i + half]:  x[i] = a cos[r, i] - b sin[r, i],  x[i + half] = b cos[r, i] + a sin[r, i]
// The dims from 2 half on pass through. Device pointers; cos/sin [rows, half] dense; in place;
// queued on `stream`.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace fusellm::cuda {

void rope_forward(float* x, int64_t ldx, int64_t rows, int64_t col0, int64_t heads, int64_t head_dim,
                  const float* cos, const float* sin, int64_t half, cudaStream_t stream);

}  // namespace fusellm::cuda
