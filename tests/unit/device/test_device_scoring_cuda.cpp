// A teacher's scoring on the GPU (device/device_scoring.hpp) against the CPU path's definitions
// computed here in double from the very logits the GPU's forward pass produced (copied back):
// the top-k ids exactly (sorted by logit, ties by id), their tempered softmax probabilities
// (without and with the tail bucket: kernels/kokkos/topk_softmax.hpp) and each position's CE on
// its next token with the segment's sum and count (kernels/kokkos/sequence_ce.hpp), on the Llama
// fixture of tests/fixtures/grads and seeded random tokens. Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "backend/cuda_skip.hpp"
#include "fusellm/device/device_scoring.hpp"
#include "fusellm/model/cuda/cuda_backend.hpp"

namespace fusellm {
namespace {

const std::string kModel = std::string(FUSELLM_SOURCE_DIR) + "/tests/fixtures/grads/llama_gqa";

TEST(DeviceScoring, TopkAndCeOfTheDeviceLogits) {
  SKIP_WITHOUT_GPU();
  EXPECT_EQ(device::DeviceScoring::make(*model::load_decoder(kModel)), nullptr) << "GPU scoring of a host model";
  const model::CudaBackend gpu(0);
  const auto dec = model::load_decoder(kModel, {}, gpu);
  const auto scoring = device::DeviceScoring::make(*dec);
  ASSERT_NE(scoring, nullptr);
  const int64_t T = 40, V = dec->arch().vocab;
  std::mt19937 rng(5);
  std::vector<int32_t> ids(static_cast<size_t>(T)), gold(static_cast<size_t>(T), -1);
  for (auto& i : ids) i = int32_t(rng() % uint32_t(V));
  for (int64_t t = 0; t + 1 < T; ++t) gold[size_t(t)] = ids[size_t(t + 1)];
  model::GrowingBuffer buf;
  const std::span<const float> dz = dec->logits_in_backend(ids, {}, buf);
  std::vector<float> z(dz.size());
  gpu.copy_out(z.data(), dz.data(), z.size() * sizeof(float));
  for (const bool tail : {false, true}) {
    SCOPED_TRACE(tail ? "with the tail" : "without the tail");
    const device::TopkSettings topk{5, 0.7f, tail};
    const device::SegmentScoresOnHost s = scoring->score(ids, gold, topk, "fixture");
    ASSERT_EQ(int64_t(s.ids.size()), T * topk.k);
    double ce_sum = 0;
    for (int64_t t = 0; t < T; ++t) {
      const float* row = &z[size_t(t * V)];
      std::vector<int32_t> order(static_cast<size_t>(V));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return row[a] > row[b]; });
      double mx = row[order[0]], all = 0, kept = 0, lse = 0;
      for (int64_t v = 0; v < V; ++v) all += std::exp((row[v] - mx) / topk.temperature), lse += std::exp(row[v] - mx);
      for (int64_t j = 0; j < topk.k; ++j) kept += std::exp((row[order[size_t(j)]] - mx) / topk.temperature);
      double mass = 0;
      for (int64_t j = 0; j < topk.k; ++j) {
        const size_t at = size_t(t * topk.k + j);
        EXPECT_EQ(s.ids[at], order[size_t(j)]) << "position " << t << " slot " << j;
        const double p = std::exp((row[order[size_t(j)]] - mx) / topk.temperature) / (tail ? all : kept);
        EXPECT_NEAR(s.probs[at], p, 1e-6 * std::max(p, 1e-3)) << "position " << t << " slot " << j;
        mass += p;
      }
      if (tail) EXPECT_NEAR(s.tail[size_t(t)], std::max(0.0, 1.0 - mass), 1e-6) << "position " << t;
      const double ce = gold[size_t(t)] < 0 ? 0.0 : mx + std::log(lse) - row[gold[size_t(t)]];
      EXPECT_NEAR(s.ce_position[size_t(t)], ce, 1e-5 * std::max(1.0, ce)) << "position " << t;
      ce_sum += ce;
    }
    EXPECT_EQ(s.scored, T - 1);
    EXPECT_NEAR(s.ce_sum, ce_sum, 1e-6 * ce_sum);
  }
  std::vector<int32_t> bad = gold;
  bad[3] = int32_t(V);  // a gold id outside the vocabulary: the kernel's error, naming the source
  EXPECT_THROW(scoring->score(ids, bad, {5, 1.f, false}, "fixture"), Error);
}

}  // namespace
}  // namespace fusellm
