// Backward of LayerNorm (torch.nn.functional.layer_norm over the last dim, as nn.LayerNorm in
// GPTNeoXLayer, GPT2Block and MptBlock (there without bias) calls it):
//   mu = mean(x),  r = 1 / sqrt(mean((x - mu)^2) + eps),  xhat = (x - mu) r,  y = xhat * w + b
// per row of n values, with g = dy * w,
//   dw += dy * xhat                      (summed over rows)
//   db += dy                             (summed over rows; when the norm has a bias)
//   dx  = r * (g - mean(g) - xhat * mean(g * xhat))
// mu, r and xhat are recomputed from x with the forward's arithmetic (layernorm.cpp): cheaper
// than storing them. The weight and bias gradients are reductions over rows, summed per thread
// in fp64 and added in thread order, as rmsnorm_backward.cpp does (a result independent of
// which thread finishes first).
#include <omp.h>

#include <cmath>
#include <vector>

#include "fusellm/core/error.hpp"
#include "fusellm/model/train_ops.hpp"

namespace fusellm::model {

void layernorm_backward(ConstMatView x, std::span<const float> w, float eps, ConstMatView dy, MatView dx,
                        std::span<float> dw, std::span<float> db, bool accumulate) {
  const int64_t n = x.cols;
  if (dy.rows != x.rows || dy.cols != n || dx.rows != x.rows || dx.cols != n || int64_t(w.size()) != n ||
      int64_t(dw.size()) != n || (!db.empty() && int64_t(db.size()) != n))
    fail("layernorm_backward: shapes do not agree");
  const bool has_bias = !db.empty();
  std::vector<std::vector<double>> partials;  // per thread: dw (n), then db (n)
#pragma omp parallel if (x.rows >= 16)
  {
#pragma omp single
    partials.assign(static_cast<size_t>(omp_get_num_threads()), {});
    std::vector<double>& local = partials[static_cast<size_t>(omp_get_thread_num())];
    local.assign(static_cast<size_t>(2 * n), 0.0);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < x.rows; ++r) {
      const float* xr = x.row(r);
      const float* dyr = dy.row(r);
      float* dxr = dx.row(r);
      float s = 0.f;
#pragma omp simd reduction(+ : s)
      for (int64_t c = 0; c < n; ++c) s += xr[c];
      const float mu = s / float(n);
      float ss = 0.f;
#pragma omp simd reduction(+ : ss)
      for (int64_t c = 0; c < n; ++c) ss += (xr[c] - mu) * (xr[c] - mu);
      const float inv = 1.f / std::sqrt(ss / float(n) + eps);
      float sum_g = 0.f, sum_gx = 0.f;
#pragma omp simd reduction(+ : sum_g, sum_gx)
      for (int64_t c = 0; c < n; ++c) {
        const float g = dyr[c] * w[c];
        sum_g += g;
        sum_gx += g * (xr[c] - mu) * inv;
      }
      const float mean_g = sum_g / float(n), mean_gx = sum_gx / float(n);
      for (int64_t c = 0; c < n; ++c) {
        const float xhat = (xr[c] - mu) * inv;
        local[size_t(c)] += double(dyr[c] * xhat);
        local[size_t(n + c)] += double(dyr[c]);
        const float d = inv * (dyr[c] * w[c] - mean_g - xhat * mean_gx);
        dxr[c] = accumulate ? dxr[c] + d : d;
      }
    }
  }
  for (const auto& part : partials)
    for (int64_t c = 0; c < n; ++c) {
      dw[c] += float(part[size_t(c)]);
      if (has_bias) db[c] += float(part[size_t(n + c)]);
    }
}

}  // namespace fusellm::model
