#pragma once
// Pre-tokenizers (tokenizer.json "pre_tokenizer"), as tokenizers' `pre_tokenizers` module:
// each splits the pieces of a PreTokenizedString further and may edit them (ByteLevel maps
// bytes to printable chars, Metaspace replaces spaces), alignments included.
#include <memory>

#include "fusellm/tokenizer/json_util.hpp"
#include "fusellm/tokenizer/normalized_string.hpp"

namespace fusellm::tok {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual void pre_tokenize(PreTokenizedString& s) const = 0;
  virtual bool is_byte_level() const { return false; }
};

// null -> nullptr; unknown types and bad fields -> Error naming the part.
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j, const Ctx& c);

// GPT-2's pre-tokenization pattern, as tokenizers' ByteLevel uses it.
inline constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// The byte -> printable-char mapping of ByteLevel applied to one string, alignments included
// (every byte of a char takes that char's alignment).
void byte_level_map(NormalizedString& s);

}  // namespace fusellm::tok
