#pragma once
// The job file's [corpus] section (the documents and how they are cut and packed: data/corpus,
// data/segmenter, data/packer) and [cache] section (offline mode's distribution caches,
// data/distribution_cache). Fields, defaults and checks are in corpus_config.cpp's tables;
// jobs/README.md shows them.
#include <cstdint>
#include <string>

#include "fusellm/core/config_field.hpp"

namespace fusellm {

enum class CorpusFormat { Auto, JSONL, Text };
const config::EnumNames<CorpusFormat>& corpus_format_names();  // "auto", "jsonl", "text"

struct CorpusConfig {
  std::string path;
  CorpusFormat format = CorpusFormat::Auto;
  std::string text_field = "text";
  int64_t max_len = 2048;
  int64_t margin = 48;
  bool document_mask = false;

  // Target (and source) tokens a segment may hold: max_len - margin (DESIGN.md 2.0).
  int64_t max_segment_tokens() const { return max_len - margin; }
  bool operator==(const CorpusConfig&) const = default;
};

struct CacheConfig {
  std::string dir;  // empty: online mode
  bool operator==(const CacheConfig&) const = default;
};

const config::Section<CorpusConfig>& corpus_section();
const config::Section<CacheConfig>& cache_section();

}  // namespace fusellm
