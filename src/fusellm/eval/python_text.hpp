#pragma once
// The few Python string operations lm-evaluation-harness's task code applies to documents and
// answers, reproduced so that counts and comparisons equal the harness's:
//   str.isspace / str.strip / str.lstrip / str.rstrip (no argument): White_Space plus U+001C..U+001F, which
//     Python also counts as space (bidirectional class B or S);
//   len(re.split(r"\s+", s)): the harness's word count (ConfigurableTask.count_words);
//   str.lower: each code point's full lowercase mapping (without the final-sigma context rule);
//   str.capitalize: the first code point upper-cased (ASCII only here), the rest lower-cased.
#include <cstdint>
#include <string>
#include <string_view>

namespace fusellm::eval {

bool py_isspace(char32_t c);
std::string_view py_rstrip(std::string_view s);
std::string_view py_lstrip(std::string_view s);
std::string_view py_strip(std::string_view s);
// len(re.split(r"\s+", s)): runs of space + 1 (a leading or trailing run adds an empty piece).
int64_t py_count_words(std::string_view s);
std::string py_lower(std::string_view s);
std::string py_capitalize(std::string_view s);

}  // namespace fusellm::eval
