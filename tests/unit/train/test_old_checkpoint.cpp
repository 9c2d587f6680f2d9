// Checkpoints written before the checkpoint store was reshaped still load: tests/fixtures/ckpt_v1
// (written by fusellm at 8ba198a; its README says how) read with today's code holds what h5dump, an
// independent reader, shows in it: the step, the sampler's position, the schedule, the data
// fingerprint, the job, the target's weights and AdamW's moments.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <set>

#include "fusellm/io/safetensors.hpp"
#include "fusellm/train/train_checkpoint.hpp"

namespace fs = std::filesystem;
using namespace fusellm;

namespace {
const fs::path kFixture = fs::path(FUSELLM_SOURCE_DIR) / "tests" / "fixtures" / "ckpt_v1";
}

TEST(OldCheckpoint, Step3HoldsWhatTheOldCodeWrote) {
  const TrainCheckpoint c = TrainCheckpointStore::load((kFixture / "checkpoint" / "step-3").string());
  const TrainState& s = c.state;
  EXPECT_EQ(s.step, 3);
  EXPECT_EQ(s.tokens_seen, 166);
  EXPECT_EQ(s.sampler_epoch, 0);
  EXPECT_EQ(s.sampler_position, 6);
  EXPECT_EQ(s.optim_steps, 3);
  EXPECT_EQ(s.schedule.kind, ScheduleKind::Cosine);
  EXPECT_EQ(s.schedule.base_lr, 0.005);
  EXPECT_EQ(s.schedule.warmup_steps, 2);
  EXPECT_EQ(s.schedule.total_steps, 6);
  EXPECT_EQ(s.schedule.min_lr_ratio, 0.0);
  EXPECT_EQ(s.schedule.num_cycles, 0.5);
  EXPECT_EQ(s.data_sequences, 32);
  EXPECT_EQ(s.data_fingerprint, 10128101865509370604ull);
  EXPECT_NE(s.job_toml.find("name = \"ckpt_v1\""), std::string::npos) << s.job_toml;
  EXPECT_NE(s.job_toml.find("fixtures/ckpt_v1/target"), std::string::npos) << s.job_toml;
  std::mt19937_64 rng;
  EXPECT_NO_THROW(rng_from_text(rng, s.rng_state));
  EXPECT_TRUE(c.warnings.empty());

  // The target's tensors, by name and shape, in the order saved; moments for each, shaped alike.
  const SafetensorsFile init((kFixture / "target" / "model.safetensors").string());
  std::set<std::string> want;
  for (const auto& [name, info] : init.tensors()) want.insert(name);
  std::set<std::string> got;
  for (const auto& t : c.model) got.insert(t.name);
  EXPECT_EQ(got, want);
  ASSERT_EQ(c.optim_m.size(), c.model.size());
  ASSERT_EQ(c.optim_v.size(), c.model.size());
  for (size_t i = 0; i < c.optim_m.size(); ++i) {  // AdamW's order: by name
    const Tensor* p = c.find_model(c.optim_m[i].name);
    ASSERT_NE(p, nullptr) << c.optim_m[i].name;
    EXPECT_EQ(c.optim_v[i].name, c.optim_m[i].name);
    EXPECT_EQ(c.optim_m[i].tensor.shape(), p->shape());
    EXPECT_EQ(c.optim_v[i].tensor.shape(), p->shape());
    for (float v : c.optim_v[i].tensor.span()) ASSERT_GE(v, 0.f) << c.optim_v[i].name;
  }
  // Values h5dump prints (6 significant digits).
  const Tensor* norm = c.find_model("model.norm.weight");
  ASSERT_NE(norm, nullptr);
  EXPECT_NEAR(norm->data()[0], 1.00278, 1e-5);
  for (const auto& v : c.optim_v)
    if (v.name == "model.norm.weight") EXPECT_NEAR(v.tensor.data()[0] / 6.33161e-06, 1.0, 1e-5);

  AdamW opt;
  c.restore_optimizer(opt);
  EXPECT_EQ(opt.steps(), 3);
  EXPECT_EQ(opt.states().size(), c.model.size());
}

TEST(OldCheckpoint, LatestIsStep6) {
  const auto c = load_latest((kFixture / "checkpoint").string());
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->state.step, 6);
  EXPECT_EQ(c->state.tokens_seen, 358);
  EXPECT_EQ(c->state.sampler_position, 12);
  EXPECT_EQ(c->state.optim_steps, 6);
  EXPECT_TRUE(c->warnings.empty());
}
