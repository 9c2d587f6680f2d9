// ZeRO-1 checkpoints (train/sharded_checkpoint.hpp) over the in-process transport: saved by 2
// student ranks and loaded by 1, 2 and 3 (reshard on load) with the same weights and moments; a
// single-process checkpoint loaded by 2 ranks; a ZeRO-1 checkpoint resumed by one process; a
// missing shard file, or one of another job, refused naming the file, on every rank, and a
// damaged newest step answered by all ranks falling back to the older one together.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <sstream>

#include "error_of.hpp"
#include "small_param_table.hpp"
#include "fusellm/dist/inproc/inproc_transport.hpp"
#include "fusellm/dist/zero1.hpp"
#include "fusellm/optim/flat_param_grads.hpp"
#include "fusellm/optim/grad_clip.hpp"
#include "fusellm/optim/optim_state.hpp"
#include "fusellm/train/sharded_checkpoint.hpp"

using namespace fusellm;
namespace fs = std::filesystem;
using fusellm::testing::error_of;
using fusellm::testing::normal_values;
using fusellm::testing::small_param_table;

namespace {

TrainState state_at(int64_t step) {
  TrainState s;
  s.step = step;
  s.tokens_seen = 100 * step;
  s.optim_steps = step;
  s.rng_state = rng_to_text(std::mt19937_64(5));
  s.schedule = LrSchedule{.kind = ScheduleKind::Cosine, .base_lr = 1e-2, .warmup_steps = 1, .total_steps = 10};
  s.job_toml = "name = \"zero1\"\n";
  return s;
}

// What a save held: the weights and the flat moments of the whole buffer.
struct Saved {
  std::vector<float> params, m, v;
};

// `ranks` ranks train `steps` steps from the same weights (each its own gradients) and save every
// step into `dir`; returns what the last save held.
Saved train_and_save(const std::string& dir, int ranks, int steps, uint64_t seed = 7) {
  const ParamTable t = small_param_table();
  const TrainCheckpointStore store(dir, 0);
  Saved saved{{}, std::vector<float>(size_t(t.total())), std::vector<float>(size_t(t.total()))};
  std::mutex mu;
  dist::InprocWorld::run(ranks, [&](dist::Transport& tr) {
    tr.set_timeout(std::chrono::seconds(60));
    std::vector<float> p = normal_values(t.total(), 0.5f, seed), g(p.size());
    dist::Zero1 z(tr, t, p, g, AdamWOptions{});
    for (int s = 1; s <= steps; ++s) {
      const std::vector<float> gs = normal_values(t.total(), 0.1f, seed * 100 + uint64_t(10 * s + tr.rank()));
      std::copy(gs.begin(), gs.end(), g.begin());  // into the buffer Zero1 holds
      z.reduce_gradients();
      z.clip(1.0);
      EXPECT_EQ(z.step(1e-2), "");
      z.gather_params();
      EXPECT_EQ(save_zero1(store, z, state_at(s)), (fs::path(dir) / ("step-" + std::to_string(s))).string());
    }
    std::lock_guard lock(mu);
    z.shard_moments(std::span(saved.m).subspan(size_t(z.begin()), size_t(z.end() - z.begin())),
                    std::span(saved.v).subspan(size_t(z.begin()), size_t(z.end() - z.begin())));
    if (tr.rank() == 0) saved.params = p;
  });
  return saved;
}

// `ranks` ranks load the newest checkpoint of `dir`; each checks its weights and moments against
// `want` and returns its error message ("" when it loaded), by rank.
std::vector<std::string> load_and_check(const std::string& dir, int ranks, const Saved& want, int64_t want_step) {
  const ParamTable t = small_param_table();
  std::vector<std::string> errors(static_cast<size_t>(ranks));
  dist::InprocWorld::run(ranks, [&](dist::Transport& tr) {
    tr.set_timeout(std::chrono::seconds(60));
    std::vector<float> p = normal_values(t.total(), 0.5f, 99), g(p.size());
    dist::Zero1 z(tr, t, p, g, AdamWOptions{});
    std::optional<TrainCheckpoint> ck;
    errors[size_t(tr.rank())] = error_of([&] { ck = load_zero1(TrainCheckpointStore(dir), z); });
    if (!ck) return;
    EXPECT_EQ(ck->state, state_at(want_step));
    EXPECT_EQ(std::memcmp(p.data(), want.params.data(), 4 * p.size()), 0) << ranks << " ranks, rank " << tr.rank();
    const size_t b = size_t(z.begin()), n = size_t(z.end() - z.begin());
    std::vector<float> m(n), v(n);
    z.shard_moments(m, v);
    EXPECT_EQ(std::memcmp(m.data(), want.m.data() + b, 4 * n), 0) << ranks << " ranks, rank " << tr.rank();
    EXPECT_EQ(std::memcmp(v.data(), want.v.data() + b, 4 * n), 0) << ranks << " ranks, rank " << tr.rank();
    EXPECT_EQ(z.adamw().steps(), want_step);
  });
  return errors;
}

class ShardedCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("fusellm_zero1_ckpt_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir(const std::string& sub = "a") const { return (dir_ / sub).string(); }
  fs::path dir_;
};

TEST_F(ShardedCheckpoint, SavedByTwoRanksLoadsIntoOneTwoAndThree) {
  const Saved saved = train_and_save(dir(), 2, 3);
  std::set<std::string> files;
  for (const auto& e : fs::directory_iterator(fs::path(dir()) / "step-3")) files.insert(e.path().filename().string());
  EXPECT_EQ(files, (std::set<std::string>{"COMPLETE", "state.h5", "optim-0-of-2.h5", "optim-1-of-2.h5"}));
  for (const auto& e : fs::directory_iterator(dir())) EXPECT_FALSE(e.path().filename().string().starts_with(".tmp"));
  for (int ranks : {1, 2, 3})
    for (const std::string& e : load_and_check(dir(), ranks, saved, 3)) EXPECT_EQ(e, "") << ranks << " ranks";
}

// One process (resume_latest's path) restores a ZeRO-1 checkpoint's moments whole, per tensor.
TEST_F(ShardedCheckpoint, OneProcessResumesAZero1Checkpoint) {
  const Saved saved = train_and_save(dir(), 2, 2);
  const std::optional<TrainCheckpoint> ck = TrainCheckpointStore(dir()).load_latest();
  ASSERT_TRUE(ck);
  EXPECT_EQ(ck->optim_shards, 2);
  AdamW opt;
  ck->restore_optimizer(opt);
  EXPECT_EQ(opt.steps(), 2);
  const ParamTable t = small_param_table();
  for (const ParamEntry& e : t.entries()) {
    const AdamW::State* s = opt.find(e.name);
    ASSERT_NE(s, nullptr) << e.name;
    EXPECT_EQ(std::memcmp(s->m.data(), saved.m.data() + e.offset, 4 * size_t(e.size)), 0) << e.name;
    EXPECT_EQ(std::memcmp(s->v.data(), saved.v.data() + e.offset, 4 * size_t(e.size)), 0) << e.name;
  }
}

TEST_F(ShardedCheckpoint, ASingleProcessCheckpointLoadsIntoTwoRanks) {
  const ParamTable t = small_param_table();
  std::vector<float> p = normal_values(t.total(), 0.5f, 3), g(p.size());
  AdamW opt;
  const std::vector<ParamGrad> pg = flat_param_grads(t, p, g);
  for (int s = 1; s <= 3; ++s) {
    const std::vector<float> gs = normal_values(t.total(), 0.1f, uint64_t(s));
    std::copy(gs.begin(), gs.end(), g.begin());
    clip_grad_norm(pg, 1.0);
    opt.step(pg, 1e-2);
  }
  CheckpointContents c;
  for (int i = 0; i < t.size(); ++i) c.model.push_back({t[i].name, t[i].shape, t.view(p, i).span()});
  c.add_optimizer(opt);
  c.state = state_at(3);
  TrainCheckpointStore(dir()).save(c);
  EXPECT_TRUE(fs::exists(fs::path(dir()) / "step-3" / "state.h5"));
  Saved want{p, std::vector<float>(p.size()), std::vector<float>(p.size())};
  flat_moments(opt, t, 0, t.total(), want.m, want.v);
  for (const std::string& e : load_and_check(dir(), 2, want, 3)) EXPECT_EQ(e, "");
}

TEST_F(ShardedCheckpoint, AMissingShardFileIsRefusedOnEveryRankNamingIt) {
  const Saved saved = train_and_save(dir(), 2, 1);
  fs::remove(fs::path(dir()) / "step-1" / "optim-1-of-2.h5");
  for (int ranks : {1, 2, 3})
    for (const std::string& e : load_and_check(dir(), ranks, saved, 1)) {
      EXPECT_NE(e.find("no usable checkpoint"), std::string::npos) << e;
      EXPECT_NE(e.find("step-1/optim-1-of-2.h5: missing"), std::string::npos) << e;
    }
  // A manifest that no longer lists it either: state.h5 still says two shards.
  const fs::path marker = fs::path(dir()) / "step-1" / "COMPLETE";
  std::ifstream in(marker);
  std::string text, line;
  while (std::getline(in, line))
    if (line.find("optim-1-of-2.h5") == std::string::npos) text += line + "\n";
  in.close();
  std::ofstream(marker) << text;
  for (const std::string& e : load_and_check(dir(), 2, saved, 1))
    EXPECT_NE(e.find("step-1: has no optim-1-of-2.h5 (state.h5 says AdamW's moments are in 2 shard files"),
              std::string::npos)
        << e;
}

TEST_F(ShardedCheckpoint, AShardFileOfAnotherJobIsRefusedNamingIt) {
  const Saved saved = train_and_save(dir("a"), 2, 1);
  train_and_save(dir("b"), 2, 1, 8);
  const fs::path mine = fs::path(dir("a")) / "step-1", other = fs::path(dir("b")) / "step-1";
  fs::copy_file(other / "optim-1-of-2.h5", mine / "optim-1-of-2.h5", fs::copy_options::overwrite_existing);
  // As copied: its bytes are not what the manifest recorded.
  for (const std::string& e : load_and_check(dir("a"), 2, saved, 1))
    EXPECT_NE(e.find("step-1/optim-1-of-2.h5: fails its checksum"), std::string::npos) << e;
  // With the manifest's line copied too: the save id tells.
  std::ifstream a(mine / "COMPLETE"), b(other / "COMPLETE");
  std::string text, line, theirs;
  while (std::getline(b, line))
    if (line.starts_with("optim-1-of-2.h5")) theirs = line;
  while (std::getline(a, line)) text += (line.starts_with("optim-1-of-2.h5") ? theirs : line) + "\n";
  a.close();
  std::ofstream(mine / "COMPLETE") << text;
  for (const std::string& e : load_and_check(dir("a"), 2, saved, 1))
    EXPECT_NE(e.find("step-1/optim-1-of-2.h5: written by another save"), std::string::npos) << e;
  EXPECT_NE(error_of([&] { TrainCheckpointStore(dir("a")).load_latest(); }).find("optim-1-of-2.h5: written by another save"),
            std::string::npos);
}

// 5 floats over 4 ranks: shards of 2, the last rank's empty (an empty shard file).
TEST_F(ShardedCheckpoint, AnEmptyShardSavesAndLoads) {
  ParamTable t;
  t.add("model.norm.weight", {5});
  const TrainCheckpointStore store(dir(), 0);
  std::vector<float> want_m(5);
  dist::InprocWorld::run(4, [&](dist::Transport& tr) {
    tr.set_timeout(std::chrono::seconds(60));
    std::vector<float> p{1, 2, 3, 4, 5}, g{0.5f, -0.5f, 0.25f, 1, 2};
    dist::Zero1 z(tr, t, p, g, AdamWOptions{});
    z.reduce_gradients();
    z.clip(0);
    EXPECT_EQ(z.step(1e-2), "");
    z.gather_params();
    save_zero1(store, z, state_at(1));
  });
  const std::optional<TrainCheckpoint> ck = store.load_latest();
  ASSERT_TRUE(ck);
  ASSERT_EQ(ck->shards.size(), 4u);
  EXPECT_EQ(ck->shards[3].m.size(), 0);
  AdamW opt;
  ck->restore_optimizer(opt);
  ASSERT_NE(opt.find("model.norm.weight"), nullptr);
  // m after one step: (1 - beta1) * g summed over 4 ranks = 0.1 * 4 g.
  EXPECT_FLOAT_EQ(opt.find("model.norm.weight")->m[4], 0.1f * 8.f);
}

// The newest step's shard damaged: every rank falls back to the older step, together.
TEST_F(ShardedCheckpoint, ADamagedNewestStepFallsBackOnEveryRank) {
  train_and_save(dir(), 2, 1);
  const Saved step1 = [&] {  // what step 1 held: train again, one step, into another directory
    return train_and_save(dir("ref"), 2, 1);
  }();
  train_and_save(dir(), 2, 2);  // steps 1 and 2 (the first step again, then a second)
  fs::resize_file(fs::path(dir()) / "step-2" / "optim-0-of-2.h5", 100);
  for (int ranks : {2, 3})
    for (const std::string& e : load_and_check(dir(), ranks, step1, 1)) EXPECT_EQ(e, "") << ranks << " ranks";
}

}  // namespace
