#pragma once
// BBH's answer extraction and exact match (lm_eval/tasks/bbh/cot_zeroshot, 0.4.5):
//
//   "strict-match" filter: RegexFilter with
//       ((?<=The answer is )(.*)(?=.)|(?<=the answer is )(.*)(?=.)|(?<=The answer: )(.*)(?=.)|(?<=The final answer: )(.*)(?=.))
//     the first match (group_select 0), its first non-empty group (here the whole match: the
//     look-arounds take no text), stripped; "[invalid]" when nothing matches. So "... the answer
//     is (B)." gives "(B)": the rest of the line but its last character.
//   exact_match (metrics.exact_match_hf_evaluate) with the template's regexes_to_ignore, applied
//     to the answer and to the target in this order: "\.$" (a final ".", or one before a final
//     "\n", as Python's $), ",", "\\", "\n", '"'; then ignore_case (str.lower); 1 when equal.
#include <string>

namespace fusellm::eval {

inline constexpr const char* kBbhAnswerRegex =
    "((?<=The answer is )(.*)(?=.)|(?<=the answer is )(.*)(?=.)|(?<=The answer: )(.*)(?=.)|"
    "(?<=The final answer: )(.*)(?=.))";
inline constexpr const char* kInvalidAnswer = "[invalid]";

// The strict-match filter's answer from a generation.
std::string extract_bbh_answer(const std::string& generation);

// BBH's regexes_to_ignore and ignore_case applied to one string.
std::string bbh_normalize(const std::string& s);

// 1 when the normalized answer equals the normalized target.
double bbh_exact_match(const std::string& answer, const std::string& target);

}  // namespace fusellm::eval
