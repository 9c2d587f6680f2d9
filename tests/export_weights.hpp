#pragma once
// Every tensor of a Hugging Face export (`fusellm train`'s <output_dir>/export) as fp32, by name,
// for tests that compare the weights two runs ended with.
#include <map>
#include <string>

#include "fusellm/core/tensor.hpp"
#include "fusellm/io/safetensors.hpp"

namespace fusellm::testing {

inline std::map<std::string, Tensor> export_weights(const std::string& export_dir) {
  Checkpoint ck(export_dir);
  std::map<std::string, Tensor> w;
  for (const auto& n : ck.names()) w.emplace(n, ck.load_f32(n));
  return w;
}

}  // namespace fusellm::testing
