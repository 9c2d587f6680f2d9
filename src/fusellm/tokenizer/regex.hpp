#pragma once
// Oniguruma, the regex engine the Rust `tokenizers` library runs its patterns with (through the
// `onig` crate): same syntax (ONIG_SYNTAX_DEFAULT), same UTF-8 semantics, and the crate's
// `find_iter` rules for empty matches, so splits land where the library puts them.
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct re_pattern_buffer;  // Oniguruma's regex_t

namespace fusellm::tok {

class Regex {
 public:
  // Compiles pattern; on failure throws fusellm::Error "invalid regex "<pattern>": <onig message>".
  explicit Regex(std::string_view pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  const std::string& pattern() const { return pattern_; }

  // All successive non-overlapping matches in text as [begin, end) byte ranges, as the onig
  // crate's `Regex::find_iter`: an empty match right where the previous match ended is skipped
  // by stepping one character forward. Appends to out.
  void find_iter(std::string_view text, std::vector<std::pair<std::size_t, std::size_t>>& out) const;

 private:
  struct Free {
    void operator()(re_pattern_buffer* r) const;
  };
  std::unique_ptr<re_pattern_buffer, Free> re_;
  std::string pattern_;
};

// The Rust `regex` crate's `escape`: backslash before each of \.+*?()|[]{}^$#&-~ so that the
// string matches literally (the library compiles String patterns this way).
std::string escape_regex(std::string_view s);

}  // namespace fusellm::tok
