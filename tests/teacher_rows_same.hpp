#pragma once
// Two TeacherRows equal bit for bit, every field (the CE and per-position CE by their bits): what
// a rows message, a pipelined teacher or an online run must hand on unchanged.
#include <gtest/gtest.h>

#include <cstring>

#include "fusellm/data/teacher_rows.hpp"

namespace fusellm::testing {

inline void expect_same_rows(const TeacherRows& a, const TeacherRows& b) {
  EXPECT_EQ(a.segment, b.segment);
  EXPECT_EQ(a.doc, b.doc);
  EXPECT_EQ(a.piece, b.piece);
  EXPECT_EQ(a.k, b.k);
  EXPECT_EQ(a.target_ids, b.target_ids);
  EXPECT_EQ(a.status, b.status);
  EXPECT_EQ(a.ids, b.ids);
  EXPECT_EQ(a.probs, b.probs);  // fp16 bits
  EXPECT_EQ(std::memcmp(&a.ce, &b.ce, sizeof(double)), 0) << a.ce << " vs " << b.ce;
  EXPECT_EQ(a.ce_tokens, b.ce_tokens);
  EXPECT_EQ(a.source_tokens, b.source_tokens);
  EXPECT_EQ(a.bytes, b.bytes);
  ASSERT_EQ(a.position_ce.size(), b.position_ce.size());
  if (!a.position_ce.empty())
    EXPECT_EQ(std::memcmp(a.position_ce.data(), b.position_ce.data(), sizeof(float) * a.position_ce.size()), 0);
}

}  // namespace fusellm::testing
