// Backward of RMSNorm (LlamaRMSNorm.forward, whose autograd is that of
//   y = w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))):
// per row of n values, with r = 1 / sqrt(mean(x^2) + eps), xhat = x r and g = dy * w,
//   dw += dy * xhat                      (summed over rows)
//   dx  = r * (g - xhat * mean(g * xhat))
// r and xhat are recomputed from x (one pass over the row): cheaper than storing them.
#include <omp.h>

#include <cmath>
#include <vector>

#include "fusellm/core/error.hpp"
#include "fusellm/model/train_ops.hpp"

namespace fusellm::model {

void rmsnorm_backward(ConstMatView x, std::span<const float> w, float eps, ConstMatView dy, MatView dx,
                      std::span<float> dw, bool accumulate) {
  const int64_t n = x.cols;
  if (dy.rows != x.rows || dy.cols != n || dx.rows != x.rows || dx.cols != n || int64_t(w.size()) != n ||
      int64_t(dw.size()) != n)
    fail("rmsnorm_backward: shapes do not agree");
  // dw is a reduction over rows: each thread sums its (static, so fixed) rows into its own
  // partial, and the partials are added in thread order afterwards, so the result does not
  // depend on which thread finishes first (bit-identical reruns and resumes need that).
  std::vector<std::vector<double>> partials;
#pragma omp parallel if (x.rows >= 16)
  {
#pragma omp single
    partials.assign(static_cast<size_t>(omp_get_num_threads()), {});
    std::vector<double>& dw_local = partials[static_cast<size_t>(omp_get_thread_num())];
    dw_local.assign(static_cast<size_t>(n), 0.0);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < x.rows; ++r) {
      const float* xr = x.row(r);
      const float* dyr = dy.row(r);
      float* dxr = dx.row(r);
      float ss = 0.f;
#pragma omp simd reduction(+ : ss)
      for (int64_t c = 0; c < n; ++c) ss += xr[c] * xr[c];
      const float inv = 1.f / std::sqrt(ss / float(n) + eps);
      float dot = 0.f;
#pragma omp simd reduction(+ : dot)
      for (int64_t c = 0; c < n; ++c) dot += dyr[c] * w[c] * xr[c] * inv;
      const float mean_dot = dot / float(n);
      for (int64_t c = 0; c < n; ++c) {
        const float xhat = xr[c] * inv;
        dw_local[c] += double(dyr[c] * xhat);
        const float g = dyr[c] * w[c];
        const float d = inv * (g - xhat * mean_dot);
        dxr[c] = accumulate ? dxr[c] + d : d;
      }
    }
  }
  for (const auto& part : partials)
    for (int64_t c = 0; c < n; ++c) dw[c] += float(part[c]);
}

}  // namespace fusellm::model
