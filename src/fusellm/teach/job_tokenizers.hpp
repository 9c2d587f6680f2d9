#pragma once
// Every tokenizer of a job, loaded once: what the Segmenter bounds every segment by (DESIGN.md
// 2.0), what a Teacher tokenizes with (its source's and the target's), and their vocabularies'
// fingerprints, which a distribution cache's provenance records.
#include <memory>
#include <string>
#include <vector>

#include "fusellm/align/vocab_mapping.hpp"
#include "fusellm/data/segmenter.hpp"
#include "fusellm/job/job_config.hpp"
#include "fusellm/tokenizer/tokenizer.hpp"

namespace fusellm {

// Every tokenizer path of the job (sources', then the target's), in job order, without repeats.
std::vector<std::string> job_tokenizers(const JobConfig& job);

struct JobTokenizers {
  std::vector<std::string> paths;                  // job_tokenizers(job)
  std::vector<std::unique_ptr<Tokenizer>> tokenizers;
  std::vector<align::TokenVocab> vocabs;            // empty when loaded without vocabularies
  std::vector<std::string> fingerprints;           // TokenVocab::fingerprint_hex; empty likewise

  // Loads them all; an error names the job file and the tokenizer. `vocabularies` false: the
  // tokenizers only (a CLM-only run segments and encodes, it aligns nothing).
  static JobTokenizers load(const JobConfig& job, bool vocabularies = true);
  // Index of a tokenizer path of the job (fusellm::Error when it is not one).
  size_t index(const std::string& path) const;
  const Tokenizer& tokenizer(const std::string& path) const { return *tokenizers[index(path)]; }
  // The Segmenter over all of them, bounded at Segmenter::max_tokens_of(job).
  Segmenter segmenter(const JobConfig& job) const;
};

}  // namespace fusellm
