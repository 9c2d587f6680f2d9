#pragma once
// The weights of a weighted average over models, shared by the paper's two inference-time
// baselines: the ensemble (p = sum_j w_j softmax(z_j)) and weight merging (theta = sum_j w_j
// theta_j). Given as "w1,w2,..." on the command line; default uniform.
#include <cstddef>
#include <string>
#include <vector>

namespace fusellm {

// Parses `spec` (empty: uniform) into `n_models` weights summing to 1. Each must be a finite,
// non-negative number and at least one positive; errors name `option` (e.g. "--weights"), the
// spec and what was expected.
std::vector<double> mixture_weights(const std::string& spec, size_t n_models, const std::string& option);

}  // namespace fusellm
