#include "fusellm/eval/python_text.hpp"

#include "fusellm/tokenizer/unicode.hpp"

namespace fusellm::eval {

bool py_isspace(char32_t c) { return tok::is_whitespace(c) || (c >= 0x1C && c <= 0x1F); }

std::string_view py_rstrip(std::string_view s) {
  size_t keep = 0;  // bytes up to the end of the last non-space code point
  for (size_t i = 0; i < s.size();)
    if (!py_isspace(tok::next_char(s, i))) keep = i;
  return s.substr(0, keep);
}

std::string_view py_lstrip(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t at = i;
    if (!py_isspace(tok::next_char(s, i))) return s.substr(at);
  }
  return s.substr(s.size());
}

std::string_view py_strip(std::string_view s) { return py_rstrip(py_lstrip(s)); }

int64_t py_count_words(std::string_view s) {
  int64_t runs = 0;
  bool in_space = false;
  for (size_t i = 0; i < s.size();) {
    const bool sp = py_isspace(tok::next_char(s, i));
    if (sp && !in_space) ++runs;
    in_space = sp;
  }
  return runs + 1;
}

std::string py_lower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  char32_t low[3];
  for (size_t i = 0; i < s.size();) {
    const int n = tok::to_lowercase(tok::next_char(s, i), low);
    for (int k = 0; k < n; ++k) tok::append_utf8(out, low[k]);
  }
  return out;
}

std::string py_capitalize(std::string_view s) {
  if (s.empty()) return "";
  size_t i = 0;
  const char32_t first = tok::next_char(s, i);
  std::string out;
  tok::append_utf8(out, first < 0x80 && first >= 'a' && first <= 'z' ? first - 'a' + 'A' : first);
  return out + py_lower(s.substr(i));
}

}  // namespace fusellm::eval
