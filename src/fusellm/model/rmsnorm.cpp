// RMSNorm (LlamaRMSNorm):   y = w * x / sqrt(mean(x^2) + eps)
// per row, in fp32 (transformers upcasts to fp32 for this, the CPU path is fp32 throughout).
#include <cmath>

#include "fusellm/model/ops.hpp"

namespace fusellm::model {

void rmsnorm(ConstMatView x, std::span<const float> w, float eps, MatView y) {
  const int64_t n = x.cols;
#pragma omp parallel for schedule(static) if (x.rows >= 16)
  for (int64_t r = 0; r < x.rows; ++r) {
    const float* xr = x.row(r);
    float* yr = y.row(r);
    float ss = 0.f;
#pragma omp simd reduction(+ : ss)
    for (int64_t c = 0; c < n; ++c) ss += xr[c] * xr[c];
    const float inv = 1.f / std::sqrt(ss / float(n) + eps);
#pragma omp simd
    for (int64_t c = 0; c < n; ++c) yr[c] = w[c] * (xr[c] * inv);
  }
}

}  // namespace fusellm::model
