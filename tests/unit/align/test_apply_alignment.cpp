// Applying an alignment to a source's top-k rows (the original `transform_step_logits` and the
// collator's softmax over the kept entries), on every backend: id mapping for EM and MinED,
// dropped and padding ids, duplicates keep the higher probability, renormalization, the sort
// order, the empty-row fallback, the one-hot of the NEXT gold token (and the original's current
// token as the compatibility switch), and the tail bucket.
#include <gtest/gtest.h>

#include "align_test_util.hpp"
#include "kokkos_exec_spaces.hpp"

namespace fusellm::align {
namespace {

template <class ExecSpace>
class ApplyAlignmentTest : public ::testing::Test {};
TYPED_TEST_SUITE(ApplyAlignmentTest, fusellm::testing::ExecSpaces);

struct Setup {
  TokenVocab src = TokenVocab::from_tokens("src", NormKind::kPlain, {"s0", "s1", "s2", "s3", "s4", "s5"});
  TokenVocab tgt = TokenVocab::from_tokens("tgt", NormKind::kPlain, {"t0", "t1", "t2", "t3", "t4", "t5"});
  VocabMapping map;
  DocBatch tdocs;
  Alignment al;
  std::vector<std::vector<std::pair<int32_t, float>>> rows = {
      {{0, 0.4f}, {2, 0.3f}, {1, 0.2f}, {6, 0.1f}},  // 6: a padding row of the source model
      {{1, 0.5f}, {4, 0.25f}, {5, 0.25f}},
      {{4, 0.6f}, {5, 0.4f}},
      {{3, 0.5f}, {0, 0.5f}},
      {{5, 0.1f}, {0, 0.2f}, {2, 0.7f}},  // unsorted input: the duplicate of 0 (via 2) is higher
  };
  Setup() {
    map = VocabMapping::build<Kokkos::DefaultExecutionSpace>(src, tgt, 7);
    map.exact = {0, -1, 0, 3, -1, -1, -1};
    map.full = {0, 1, 0, 3, 2, -1, -1};
    tdocs.add(tgt, std::vector<int32_t>{0, 1, 2, 3, 4});
    tdocs.add(tgt, std::vector<int32_t>{5});
    tdocs.add(tgt, std::vector<int32_t>{1, 2});
    al.source_tokens = 5;
    al.lo = {0, 1, 0, 2, 2, 3, 4, -1};
    al.hi = {0, 1, 1, 2, 2, 3, 4, -1};
    al.status = {kKeptExact, kKeptExact, kFallbackMany, kKeptMapped, kFallbackMismatch, kKeptSpan, kKeptExact,
                 kFallbackUnaligned};
  }
};

using Row = std::vector<std::pair<int32_t, float>>;
void expect_rows(const testing::HostRows& h, const std::vector<Row>& want) {
  ASSERT_EQ(h.ids.size(), want.size());
  for (size_t t = 0; t < want.size(); ++t) {
    ASSERT_EQ(h.ids[t].size(), want[t].size()) << "position " << t;
    for (size_t c = 0; c < want[t].size(); ++c) {
      EXPECT_EQ(h.ids[t][c], want[t][c].first) << "position " << t << " slot " << c;
      EXPECT_NEAR(h.probs[t][c], want[t][c].second, 1e-6) << "position " << t << " slot " << c;
    }
  }
}

TYPED_TEST(ApplyAlignmentTest, EmMapsExactIdsAndFallsBackToTheNextToken) {
  using Mem = typename TypeParam::memory_space;
  Setup s;
  Aligner<TypeParam> aligner(s.src, s.tgt, &s.map);
  const auto out = aligner.apply(s.al, s.tdocs, testing::make_rows<Mem>(s.rows, 4), AlignMethod::kEM);
  expect_rows(testing::to_host(out.rows), {
      {{0, 1.0f}},              // 0 -> 0 (0.4); 2 -> 0 duplicate (0.3) dropped; 1 unmapped; padding
      {{2, 1.0f}},              // nothing survives: empty -> one-hot of the next token (t2)
      {{3, 1.0f}},              // many -> next token
      {{4, 1.0f}},              // 4, 5 unmapped under EM -> next token
      {},                       // last position of the document: no next token
      {{0, 0.5f}, {3, 0.5f}},   // tie: ascending id
      {{0, 1.0f}},              // 0 (0.2) and 2 -> 0 (0.7): the higher one
      {},                       // unaligned at the last position: no next token
  });
  auto st = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), out.status);
  EXPECT_EQ(st(0), kKeptExact);
  EXPECT_EQ(st(1), kFallbackEmpty);
  EXPECT_EQ(st(2), kFallbackMany);
  EXPECT_EQ(st(3), kFallbackEmpty);
  EXPECT_EQ(st(4), kFallbackMismatch);
}

TYPED_TEST(ApplyAlignmentTest, MinEdMapsThroughTheFullMapping) {
  using Mem = typename TypeParam::memory_space;
  Setup s;
  Aligner<TypeParam> aligner(s.src, s.tgt, &s.map);
  const auto out = aligner.apply(s.al, s.tdocs, testing::make_rows<Mem>(s.rows, 4), AlignMethod::kMinED);
  expect_rows(testing::to_host(out.rows), {
      {{0, 0.4f / 0.6f}, {1, 0.2f / 0.6f}},
      {{1, 0.5f / 0.75f}, {2, 0.25f / 0.75f}},
      {{3, 1.0f}},
      {{2, 1.0f}},
      {},
      {{0, 0.5f}, {3, 0.5f}},
      {{0, 1.0f}},
      {},
  });
}

TYPED_TEST(ApplyAlignmentTest, CurrentTokenCompatibilitySwitch) {
  using Mem = typename TypeParam::memory_space;
  Setup s;
  Aligner<TypeParam> aligner(s.src, s.tgt, &s.map);
  const auto out = aligner.apply(s.al, s.tdocs, testing::make_rows<Mem>(s.rows, 4), AlignMethod::kEM, true);
  const auto h = testing::to_host(out.rows);
  EXPECT_EQ(h.ids[1], std::vector<int32_t>{1});  // the original's one-hot of the current token
  EXPECT_EQ(h.ids[2], std::vector<int32_t>{2});
  EXPECT_EQ(h.ids[4], std::vector<int32_t>{4});  // also at the last position
  EXPECT_EQ(h.ids[7], std::vector<int32_t>{2});
  EXPECT_EQ(h.ids[0], std::vector<int32_t>{0});  // kept rows do not change
}

TYPED_TEST(ApplyAlignmentTest, TailBucketKeepsTheDroppedMass) {
  using Mem = typename TypeParam::memory_space;
  Setup s;
  Aligner<TypeParam> aligner(s.src, s.tgt, &s.map);
  const std::vector<float> tail = {0.05f, 0.0f, 0.1f, 0.0f, 0.0f};
  const auto out = aligner.apply(s.al, s.tdocs, testing::make_rows<Mem>(s.rows, 4, tail), AlignMethod::kMinED);
  const auto h = testing::to_host(out.rows);
  ASSERT_EQ(h.tail.size(), 8u);
  EXPECT_NEAR(h.probs[0][0], 0.4f, 1e-7);  // not renormalized
  EXPECT_NEAR(h.probs[0][1], 0.2f, 1e-7);
  EXPECT_NEAR(h.tail[0], 0.05f + 0.4f, 1e-6);  // 2 -> 0 duplicate (0.3) and padding (0.1) dropped
  EXPECT_NEAR(h.tail[3], 0.1f + 0.4f, 1e-6);   // 5 unmapped (0.4)
  EXPECT_EQ(h.tail[2], 0.0f);                  // a one-hot has no tail
}

TYPED_TEST(ApplyAlignmentTest, ChecksItsInputs) {
  using Mem = typename TypeParam::memory_space;
  Setup s;
  Aligner<TypeParam> no_map(s.src, s.tgt);
  EXPECT_THROW(no_map.apply(s.al, s.tdocs, testing::make_rows<Mem>(s.rows, 4), AlignMethod::kEM), Error);
  Aligner<TypeParam> aligner(s.src, s.tgt, &s.map);
  const auto short_rows = testing::make_rows<Mem>({s.rows[0]}, 4);
  EXPECT_THROW(aligner.apply(s.al, s.tdocs, short_rows, AlignMethod::kEM), Error);
}

}  // namespace
}  // namespace fusellm::align
