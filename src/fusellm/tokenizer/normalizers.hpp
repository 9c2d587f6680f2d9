#pragma once
// Normalizers (tokenizer.json "normalizer"), as tokenizers' `normalizers` module: each edits a
// NormalizedString in place, alignments included.
#include <memory>

#include "fusellm/tokenizer/json_util.hpp"
#include "fusellm/tokenizer/normalized_string.hpp"

namespace fusellm::tok {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(NormalizedString& s) const = 0;
};

// The "pattern" field of Replace/Split parts: {"String": s} (matched literally, as an escaped
// regex, like the library) or {"Regex": r}; returns the Oniguruma pattern.
std::string regex_pattern_field(const json& j, const Ctx& c);

// null -> nullptr; unknown types and bad fields -> Error naming the part.
std::unique_ptr<Normalizer> make_normalizer(const json& j, const Ctx& c);

}  // namespace fusellm::tok
