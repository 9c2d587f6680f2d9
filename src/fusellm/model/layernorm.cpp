// LayerNorm (torch.nn.LayerNorm; MPT's has no bias):
//   mu = mean(x),  var = mean((x - mu)^2)  (biased),  y = (x - mu) / sqrt(var + eps) * w + b
// per row, two passes over the row (as accurate as Welford for rows this short).
#include <cmath>

#include "fusellm/model/ops.hpp"

namespace fusellm::model {

void layernorm(ConstMatView x, std::span<const float> w, std::span<const float> b, float eps, MatView y) {
  const int64_t n = x.cols;
  const bool has_bias = !b.empty();
#pragma omp parallel for schedule(static) if (x.rows >= 16)
  for (int64_t r = 0; r < x.rows; ++r) {
    const float* xr = x.row(r);
    float* yr = y.row(r);
    float s = 0.f;
#pragma omp simd reduction(+ : s)
    for (int64_t c = 0; c < n; ++c) s += xr[c];
    const float mu = s / float(n);
    float ss = 0.f;
#pragma omp simd reduction(+ : ss)
    for (int64_t c = 0; c < n; ++c) ss += (xr[c] - mu) * (xr[c] - mu);
    const float inv = 1.f / std::sqrt(ss / float(n) + eps);
    if (has_bias) {
#pragma omp simd
      for (int64_t c = 0; c < n; ++c) yr[c] = (xr[c] - mu) * inv * w[c] + b[c];
    } else {
#pragma omp simd
      for (int64_t c = 0; c < n; ++c) yr[c] = (xr[c] - mu) * inv * w[c];
    }
  }
}

}  // namespace fusellm::model
