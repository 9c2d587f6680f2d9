// Fused classifier (kernels/kokkos/fused_classifier.hpp), on every backend: loss terms and gradient
// against PyTorch autograd (fixtures, 1e-5 relative), against central finite differences of a
// double-precision C++ reference of the loss, the loss-only variant, mean vs sum, padding, rows that
// keep less than all the mass, edge cases and errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "fusellm/fusion/fused_classifier.hpp"
#include "kokkos/fused_classifier.hpp"
#include "test_fusion_common.hpp"

namespace fusellm {
namespace {

using kernels::FusedClassifierParams;
using kernels::LossReduction;
using testing::FusedLossFixtures;
using testing::host_vector;
using testing::make_rows;
using testing::view1;
using testing::view2;

template <class Exec>
class FusedClassifier : public ::testing::Test {};
TYPED_TEST_SUITE(FusedClassifier, fusellm::testing::ExecSpaces);

struct Problem {
  int64_t T = 0, V = 0, k = 0;
  std::vector<float> z;
  std::vector<int32_t> gold, ids;
  std::vector<float> probs;
};

template <class Exec>
struct Run {
  kernels::FusedLoss<typename Exec::memory_space> loss;
  std::vector<float> grad;
};

template <class Exec>
Run<Exec> run(const Problem& p, FusedClassifierParams params, bool grad = true) {
  using M = typename Exec::memory_space;
  auto z = view2<Exec>(p.z, p.T, p.V);
  Kokkos::View<const int32_t*, M> g = view1<Exec>(p.gold);
  auto rows = make_rows<Exec>(p.ids, p.probs, p.T, p.k);
  Run<Exec> r;
  if (grad) {
    r.loss = kernels::fused_classifier(Exec(), z, g, rows, params);
  } else {
    Kokkos::View<const float**, Kokkos::LayoutRight, M> cz = z;
    r.loss = kernels::fused_loss(Exec(), cz, g, rows, params);
  }
  r.grad = host_vector(z);
  return r;
}

Problem fixture_problem(const std::string& c) {
  const auto& fx = FusedLossFixtures::get();
  Problem p;
  const auto sz = fx.shape(c, "logits");
  const auto st = fx.shape(c, "target_ids");
  p.T = sz[0];
  p.V = sz[1];
  p.k = st[1];
  p.z = fx.array<float>(c, "logits");
  p.gold = fx.array<int32_t>(c, "gold");
  p.ids = fx.array<int32_t>(c, "target_ids");
  p.probs = fx.array<float>(c, "target_probs");
  return p;
}

void expect_grad_near(const std::vector<float>& got, const std::vector<float>& want, double rel,
                      const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  double scale = 0.0;
  for (float w : want) scale = std::max(scale, double(std::fabs(w)));
  double worst = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(double(got[i]) - want[i]);
    // Entrywise relative, with a floor at 1e-6 of the largest entry (cancellation at target ids).
    ASSERT_LE(err, rel * std::fabs(want[i]) + 1e-6 * scale) << what << " flat " << i << ": " << got[i]
                                                            << " vs " << want[i];
    worst = std::max(worst, err);
  }
  EXPECT_LE(worst, rel * scale) << what;
}

TYPED_TEST(FusedClassifier, MatchesTorchAutograd) {
  const auto& fx = FusedLossFixtures::get();
  for (const char* c : {"loss_mean", "loss_sum", "loss_kV", "loss_clm_only", "loss_wide"}) {
    Problem p = fixture_problem(c);
    FusedClassifierParams params;
    params.lambda = float(fx.scalar(c, "lambda"));
    params.reduction = fx.scalar_json(c, "reduction").get<std::string>() == "mean"
                           ? LossReduction::kMean
                           : LossReduction::kSum;
    auto grad = fx.array<float>(c, "grad");
    for (int ts : testing::team_sizes<TypeParam>()) {
      params.team_size = ts;
      auto r = run<TypeParam>(p, params);
      const std::string what = std::string(c) + " team " + std::to_string(ts);
      EXPECT_EQ(r.loss.tokens, int64_t(fx.scalar(c, "tokens"))) << what;
      EXPECT_NEAR(r.loss.loss, fx.scalar(c, "loss"), 1e-5 * std::fabs(fx.scalar(c, "loss"))) << what;
      EXPECT_NEAR(r.loss.clm, fx.scalar(c, "clm"), 1e-5 * std::fabs(fx.scalar(c, "clm"))) << what;
      EXPECT_NEAR(r.loss.fusion, fx.scalar(c, "fusion"), 1e-5 * std::fabs(fx.scalar(c, "fusion")))
          << what;
      expect_grad_near(r.grad, grad, 1e-5, what);
      // The loss-only variant gives the same loss and leaves the logits alone.
      auto e = run<TypeParam>(p, params, false);
      EXPECT_EQ(e.loss.loss, r.loss.loss) << what;
      EXPECT_EQ(e.grad, p.z) << what;
    }
  }
}

// The objective in double precision, straight from the definition (paper eq. 1, 4, 5).
double reference_loss(const Problem& p, const std::vector<double>& z, double lambda, bool mean) {
  double total = 0.0;
  int64_t n = 0;
  for (int64_t i = 0; i < p.T; ++i) {
    if (p.gold[i] < 0) continue;
    ++n;
    const double* row = &z[i * p.V];
    const double m = *std::max_element(row, row + p.V);
    double s = 0.0;
    for (int64_t v = 0; v < p.V; ++v) s += std::exp(row[v] - m);
    const double lse = m + std::log(s);
    double fus = 0.0;
    for (int64_t j = 0; j < p.k; ++j)
      if (p.ids[i * p.k + j] >= 0) fus += p.probs[i * p.k + j] * (lse - row[p.ids[i * p.k + j]]);
    total += lambda * (lse - row[p.gold[i]]) + (1 - lambda) * fus;
  }
  return mean && n > 0 ? total / double(n) : total;
}

Problem random_problem(std::mt19937& rng, int64_t T, int64_t V, int64_t k, double scale) {
  Problem p;
  p.T = T;
  p.V = V;
  p.k = k;
  std::normal_distribution<float> nd(0.f, float(scale));
  std::uniform_real_distribution<float> ud(0.f, 1.f);
  p.z.resize(T * V);
  for (auto& x : p.z) x = nd(rng);
  for (int64_t i = 0; i < T; ++i) {
    p.gold.push_back(ud(rng) < 0.2f ? -100 : int32_t(rng() % V));
    std::vector<int32_t> perm(V);
    for (int64_t v = 0; v < V; ++v) perm[v] = int32_t(v);
    std::shuffle(perm.begin(), perm.end(), rng);
    const int64_t n = 1 + int64_t(rng() % k);
    const float mass = 0.3f + 0.7f * ud(rng);  // rows keep less than all the mass
    std::vector<float> w(n);
    float sw = 0.f;
    for (auto& x : w) sw += (x = ud(rng) + 0.01f);
    std::sort(w.begin(), w.end(), std::greater<>());
    for (int64_t j = 0; j < k; ++j) {
      p.ids.push_back(j < n ? perm[j] : -1);
      p.probs.push_back(j < n ? w[j] / sw * mass : 0.f);
    }
  }
  return p;
}

TYPED_TEST(FusedClassifier, GradientMatchesFiniteDifferences) {
  std::mt19937 rng(3);
  for (auto [T, V, k] : {std::tuple{4, 9, 3}, std::tuple{3, 70, 10}}) {
    Problem p = random_problem(rng, T, V, k, 2.0);
    for (bool mean : {true, false})
      for (float lambda : {0.9f, 0.3f}) {
        FusedClassifierParams params;
        params.lambda = lambda;
        params.reduction = mean ? LossReduction::kMean : LossReduction::kSum;
        auto r = run<TypeParam>(p, params);
        std::vector<double> z(p.z.begin(), p.z.end());
        EXPECT_NEAR(r.loss.loss, reference_loss(p, z, lambda, mean), 1e-5 * std::fabs(r.loss.loss));
        std::vector<float> fd(z.size());
        const double h = 1e-5;
        for (size_t i = 0; i < z.size(); ++i) {
          const double z0 = z[i];
          z[i] = z0 + h;
          const double up = reference_loss(p, z, lambda, mean);
          z[i] = z0 - h;
          const double dn = reference_loss(p, z, lambda, mean);
          z[i] = z0;
          fd[i] = float((up - dn) / (2 * h));
        }
        expect_grad_near(r.grad, fd, 1e-5,
                         "T=" + std::to_string(T) + " V=" + std::to_string(V) +
                             (mean ? " mean" : " sum") + " lambda=" + std::to_string(lambda));
      }
  }
}

TYPED_TEST(FusedClassifier, SumIsMeanTimesTokensAndPaddingRowsAreZero) {
  std::mt19937 rng(5);
  Problem p = random_problem(rng, 12, 300, 10, 3.0);
  p.gold[4] = -100;
  FusedClassifierParams pm, ps;
  ps.reduction = LossReduction::kSum;
  auto m = run<TypeParam>(p, pm);
  auto s = run<TypeParam>(p, ps);
  const double n = double(m.loss.tokens);
  EXPECT_NEAR(s.loss.loss, m.loss.loss * n, 1e-5 * s.loss.loss);
  for (size_t i = 0; i < m.grad.size(); ++i) EXPECT_NEAR(s.grad[i], m.grad[i] * n, 1e-6) << i;
  for (int64_t v = 0; v < p.V; ++v) EXPECT_EQ(m.grad[4 * p.V + v], 0.f);
  EXPECT_EQ(host_vector(m.loss.clm_position)[4], 0.f);
  EXPECT_EQ(host_vector(m.loss.fusion_position)[4], 0.f);
  // Per-position terms sum to the totals.
  auto c = host_vector(m.loss.clm_position);
  auto f = host_vector(m.loss.fusion_position);
  double sc = 0, sf = 0;
  for (int64_t i = 0; i < p.T; ++i) sc += c[i], sf += f[i];
  EXPECT_NEAR(sc / n, m.loss.clm, 1e-6);
  EXPECT_NEAR(sf / n, m.loss.fusion, 1e-6);
}

// Rows longer than the host's stored-exp path handles (kMaxStoredBlocks blocks per thread) take the
// two-exp path; both must give the analytic gradient.
TYPED_TEST(FusedClassifier, LongRowsMatchAnalyticGradient) {
  std::mt19937 rng(13);
  for (int64_t V : {int64_t(kernels::kBlock) * 3 + 17,
                    int64_t(kernels::kBlock) * kernels::kMaxStoredBlocks + 5}) {
    Problem p = random_problem(rng, 2, V, 3, 4.0);
    p.gold = {int32_t(V - 1), 7};
    auto r = run<TypeParam>(p, {});
    for (int64_t i = 0; i < p.T; ++i) {
      const float* z = &p.z[i * V];
      const double m = *std::max_element(z, z + V);
      double s = 0.0;
      for (int64_t v = 0; v < V; ++v) s += std::exp(double(z[v]) - m);
      const double lse = m + std::log(s);
      std::vector<double> want(V);
      double mass = 0.0;
      for (int64_t j = 0; j < p.k; ++j)
        if (p.ids[i * p.k + j] >= 0) mass += p.probs[i * p.k + j];
      for (int64_t v = 0; v < V; ++v) want[v] = (0.9 + 0.1 * mass) * std::exp(z[v] - lse) / 2.0;
      want[p.gold[i]] -= 0.9 / 2.0;
      for (int64_t j = 0; j < p.k; ++j)
        if (p.ids[i * p.k + j] >= 0) want[p.ids[i * p.k + j]] -= 0.1 * p.probs[i * p.k + j] / 2.0;
      for (int64_t v = 0; v < V; ++v)
        ASSERT_NEAR(r.grad[i * V + v], want[v], 1e-5 * std::fabs(want[v]) + 1e-9) << "V=" << V << " " << i << "," << v;
    }
  }
}

TYPED_TEST(FusedClassifier, EdgeCases) {
  // T = 0.
  Problem e;
  e.V = 5;
  e.k = 2;
  auto r0 = run<TypeParam>(e, {});
  EXPECT_EQ(r0.loss.tokens, 0);
  EXPECT_EQ(r0.loss.loss, 0.0);
  // All positions ignored: loss 0, gradient 0.
  Problem a;
  a.T = 2, a.V = 3, a.k = 1;
  a.z = {1, 2, 3, 4, 5, 6};
  a.gold = {-100, -1};
  a.ids = {0, 1};
  a.probs = {1, 1};
  auto ra = run<TypeParam>(a, {});
  EXPECT_EQ(ra.loss.loss, 0.0);
  EXPECT_EQ(ra.grad, std::vector<float>(6, 0.f));
  // Length 1, V = 1: q = 1, loss 0, gradient (lambda + (1-lambda) S) - lambda - (1-lambda) P = 0.
  Problem one;
  one.T = 1, one.V = 1, one.k = 1;
  one.z = {3.f};
  one.gold = {0};
  one.ids = {0};
  one.probs = {1.f};
  auto r1 = run<TypeParam>(one, {});
  EXPECT_NEAR(r1.loss.loss, 0.0, 1e-7);
  EXPECT_NEAR(r1.grad[0], 0.f, 1e-7);
  // An empty target row (S = 0): gradient is lambda (q - onehot), fusion term 0.
  Problem em;
  em.T = 1, em.V = 2, em.k = 2;
  em.z = {0.f, 0.f};
  em.gold = {1};
  em.ids = {-1, -1};
  em.probs = {0.f, 0.f};
  auto re = run<TypeParam>(em, {});
  EXPECT_NEAR(re.grad[0], 0.9f * 0.5f, 1e-7);
  EXPECT_NEAR(re.grad[1], 0.9f * (0.5f - 1.f), 1e-7);
  EXPECT_NEAR(re.loss.fusion, 0.0, 1e-12);
  // -Inf logits away from the targets are fine.
  Problem mi = em;
  mi.V = 3;
  mi.z = {0.f, 0.f, -std::numeric_limits<float>::infinity()};
  mi.ids = {0, -1};
  mi.probs = {1.f, 0.f};
  auto rm = run<TypeParam>(mi, {});
  EXPECT_NEAR(rm.loss.loss, std::log(2.0), 1e-6);
  EXPECT_EQ(rm.grad[2], 0.f);
}

TYPED_TEST(FusedClassifier, ErrorsNamePosition) {
  std::mt19937 rng(9);
  Problem p = random_problem(rng, 5, 40, 4, 1.0);
  p.gold = {1, 2, 3, 4, 5};
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (int ts : testing::team_sizes<TypeParam>()) {
    FusedClassifierParams params;
    params.team_size = ts;
    for (bool grad : {true, false}) {
      Problem q = p;
      q.z[3 * 40 + 17] = nan;
      testing::expect_error([&] { run<TypeParam>(q, params, grad); },
                            {"position 3", "logit[3, 17] = nan"});
      q = p;
      q.z[2 * 40 + 39] = inf;
      testing::expect_error([&] { run<TypeParam>(q, params, grad); }, {"position 2", "inf"});
      q = p;
      q.z[1 * 40 + 2] = -inf;  // the gold logit of position 1
      testing::expect_error([&] { run<TypeParam>(q, params, grad); }, {"position 1", "not finite"});
    }
  }
  Problem q = p;
  q.gold[2] = 40;
  testing::expect_error([&] { run<TypeParam>(q, {}); }, {"gold id 40", "position 2", "[0, 40)"});
  q = p;
  q.ids[3 * 4 + 0] = 41;
  testing::expect_error([&] { run<TypeParam>(q, {}); }, {"target id 41", "position 3", "slot 0"});
  q = p;
  q.ids[4 * 4 + 0] = -2;
  testing::expect_error([&] { run<TypeParam>(q, {}); }, {"target id -2", "position 4"});
  q = p;
  q.ids[0] = 0;
  q.probs[0] = -0.5f;
  testing::expect_error([&] { run<TypeParam>(q, {}); }, {"probability -0.5", "position 0"});
  q = p;
  q.ids[0] = 0;
  q.probs[0] = nan;
  testing::expect_error([&] { run<TypeParam>(q, {}); }, {"probability nan", "position 0"});
  // Mismatched lengths.
  using M = typename TypeParam::memory_space;
  auto z = view2<TypeParam>(p.z, p.T, p.V);
  Kokkos::View<const int32_t*, M> g4 = view1<TypeParam>(std::vector<int32_t>{1, 2, 3, 4});
  Kokkos::View<const int32_t*, M> g5 = view1<TypeParam>(p.gold);
  auto rows = make_rows<TypeParam>(p.ids, p.probs, p.T, p.k);
  testing::expect_error([&] { kernels::fused_classifier(TypeParam(), z, g4, rows); },
                        {"4 gold ids for 5 logit rows"});
  SparseRows<M> r3("r", 3, 4);
  testing::expect_error([&] { kernels::fused_classifier(TypeParam(), z, g5, r3); },
                        {"3 fused target rows for 5 logit rows"});
  FusedClassifierParams bad;
  bad.lambda = 1.5f;
  testing::expect_error([&] { kernels::fused_classifier(TypeParam(), z, g5, rows, bad); },
                        {"lambda"});
}

TEST(FusionRowMath, FastExpAccuracyAndSpecialValues) {
  double worst = 0.0;
  for (float x = -87.3f; x <= 0.f; x += 0.000731f) {
    const double e = std::exp(double(x));
    worst = std::max(worst, std::fabs(kernels::fast_exp(x) - e) / e);
  }
  EXPECT_LT(worst, 2e-7);
  for (float x : {1.f, 10.f, 88.f}) EXPECT_NEAR(kernels::fast_exp(x), std::exp(double(x)), 2e-7 * std::exp(double(x)));
  EXPECT_EQ(kernels::fast_exp(0.f), 1.f);
  EXPECT_EQ(kernels::fast_exp(-std::numeric_limits<float>::infinity()), 0.f);
  EXPECT_EQ(kernels::fast_exp(-100.f), 0.f);
  EXPECT_TRUE(std::isnan(kernels::fast_exp(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_FALSE(kernels::is_finite(std::numeric_limits<float>::infinity()));
  EXPECT_FALSE(kernels::is_finite(std::numeric_limits<float>::quiet_NaN()));
  EXPECT_TRUE(kernels::is_finite(-3.4e38f));
}

TEST(FusedClassifierWrapper, HostSpansMatchTorch) {
  const auto& fx = FusedLossFixtures::get();
  Problem p = fixture_problem("loss_mean");
  fusion::HostRows rows = make_rows<Kokkos::DefaultHostExecutionSpace>(p.ids, p.probs, p.T, p.k);
  auto ev = fusion::fused_loss(p.z, p.T, p.V, p.gold, rows);
  EXPECT_NEAR(ev.loss, fx.scalar("loss_mean", "loss"), 1e-5 * ev.loss);
  auto z = p.z;
  auto r = fusion::fused_classifier(z, p.T, p.V, p.gold, rows);
  EXPECT_EQ(r.loss, ev.loss);
  EXPECT_EQ(r.clm_position.size(), size_t(p.T));
  expect_grad_near(z, fx.array<float>("loss_mean", "grad"), 1e-5, "wrapper");
  testing::expect_error([&] { fusion::fused_classifier(z, p.T, p.V + 1, p.gold, rows); },
                        {"logits for [T, V]"});
}

}  // namespace
}  // namespace fusellm
