// eval/answer_match: BBH's strict-match answer extraction and exact match, against what
// lm-evaluation-harness's RegexFilter and exact_match_hf_evaluate give for the same strings
// (tests/reference/gen_eval.py wrote tests/fixtures/eval/answers.json).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "fusellm/eval/answer_match.hpp"

using namespace fusellm::eval;

TEST(AnswerMatch, EqualsTheHarnessOnTheFixture) {
  std::ifstream f(std::filesystem::path(FUSELLM_SOURCE_DIR) / "tests/fixtures/eval/answers.json");
  const auto cases = nlohmann::json::parse(f);
  ASSERT_GE(cases.size(), 8u);
  int matched = 0;
  for (const auto& c : cases) {
    const std::string answer = extract_bbh_answer(c["generation"]);
    EXPECT_EQ(answer, c["answer"].get<std::string>()) << c["generation"];
    EXPECT_EQ(bbh_exact_match(answer, c["target"]), c["exact_match"].get<double>()) << c["generation"];
    matched += c["exact_match"].get<double>() == 1.0;
  }
  EXPECT_GE(matched, 3);  // the fixture holds both outcomes
}

TEST(AnswerMatch, NormalizeAsTheTemplatesRegexesToIgnore) {
  EXPECT_EQ(bbh_normalize("(A)."), "(a)");
  EXPECT_EQ(bbh_normalize("True.\n"), "true");      // Python's $ before a final newline
  EXPECT_EQ(bbh_normalize("a.b."), "a.b");          // only the final period
  EXPECT_EQ(bbh_normalize("\"1,000\"\\"), "1000");
  EXPECT_EQ(extract_bbh_answer("nothing"), kInvalidAnswer);
}
