#include "fusellm/optim/grad_clip.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include <omp.h>

namespace fusellm {

namespace {

// Sum of squares of n floats in double; `omp simd` lets the compiler keep lane-wise partial sums
// (a plain double loop is one dependent add per element and runs at a quarter of memory speed).
double sq_sum(const float* g, int64_t n) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += double(g[i]) * double(g[i]);
  return s;
}

}  // namespace

// Each thread sums a fixed contiguous chunk into its own slot and the slots are added in thread
// order, so the result depends on the thread count only, never on which thread finishes first.
double grad_sq_sum(std::span<const ParamGrad> params) {
  double total = 0;
  std::vector<double> part;
  for (const auto& pg : params) {
    const float* g = pg.grad.data();
    const int64_t n = int64_t(pg.grad.size());
    if (n < 32768) {
      total += sq_sum(g, n);
      continue;
    }
    part.assign(static_cast<size_t>(omp_get_max_threads()), 0.0);
#pragma omp parallel num_threads(int(part.size()))
    {
      const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
      const int64_t b = n * t / nt, e = n * (t + 1) / nt;
      part[static_cast<size_t>(t)] = sq_sum(g + b, e - b);
    }
    double s = 0;
    for (const double p : part) s += p;
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

void clip_to_norm(std::span<const ParamGrad> params, double total_norm, double max_norm) {
  if (max_norm <= 0) return;
  const double c = clip_coef(total_norm, max_norm);
  // torch multiplies by the clamped coefficient even when it is 1; skipping that is exact.
  if (!(c >= 1.0)) scale_grads(params, float(c));
}

double clip_grad_norm(std::span<const ParamGrad> params, double max_norm) {
  const double norm = std::sqrt(grad_sq_sum(params));
  clip_to_norm(params, norm, max_norm);
  return norm;
}

}  // namespace fusellm
