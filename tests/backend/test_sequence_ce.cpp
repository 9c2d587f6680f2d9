// Source scores (kernels/kokkos/sequence_ce.hpp), on every backend: per-position CE and per-segment
// sums against F.cross_entropy (fixtures), packed-sequence and per-byte scores, edge cases, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "fusellm/fusion/sequence_ce.hpp"
#include "kokkos/sequence_ce.hpp"
#include "test_fusion_common.hpp"

namespace fusellm {
namespace {

using testing::FusedLossFixtures;
using testing::host_vector;
using testing::view1;
using testing::view2;

template <class Exec>
class SequenceCE : public ::testing::Test {};
TYPED_TEST_SUITE(SequenceCE, fusellm::testing::ExecSpaces);

template <class Exec>
kernels::SequenceCE<typename Exec::memory_space> run(const std::vector<float>& z, int64_t N,
                                                     int64_t V, const std::vector<int32_t>& gold,
                                                     const std::vector<int64_t>& off,
                                                     int team = 0,
                                                     const std::string& name = "src") {
  using M = typename Exec::memory_space;
  Kokkos::View<const float**, Kokkos::LayoutRight, M> lz = view2<Exec>(z, N, V);
  Kokkos::View<const int32_t*, M> g = view1<Exec>(gold);
  Kokkos::View<const int64_t*, M> o = view1<Exec>(off);
  return kernels::sequence_ce(Exec(), lz, g, o, name, team);
}

TYPED_TEST(SequenceCE, MatchesTorchFixtures) {
  const auto& fx = FusedLossFixtures::get();
  for (const char* c : {"ce_packed", "ce_wide"}) {
    const auto shape = fx.shape(c, "logits");
    const int64_t N = shape[0], V = shape[1];
    auto z = fx.array<float>(c, "logits");
    auto gold = fx.array<int32_t>(c, "gold");
    auto off = fx.array<int64_t>(c, "offsets");
    auto ce = fx.array<float>(c, "ce_position");
    auto sums = fx.array<double>(c, "ce_sum");
    auto counts = fx.array<int64_t>(c, "count");
    for (int ts : testing::team_sizes<TypeParam>()) {
      auto r = run<TypeParam>(z, N, V, gold, off, ts);
      auto got = host_vector(r.ce_position);
      // No BLAS: an fp32 log-sum-exp over V in another order than torch, ~10 ulps of the CE.
      for (int64_t i = 0; i < N; ++i) EXPECT_NEAR(got[i], ce[i], 1e-5 * ce[i] + 1e-6) << c << " " << i;
      auto gs = host_vector(r.ce_sum);
      EXPECT_EQ(host_vector(r.count), counts);
      for (size_t d = 0; d < sums.size(); ++d) EXPECT_NEAR(gs[d], sums[d], 1e-5 * sums[d] + 1e-6);
    }
  }
}

TEST(SequenceCEWrapper, PackedAndPerByteScoresMatchFixtures) {
  const auto& fx = FusedLossFixtures::get();
  const char* c = "ce_packed";
  const auto shape = fx.shape(c, "logits");
  auto z = fx.array<float>(c, "logits");
  auto gold = fx.array<int32_t>(c, "gold");
  auto off = fx.array<int64_t>(c, "offsets");
  auto bytes = fx.array<int64_t>(c, "bytes");
  auto s = fusion::score_segments(z, shape[0], shape[1], gold, off, "src", bytes);
  ASSERT_EQ(s.segments(), 4);
  // Segment 1 is empty: no evidence, CE +Inf, reward 0.
  EXPECT_TRUE(std::isinf(s.ce(1)));
  EXPECT_EQ(s.reward(1), 0.0);
  const double packed = s.packed_score(0, 4);
  // Token-weighted means of the per-position CEs above: their bound carries over.
  EXPECT_NEAR(packed, fx.scalar(c, "packed_ce"), 1e-5 * packed);
  EXPECT_NEAR(s.packed_score(0, 4, fusion::ScoreUnit::kNatsPerByte) / std::log(2.0),
              fx.scalar(c, "packed_bits_per_byte"), 1e-5 * packed);
  // The token-weighted mean is not the mean of the segment means.
  for (int64_t d : {0, 2, 3}) EXPECT_NEAR(s.reward(d), std::exp(-s.ce(d)), 1e-12);
  EXPECT_NEAR(s.bits_per_byte(2), s.ce_sum[2] / bytes[2] / std::log(2.0), 1e-12);
  auto no_bytes = fusion::score_segments(z, shape[0], shape[1], gold, off, "src");
  testing::expect_error([&] { no_bytes.nats_per_byte(0); }, {"byte counts"});
}

TYPED_TEST(SequenceCE, EmptyAndLengthOne) {
  auto r0 = run<TypeParam>({}, 0, 9, {}, {0});
  EXPECT_EQ(r0.ce_sum.extent(0), 0u);
  auto r1 = run<TypeParam>({}, 0, 9, {}, {0, 0});
  EXPECT_EQ(host_vector(r1.count), std::vector<int64_t>({0}));
  // One position, V = 3: CE = logsumexp - z[gold].
  std::vector<float> z{1.f, 2.f, 3.f};
  auto r = run<TypeParam>(z, 1, 3, {0}, {0, 1});
  const double want = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 1.0;
  EXPECT_NEAR(host_vector(r.ce_position)[0], want, 1e-6);
  EXPECT_NEAR(host_vector(r.ce_sum)[0], want, 1e-6);
  // All ignored: nothing scored.
  auto ri = run<TypeParam>(z, 1, 3, {-100}, {0, 1});
  EXPECT_EQ(host_vector(ri.count)[0], 0);
  EXPECT_EQ(host_vector(ri.ce_position)[0], 0.f);
}

TYPED_TEST(SequenceCE, ErrorsNameSourceAndPosition) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> z(5 * 8, 0.5f);
  std::vector<int32_t> gold{1, 2, 3, 4, 5};
  std::vector<int64_t> off{0, 2, 5};
  for (int ts : testing::team_sizes<TypeParam>()) {
    auto zn = z;
    zn[3 * 8 + 6] = nan;
    testing::expect_error([&] { run<TypeParam>(zn, 5, 8, gold, off, ts, "openllama"); },
                          {"'openllama'", "position 3", "logit[3, 6] = nan"});
    auto zi = z;
    zi[1 * 8 + 0] = inf;
    testing::expect_error([&] { run<TypeParam>(zi, 5, 8, gold, off, ts, "openllama"); },
                          {"position 1", "inf"});
    auto zg = z;
    zg[4 * 8 + 5] = -inf;  // the gold logit at position 4
    testing::expect_error([&] { run<TypeParam>(zg, 5, 8, gold, off, ts, "openllama"); },
                          {"position 4", "not finite"});
    // A -Inf logit elsewhere is fine (probability 0).
    auto zo = z;
    zo[4 * 8 + 7] = -inf;
    EXPECT_NO_THROW(run<TypeParam>(zo, 5, 8, gold, off, ts));
  }
  auto gb = gold;
  gb[2] = 8;
  testing::expect_error([&] { run<TypeParam>(z, 5, 8, gb, off, 0, "mpt"); },
                        {"'mpt'", "gold id 8", "position 2"});
  testing::expect_error([&] { run<TypeParam>(z, 5, 8, {1, 2, 3}, off); }, {"3 gold ids", "5 logit rows"});
  testing::expect_error([&] { run<TypeParam>(z, 5, 8, gold, {0, 2, 4}); }, {"offsets"});
  testing::expect_error([&] { run<TypeParam>(z, 5, 8, gold, {0, 3, 2, 5}); }, {"decrease"});
}

}  // namespace
}  // namespace fusellm
