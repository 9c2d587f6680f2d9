// Backward of MPT's clip_qkv (MptAttention: mixed_qkv.clamp(min=-clip_qkv, max=clip_qkv);
// torch.clamp's autograd passes the gradient where -c <= x <= c and zeroes it elsewhere):
//   dx = dy * [|x| <= c]
// Only the clamp's output y is kept (the saved q/k/v), so the mask is taken as |y| < c: it
// differs from torch's only where the pre-clamp value was exactly +-c (then torch passes the
// gradient and this does not), a set of measure zero for real-valued activations. In place on dy.
#include <cmath>

#include "fusellm/core/error.hpp"
#include "fusellm/model/train_ops.hpp"

namespace fusellm::model {

void clamp_backward(ConstMatView y, float c, MatView dy) {
  if (y.rows != dy.rows || y.cols != dy.cols)
    fail("clamp_backward: output [{}, {}] and gradient [{}, {}] do not agree", y.rows, y.cols, dy.rows, dy.cols);
#pragma omp parallel for schedule(static) if (y.rows * y.cols >= 65536)
  for (int64_t r = 0; r < y.rows; ++r) {
    const float* yr = y.row(r);
    float* d = dy.row(r);
#pragma omp simd
    for (int64_t i = 0; i < y.cols; ++i) d[i] = std::abs(yr[i]) < c ? d[i] : 0.f;
  }
}

}  // namespace fusellm::model
