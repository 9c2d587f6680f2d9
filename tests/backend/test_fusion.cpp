// MinCE / AvgCE / per-position MinCE (kernels/kokkos/fusion.hpp), on every backend: against a plain
// numpy transcription of DESIGN.md's definitions (fixtures), ties, one-hot rows, id merging, tails,
// edge cases and errors.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "fusellm/fusion/fusion.hpp"
#include "kokkos/fusion.hpp"
#include "test_fusion_common.hpp"

namespace fusellm {
namespace {

using kernels::FusionMode;
using testing::FusedLossFixtures;
using testing::host_vector;
using testing::make_rows;
using testing::view1;
using testing::view2;

template <class Exec>
class Fusion : public ::testing::Test {};
TYPED_TEST_SUITE(Fusion, fusellm::testing::ExecSpaces);

template <class Exec>
using Rows = SparseRows<typename Exec::memory_space>;

template <class Exec>
kernels::FusionResult<typename Exec::memory_space> run(FusionMode mode,
                                                       const std::vector<Rows<Exec>>& src,
                                                       const std::vector<float>& scores,
                                                       int64_t cols,
                                                       const std::vector<int64_t>& off, int64_t V,
                                                       std::vector<std::string> names = {}) {
  using M = typename Exec::memory_space;
  Kokkos::View<const float**, Kokkos::LayoutRight, M> s =
      view2<Exec>(scores, cols > 0 ? int64_t(scores.size()) / cols : int64_t(src.size()), cols);
  Kokkos::View<const int64_t*, M> o = view1<Exec>(off);
  if (names.empty())
    for (size_t j = 0; j < src.size(); ++j) names.push_back("s" + std::to_string(j));
  return kernels::fuse(Exec(), mode, src, names, s, o, V);
}

template <class Exec>
std::vector<Rows<Exec>> fixture_sources(const std::string& c, int K) {
  const auto& fx = FusedLossFixtures::get();
  std::vector<Rows<Exec>> src;
  for (int j = 0; j < K; ++j) {
    const auto sh = fx.shape(c, "ids" + std::to_string(j));
    src.push_back(make_rows<Exec>(fx.array<int32_t>(c, "ids" + std::to_string(j)),
                                  fx.array<float>(c, "probs" + std::to_string(j)), sh[0], sh[1]));
  }
  return src;
}

void expect_dense(const std::vector<double>& got, const std::vector<float>& want, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-6) << what << " flat " << i;
}

TYPED_TEST(Fusion, MatchesNumpyDefinitions) {
  const auto& fx = FusedLossFixtures::get();
  const std::string c = "fusion3";
  const int K = int(fx.scalar(c, "K"));
  const int64_t V = int64_t(fx.scalar(c, "V"));
  auto src = fixture_sources<TypeParam>(c, K);
  const int64_t T = src[0].rows();
  auto off = fx.array<int64_t>(c, "offsets");
  auto scores = fx.array<float>(c, "scores");
  const int64_t B = int64_t(off.size()) - 1;

  auto mn = run<TypeParam>(FusionMode::kMinCE, src, scores, B, off, V);
  EXPECT_EQ(host_vector(mn.choice), fx.array<int32_t>(c, "minCE_choice"));
  EXPECT_EQ(mn.rows.k(), 6);  // max k_j
  expect_dense(testing::densify(mn.rows, V), fx.array<float>(c, "minCE_dense"), "MinCE");
  testing::expect_sorted_rows(mn.rows);

  auto av = run<TypeParam>(FusionMode::kAvgCE, src, scores, B, off, V);
  EXPECT_EQ(av.rows.k(), 4 + 6 + 1);  // sum k_j
  auto w = host_vector(av.weights);
  auto ww = fx.array<float>(c, "avgCE_weights");
  for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(w[i], ww[i], 1e-6);
  expect_dense(testing::densify(av.rows, V), fx.array<float>(c, "avgCE_dense"), "AvgCE");
  testing::expect_sorted_rows(av.rows);
  // Each id at most once per row.
  auto ids = host_vector(av.rows.ids);
  for (int64_t i = 0; i < T; ++i)
    for (int64_t a = 0; a < av.rows.k(); ++a)
      for (int64_t b = a + 1; b < av.rows.k(); ++b)
        if (ids[i * av.rows.k() + a] >= 0) EXPECT_NE(ids[i * av.rows.k() + a], ids[i * av.rows.k() + b]);

  auto pc = run<TypeParam>(FusionMode::kMinCEPerPosition, src, fx.array<float>(c, "position_ce"),
                           T, {}, V);
  EXPECT_EQ(host_vector(pc.choice), fx.array<int32_t>(c, "position_choice"));
  expect_dense(testing::densify(pc.rows, V), fx.array<float>(c, "position_dense"), "per position");
}

TYPED_TEST(Fusion, TiesGoToFirstSourceAndOneHotRowsPassThrough) {
  // Two sources, 3 rows, one sequence; source 1 is one-hot (alignment fallback).
  auto a = make_rows<TypeParam>({4, 2, 1, 3, -1, -1}, {0.7f, 0.3f, 0.6f, 0.4f, 1.f, 0.f}, 3, 2);
  a = make_rows<TypeParam>({4, 2, 1, 3, 0, -1}, {0.7f, 0.3f, 0.6f, 0.4f, 1.f, 0.f}, 3, 2);
  auto b = make_rows<TypeParam>({2, 3, 4}, {1.f, 1.f, 1.f}, 3, 1);
  std::vector<Rows<TypeParam>> src{a, b};
  auto tie = run<TypeParam>(FusionMode::kMinCE, src, {1.25f, 1.25f}, 1, {0, 3}, 5);
  EXPECT_EQ(host_vector(tie.choice), std::vector<int32_t>({0}));
  EXPECT_EQ(host_vector(tie.rows.ids), std::vector<int32_t>({4, 2, 1, 3, 0, -1}));
  auto win = run<TypeParam>(FusionMode::kMinCE, src, {1.25f, 1.f}, 1, {0, 3}, 5);
  EXPECT_EQ(host_vector(win.choice), std::vector<int32_t>({1}));
  EXPECT_EQ(host_vector(win.rows.ids), std::vector<int32_t>({2, -1, 3, -1, 4, -1}));
  EXPECT_EQ(host_vector(win.rows.probs), std::vector<float>({1.f, 0.f, 1.f, 0.f, 1.f, 0.f}));
  // Equal scores: AvgCE weights 1/2 each; ids merged (row 0: 4 and 2 from a, 2 from b).
  auto av = run<TypeParam>(FusionMode::kAvgCE, src, {1.f, 1.f}, 1, {0, 3}, 5);
  auto ids = host_vector(av.rows.ids);
  auto pr = host_vector(av.rows.probs);
  EXPECT_EQ(std::vector<int32_t>(ids.begin(), ids.begin() + 3), std::vector<int32_t>({2, 4, -1}));
  EXPECT_NEAR(pr[0], 0.5f * 0.3f + 0.5f, 1e-7);
  EXPECT_NEAR(pr[1], 0.35f, 1e-7);
  // Row 1: 1 (0.3), 3 (0.2 + 0.5): sorted by probability.
  EXPECT_EQ(std::vector<int32_t>(ids.begin() + 3, ids.begin() + 6), std::vector<int32_t>({3, 1, -1}));
  // Per position: ties to the first source.
  auto pp = run<TypeParam>(FusionMode::kMinCEPerPosition, src, {1.f, 2.f, 3.f, 1.f, 1.f, 1.f}, 3,
                           {}, 5);
  EXPECT_EQ(host_vector(pp.choice), std::vector<int32_t>({0, 1, 1}));
}

TYPED_TEST(Fusion, TailsCombineWithTheWeights) {
  auto a = make_rows<TypeParam>({0, 1}, {0.5f, 0.2f}, 1, 2, {0.3f});
  auto b = make_rows<TypeParam>({1}, {0.9f}, 1, 1, {0.1f});
  std::vector<Rows<TypeParam>> src{a, b};
  auto av = run<TypeParam>(FusionMode::kAvgCE, src, {0.5f, 0.5f}, 1, {0, 1}, 3);
  EXPECT_NEAR(host_vector(av.rows.tail)[0], 0.2f, 1e-7);
  auto mn = run<TypeParam>(FusionMode::kMinCE, src, {0.5f, 0.4f}, 1, {0, 1}, 3);
  EXPECT_NEAR(host_vector(mn.rows.tail)[0], 0.1f, 1e-7);
}

TYPED_TEST(Fusion, EmptySequenceAndSingleSource) {
  Rows<TypeParam> e("e", 0, 3);
  auto r = run<TypeParam>(FusionMode::kAvgCE, {e, e}, {}, 0, {0}, 10);
  EXPECT_EQ(r.rows.rows(), 0);
  auto r2 = run<TypeParam>(FusionMode::kMinCE, {e}, {2.f, 3.f}, 2, {0, 0, 0}, 10);
  EXPECT_EQ(host_vector(r2.choice), std::vector<int32_t>({0, 0}));
  auto one = make_rows<TypeParam>({3}, {1.f}, 1, 1);
  auto r3 = run<TypeParam>(FusionMode::kAvgCE, {one}, {7.f}, 1, {0, 1}, 10);
  EXPECT_EQ(host_vector(r3.rows.probs), std::vector<float>({1.f}));
}

TYPED_TEST(Fusion, ErrorsNameSourceAndPosition) {
  auto good = make_rows<TypeParam>({0, 1, 2, -1}, {0.5f, 0.5f, 1.f, 0.f}, 2, 2);
  auto badid = make_rows<TypeParam>({0, 1, 2, 9}, {0.5f, 0.5f, 0.5f, 0.5f}, 2, 2);
  auto negid = make_rows<TypeParam>({0, -7, 2, -1}, {0.5f, 0.5f, 1.f, 0.f}, 2, 2);
  auto nanp = make_rows<TypeParam>({0, 1, 2, -1},
                                   {0.5f, std::numeric_limits<float>::quiet_NaN(), 1.f, 0.f}, 2, 2);
  const std::vector<std::string> names{"llama", "mpt"};
  for (FusionMode m : {FusionMode::kMinCE, FusionMode::kAvgCE}) {
    testing::expect_error([&] { run<TypeParam>(m, {good, badid}, {1.f, 2.f}, 1, {0, 2}, 5, names); },
                          {"'mpt'", "id 9", "position 1", "slot 1", "[0, 5)"});
    testing::expect_error([&] { run<TypeParam>(m, {negid, good}, {1.f, 2.f}, 1, {0, 2}, 5, names); },
                          {"'llama'", "id -7", "position 0"});
    testing::expect_error([&] { run<TypeParam>(m, {good, nanp}, {1.f, 2.f}, 1, {0, 2}, 5, names); },
                          {"'mpt'", "probability nan", "position 0"});
    testing::expect_error(
        [&] {
          run<TypeParam>(m, {good, good}, {1.f, std::numeric_limits<float>::quiet_NaN()}, 1,
                         {0, 2}, 5, names);
        },
        {"'mpt'", "score nan", "sequence 0"});
    Rows<TypeParam> shortr("s", 1, 2);
    testing::expect_error([&] { run<TypeParam>(m, {good, shortr}, {1.f, 2.f}, 1, {0, 2}, 5, names); },
                          {"'mpt' has 1 rows", "'llama' has 2"});
    testing::expect_error([&] { run<TypeParam>(m, {good, good}, {1.f, 2.f}, 1, {0, 3}, 5, names); },
                          {"offsets"});
    testing::expect_error([&] { run<TypeParam>(m, {good, good}, {1.f, 2.f, 3.f}, 1, {0, 2}, 5, names); },
                          {"scores for 3 sources"});
  }
  testing::expect_error(
      [&] {
        run<TypeParam>(FusionMode::kMinCEPerPosition, {good, good},
                       {1.f, 2.f, 0.f, std::numeric_limits<float>::quiet_NaN()}, 2, {}, 5, names);
      },
      {"'mpt'", "position 1"});
  std::vector<Rows<TypeParam>> many(kernels::kMaxSources + 1, good);
  testing::expect_error(
      [&] { run<TypeParam>(FusionMode::kMinCE, many, std::vector<float>(many.size(), 1.f), 1, {0, 2}, 5); },
      {"at most 8"});
}

TEST(FusionWrapper, HostSpans) {
  using testing::make_rows;
  auto a = make_rows<Kokkos::DefaultHostExecutionSpace>({0, 1}, {0.6f, 0.4f}, 1, 2);
  auto b = make_rows<Kokkos::DefaultHostExecutionSpace>({2}, {1.f}, 1, 1);
  std::vector<fusion::HostRows> src{a, b};
  std::vector<std::string> names{"a", "b"};
  std::vector<int64_t> off{0, 1};
  auto mn = fusion::fuse_minCE(src, names, std::vector<float>{2.f, 1.f}, off, 3);
  EXPECT_EQ(mn.choice, std::vector<int32_t>({1}));
  auto av = fusion::fuse_avgCE(src, names, std::vector<float>{2.f, 1.f}, off, 3);
  EXPECT_EQ(av.weights.size(), 2u);
  EXPECT_NEAR(av.weights[0] + av.weights[1], 1.f, 1e-6);
  auto pp = fusion::fuse_minCE_per_position(src, names, std::vector<float>{0.5f, 0.7f}, 3);
  EXPECT_EQ(pp.choice, std::vector<int32_t>({0}));
  testing::expect_error([&] { fusion::fuse_avgCE(src, names, std::vector<float>{2.f}, off, 3); },
                        {"1 scores for 2 sources x 1 sequences"});
}

}  // namespace
}  // namespace fusellm
