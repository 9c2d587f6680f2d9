// Top-k with temperature softmax (kernels/kokkos/topk_softmax.hpp), on every backend: against
// torch.topk + softmax (fixtures), against a plain sort on random rows full of ties, edge cases and
// errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "fusellm/fusion/topk_softmax.hpp"
#include "kokkos/topk_softmax.hpp"
#include "test_fusion_common.hpp"

namespace fusellm {
namespace {

using testing::FusedLossFixtures;
using testing::host_vector;
using testing::view2;

template <class Exec>
class TopkSoftmax : public ::testing::Test {};
TYPED_TEST_SUITE(TopkSoftmax, fusellm::testing::ExecSpaces);

template <class Exec>
SparseRows<typename Exec::memory_space> run(const std::vector<float>& z, int64_t T, int64_t V,
                                            kernels::TopkParams p, const std::string& name = "src") {
  SparseRows<typename Exec::memory_space> out;
  Kokkos::View<const float**, Kokkos::LayoutRight, typename Exec::memory_space> lz =
      view2<Exec>(z, T, V);
  kernels::topk_softmax(Exec(), lz, p, out, name);
  return out;
}

// Plain reference: stable sort of (value desc, id asc), softmax in double.
struct Ref {
  std::vector<int32_t> ids;
  std::vector<double> probs;
  std::vector<double> tail;
};
Ref reference(const std::vector<float>& z, int64_t T, int64_t V, int k, double temp, bool tail) {
  Ref r;
  for (int64_t i = 0; i < T; ++i) {
    std::vector<int32_t> idx(V);
    std::iota(idx.begin(), idx.end(), 0);
    const float* row = &z[i * V];
    std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return row[a] > row[b]; });
    const double m = row[idx[0]];
    double den = 0.0;
    if (tail)
      for (int64_t v = 0; v < V; ++v) den += std::exp((row[v] - m) / temp);
    else
      for (int j = 0; j < k; ++j) den += std::exp((row[idx[j]] - m) / temp);
    double kept = 0.0;
    for (int j = 0; j < k; ++j) {
      r.ids.push_back(idx[j]);
      r.probs.push_back(std::exp((row[idx[j]] - m) / temp) / den);
      kept += r.probs.back();
    }
    r.tail.push_back(std::max(0.0, 1.0 - kept));
  }
  return r;
}

template <class Rows>
void expect_matches(const Rows& out, const Ref& ref, int64_t T, int k, bool tail,
                    const std::string& what) {
  ASSERT_EQ(out.rows(), T);
  ASSERT_EQ(out.k(), k);
  auto ids = host_vector(out.ids);
  auto pr = host_vector(out.probs);
  for (int64_t i = 0; i < T * k; ++i) {
    ASSERT_EQ(ids[i], ref.ids[i]) << what << " flat slot " << i;
    // No BLAS: fp32 exp and a k- or V-term fp32 sum in another order than torch, ~10 ulps.
    EXPECT_NEAR(pr[i], ref.probs[i], 2e-6 + 1e-5 * ref.probs[i]) << what << " flat slot " << i;
  }
  if (tail) {
    auto tl = host_vector(out.tail);
    for (int64_t i = 0; i < T; ++i) EXPECT_NEAR(tl[i], ref.tail[i], 3e-6) << what << " row " << i;
  } else {
    EXPECT_EQ(out.tail.extent(0), 0u);
  }
}

TYPED_TEST(TopkSoftmax, MatchesTorchFixtures) {
  const auto& fx = FusedLossFixtures::get();
  for (const char* c : {"topk_small", "topk_temp", "topk_tail", "topk_k40", "topk_kV"}) {
    const auto shape = fx.shape(c, "logits");
    const int64_t T = shape[0], V = shape[1];
    const int k = int(fx.scalar(c, "k"));
    const bool tail = fx.scalar_json(c, "keep_tail").get<bool>();
    auto z = fx.array<float>(c, "logits");
    auto ids = fx.array<int32_t>(c, "ids");
    auto probs = fx.array<float>(c, "probs");
    for (int ts : testing::team_sizes<TypeParam>()) {
      auto out = run<TypeParam>(
          z, T, V, {k, float(fx.scalar(c, "temperature")), tail, ts});
      auto oi = host_vector(out.ids);
      auto op = host_vector(out.probs);
      for (int64_t i = 0; i < T * k; ++i) {
        ASSERT_EQ(oi[i], ids[i]) << c << " slot " << i << " team " << ts;
        // fp32 exp and sums in another order than torch (team size changes it too): ~10 ulps.
        EXPECT_NEAR(op[i], probs[i], 1e-5 * probs[i] + 1e-7) << c << " slot " << i;
      }
      if (tail) {
        auto tl = host_vector(out.tail);
        auto rt = fx.array<float>(c, "tail");
        for (int64_t i = 0; i < T; ++i) EXPECT_NEAR(tl[i], rt[i], 2e-6) << c << " row " << i;
      }
      testing::expect_sorted_rows(out);
    }
  }
}

TYPED_TEST(TopkSoftmax, RandomRowsWithTiesMatchSortReference) {
  std::mt19937 rng(7);
  for (int64_t V : {1, 2, 7, 33, 100, 1000}) {
    for (int k : {1, 3, 10, 32, 33, 100}) {
      if (k > V) continue;
      for (int levels : {3, 1000000}) {  // 3 distinct values: ties everywhere
        const int64_t T = 5;
        std::vector<float> z(T * V);
        std::uniform_int_distribution<int> d(0, levels - 1);
        for (auto& x : z) x = float(d(rng)) * (levels == 3 ? 1.f : 1e-4f) - 2.f;
        for (bool tail : {false, true})
          for (int ts : testing::team_sizes<TypeParam>()) {
            const float temp = tail ? 0.8f : 1.f;
            auto out = run<TypeParam>(z, T, V, {k, temp, tail, ts});
            expect_matches(out, reference(z, T, V, k, temp, tail), T, k, tail,
                           "V=" + std::to_string(V) + " k=" + std::to_string(k) +
                               " levels=" + std::to_string(levels) + " team=" + std::to_string(ts));
          }
      }
    }
  }
}

TYPED_TEST(TopkSoftmax, BitIdenticalToSerialWithoutTail) {
  std::mt19937 rng(11);
  const int64_t T = 9, V = 5003;
  std::vector<float> z(T * V);
  std::normal_distribution<float> d(0.f, 3.f);
  for (auto& x : z) x = d(rng);
  for (int k : {1, 10, 40}) {
    auto ref = run<Kokkos::Serial>(z, T, V, {k, 0.9f, false, 0});
    for (int ts : testing::team_sizes<TypeParam>()) {
      auto out = run<TypeParam>(z, T, V, {k, 0.9f, false, ts});
      EXPECT_EQ(host_vector(out.ids), host_vector(ref.ids));
      EXPECT_EQ(host_vector(out.probs), host_vector(ref.probs)) << "k=" << k << " team " << ts;
    }
  }
}

TYPED_TEST(TopkSoftmax, EmptySequence) {
  auto out = run<TypeParam>({}, 0, 17, {5, 1.f, true, 0});
  EXPECT_EQ(out.rows(), 0);
  EXPECT_EQ(out.k(), 5);
}

TYPED_TEST(TopkSoftmax, LengthOneAndKOne) {
  std::vector<float> z{0.5f, 2.f, -1.f, 2.f, 1.f};
  auto out = run<TypeParam>(z, 1, 5, {1, 1.f, false, 0});
  EXPECT_EQ(host_vector(out.ids), std::vector<int32_t>({1}));  // tie 2.0 at ids 1 and 3: lower id
  EXPECT_EQ(host_vector(out.probs), std::vector<float>({1.f}));
  auto t = run<TypeParam>(z, 1, 5, {1, 1.f, true, 0});
  double den = 0;
  for (float x : z) den += std::exp(x - 2.0);
  EXPECT_NEAR(host_vector(t.probs)[0], 1.0 / den, 1e-6);
  EXPECT_NEAR(host_vector(t.tail)[0], 1.0 - 1.0 / den, 1e-6);
}

TYPED_TEST(TopkSoftmax, KEqualsVAndAllTies) {
  for (int64_t V : {6, 45}) {  // register path and the k > 32 path
    std::vector<float> z(2 * V, 3.f);
    for (int64_t v = 0; v < V; ++v) z[V + v] = (v % 3 == 0) ? -0.f : 0.f;  // -0 ties +0
    for (int ts : testing::team_sizes<TypeParam>()) {
      auto out = run<TypeParam>(z, 2, V, {int(V), 1.f, true, ts});
      auto ids = host_vector(out.ids);
      auto pr = host_vector(out.probs);
      for (int64_t r = 0; r < 2; ++r)
        for (int64_t v = 0; v < V; ++v) {
          EXPECT_EQ(ids[r * V + v], v);
          EXPECT_NEAR(pr[r * V + v], 1.0 / V, 1e-7);
        }
      for (float t : host_vector(out.tail)) EXPECT_NEAR(t, 0.f, 1e-6);
    }
  }
}

TYPED_TEST(TopkSoftmax, NonFiniteLogitsNameSourceAndPosition) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (float badv : {nan, inf, -inf})
    for (int k : {3, 40})
      for (int64_t col : {0, 37, 63}) {
        std::vector<float> z(4 * 64, 0.25f);
        z[2 * 64 + col] = badv;
        for (int ts : testing::team_sizes<TypeParam>())
          testing::expect_error(
              [&] { run<TypeParam>(z, 4, 64, {k, 1.f, false, ts}, "mpt-7b"); },
              {"'mpt-7b'", "position 2", "logit[2, " + std::to_string(col) + "]"});
      }
}

TYPED_TEST(TopkSoftmax, BadParametersAreErrors) {
  std::vector<float> z(3 * 4, 1.f);
  testing::expect_error([&] { run<TypeParam>(z, 3, 4, {5, 1.f, false, 0}, "llama"); },
                        {"'llama'", "k = 5", "V = 4"});
  testing::expect_error([&] { run<TypeParam>(z, 3, 4, {0, 1.f, false, 0}); }, {"k = 0"});
  testing::expect_error([&] { run<TypeParam>(z, 3, 4, {2, 0.f, false, 0}); }, {"temperature"});
  testing::expect_error(
      [&] { run<TypeParam>(z, 3, 4, {2, std::numeric_limits<float>::infinity(), false, 0}); },
      {"temperature"});
}

TEST(FusionRowMath, OrderKeyIsValueDescThenIdAsc) {
  using kernels::order_key;
  const float vals[] = {-std::numeric_limits<float>::infinity(), -3e38f, -2.f, -0.f, 0.f, 1e-30f,
                        1.f, 3e38f};
  for (float a : vals)
    for (float b : vals)
      for (int32_t i : {0, 5, 2000000000})
        for (int32_t j : {0, 7, 2000000001}) {
          const bool want = a > b || (a == b && i < j);
          EXPECT_EQ(order_key(a, i) > order_key(b, j), want) << a << "," << i << " vs " << b << "," << j;
        }
  EXPECT_EQ(kernels::order_key_id(order_key(2.5f, 1234)), 1234);
  EXPECT_EQ(kernels::order_key_value(order_key(-2.5f, 1234)), -2.5f);
  EXPECT_GT(order_key(-std::numeric_limits<float>::infinity(), 2147483647), 0u);
}

TEST(TopkSoftmaxWrapper, HostSpans) {
  std::vector<float> z{1.f, 3.f, 2.f, 0.f, 5.f, 5.f};
  auto out = fusion::topk_softmax(z, 2, 3, {2, 1.f, false, 0}, "src");
  EXPECT_EQ(host_vector(out.ids), std::vector<int32_t>({1, 2, 1, 2}));
  testing::expect_error([&] { fusion::topk_softmax(z, 2, 4, {2, 1.f, false, 0}, "src"); },
                        {"6 values", "[2, 4]"});
}

}  // namespace
}  // namespace fusellm
