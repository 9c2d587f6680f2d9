// Properties of AdamW, the schedules and clipping that need no reference run.
#include <gtest/gtest.h>

#include <cmath>

#include "fusellm/core/error.hpp"
#include "fusellm/optim/adamw.hpp"
#include "fusellm/optim/grad_clip.hpp"
#include "fusellm/optim/lr_schedule.hpp"

using namespace fusellm;

TEST(LrSchedule, WarmupStepsAsTheTrainerComputesThem) {
  EXPECT_EQ(warmup_steps_for(1000, 0.008, std::nullopt), 8);
  EXPECT_EQ(warmup_steps_for(100, 0.07, std::nullopt), 8);  // 7.000000000000001
  EXPECT_EQ(warmup_steps_for(7813, 0.008, std::nullopt), 63);
  EXPECT_EQ(warmup_steps_for(1000, 0.008, 20), 20);  // explicit steps win
  EXPECT_EQ(warmup_steps_for(1000, 0.008, 0), 8);    // 0 means "use the ratio", as in the Trainer
  EXPECT_EQ(warmup_steps_for(1000, 0.0, std::nullopt), 0);
}

TEST(LrSchedule, Shapes) {
  LrSchedule s{.kind = ScheduleKind::Cosine, .base_lr = 1.0, .warmup_steps = 10, .total_steps = 110};
  EXPECT_EQ(s.lr(0), 0.0);  // the first step of a warmup uses lr 0, as in the HF Trainer
  EXPECT_DOUBLE_EQ(s.lr(5), 0.5);
  EXPECT_DOUBLE_EQ(s.lr(10), 1.0);
  EXPECT_NEAR(s.lr(60), 0.5, 1e-15);
  EXPECT_NEAR(s.lr(110), 0.0, 1e-15);
  s.kind = ScheduleKind::Linear;
  EXPECT_DOUBLE_EQ(s.lr(60), 0.5);
  EXPECT_EQ(s.lr(200), 0.0);  // clamped past the end
  s.kind = ScheduleKind::Constant;
  EXPECT_EQ(s.lr(200), 1.0);
  s.kind = ScheduleKind::Cosine, s.min_lr_ratio = 0.1;
  EXPECT_NEAR(s.lr(110), 0.1, 1e-15);
  EXPECT_EQ(schedule_from_name("cosine"), ScheduleKind::Cosine);
  EXPECT_EQ(schedule_from_name("Cosine"), std::nullopt);
  EXPECT_EQ(schedule_name(ScheduleKind::Linear), "linear");
}

TEST(GradClip, ScalesOnlyAboveMaxNorm) {
  std::vector<float> p1(3), p2(1), g1{3.f, 0.f, 0.f}, g2{4.f};
  std::vector<ParamGrad> pg{{"a", p1, g1}, {"b", p2, g2}};
  EXPECT_DOUBLE_EQ(clip_grad_norm(pg, 10.0), 5.0);
  EXPECT_EQ(g1[0], 3.f);  // not scaled
  EXPECT_DOUBLE_EQ(clip_grad_norm(pg, 1.0), 5.0);
  EXPECT_NEAR(g1[0], 3.0 / (5.0 + 1e-6), 1e-7);
  EXPECT_NEAR(g2[0], 4.0 / (5.0 + 1e-6), 1e-7);
  EXPECT_NEAR(clip_grad_norm(pg, 0.0), 1.0, 1e-6);  // disabled: only measures
  EXPECT_EQ(clip_coef(2.0, 10.0), 1.0);
  EXPECT_TRUE(std::isnan(clip_coef(NAN, 1.0)));
  EXPECT_EQ(clip_coef(INFINITY, 1.0), 0.0);
}

TEST(AdamW, FirstStepIsSignTimesLrAndDecayIsDecoupled) {
  // After one step m_hat = g and v_hat = g^2, so the update is lr * g / (|g| + eps): about lr.
  AdamW opt({.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.5});
  std::vector<float> p{1.f, 1.f}, g{0.25f, -3.f};
  std::vector<ParamGrad> pg{{"w", p, g, true}};
  opt.step(pg, 0.1);
  EXPECT_NEAR(p[0], 1.0 * (1 - 0.1 * 0.5) - 0.1, 1e-6);
  EXPECT_NEAR(p[1], 1.0 * (1 - 0.1 * 0.5) + 0.1, 1e-6);
  std::vector<float> q{1.f}, h{0.f};
  std::vector<ParamGrad> no_decay{{"n", q, h, false}};
  opt.step(no_decay, 0.1);
  EXPECT_EQ(q[0], 1.f);
  EXPECT_EQ(opt.steps(), 2);
}

TEST(AdamW, ParallelPathMatchesSerialBitForBit) {
  // One 100k tensor (OpenMP path) against the same values as 1000-element tensors (serial path).
  const int n = 100000, chunk = 1000;
  std::vector<float> pa(n), g(n);
  for (int i = 0; i < n; ++i) pa[i] = std::sin(i * 0.1f), g[i] = std::cos(i * 0.37f);
  std::vector<float> pb = pa;
  AdamW a, b;
  for (int t = 0; t < 3; ++t) {
    std::vector<ParamGrad> whole{{"x", pa, g}};
    a.step(whole, 1e-3);
    std::vector<ParamGrad> parts;
    for (int c = 0; c < n / chunk; ++c)
      parts.push_back({"x" + std::to_string(c), std::span(pb).subspan(c * chunk, chunk),
                       std::span(g).subspan(c * chunk, chunk)});
    b.step(parts, 1e-3);
  }
  for (int i = 0; i < n; ++i) ASSERT_EQ(pa[i], pb[i]) << i;
}

TEST(AdamW, StateRoundTripAndErrors) {
  AdamW opt;
  std::vector<float> p{1.f, 2.f}, g{0.1f, 0.2f};
  std::vector<ParamGrad> pg{{"w", p, g}};
  opt.step(pg, 1e-3);
  AdamW copy;
  copy.set_steps(opt.steps());
  copy.set_state("w", opt.find("w")->m, opt.find("w")->v);
  std::vector<float> p2 = p;
  std::vector<ParamGrad> pg2{{"w", p2, g}};
  opt.step(pg, 1e-3);
  copy.step(pg2, 1e-3);
  EXPECT_EQ(p, p2);
  std::vector<float> bad(3), badg(3);
  std::vector<ParamGrad> wrong{{"w", bad, badg}};
  EXPECT_THROW(opt.step(wrong, 1e-3), Error);
  std::vector<ParamGrad> mismatched{{"z", bad, g}};
  EXPECT_THROW(opt.step(mismatched, 1e-3), Error);
  EXPECT_THROW(copy.set_state("q", {1.f}, {}), Error);
}

TEST(AdamW, HfTrainerDecayRule) {
  EXPECT_TRUE(hf_trainer_decays("model.layers.0.self_attn.q_proj.weight"));
  EXPECT_TRUE(hf_trainer_decays("lm_head.weight"));
  EXPECT_TRUE(hf_trainer_decays("model.embed_tokens.weight"));
  EXPECT_FALSE(hf_trainer_decays("model.layers.0.input_layernorm.weight"));
  EXPECT_FALSE(hf_trainer_decays("model.norm.weight"));
  EXPECT_FALSE(hf_trainer_decays("gpt_neox.layers.0.attention.query_key_value.bias"));
  EXPECT_FALSE(hf_trainer_decays("transformer.blocks.0.norm_1.weight"));
  EXPECT_FALSE(hf_trainer_decays("transformer.h.0.ln_1.weight"));
  EXPECT_FALSE(hf_trainer_decays("transformer.ln_f.weight"));
}
