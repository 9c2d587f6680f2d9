// AdamW and clipping over one flat parameter buffer and its gradient buffer: the same result as
// over separately allocated tensors, and a split of the buffers into offset ranges (ZeRO-1
// shards, cutting a tensor) steps to the same values bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "fusellm/core/error.hpp"
#include "fusellm/core/param_table.hpp"
#include "fusellm/optim/adamw.hpp"
#include "fusellm/optim/flat_param_grads.hpp"
#include "fusellm/optim/grad_clip.hpp"
#include "small_param_table.hpp"

using namespace fusellm;

namespace {

using fusellm::testing::small_param_table;

std::vector<float> values(int64_t n, float scale, int seed) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = scale * std::sin(float(i * 7 + seed) * 0.37f);
  return v;
}

}  // namespace

TEST(FlatParamGrads, OneEntryPerTensorNamedAndDecayedAsTheTrainerDoes) {
  const ParamTable t = small_param_table();
  std::vector<float> p(size_t(t.total())), g(size_t(t.total()));
  const std::vector<ParamGrad> pg = flat_param_grads(t, p, g);
  ASSERT_EQ(pg.size(), t.entries().size());
  for (size_t i = 0; i < pg.size(); ++i) {
    EXPECT_EQ(pg[i].name, t.entries()[i].name);
    EXPECT_EQ(pg[i].param.data(), p.data() + t.entries()[i].offset);
    EXPECT_EQ(pg[i].grad.data(), g.data() + t.entries()[i].offset);
    EXPECT_EQ(pg[i].weight_decay, hf_trainer_decays(pg[i].name));
  }
  EXPECT_FALSE(pg[1].weight_decay);  // a norm
  EXPECT_FALSE(pg[3].weight_decay);  // a bias
  EXPECT_THROW(flat_param_grads(t, p, g, 5, 4), Error);
  EXPECT_THROW(flat_param_grads(t, p, g, 0, t.total() + 1), Error);
  std::vector<float> short_grads(3);
  EXPECT_THROW(flat_param_grads(t, p, short_grads), Error);
}

TEST(FlatParamGrads, AdamWAndClipOverTheBuffersEqualSeparateTensors) {
  const ParamTable t = small_param_table();
  std::vector<float> flat_p = values(t.total(), 0.5f, 1), flat_g(size_t(t.total()));
  std::vector<std::vector<float>> sep_p, sep_g;
  for (const ParamEntry& e : t.entries())
    sep_p.emplace_back(flat_p.begin() + e.offset, flat_p.begin() + e.offset + e.size), sep_g.emplace_back(e.size);
  AdamW flat_opt, sep_opt;
  for (int step = 0; step < 3; ++step) {
    flat_g = values(t.total(), 2.f, 10 + step);
    std::vector<ParamGrad> sep;
    for (size_t i = 0; i < t.entries().size(); ++i) {
      const ParamEntry& e = t.entries()[i];
      std::copy(flat_g.begin() + e.offset, flat_g.begin() + e.offset + e.size, sep_g[i].begin());
      sep.push_back({e.name, sep_p[i], sep_g[i], hf_trainer_decays(e.name)});
    }
    const std::vector<ParamGrad> flat = flat_param_grads(t, flat_p, flat_g);
    EXPECT_EQ(clip_grad_norm(flat, 1.0), clip_grad_norm(sep, 1.0));
    flat_opt.step(flat, 1e-2);
    sep_opt.step(sep, 1e-2);
  }
  for (size_t i = 0; i < t.entries().size(); ++i) {
    const ParamEntry& e = t.entries()[i];
    EXPECT_EQ(std::memcmp(flat_p.data() + e.offset, sep_p[i].data(), sizeof(float) * size_t(e.size)), 0) << e.name;
  }
}

TEST(FlatParamGrads, ShardsByOffsetRangeStepLikeTheWhole) {
  const ParamTable t = small_param_table();
  std::vector<float> whole_p = values(t.total(), 0.5f, 3), shard_p = whole_p;
  AdamW whole, rank0, rank1;
  const int64_t cut = 333;  // inside the q projection
  for (int step = 0; step < 3; ++step) {
    std::vector<float> g = values(t.total(), 1.f, 20 + step), g2 = g;
    whole.step(flat_param_grads(t, whole_p, g), 1e-2);
    const std::vector<ParamGrad> r0 = flat_param_grads(t, shard_p, g2, 0, cut), r1 = flat_param_grads(t, shard_p, g2, cut);
    EXPECT_EQ(r0.back().name, "model.layers.0.self_attn.q_proj.weight");
    EXPECT_EQ(r1.front().name, "model.layers.0.self_attn.q_proj.weight");
    EXPECT_EQ(int64_t(r0.back().param.size() + r1.front().param.size()), 64);
    // The norm of the whole is the root of the shards' summed squares.
    EXPECT_NEAR(std::sqrt(grad_sq_sum(r0) + grad_sq_sum(r1)), std::sqrt(grad_sq_sum(flat_param_grads(t, shard_p, g2))),
                1e-9);
    rank0.step(r0, 1e-2);
    rank1.step(r1, 1e-2);
  }
  EXPECT_EQ(std::memcmp(whole_p.data(), shard_p.data(), sizeof(float) * whole_p.size()), 0);
}
