// ZeRO-2's gradient shards (dist/sharded_gradients.hpp) over the in-process transport, at 1, 2 and
// 3 ranks: every rank hands over the same parts (ranges that straddle the shards' boundaries, as
// a layer does) for two micro-batches; each rank's shard must hold, bit for bit, the ranks' sum in
// rank order added to the sum so far, and Zero1 stepping over that shard must reach the weights
// of Zero1 over whole gradients reduce-scattered once a step, within ZeRO-1's own bound against
// another association of the same additions (zero1.hpp).
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <vector>

#include "fusellm/dist/inproc/inproc_transport.hpp"
#include "fusellm/dist/sharded_gradients.hpp"
#include "fusellm/dist/zero1.hpp"
#include "small_param_table.hpp"

namespace fusellm::dist {
namespace {

using fusellm::testing::normal_values;
using fusellm::testing::small_param_table;

// Rank r's gradient of micro-batch m over the whole buffer.
std::vector<float> contribution(int64_t n, int r, int m) { return normal_values(n, 0.1f, uint64_t(100 * m + r + 1)); }

// Parts that tile [0, n) unevenly: cuts at 7, then every 11, so most straddle some shard edge.
std::vector<std::pair<int64_t, int64_t>> parts(int64_t n) {
  std::vector<std::pair<int64_t, int64_t>> p;
  for (int64_t b = 0; b < n; b += (b == 0 ? 7 : 11)) p.push_back({b, std::min(n, b + (b == 0 ? 7 : 11))});
  return p;
}

TEST(ShardedGradients, EachShardHoldsTheRanksSumInRankOrder) {
  const int64_t n = 100;
  for (const int R : {1, 2, 3}) {
    SCOPED_TRACE(std::to_string(R) + " ranks");
    std::vector<std::vector<float>> shards(static_cast<size_t>(R));
    InprocWorld::run(R, [&](Transport& tr) {
      tr.set_timeout(std::chrono::seconds(60));
      ShardedGradients sg(tr, n);
      sg.zero();
      for (int m = 0; m < 2; ++m) {
        const std::vector<float> g = contribution(n, tr.rank(), m);
        for (const auto [b, e] : parts(n)) sg.add(b, std::span<const float>(g).subspan(size_t(b), size_t(e - b)));
      }
      shards[size_t(tr.rank())].assign(sg.shard().begin(), sg.shard().end());
    });
    const ShardLayout layout = ShardLayout::of(n, R);
    std::vector<float> want(size_t(n), 0.f);
    for (int m = 0; m < 2; ++m) {
      std::vector<float> s = contribution(n, 0, m);
      for (int r = 1; r < R; ++r) {
        const std::vector<float> c = contribution(n, r, m);
        for (size_t i = 0; i < s.size(); ++i) s[i] = s[i] + c[i];
      }
      for (size_t i = 0; i < s.size(); ++i) want[i] = want[i] + s[i];
    }
    for (int r = 0; r < R; ++r) {
      ASSERT_EQ(int64_t(shards[size_t(r)].size()), layout.size(r)) << r;
      EXPECT_EQ(std::memcmp(shards[size_t(r)].data(), want.data() + layout.begin(r), shards[size_t(r)].size() * 4), 0)
          << "rank " << r;
    }
  }
}

// One micro-batch per rank: ZeRO-2's shard is the reduce-scatter's sum, so Zero1 over it steps
// exactly as Zero1 over whole gradients (2 ranks: one fp32 add, commutative either way).
TEST(ShardedGradients, ZeroOneOverTheShardStepsAsZeroOne) {
  const ParamTable t = small_param_table();
  const int R = 2, steps = 5;
  std::vector<std::vector<float>> w1(R), w2(R);
  std::vector<std::vector<double>> n1(R), n2(R);
  InprocWorld::run(R, [&](Transport& tr) {
    tr.set_timeout(std::chrono::seconds(60));
    const size_t me = size_t(tr.rank());
    w1[me] = normal_values(t.total(), 0.5f, 7);
    w2[me] = w1[me];
    std::vector<float> grads(size_t(t.total()));
    Zero1 whole(tr, t, w1[me], grads, AdamWOptions{});
    ShardedGradients sg(tr, t.total());
    Zero1 sharded(tr, t, w2[me], sg.shard(), AdamWOptions{});
    for (int s = 0; s < steps; ++s) {
      const std::vector<float> c = contribution(t.total(), int(me), s);
      grads = c;
      whole.reduce_gradients();
      n1[me].push_back(whole.clip(1.0));
      EXPECT_EQ(whole.step(1e-2), "");
      whole.gather_params();
      sg.zero();
      for (const auto [b, e] : parts(t.total())) sg.add(b, std::span<const float>(c).subspan(size_t(b), size_t(e - b)));
      sharded.reduce_gradients();  // nothing left to reduce
      n2[me].push_back(sharded.clip(1.0));
      EXPECT_EQ(sharded.step(1e-2), "");
      sharded.gather_params();
    }
  });
  for (size_t r = 0; r < size_t(R); ++r) {
    EXPECT_EQ(n2[r], n1[r]) << r;
    EXPECT_EQ(std::memcmp(w2[r].data(), w1[r].data(), w1[r].size() * 4), 0) << "rank " << r;
  }
  EXPECT_NE(std::memcmp(w1[0].data(), normal_values(t.total(), 0.5f, 7).data(), w1[0].size() * 4), 0);  // it trained
}

// A rank that hands over a piece of another length is named, not summed.
TEST(ShardedGradients, OutOfRangeIsAnError) {
  InprocWorld::run(1, [&](Transport& tr) {
    ShardedGradients sg(tr, 10);
    const std::vector<float> g(5, 1.f);
    EXPECT_THROW(sg.add(8, g), Error);
    EXPECT_THROW(sg.add(-1, g), Error);
  });
}

}  // namespace
}  // namespace fusellm::dist
