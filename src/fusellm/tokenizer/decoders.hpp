#pragma once
// Decoders (tokenizer.json "decoder"), as tokenizers' `decoders` module: each maps the list of
// token strings to a new list (`decode_chain`); the result is concatenated.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fusellm/tokenizer/json_util.hpp"

namespace fusellm::tok {

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

std::unique_ptr<Decoder> make_decoder(const json& j, const Ctx& c);  // null -> nullptr

// Rust's `str::replacen(from, to, count)` (`str::replace` for the default count), which the
// decoders use: an empty `from` matches before every char and at the end ("ab" with to = "_"
// gives "_a_b_"), so it is never searched for with find("") (which would not advance).
std::string rust_replace(std::string_view s, std::string_view from, std::string_view to,
                         std::size_t count = std::string_view::npos);

// Rust's String::from_utf8_lossy: each maximal invalid subsequence becomes one U+FFFD.
std::string utf8_lossy(std::string_view bytes);

}  // namespace fusellm::tok
