// Ensemble log-probabilities: see ensemble.hpp.
#include "fusellm/model/ensemble.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace fusellm {

double log_softmax_at(std::span<const float> logits, int32_t id) {
  float mx = logits[0];
  for (float v : logits) mx = std::max(mx, v);
  double s = 0;
  for (float v : logits) s += std::exp(double(v) - mx);
  return double(logits[id]) - mx - std::log(s);
}

double ensemble_log_prob(std::span<const std::span<const float>> logits, std::span<const double> weights, int32_t id) {
  std::vector<double> terms;
  terms.reserve(logits.size());
  double mx = -std::numeric_limits<double>::infinity();
  for (size_t j = 0; j < logits.size(); ++j) {
    if (weights[j] <= 0) continue;
    terms.push_back(std::log(weights[j]) + log_softmax_at(logits[j], id));
    mx = std::max(mx, terms.back());
  }
  if (!std::isfinite(mx)) return mx;
  double s = 0;
  for (double t : terms) s += std::exp(t - mx);
  return mx + std::log(s);
}

}  // namespace fusellm
