// eval/rolling_windows: lm-evaluation-harness's get_rolling_token_windows + make_disjoint_window
// (context_len 1). The worked example is what lm_eval/utils.py gives for list(range(10, 17)),
// prefix 1, max_seq_len 3.
#include <gtest/gtest.h>

#include <numeric>

#include "error_of.hpp"
#include "fusellm/eval/rolling_windows.hpp"

using namespace fusellm;

TEST(RollingWindows, EqualTheHarnessOnAWorkedExample) {
  const std::vector<int32_t> ids{10, 11, 12, 13, 14, 15, 16};
  const auto w = eval::rolling_windows(ids, 1, 3);
  ASSERT_EQ(w.size(), 3u);
  EXPECT_EQ(w[0].tokens, (std::vector<int32_t>{1, 10, 11, 12}));
  EXPECT_EQ(w[0].first_target, 1);
  EXPECT_EQ(w[1].tokens, (std::vector<int32_t>{12, 13, 14, 15}));
  EXPECT_EQ(w[1].first_target, 1);
  // The last window predicts one token from the L tokens before it.
  EXPECT_EQ(w[2].tokens, (std::vector<int32_t>{13, 14, 15, 16}));
  EXPECT_EQ(w[2].first_target, 3);
}

TEST(RollingWindows, ScoreEveryTokenOnceWithinTheLength) {
  for (int64_t n : {1, 2, 5, 64, 65, 127, 300}) {
    for (int64_t L : {1, 2, 7, 64}) {
      std::vector<int32_t> ids(static_cast<size_t>(n));
      std::iota(ids.begin(), ids.end(), 100);
      std::vector<int32_t> targets;
      for (const auto& w : eval::rolling_windows(ids, 7, L)) {
        ASSERT_LE(int64_t(w.tokens.size()), L + 1) << n << " " << L;  // the model reads <= L tokens
        ASSERT_GE(w.first_target, 1);
        targets.insert(targets.end(), w.tokens.begin() + w.first_target, w.tokens.end());
      }
      EXPECT_EQ(targets, ids) << n << " " << L;
    }
  }
  EXPECT_TRUE(eval::rolling_windows({}, 1, 4).empty());
}

TEST(RollingWindows, RefuseALengthBelowOne) {
  const std::vector<int32_t> ids{1, 2};
  EXPECT_NE(fusellm::testing::error_of([&] { eval::rolling_windows(ids, 0, 0); }).find("at least 1"), std::string::npos);
}
