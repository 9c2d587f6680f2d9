#pragma once
// Backward of RoPE on the GPU, fp32, in place, the CPU reference's math
// (src/fusellm/model/rope_backward.cpp, model::apply_rope_backward): the forward rotates each
// pair (x[i], x[i + half]) of every head by theta_i, so the gradient rotates by -theta_i:
//   dx[i] = d1 cos + d2 sin,   dx[i + half] = d2 cos - d1 sin,   d1 = dx[i], d2 = dx[i + half]
// for `heads` heads of width head_dim starting at column col0 of each row; the dims at and past
// 2 half of each head are left as they are. cos/sin are device tables [rows, half] (the
// model::RopeTable's, uploaded). Device pointers; leading dimension in elements; queued on
// `stream`. Throws fusellm::Error on a CUDA error.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace fusellm::cuda {

void rope_backward(const float* cos, const float* sin, int64_t half, float* dx, int64_t lddx, int64_t rows,
                   int64_t col0, int64_t heads, int64_t head_dim, cudaStream_t stream);

}  // namespace fusellm::cuda
