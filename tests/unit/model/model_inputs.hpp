#pragma once
// What the decoder tests feed a model and how they compare its outputs: deterministic token ids
// spread over the vocabulary, and logits equal bit for bit.
#include <cstdint>
#include <cstring>
#include <vector>

#include "fusellm/core/tensor.hpp"

namespace fusellm::testing {

inline std::vector<int32_t> some_ids(int64_t vocab, int64_t n) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ids[size_t(i)] = int32_t((i * 7919 + 13) % vocab);
  return ids;
}

inline bool bit_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), sizeof(float) * size_t(a.size())) == 0;
}

}  // namespace fusellm::testing
