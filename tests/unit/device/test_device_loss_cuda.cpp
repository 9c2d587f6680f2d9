// The loss on the GPU (device/device_loss.hpp) against the objective computed here in double
// (kernels/kokkos/fused_classifier.hpp states it): per labelled position i (gold g_i >= 0), with
// q_i = softmax(z_i), S_i the sum of the fused target probabilities P_i:
//   L_i = lambda (lse_i - z_i[g_i]) + (1 - lambda) sum_j P_ij (lse_i - z_i[id_ij])
//   dL_i/dz_i = (lambda + (1 - lambda) S_i) q_i - lambda onehot(g_i) - (1 - lambda) P_i
// averaged over the N labelled positions, the gradient then multiplied by the step's scale;
// unlabelled rows get a zero gradient. Fresh seeded random logits, targets with empty slots, and
// a padding position; CLM only (k = 1, empty) too. Skips without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/cuda_skip.hpp"
#include "cuda/device_buffer.hpp"
#include "fusellm/device/device_loss.hpp"
#include "fusellm/model/cuda/cuda_backend.hpp"

namespace fusellm {
namespace {

const std::string kModel = std::string(FUSELLM_SOURCE_DIR) + "/tests/fixtures/grads/llama_gqa";

struct Case {
  int64_t T = 0, V = 0, k = 0;
  std::vector<float> z;
  std::vector<int32_t> gold, ids;
  std::vector<float> probs;
};

Case random_case(int64_t T, int64_t V, int64_t k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 2.f);
  Case c{T, V, k, std::vector<float>(size_t(T * V)), std::vector<int32_t>(size_t(T)),
         std::vector<int32_t>(size_t(T * k), -1), std::vector<float>(size_t(T * k), 0.f)};
  for (float& v : c.z) v = nd(rng);
  for (int64_t t = 0; t < T; ++t) {
    c.gold[size_t(t)] = t == T - 1 ? -1 : int32_t(rng() % uint32_t(V));  // the last: padding
    float left = 1.f;
    for (int64_t j = 0; j + 1 < k; ++j) {  // the last slot stays empty
      const float p = left * float(rng() % 1000) / 1000.f;
      c.ids[size_t(t * k + j)] = int32_t((t * 7 + j * 13) % V);
      c.probs[size_t(t * k + j)] = p;
      left -= p;
    }
  }
  return c;
}

// The reference loss and dL/dz * scale, in double.
double reference(const Case& c, double lambda, double scale, std::vector<double>& grad) {
  int64_t n = 0;
  for (int32_t g : c.gold) n += g >= 0;
  grad.assign(c.z.size(), 0.0);
  double loss = 0;
  for (int64_t t = 0; t < c.T; ++t) {
    if (c.gold[size_t(t)] < 0) continue;
    const float* z = &c.z[size_t(t * c.V)];
    double mx = -INFINITY, s = 0, S = 0;
    for (int64_t v = 0; v < c.V; ++v) mx = std::max(mx, double(z[v]));
    for (int64_t v = 0; v < c.V; ++v) s += std::exp(double(z[v]) - mx);
    const double lse = mx + std::log(s);
    double l = lambda * (lse - z[c.gold[size_t(t)]]);
    for (int64_t j = 0; j < c.k; ++j)
      if (const int32_t id = c.ids[size_t(t * c.k + j)]; id >= 0) {
        const double p = c.probs[size_t(t * c.k + j)];
        l += (1 - lambda) * p * (lse - z[id]), S += p;
      }
    loss += l / double(n);
    double* g = &grad[size_t(t * c.V)];
    for (int64_t v = 0; v < c.V; ++v) g[v] = (lambda + (1 - lambda) * S) * std::exp(double(z[v]) - lse);
    g[c.gold[size_t(t)]] -= lambda;
    for (int64_t j = 0; j < c.k; ++j)
      if (const int32_t id = c.ids[size_t(t * c.k + j)]; id >= 0) g[id] -= (1 - lambda) * c.probs[size_t(t * c.k + j)];
    for (int64_t v = 0; v < c.V; ++v) g[v] *= scale / double(n);
  }
  return loss;
}

TEST(DeviceLoss, FusedLossAndScaledGradientOnTheGpu) {
  SKIP_WITHOUT_GPU();
  EXPECT_EQ(device::DeviceLoss::make(model::TrainableModel::load(kModel)), nullptr) << "a GPU loss for a host model";
  const model::CudaBackend gpu(0);
  const auto loss = device::DeviceLoss::make(model::TrainableModel::load(kModel, gpu));
  ASSERT_NE(loss, nullptr);
  for (const auto& [k, lambda] : {std::pair<int64_t, float>{1, 1.f}, {5, 0.9f}, {10, 0.f}}) {
    SCOPED_TRACE(k);
    const Case c = random_case(37, 1000, k, uint32_t(k));
    const float scale = 0.25f;
    std::vector<double> ref;
    const double want = reference(c, lambda, scale, ref);
    auto z = cuda::to_device(c.z);
    const device::SequenceLoss got =
        loss->sequence({z.get(), c.z.size()}, c.V, c.gold, c.ids, c.probs, c.k, lambda, scale);
    EXPECT_NEAR(got.loss, want, 1e-5 * std::abs(want));
    const std::vector<float> g = cuda::to_host(z.get(), c.z.size());
    double worst = 0, big = 0;
    for (size_t i = 0; i < g.size(); ++i)
      worst = std::max(worst, std::abs(g[i] - ref[i])), big = std::max(big, std::abs(ref[i]));
    EXPECT_LE(worst, 1e-5 * big);
    for (int64_t v = 0; v < c.V; ++v) EXPECT_EQ(g[size_t((c.T - 1) * c.V + v)], 0.f) << "the padding row";
  }
  // A NaN logit is refused, naming the position.
  Case bad = random_case(4, 100, 2, 9);
  bad.z[2 * 100 + 5] = NAN;
  auto z = cuda::to_device(bad.z);
  EXPECT_THROW(loss->sequence({z.get(), bad.z.size()}, bad.V, bad.gold, bad.ids, bad.probs, bad.k, 0.9f, 1.f), Error);
}

}  // namespace
}  // namespace fusellm
