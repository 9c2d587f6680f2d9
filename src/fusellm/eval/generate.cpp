#include "fusellm/eval/generate.hpp"

#include <algorithm>
#include <cmath>

#include "fusellm/core/error.hpp"

namespace fusellm::eval {

namespace {

int32_t greedy_next(const EvalModel& m, const std::vector<int32_t>& ids, const std::string& where) {
  const Tensor logits = m.model->forward(ids);
  const auto row = logits.row(int64_t(ids.size()) - 1);
  const auto best = std::max_element(row.begin(), row.end());  // the first maximum
  if (!std::isfinite(*best)) fail("{}: {}: the model gives non-finite logits", where, m.dir);
  return int32_t(best - row.begin());
}

bool holds_stop(const std::string& text, const std::vector<std::string>& until) {
  return std::any_of(until.begin(), until.end(),
                     [&](const std::string& s) { return !s.empty() && text.find(s) != std::string::npos; });
}

}  // namespace

Generation generate_until(const EvalModel& m, const std::string& context, std::vector<std::string> until,
                          int64_t max_gen_toks, const std::string& where) {
  if (max_gen_toks < 1) fail("{}: max_gen_toks must be at least 1, found {}", where, max_gen_toks);
  if (max_gen_toks >= m.max_length)
    fail("{}: max_gen_toks {} leaves no room for the context in max_length {}", where, max_gen_toks, m.max_length);
  if (!m.special.eos_text.empty()) until.push_back(m.special.eos_text);
  std::vector<int32_t> ids = m.encode(context);
  const size_t max_ctx = size_t(m.max_length - max_gen_toks);
  if (ids.size() > max_ctx) ids.erase(ids.begin(), ids.end() - int64_t(max_ctx));
  if (ids.empty()) fail("{}: the prompt gives no token", where);
  Generation g;
  const auto& stops = m.special.stop_ids;
  for (int64_t step = 0; step < max_gen_toks; ++step) {
    const int32_t next = greedy_next(m, ids, where);
    ids.push_back(next);
    g.tokens.push_back(next);
    if (std::find(stops.begin(), stops.end(), next) != stops.end()) break;
    if (holds_stop(m.tokenizer->decode(g.tokens, false), until)) break;
  }
  g.text = m.decode(g.tokens);
  for (const std::string& term : until)
    if (!term.empty()) g.text = g.text.substr(0, std::min(g.text.size(), g.text.find(term)));
  return g;
}

}  // namespace fusellm::eval
