#include "fusellm/data/corpus_config.hpp"

namespace fusellm {

const config::EnumNames<CorpusFormat>& corpus_format_names() {
  static const config::EnumNames<CorpusFormat> names{
      {{CorpusFormat::Auto, "auto"}, {CorpusFormat::JSONL, "jsonl"}, {CorpusFormat::Text, "text"}}};
  return names;
}

namespace {

config::Section<CorpusConfig> make_corpus_section() {
  using namespace config;
  using S = CorpusConfig;
  Section<S> s{"corpus", ""};
  s.fields = {
      path_field("path", &S::path,
                 "A `.jsonl` file (one JSON object per line), a plain `.txt` file, or a directory of such files.")
          .required_as("a .jsonl or .txt file, or a directory")
          .defaults_to("required"),
      choice_field("format", &S::format, corpus_format_names(),
                   "With `auto`, `.jsonl`/`.json` files are read as JSONL and anything else as text."),
      string_field("text_field", &S::text_field, "The JSONL field that holds the document."),
      integer_field("max_len", &S::max_len, 2, "Target tokens per packed training sequence (the paper: 2048)."),
      integer_field("margin", &S::margin, 0,
                    "Documents are cut into segments that every tokenizer in the job keeps within `max_len - "
                    "margin` tokens. The paper uses 2000 of 2048 (DESIGN.md 2.0)."),
      bool_field("document_mask", &S::document_mask,
                 "Block attention between the documents packed into one sequence. `false` matches the original."),
  };
  s.check = [](const S& c, const IsSet&) {
    if (c.margin >= c.max_len)
      throw Conflict({"margin", "max_len"},
                     fmt::format("margin ({}) must be smaller than max_len ({}): segments hold at most max_len - "
                                 "margin tokens",
                                 c.margin, c.max_len));
  };
  return s;
}

config::Section<CacheConfig> make_cache_section() {
  using namespace config;
  Section<CacheConfig> s{"cache", "optional"};
  s.fields = {
      path_field("dir", &CacheConfig::dir,
                 "Offline mode, as the original pipeline: `fusellm teach` writes each teacher's aligned top-k "
                 "distributions here once, and `fusellm train` reads them instead of running the teachers.")
          .defaults_to("unset (online)"),
  };
  return s;
}

}  // namespace

const config::Section<CorpusConfig>& corpus_section() {
  static const config::Section<CorpusConfig> s = make_corpus_section();
  return s;
}

const config::Section<CacheConfig>& cache_section() {
  static const config::Section<CacheConfig> s = make_cache_section();
  return s;
}

}  // namespace fusellm
