#include "fusellm/eval/multiple_choice.hpp"

#include "fusellm/eval/loglikelihood.hpp"
#include "fusellm/tokenizer/unicode.hpp"

namespace fusellm::eval {

namespace {
int64_t argmax(const std::vector<double>& v) {
  int64_t best = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[size_t(best)]) best = int64_t(i);  // strict: ties keep the first, as np.argmax
  return best;
}
}  // namespace

ChoiceResult score_choices(const EvalModel& m, const ChoiceDoc& doc) {
  ChoiceResult r;
  std::vector<double> normed;
  for (size_t i = 0; i < doc.choices.size(); ++i) {
    const std::string where = doc.where + ": choice " + std::to_string(i);
    const double ll = loglikelihood(m, encode_pair(m, doc.context, " " + doc.choices[i]), where);
    r.loglikelihoods.push_back(ll);
    normed.push_back(ll / double(tok::count_chars(doc.choices[i])));
  }
  r.pred = argmax(r.loglikelihoods);
  r.pred_norm = argmax(normed);
  r.acc = r.pred == doc.gold ? 1.0 : 0.0;
  r.acc_norm = r.pred_norm == doc.gold ? 1.0 : 0.0;
  return r;
}

}  // namespace fusellm::eval
