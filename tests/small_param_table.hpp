#pragma once
// A parameter table of a few tensors with Hugging Face names (a norm and a bias, which AdamW does
// not decay, among them) for the optimizer, ZeRO-1 and checkpoint tests, and random values for it.
#include <cstdint>
#include <random>
#include <vector>

#include "fusellm/core/param_table.hpp"

namespace fusellm::testing {

// 727 floats: a prime, so no rank count above 1 divides it (ZeRO-1's padded collectives run).
inline ParamTable small_param_table() {
  ParamTable t;
  t.add("model.embed_tokens.weight", {40, 8});
  t.add("model.layers.0.input_layernorm.weight", {8});
  t.add("model.layers.0.self_attn.q_proj.weight", {8, 8});
  t.add("model.layers.0.self_attn.q_proj.bias", {8});
  t.add("model.layers.0.mlp.odd.weight", {7});
  t.add("lm_head.weight", {40, 8});
  return t;
}

// n normal values of standard deviation `scale` (never exactly zero in practice).
inline std::vector<float> normal_values(int64_t n, float scale, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = nd(rng);
  return v;
}

}  // namespace fusellm::testing
