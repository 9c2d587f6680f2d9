#include "fusellm/cli/input.hpp"

#include <algorithm>
#include <charconv>
#include <fmt/format.h>

#include "fusellm/core/error.hpp"
#include "fusellm/io/hf_config.hpp"
#include "fusellm/tokenizer/unicode.hpp"

namespace fusellm::cli {

CLI::Validator at_least(int64_t lo, const std::string& why) {
  return CLI::Validator(
      [lo, why](std::string& s) -> std::string {
        int64_t v = 0;
        const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        if (ec != std::errc() || end != s.data() + s.size()) return fmt::format("expected an integer, found '{}'", s);
        if (v < lo) return fmt::format("must be at least {} ({}), found {}", lo, why, v);
        return {};
      },
      fmt::format("INT>={}", lo));
}

void require_utf8(std::string_view text, const std::string& what) {
  const size_t bad = tok::find_invalid_utf8(text);
  if (bad == std::string_view::npos) return;
  const int64_t line = 1 + std::count(text.begin(), text.begin() + ptrdiff_t(bad), '\n');
  fail("{}: not valid UTF-8 at byte offset {} (line {}, byte 0x{:02X}): the input must be UTF-8 text", what, bad, line,
       static_cast<unsigned char>(text[bad]));
}

std::string read_utf8_file(const std::string& path) {
  std::string text = read_text_file(path);
  require_utf8(text, path);
  return text;
}

}  // namespace fusellm::cli
