#include "fusellm/teach/job_tokenizers.hpp"

#include <algorithm>

#include "fusellm/core/error.hpp"

namespace fusellm {

std::vector<std::string> job_tokenizers(const JobConfig& job) {
  std::vector<std::string> out;
  auto add = [&](const std::string& p) {
    if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
  };
  for (const auto& s : job.sources) add(s.tokenizer);
  add(job.target.tokenizer);
  return out;
}

JobTokenizers JobTokenizers::load(const JobConfig& job, bool vocabularies) {
  JobTokenizers t;
  t.paths = job_tokenizers(job);
  for (const auto& p : t.paths) {
    const std::string what = fmt::format("{}: tokenizer {}", job.file, p);
    t.tokenizers.push_back(with_context(what, [&] { return Tokenizer::load(p); }));
    if (!vocabularies) continue;
    t.vocabs.push_back(with_context(what, [&] { return align::TokenVocab::from_tokenizer_json(p); }));
    t.fingerprints.push_back(t.vocabs.back().fingerprint_hex());
  }
  return t;
}

size_t JobTokenizers::index(const std::string& path) const {
  const auto it = std::find(paths.begin(), paths.end(), path);
  if (it == paths.end()) fail("tokenizer {} is not one of the job's", path);
  return size_t(it - paths.begin());
}

Segmenter JobTokenizers::segmenter(const JobConfig& job) const {
  std::vector<const Tokenizer*> v;
  for (const auto& t : tokenizers) v.push_back(t.get());
  return Segmenter(std::move(v), Segmenter::max_tokens_of(job.corpus));
}

}  // namespace fusellm
