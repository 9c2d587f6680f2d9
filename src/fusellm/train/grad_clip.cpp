#include "fusellm/train/grad_clip.hpp"

#include <algorithm>
#include <cmath>

namespace fusellm {

double grad_sq_sum(std::span<const ParamGrad> params) {
  double total = 0;
  for (const auto& pg : params) {
    const float* g = pg.grad.data();
    const int64_t n = int64_t(pg.grad.size());
    double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static) if (n >= 32768)
    for (int64_t i = 0; i < n; ++i) s += double(g[i]) * double(g[i]);
    total += s;
  }
  return total;
}

double clip_coef(double total_norm, double max_norm) {
  // In fp32 as torch computes it: total_norm is an fp32 tensor, `max_norm / (total_norm + 1e-6)`
  // is Tensor.__rtruediv__, i.e. (total_norm + 1e-6).reciprocal() * max_norm.
  const float denom = float(total_norm) + float(1e-6);
  const float c = (1.0f / denom) * float(max_norm);
  return std::isnan(c) ? double(c) : std::min(double(c), 1.0);
}

void scale_grads(std::span<const ParamGrad> params, float coef) {
  for (const auto& pg : params) {
    float* g = pg.grad.data();
    const int64_t n = int64_t(pg.grad.size());
#pragma omp parallel for schedule(static) if (n >= 32768)
    for (int64_t i = 0; i < n; ++i) g[i] *= coef;
  }
}

double clip_grad_norm(std::span<const ParamGrad> params, double max_norm) {
  const double norm = std::sqrt(grad_sq_sum(params));
  if (max_norm <= 0) return norm;
  const double c = clip_coef(norm, max_norm);
  // torch multiplies by the clamped coefficient even when it is 1; skipping that is exact.
  if (!(c >= 1.0)) scale_grads(params, float(c));
  return norm;
}

}  // namespace fusellm
