// ZeRO-1 (dist/zero1.hpp) over the in-process transport: one rank steps bit for bit as the
// single-process trainer (clip_grad_norm, then AdamW::step over the whole model); R ranks whose
// gradients sum to G step as one process on G; R ranks against one process that adds the same
// micro-batches in another order stay within the bound.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <mutex>
#include <random>
#include <vector>

#include "fusellm/core/param_table.hpp"
#include "fusellm/dist/byte_collectives.hpp"
#include "fusellm/dist/inproc/inproc_transport.hpp"
#include "fusellm/dist/shard_layout.hpp"
#include "fusellm/dist/zero1.hpp"
#include "fusellm/optim/flat_param_grads.hpp"
#include "fusellm/optim/grad_clip.hpp"
#include "small_param_table.hpp"

namespace fusellm::dist {
namespace {

using fusellm::testing::normal_values;
using fusellm::testing::small_param_table;

constexpr int kSteps = 20;
constexpr double kClip = 1.0;  // clips at most steps (the gradients' norm is about 4)

// Micro-batch `mb` of step `step`: its gradient contribution (no zeros: a -0 + 0 would be
// another bit pattern of the same value).
std::vector<float> micro_grad(int64_t n, int step, int mb) { return normal_values(n, 0.1f, uint64_t(1000 * step + mb + 1)); }

double lr_at(int step) { return 1e-2 * (1.0 - 0.03 * step); }

struct Trained {
  std::vector<float> params;
  std::vector<double> norms;
};

// The single-process trainer's step (trainer.cpp: clip_grad_norm, then AdamW::step on the
// model's ParamGrads), the micro-batches of a step added one after another into the buffer.
Trained single_process(int micro_batches) {
  const ParamTable t = small_param_table();
  Trained out{normal_values(t.total(), 0.5f, 7), {}};
  std::vector<float> grads(size_t(t.total()));
  AdamW adamw;
  const std::vector<ParamGrad> pg = flat_param_grads(t, out.params, grads);
  for (int s = 0; s < kSteps; ++s) {
    std::fill(grads.begin(), grads.end(), 0.f);
    for (int mb = 0; mb < micro_batches; ++mb) {
      const std::vector<float> g = micro_grad(t.total(), s, mb);
      for (size_t i = 0; i < grads.size(); ++i) grads[i] += g[i];
    }
    out.norms.push_back(clip_grad_norm(pg, kClip));
    EXPECT_EQ(adamw.step(pg, lr_at(s)), "");
  }
  return out;
}

// R ranks, each adding its `per_rank` micro-batches (rank r's are r * per_rank ...), then Zero1.
// Returns rank 0's result after checking that every rank holds the same parameters.
Trained zero1_ranks(int R, int per_rank) {
  const ParamTable t = small_param_table();
  std::vector<Trained> all(static_cast<size_t>(R));
  InprocWorld::run(R, [&](Transport& tr) {
    tr.set_timeout(std::chrono::seconds(60));
    Trained& me = all[size_t(tr.rank())];
    me.params = normal_values(t.total(), 0.5f, 7);
    std::vector<float> grads(size_t(t.total()));
    Zero1 z(tr, t, me.params, grads, AdamWOptions{});
    for (int s = 0; s < kSteps; ++s) {
      std::fill(grads.begin(), grads.end(), 0.f);
      for (int k = 0; k < per_rank; ++k) {
        const std::vector<float> g = micro_grad(t.total(), s, tr.rank() * per_rank + k);
        for (size_t i = 0; i < grads.size(); ++i) grads[i] += g[i];
      }
      z.reduce_gradients();
      me.norms.push_back(z.clip(kClip));
      EXPECT_EQ(z.step(lr_at(s)), "");
      z.gather_params();
    }
  });
  for (int r = 1; r < R; ++r) {
    EXPECT_EQ(std::memcmp(all[size_t(r)].params.data(), all[0].params.data(), 4 * all[0].params.size()), 0) << r;
    EXPECT_EQ(all[size_t(r)].norms, all[0].norms) << r;
  }
  return all[0];
}

// The "max relative difference", per tensor relative to the tensor's largest weight:
// max |a - b| / max |b| (zero1.hpp: element by element, a weight near zero has no useful relative
// difference). `elementwise` gets max |a - b| / |b| over all elements, for the record.
double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b, double* elementwise = nullptr) {
  const ParamTable t = small_param_table();
  double worst = 0, elem = 0;
  for (const ParamEntry& e : t.entries()) {
    double diff = 0, scale = 0;
    for (int64_t i = e.offset; i < e.offset + e.size; ++i) {
      const double d = std::abs(double(a[size_t(i)]) - double(b[size_t(i)]));
      diff = std::max(diff, d), scale = std::max(scale, std::abs(double(b[size_t(i)])));
      elem = std::max(elem, d / std::max(std::abs(double(b[size_t(i)])), 1e-30));
    }
    worst = std::max(worst, diff / scale);
  }
  if (elementwise) *elementwise = elem;
  return worst;
}

TEST(ShardLayout, EqualShardsPaddedToTheRankCount) {
  const ShardLayout l = ShardLayout::of(10, 3);
  EXPECT_EQ(l.shard, 4);
  EXPECT_EQ(l.padded(), 12);
  EXPECT_EQ(l.begin(0), 0);
  EXPECT_EQ(l.end(0), 4);
  EXPECT_EQ(l.begin(2), 8);
  EXPECT_EQ(l.end(2), 10);
  const ShardLayout tiny = ShardLayout::of(5, 4);  // shards of 2: the last rank has none
  EXPECT_EQ(tiny.begin(3), 5);
  EXPECT_EQ(tiny.end(3), 5);
  EXPECT_THROW(ShardLayout::of(5, 0), Error);
}

TEST(Zero1, OneRankIsTheSingleProcessTrainerBitForBit) {
  const Trained one = single_process(2), z = zero1_ranks(1, 2);
  EXPECT_EQ(z.norms, one.norms);
  EXPECT_EQ(std::memcmp(z.params.data(), one.params.data(), 4 * one.params.size()), 0);
}

// Ranks whose gradients sum to G (one micro-batch each, added in rank order as the transport
// adds them) step as one process on the same G: the gradients are the same bits, AdamW is
// element-wise over pieces that step as whole tensors; only the clipping norm's double sum is
// grouped by shard, which here never moves its fp32 rounding. Asserted: bit-identical.
TEST(Zero1, RanksWhoseGradientsSumToGStepAsOneProcessOnG) {
  for (int R : {2, 3}) {
    const Trained one = single_process(R), z = zero1_ranks(R, 1);
    for (int s = 0; s < kSteps; ++s) EXPECT_NEAR(z.norms[size_t(s)], one.norms[size_t(s)], 1e-12 * one.norms[size_t(s)]);
    EXPECT_EQ(std::memcmp(z.params.data(), one.params.data(), 4 * one.params.size()), 0) << R << " ranks";
  }
}

// Two micro-batches per rank: one process adds all 2R one after another, the ranks add their own
// two and the transport adds the ranks' sums (another association: zero1.hpp). The bound
// after 20 steps: max relative weight difference <= 1e-6.
TEST(Zero1, RanksAgainstOneProcessAddingInAnotherOrderWithinTheBound) {
  for (int R : {2, 3}) {
    const Trained one = single_process(2 * R), z = zero1_ranks(R, 2);
    double elementwise = 0;
    const double d = max_rel_diff(z.params, one.params, &elementwise);
    RecordProperty("max_rel_diff_" + std::to_string(R), std::to_string(d));
    std::printf("%d ranks x 2 micro-batches vs one process, %d steps: max relative weight difference %.3g (per tensor, "
                "of its largest weight); %.3g element by element\n",
                R, kSteps, d, elementwise);
    EXPECT_LE(d, 1e-6) << R << " ranks";
  }
}

TEST(Zero1, ShardMomentsRoundTrip) {
  const ParamTable t = small_param_table();
  InprocWorld::run(3, [&](Transport& tr) {
    tr.set_timeout(std::chrono::seconds(60));
    std::vector<float> p = normal_values(t.total(), 0.5f, 7), g = micro_grad(t.total(), 0, tr.rank());
    Zero1 z(tr, t, p, g, AdamWOptions{});
    const int64_t n = z.end() - z.begin();
    std::vector<float> m(size_t(n), 1.f), v(size_t(n), 1.f);
    z.shard_moments(m, v);  // before any step: zeros
    for (float x : m) ASSERT_EQ(x, 0.f);
    z.reduce_gradients();
    z.clip(kClip);
    EXPECT_EQ(z.step(1e-2), "");
    z.gather_params();
    z.shard_moments(m, v);
    std::vector<float> p2 = p, g2(g.size());
    Zero1 back(tr, t, p2, g2, AdamWOptions{});
    back.restore_moments(m, v, z.adamw().steps());
    EXPECT_EQ(back.adamw().states().size(), z.adamw().states().size());
    for (const auto& [name, st] : z.adamw().states()) {
      ASSERT_NE(back.adamw().find(name), nullptr) << name;
      EXPECT_EQ(back.adamw().find(name)->m, st.m) << name;
      EXPECT_EQ(back.adamw().find(name)->v, st.v) << name;
    }
    EXPECT_EQ(back.adamw().steps(), 1);
  });
}

TEST(ByteCollectives, TextsOfAnyLengthFromEveryRank) {
  InprocWorld::run(3, [](Transport& tr) {
    tr.set_timeout(std::chrono::seconds(60));
    const std::string mine = tr.rank() == 1 ? "" : std::string(size_t(5 + tr.rank()), char('a' + tr.rank()));
    EXPECT_EQ(all_gather_text(tr, mine), (std::vector<std::string>{"aaaaa", "", "ccccccc"}));
    EXPECT_EQ(broadcast_text(tr, tr.rank() == 2 ? "from two" : "x", 2), "from two");
  });
}

}  // namespace
}  // namespace fusellm::dist
