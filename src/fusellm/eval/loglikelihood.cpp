#include "fusellm/eval/loglikelihood.hpp"

#include "fusellm/core/error.hpp"
#include "fusellm/eval/python_text.hpp"
#include "fusellm/eval/rolling_windows.hpp"
#include "fusellm/eval/text_score.hpp"

namespace fusellm::eval {

namespace {

// Sum of the log-probs of tokens[first_target:] under the model, or under the ensemble's mixture
// (eval/text_score.hpp).
double score(const EvalModel& m, std::span<const int32_t> tokens, int64_t first_target, const std::string& where) {
  std::vector<NamedModel> named{{m.model.get(), m.dir}};
  for (size_t i = 0; i < m.members.size(); ++i) named.push_back({m.members[i].get(), m.member_dirs[i]});
  const std::vector<double> one{1.0};
  const std::span<const double> weights = m.is_ensemble() ? std::span<const double>(m.weights) : std::span(one);
  const ScoreRequest req{named, weights, tokens, 0, 0, where};
  return score_continuation(req, first_target);
}

}  // namespace

EncodedPair encode_pair(const EvalModel& m, std::string_view context, std::string_view continuation) {
  if (context.empty()) return {{m.special.prefix()}, m.encode(continuation)};
  const std::string_view kept = py_rstrip(context);
  const std::string cont = std::string(context.substr(kept.size())) + std::string(continuation);
  std::vector<int32_t> whole = m.encode(std::string(kept) + cont);
  std::vector<int32_t> ctx = m.encode(kept);
  // The continuation is what the whole text has beyond the context's length in ids (the
  // harness's slice, whatever the tokenizer merged across the boundary).
  const size_t n = std::min(ctx.size(), whole.size());
  return {std::move(ctx), std::vector<int32_t>(whole.begin() + int64_t(n), whole.end())};
}

double loglikelihood(const EvalModel& m, const EncodedPair& pair, const std::string& where) {
  if (pair.continuation.empty()) fail("{}: the continuation gives no token to score", where);
  std::vector<int32_t> tokens = pair.context;
  tokens.insert(tokens.end(), pair.continuation.begin(), pair.continuation.end());
  const size_t keep = size_t(m.max_length) + 1;
  if (tokens.size() > keep) tokens.erase(tokens.begin(), tokens.end() - int64_t(keep));
  const int64_t first = int64_t(tokens.size()) - int64_t(pair.continuation.size());
  if (first < 1)
    fail("{}: the continuation has {} tokens, more than max_length {} leaves room for", where,
         pair.continuation.size(), m.max_length);
  return score(m, tokens, first, where);
}

RollingScore loglikelihood_rolling(const EvalModel& m, std::string_view text, const std::string& where) {
  const std::vector<int32_t> ids = m.encode(text);
  RollingScore r;
  r.tokens = int64_t(ids.size());
  if (ids.empty()) fail("{}: the document gives no token", where);
  for (const RollingWindow& w : rolling_windows(ids, m.special.prefix(), m.max_length)) {
    r.loglikelihood += score(m, w.tokens, w.first_target, where);
    ++r.windows;
  }
  return r;
}

}  // namespace fusellm::eval
