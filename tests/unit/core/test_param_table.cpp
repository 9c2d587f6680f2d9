// The parameter table: tensors laid out one after another in one flat buffer, views into it.
#include <gtest/gtest.h>

#include <vector>

#include "fusellm/core/error.hpp"
#include "fusellm/core/param_table.hpp"

using namespace fusellm;

TEST(ParamTable, TensorsFollowEachOtherWithoutGaps) {
  ParamTable t;
  EXPECT_EQ(t.add("embed", {4, 3}), 0);
  EXPECT_EQ(t.add("norm", {3}), 1);
  EXPECT_EQ(t.add("head", {2, 3}), 2);
  EXPECT_EQ(t.total(), 12 + 3 + 6);
  EXPECT_EQ(t[0].offset, 0);
  EXPECT_EQ(t[1].offset, 12);
  EXPECT_EQ(t[2].offset, 15);
  EXPECT_EQ(t[2].size, 6);
  ASSERT_NE(t.find("norm"), nullptr);
  EXPECT_EQ(t.find("norm")->shape, (Shape{3}));
  EXPECT_EQ(t.find("missing"), nullptr);
  EXPECT_THROW(t.add("norm", {5}), Error);  // names are unique
}

TEST(ParamTable, ViewsShareTheBuffer) {
  ParamTable t;
  t.add("a", {2, 2});
  t.add("b", {3});
  std::vector<float> flat(size_t(t.total()), 0.f);
  const TensorView b = t.view(flat, 1);
  EXPECT_EQ(b.shape(), (Shape{3}));
  EXPECT_EQ(b.size(), 3);
  b[2] = 7.f;
  EXPECT_EQ(flat[6], 7.f);
  EXPECT_EQ(t.view(flat, 0).dim(-1), 2);
  std::vector<float> short_buffer(3);
  EXPECT_THROW(t.view(short_buffer, 0), Error);  // a buffer of another layout
}
