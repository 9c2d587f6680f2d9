#pragma once
// The ensemble baseline of the FuseLLM paper (section 4, "Ensemble"): at inference the models'
// next-token distributions are averaged, p(v) = sum_j w_j softmax(z_j)(v), which needs models
// that share a tokenizer. Computed in log space, stably: log p(v) = logsumexp_j (log w_j +
// log_softmax(z_j)(v)), each log-softmax in double with its row's maximum subtracted.
//
// Each model's softmax runs over all rows of its own output head, so an ensemble of one model is
// exactly that model's score; rows a model has beyond the shared tokenizer's vocabulary
// (padding) keep the little mass the model gives them, and it is not moved to real tokens.
#include <cstdint>
#include <span>

namespace fusellm {

// log softmax(logits)[id].
double log_softmax_at(std::span<const float> logits, int32_t id);

// log sum_j weights[j] * softmax(logits[j])[id]; weights sum to 1 (mixture_weights.hpp), a zero
// weight drops its model.
double ensemble_log_prob(std::span<const std::span<const float>> logits, std::span<const double> weights, int32_t id);

}  // namespace fusellm
