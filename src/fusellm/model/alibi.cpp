// ALiBi slopes (build_mpt_alibi_tensor in transformers' modeling_mpt.py, MPT's own attention.py):
//   n2 = 2^ceil(log2 H),  slope_k = 2^-((k + 1) * alibi_bias_max / n2)  for k < n2,
//   when H is not a power of two: the odd-indexed slopes, then the even-indexed, first H kept.
// The bias added to score (i, j) is slope * (j - i) (attention.cpp). MPT adds slope * (j - L + 1)
// instead, which differs by a constant per query row: softmax is the same.
#include <cmath>

#include "fusellm/model/ops.hpp"

namespace fusellm::model {

std::vector<float> alibi_slopes(int64_t num_heads, double alibi_bias_max) {
  const int64_t n2 = int64_t(1) << int64_t(std::ceil(std::log2(double(num_heads))));
  std::vector<float> s(static_cast<size_t>(n2));
  const float step = float(alibi_bias_max / double(n2));
  for (int64_t k = 0; k < n2; ++k) s[k] = 1.f / std::pow(2.f, float(k + 1) * step);
  if (n2 == num_heads) return s;
  std::vector<float> out;
  for (int64_t k = 1; k < n2; k += 2) out.push_back(s[k]);
  for (int64_t k = 0; k < n2; k += 2) out.push_back(s[k]);
  out.resize(size_t(num_heads));
  return out;
}

}  // namespace fusellm::model
