#include "fusellm/tokenizer/json_util.hpp"

#include "fusellm/tokenizer/unicode.hpp"

namespace fusellm::tok {

std::string get_char(const json& j, std::string_view key, const Ctx& c) {
  const std::string s = get_string(j, key, c);
  if (find_invalid_utf8(s) != std::string::npos) c.fail("field \"{}\": not valid UTF-8", key);
  if (count_chars(s) != 1) c.fail("field \"{}\": expected a single character, found \"{}\"", key, s);
  return s;
}

}  // namespace fusellm::tok
