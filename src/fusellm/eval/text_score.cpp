#include "fusellm/eval/text_score.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "fusellm/core/error.hpp"
#include "fusellm/model/ensemble.hpp"

namespace fusellm::eval {

namespace {

void check_ids(const ScoreRequest& req) {
  for (const NamedModel& m : req.models) {
    const int64_t V = m.model->info().vocab_size;
    for (size_t i = 0; i < req.ids.size(); ++i)
      if (req.ids[i] < 0 || req.ids[i] >= V)
        fail("{}: token {} has id {}, outside the vocabulary of {} in {} (tokenizer and model disagree)", req.file,
             i, req.ids[i], V, m.name);
  }
}

// A log-prob that is not finite comes from logits that are not (log softmax of finite fp32
// logits, computed in double, is finite): NaN or Inf weights, or an overflow in the forward
// pass. A perplexity of inf or nan would read as a (bad) score; it is an error of the model.
[[noreturn]] void refuse_non_finite(const ScoreRequest& req, std::span<const std::span<const float>> rows,
                                    int64_t pos, double lp) {
  for (size_t j = 0; j < rows.size(); ++j) {
    const auto bad = std::find_if(rows[j].begin(), rows[j].end(), [](float v) { return !std::isfinite(v); });
    if (bad != rows[j].end())
      fail("{}: the model gives a non-finite logit ({} at vocabulary id {}) predicting token {} of {}: its weights "
           "hold NaN or Inf, or its forward pass overflows",
           req.models[j].name, *bad, bad - rows[j].begin(), pos, req.file);
  }
  fail("{}: token {}: log-probability {} is not finite (the logits are finite)", req.file, pos, lp);
}

// One window [start, start + len) of the text: a log-prob for each token after the window's first.
void score_window(const ScoreRequest& req, int64_t start, int64_t len, TextScore& s,
                  const std::function<void(const TokenScore&)>& on_token) {
  if (len < 2) return;  // a window of one token predicts nothing
  ScoreRequest w = req;
  w.ids = req.ids.subspan(size_t(start), size_t(len));
  s.nll -= score_continuation(w, 1, on_token, start);
  s.scored += len - 1;
}

}  // namespace

int64_t default_window(std::span<const NamedModel> models) {
  int64_t context = 0;
  for (const NamedModel& m : models) {
    const int64_t n = m.model->info().max_positions;
    if (n > 0) context = context > 0 ? std::min(context, n) : n;
  }
  return context > 0 ? context : 2048;
}

double score_continuation(const ScoreRequest& req, int64_t first_target,
                          const std::function<void(const TokenScore&)>& on_token, int64_t pos_offset) {
  const int64_t n = int64_t(req.ids.size());
  if (first_target < 1 || first_target >= n)
    fail("{}: nothing to score: target {} of {} token(s) (a target needs a token before it)", req.file, first_target,
         n);
  check_ids(req);
  std::vector<Tensor> logits;
  for (const NamedModel& m : req.models) logits.push_back(m.model->forward(req.ids.first(size_t(n - 1))));
  std::vector<std::span<const float>> rows(logits.size());
  double sum = 0.0;
  for (int64_t t = first_target; t < n; ++t) {
    for (size_t j = 0; j < logits.size(); ++j) rows[j] = logits[j].row(t - 1);
    // One model: weight 1, log 1 = 0, so this is that model's log softmax exactly.
    const double lp = ensemble_log_prob(rows, req.weights, req.ids[size_t(t)]);
    if (!std::isfinite(lp)) refuse_non_finite(req, rows, t + pos_offset, lp);
    sum += lp;
    if (on_token) on_token({t + pos_offset, req.ids[size_t(t)], lp});
  }
  return sum;
}

TextScore score_ids(const ScoreRequest& req, const std::function<void(const TokenScore&)>& on_token) {
  check_ids(req);  // first over the whole text, so an error names the id's position in it
  const int64_t window = req.window > 0 ? req.window : default_window(req.models);
  const int64_t n = int64_t(req.ids.size());
  if (n > window) spdlog::info("{} tokens > window {}: scoring in {} windows", n, window, (n + window - 1) / window);
  TextScore s;
  s.tokens = n;
  s.bytes = req.bytes;
  for (int64_t start = 0; start < n; start += window) score_window(req, start, std::min(window, n - start), s, on_token);
  // lm-evaluation-harness's perplexity over no token fails (the mean of nothing); torch's mean
  // cross-entropy over no label is nan. Neither is a score: say why there is none.
  if (s.scored == 0)
    fail("{}: no token to score: the text gives {} token(s) and a token's log-prob needs a token before it "
         "(the first token has none unless the tokenizer adds a BOS)",
         req.file, n);
  return s;
}

void check_same_tokenizer(const Tokenizer& first, const std::string& first_dir, const Tokenizer& other,
                          const std::string& other_dir, const Encoding& first_enc, const std::string& text) {
  const auto refuse = [&](const std::string& what) {
    fail("{}: its tokenizer differs from {}'s ({}): the ensemble needs models that share one tokenizer "
         "(or pass --tokenizer to use one for all)",
         other_dir, first_dir, what);
  };
  if (other.vocab_size() != first.vocab_size())
    refuse(fmt::format("{} tokens, {} has {}", other.vocab_size(), first_dir, first.vocab_size()));
  for (int64_t id = 0; id < first.vocab_size(); ++id)
    if (other.id_to_token(int32_t(id)) != first.id_to_token(int32_t(id)))
      refuse(fmt::format("id {} is '{}', {} has '{}'", id, other.id_to_token(int32_t(id)), first_dir,
                         first.id_to_token(int32_t(id))));
  if (other.encode(text, true).ids != first_enc.ids) refuse("it encodes the text to other ids");
}

}  // namespace fusellm::eval
