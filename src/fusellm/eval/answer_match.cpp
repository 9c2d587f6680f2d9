#include "fusellm/eval/answer_match.hpp"

#include <vector>

#include "fusellm/eval/python_text.hpp"
#include "fusellm/tokenizer/regex.hpp"

namespace fusellm::eval {

std::string extract_bbh_answer(const std::string& generation) {
  // Oniguruma's default syntax reads this pattern as Python's re does: fixed-length look-behinds,
  // '.' not matching "\n", no anchors.
  static const tok::Regex re(kBbhAnswerRegex);
  std::vector<std::pair<size_t, size_t>> matches;
  re.find_iter(generation, matches);
  if (matches.empty()) return kInvalidAnswer;
  // findall gives a tuple of the five groups; the first non-empty one is group 1, the whole match
  // (an empty match has no non-empty group, where the harness fails with an IndexError).
  const auto [b, e] = matches.front();
  if (b == e) return kInvalidAnswer;
  return std::string(py_strip(std::string_view(generation).substr(b, e - b)));
}

std::string bbh_normalize(const std::string& in) {
  std::string s = in;
  // "\.$": '$' matches at the end and before a final "\n".
  if (!s.empty() && s.back() == '.') {
    s.pop_back();
  } else if (s.size() >= 2 && s[s.size() - 1] == '\n' && s[s.size() - 2] == '.') {
    s.erase(s.size() - 2, 1);
  }
  for (const char drop : {',', '\\', '\n', '"'}) std::erase(s, drop);
  return py_lower(s);
}

double bbh_exact_match(const std::string& answer, const std::string& target) {
  return bbh_normalize(answer) == bbh_normalize(target) ? 1.0 : 0.0;
}

}  // namespace fusellm::eval
