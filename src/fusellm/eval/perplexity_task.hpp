#pragma once
// A perplexity task: a corpus (data/corpus.hpp: a JSONL file of {"text": ...} lines, a text file,
// or a directory of those) scored document by document with lm-evaluation-harness's
// loglikelihood_rolling (eval/loglikelihood.hpp), and its metrics as the harness aggregates them
// over documents (lm_eval/api/metrics.py weighted_perplexity and bits_per_byte, with
// ConfigurableTask.count_words / count_bytes, 0.4.5):
//
//   word_perplexity = exp(-sum_d ll_d / sum_d words_d),   words_d = len(re.split(r"\s+", d))
//   byte_perplexity = exp(-sum_d ll_d / sum_d bytes_d),   bytes_d = UTF-8 bytes of d
//   bits_per_byte   = -sum_d ll_d / sum_d bytes_d / ln 2
//
// plus token_perplexity = exp(-sum ll / sum tokens) (not a harness metric; the tokens are the
// model's own, so it compares only models that share a tokenizer). Blank documents are skipped,
// as the corpus reader skips them (the harness would count their words and score no token).
#include <cstdint>
#include <string>
#include <vector>

#include "fusellm/eval/eval_model.hpp"

namespace fusellm::eval {

struct PerplexityDoc {
  std::string where;  // "file:line" (JSONL) or the file
  double loglikelihood = 0;
  int64_t words = 0, bytes = 0, tokens = 0, windows = 0;
};

struct PerplexityResult {
  std::string name;  // the corpus file's name without extension, or the directory's name
  std::string path;
  std::vector<PerplexityDoc> docs;
  int64_t skipped_blank = 0;

  double loglikelihood() const;
  int64_t words() const;
  int64_t bytes() const;
  int64_t tokens() const;
  double word_perplexity() const;
  double byte_perplexity() const;
  double bits_per_byte() const;
  double token_perplexity() const;
};

// Error naming the corpus when it has no document.
PerplexityResult evaluate_perplexity(const EvalModel& m, const std::string& path, int64_t limit = -1);

}  // namespace fusellm::eval
