#include "fusellm/eval/perplexity_task.hpp"

#include <cmath>
#include <spdlog/spdlog.h>

#include "fusellm/core/error.hpp"
#include "fusellm/data/corpus.hpp"
#include "fusellm/eval/loglikelihood.hpp"
#include "fusellm/eval/python_text.hpp"
#include "fusellm/eval/task_file.hpp"

namespace fusellm::eval {

double PerplexityResult::loglikelihood() const {
  double s = 0;
  for (const auto& d : docs) s += d.loglikelihood;
  return s;
}
int64_t PerplexityResult::words() const {
  int64_t s = 0;
  for (const auto& d : docs) s += d.words;
  return s;
}
int64_t PerplexityResult::bytes() const {
  int64_t s = 0;
  for (const auto& d : docs) s += d.bytes;
  return s;
}
int64_t PerplexityResult::tokens() const {
  int64_t s = 0;
  for (const auto& d : docs) s += d.tokens;
  return s;
}
double PerplexityResult::word_perplexity() const { return std::exp(-loglikelihood() / double(words())); }
double PerplexityResult::byte_perplexity() const { return std::exp(-loglikelihood() / double(bytes())); }
double PerplexityResult::bits_per_byte() const { return -loglikelihood() / double(bytes()) / std::log(2.0); }
double PerplexityResult::token_perplexity() const { return std::exp(-loglikelihood() / double(tokens())); }

PerplexityResult evaluate_perplexity(const EvalModel& m, const std::string& path, int64_t limit) {
  CorpusReader reader(path);
  PerplexityResult r{task_name(path), path, {}, 0};
  Document doc;
  while ((limit < 0 || int64_t(r.docs.size()) < limit) && reader.next(doc)) {
    PerplexityDoc d;
    d.where = doc.line > 0 ? doc.file + ":" + std::to_string(doc.line) : doc.file;
    const RollingScore s = loglikelihood_rolling(m, doc.text, d.where);
    d.loglikelihood = s.loglikelihood;
    d.tokens = s.tokens;
    d.windows = s.windows;
    d.words = py_count_words(doc.text);
    d.bytes = int64_t(doc.text.size());
    r.docs.push_back(std::move(d));
  }
  r.skipped_blank = reader.stats().skipped_blank;
  if (r.docs.empty())
    fail("{}: the corpus has no document ({} file(s), {} blank document(s) skipped): nothing to score", path,
         reader.stats().files, r.skipped_blank);
  spdlog::debug("{}: {} documents, {} tokens", path, r.docs.size(), r.tokens());
  return r;
}

}  // namespace fusellm::eval
