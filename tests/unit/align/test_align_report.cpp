// The readable views for `fusellm align`: side-by-side alignment, decision summary, coverage.
#include <gtest/gtest.h>

#include "align_test_util.hpp"
#include "fusellm/align/align_report.hpp"

namespace fusellm::align {
namespace {

TEST(AlignReport, SideBySide) {
  const TokenVocab src = testing::make_vocab("neox", NormKind::kByteLevel, {"Hello", " wor", "ld", "\n"});
  const TokenVocab tgt = testing::make_vocab("llama", NormKind::kMetaspace, {" Hello", " world", "\n"}, {"<s>"},
                                             DummyPrefix::kAlways);
  const std::vector<int32_t> s = {0, 1, 2, 3}, t = {3, 0, 1, 2};
  const Alignment al = align_tokens(src, s, tgt, t, AlignMethod::kEM, nullptr, "Hello world\n");
  const std::string view = render_alignment(src, s, 0, tgt, t, 0, al);
  EXPECT_NE(view.find("\"<s>\""), std::string::npos) << view;
  EXPECT_NE(view.find("fallback: unaligned"), std::string::npos) << view;
  EXPECT_NE(view.find("\" Hello\""), std::string::npos) << view;
  EXPECT_NE(view.find("kept: exact"), std::string::npos) << view;
  // The original DTW puts "ld" with "\n" (cost 2 + 0 beats " world" <- " wor" "ld": 2 + 3).
  EXPECT_NE(view.find("2-3  \"ld\" \"\\n\""), std::string::npos) << view;
  EXPECT_NE(view.find("\"\\n\""), std::string::npos) << view;
  const AlignSummary sum = summarize(al);
  EXPECT_EQ(sum.positions, 4);
  EXPECT_EQ(sum.kept(), 1);
  EXPECT_NE(render_summary(sum).find("fallback: many source tokens"), std::string::npos);
}

TEST(AlignReport, EscapesAndCoverage) {
  EXPECT_EQ(display_token("a\"b\\c\t"), "\"a\\\"b\\\\c\\t\"");
  EXPECT_EQ(display_token("\xE4\xBD"), "\"\\xE4\\xBD\"");     // a split character
  EXPECT_EQ(display_token("\xE4\xBD\xA0"), "\"\xE4\xBD\xA0\"");  // a whole one
  const TokenVocab src = testing::make_vocab("src", NormKind::kByteLevel, {" the", " colour"});
  const TokenVocab tgt = testing::make_vocab("tgt", NormKind::kMetaspace, {" the", " color"});
  const VocabMapping m = VocabMapping::build(src, tgt, 4);
  const std::string cov = render_coverage(m);
  EXPECT_NE(cov.find("exact                  1   50.0%"), std::string::npos) << cov;
  EXPECT_NE(cov.find("MinED                  1   50.0%  (mean distance 1.00)"), std::string::npos) << cov;
  EXPECT_NE(cov.find("padding rows           2"), std::string::npos) << cov;
}

}  // namespace
}  // namespace fusellm::align
