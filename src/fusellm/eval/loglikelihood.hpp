#pragma once
// lm-evaluation-harness's two scoring requests on one model (HFLM, lm_eval/models/huggingface.py,
// 0.4.5), one forward pass per request:
//
//   loglikelihood(context, continuation): _encode_pair splits the text (trailing white space of
//     the context moves to the start of the continuation; the continuation's ids are those of
//     context + continuation after the context's ids), then _loglikelihood_tokens feeds
//     (context + continuation)[-(max_length+1):][:-1] and sums the log-probs of the
//     continuation's ids. An empty context is the prefix token (BOS, else EOS).
//   loglikelihood_rolling(text): the sum over the document's rolling windows
//     (eval/rolling_windows.hpp) of their targets' log-probs.
//
// Log-probs are fp32 logits through a log-softmax in double (eval/text_score.hpp); the harness
// takes its log-softmax in the model's dtype (fp32 here): sums agree to ~1e-6 relative.
#include <string>
#include <string_view>
#include <vector>

#include "fusellm/eval/eval_model.hpp"

namespace fusellm::eval {

struct EncodedPair {
  std::vector<int32_t> context;
  std::vector<int32_t> continuation;
};

// HFLM._encode_pair / TemplateLM.loglikelihood's encoding (an empty context: the prefix token).
EncodedPair encode_pair(const EvalModel& m, std::string_view context, std::string_view continuation);

// Sum of log p(continuation | context), nats. `where` names the request in errors ("file:line").
double loglikelihood(const EvalModel& m, const EncodedPair& pair, const std::string& where);

struct RollingScore {
  double loglikelihood = 0.0;  // nats, summed over every token of the document
  int64_t tokens = 0;
  int64_t windows = 0;
};

RollingScore loglikelihood_rolling(const EvalModel& m, std::string_view text, const std::string& where);

}  // namespace fusellm::eval
