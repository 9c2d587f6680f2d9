// Checkpoints: bit-identical round trip, resume equivalence, keep-N, and every kind of damage
// (truncated file, flipped bit, missing marker, leftovers of a killed save, a bad `latest`),
// each detected and answered by a warning and a fallback to the previous checkpoint.
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "fusellm/train/train_checkpoint.hpp"
#include "fusellm/io/file_checksum.hpp"
#include "fusellm/core/error.hpp"
#include "fusellm/core/log.hpp"
#include "fusellm/io/hdf5_handle.hpp"
#include "fusellm/optim/grad_clip.hpp"
#include "error_of.hpp"
#include "flip_bit.hpp"

using namespace fusellm;
namespace fs = std::filesystem;

namespace {

// A tiny "model": named tensors with HF names and shapes.
struct ToyModel {
  std::vector<std::string> names{"model.embed_tokens.weight", "model.layers.0.input_layernorm.weight",
                                 "model.layers.0.mlp.up_proj.weight", "lm_head.weight"};
  std::vector<Shape> shapes{{16, 8}, {8}, {12, 8}, {16, 8}};
  std::vector<std::vector<float>> params, grads;

  explicit ToyModel(uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> nd(0.f, 0.5f);
    for (const auto& s : shapes) {
      std::vector<float> p(numel(s));
      for (auto& x : p) x = nd(rng);
      params.push_back(p);
      grads.emplace_back(p.size(), 0.f);
    }
  }
  std::vector<ParamGrad> param_grads() {
    std::vector<ParamGrad> pg;
    for (size_t i = 0; i < names.size(); ++i) pg.push_back({names[i], params[i], grads[i], hf_trainer_decays(names[i])});
    return pg;
  }
  std::vector<TensorRef> refs() const {
    std::vector<TensorRef> r;
    for (size_t i = 0; i < names.size(); ++i) r.push_back({names[i], shapes[i], params[i]});
    return r;
  }
};

// One training step of a toy problem: gradient = p - target + noise from the run's RNG, then
// clipping, the schedule's lr and AdamW. Everything a resume must restore takes part.
struct ToyRun {
  ToyModel model{7};
  AdamW opt{AdamWOptions{}};
  LrSchedule sched{.kind = ScheduleKind::Cosine, .base_lr = 1e-2, .warmup_steps = 3, .total_steps = 20};
  std::mt19937_64 rng{12345};
  int64_t step = 0, tokens = 0;

  void train_step() {
    std::normal_distribution<float> noise(0.f, 0.1f);
    for (size_t t = 0; t < model.params.size(); ++t)
      for (size_t i = 0; i < model.params[t].size(); ++i)
        model.grads[t][i] = model.params[t][i] - 0.25f * float(i % 5) + noise(rng);
    auto pg = model.param_grads();
    clip_grad_norm(pg, 1.0);
    opt.step(pg, sched.lr(step));
    ++step, tokens += 4 * 256;
  }
  CheckpointContents contents() const {
    CheckpointContents c;
    c.model = model.refs();
    c.add_optimizer(opt);
    c.state.step = step;
    c.state.tokens_seen = tokens;
    c.state.sampler_epoch = 0;
    c.state.sampler_position = step * 2;
    c.state.rng_state = rng_to_text(rng);
    c.state.schedule = sched;
    c.state.job_toml = "[job]\nname = \"toy\"\n";
    return c;
  }
  void restore(const TrainCheckpoint& c) {
    for (size_t t = 0; t < model.names.size(); ++t) {
      const Tensor* p = c.find_model(model.names[t]);
      ASSERT_NE(p, nullptr);
      ASSERT_EQ(p->shape(), model.shapes[t]);
      model.params[t].assign(p->data(), p->data() + p->size());
    }
    c.restore_optimizer(opt);
    rng_from_text(rng, c.state.rng_state);
    sched = c.state.schedule;
    step = c.state.step;
    tokens = c.state.tokens_seen;
  }
};

bool same_bits(const std::vector<float>& a, const float* b, size_t n) {
  return a.size() == n && std::memcmp(a.data(), b, n * sizeof(float)) == 0;
}

class CheckpointTest : public ::testing::Test {
 protected:
  fs::path dir;
  std::ostringstream log;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink;

  void SetUp() override {
    dir = fs::temp_directory_path() / ("fusellm_ckpt_" + std::to_string(::getpid()) + "_" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(log);
    spdlog::default_logger()->sinks().push_back(sink);
  }
  void TearDown() override {
    auto& sinks = spdlog::default_logger()->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink), sinks.end());
    fs::remove_all(dir);
  }
  std::string d() const { return dir.string(); }
  fs::path state_file(int64_t step) const { return dir / ("step-" + std::to_string(step)) / "state.h5"; }

  // Saves checkpoints at steps 10 and 20 of a toy run (keep 3).
  ToyRun two_checkpoints() {
    ToyRun run;
    TrainCheckpointStore store(d(), 3);
    for (int s = 1; s <= 20; ++s) {
      run.train_step();
      if (s % 10 == 0) store.save(run.contents());
    }
    return run;
  }
  // Rewrites step's marker as versions before whole-file checksums wrote it (size only), so that
  // the per-dataset checksums inside the file, all that guards such a checkpoint, are what a
  // damaged value meets.
  void legacy_marker(int64_t step) {
    std::ofstream(dir / ("step-" + std::to_string(step)) / "COMPLETE")
        << "fusellm-checkpoint\nstep " << step << "\nstate.h5 " << fs::file_size(state_file(step)) << "\n";
  }
  // Expects load_latest to fall back to step 10 with a warning containing each part.
  void expect_fallback_to_10(const std::vector<std::string>& parts) {
    const auto c = TrainCheckpointStore(d()).load_latest();
    ASSERT_TRUE(c.has_value());
    EXPECT_EQ(c->state.step, 10);
    EXPECT_EQ(c->path, (dir / "step-10").string());
    ASSERT_FALSE(c->warnings.empty());
    std::string all;
    for (const auto& w : c->warnings) all += w + "\n";
    for (const auto& p : parts) EXPECT_NE(all.find(p), std::string::npos) << "warnings: " << all << "missing: " << p;
    EXPECT_NE(log.str().find("falling back"), std::string::npos) << log.str();  // logged, not only returned
  }
};

uint64_t data_offset(const fs::path& file, const std::string& dataset) {
  h5::File f(h5::check_id(H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "open"));
  h5::Dataset ds(h5::check_id(H5Dopen2(f, dataset.c_str(), H5P_DEFAULT), "open dataset"));
  const haddr_t off = H5Dget_offset(ds);
  if (off == HADDR_UNDEF) throw std::runtime_error("no offset");
  return off;
}

using fusellm::testing::flip_bit;

}  // namespace

TEST_F(CheckpointTest, RoundTripIsBitIdentical) {
  ToyRun run;
  for (int i = 0; i < 5; ++i) run.train_step();
  const CheckpointContents c = run.contents();
  const std::string path = TrainCheckpointStore(d()).save(c);
  EXPECT_EQ(path, (dir / "step-5").string());
  EXPECT_TRUE(fs::exists(dir / "step-5" / "COMPLETE"));
  std::ifstream latest(dir / "latest");
  std::string l;
  std::getline(latest, l);
  EXPECT_EQ(l, "step-5");
  for (const auto& e : fs::directory_iterator(dir))  // nothing temporary left
    EXPECT_FALSE(e.path().filename().string().starts_with(".")) << e.path();

  const auto back = load_latest(d());
  ASSERT_TRUE(back);
  EXPECT_TRUE(back->warnings.empty());
  EXPECT_EQ(back->state, c.state);
  ASSERT_EQ(back->model.size(), c.model.size());
  for (size_t i = 0; i < c.model.size(); ++i) {  // in the saved order, shapes and bits intact
    EXPECT_EQ(back->model[i].name, c.model[i].name);
    EXPECT_EQ(back->model[i].tensor.shape(), c.model[i].shape);
    EXPECT_EQ(std::memcmp(back->model[i].tensor.data(), c.model[i].data.data(), c.model[i].data.size_bytes()), 0);
  }
  ASSERT_EQ(back->optim_m.size(), 4u);
  for (size_t i = 0; i < c.optim_m.size(); ++i) {
    const auto* st = run.opt.find(c.optim_m[i].name);
    EXPECT_EQ(back->optim_m[i].tensor.shape(), c.optim_m[i].shape);  // the model's shape
    EXPECT_TRUE(same_bits(st->m, back->optim_m[i].tensor.data(), back->optim_m[i].tensor.size()));
    EXPECT_TRUE(same_bits(st->v, back->optim_v[i].tensor.data(), back->optim_v[i].tensor.size()));
  }
  EXPECT_EQ(back->state.optim_steps, 5);
  AdamW restored;
  back->restore_optimizer(restored);
  EXPECT_EQ(restored.steps(), 5);
  EXPECT_EQ(restored.find("lm_head.weight")->v, run.opt.find("lm_head.weight")->v);
}

TEST_F(CheckpointTest, ResumeGivesBitIdenticalWeights) {
  // 2N steps straight against N steps + save + a fresh process state restored from disk + N steps.
  const int n = 8;
  ToyRun straight;
  for (int i = 0; i < 2 * n; ++i) straight.train_step();

  {
    ToyRun first;
    for (int i = 0; i < n; ++i) first.train_step();
    TrainCheckpointStore(d()).save(first.contents());
  }
  ToyRun resumed;  // different RNG draws would follow from its fresh state: restore must fix that
  resumed.rng.discard(17);
  const auto c = load_latest(d());
  ASSERT_TRUE(c);
  resumed.restore(*c);
  for (int i = 0; i < n; ++i) resumed.train_step();

  for (size_t t = 0; t < straight.model.params.size(); ++t) {
    EXPECT_EQ(straight.model.params[t], resumed.model.params[t]) << straight.model.names[t];
    EXPECT_EQ(straight.opt.find(straight.model.names[t])->m, resumed.opt.find(straight.model.names[t])->m);
    EXPECT_EQ(straight.opt.find(straight.model.names[t])->v, resumed.opt.find(straight.model.names[t])->v);
  }
  EXPECT_EQ(straight.opt.steps(), resumed.opt.steps());
  EXPECT_EQ(straight.rng, resumed.rng);
  EXPECT_EQ(straight.tokens, resumed.tokens);
}

TEST_F(CheckpointTest, KeepsTheLastN) {
  ToyRun run;
  TrainCheckpointStore store(d(), 2);
  for (int s = 1; s <= 5; ++s) {
    run.train_step();
    store.save(run.contents());
  }
  EXPECT_EQ(store.complete_steps(), (std::vector<int64_t>{4, 5}));
  TrainCheckpointStore all((dir / "all").string(), 0);
  for (int s = 0; s < 4; ++s) {
    run.train_step();
    all.save(run.contents());
  }
  EXPECT_EQ(all.complete_steps().size(), 4u);
}

TEST_F(CheckpointTest, EmptyOrMissingDirectoryIsAFreshStart) {
  EXPECT_FALSE(load_latest(d()).has_value());
  fs::create_directories(dir);
  EXPECT_FALSE(load_latest(d()).has_value());
}

TEST_F(CheckpointTest, TruncatedFileFallsBackWithAWarning) {
  two_checkpoints();
  const auto f = state_file(20);
  fs::resize_file(f, fs::file_size(f) / 2);
  expect_fallback_to_10({"step-20", "truncated"});
}

TEST_F(CheckpointTest, TruncatedFileWithAMatchingMarkerIsStillCaught) {
  // Even when the marker's size agrees (say, a marker rewritten by hand), HDF5 or the checksums catch it.
  two_checkpoints();
  const auto f = state_file(20);
  fs::resize_file(f, fs::file_size(f) - 100);
  std::ofstream(dir / "step-20" / "COMPLETE") << "fusellm-checkpoint\nstep 20\nstate.h5 " << fs::file_size(f) << "\n";
  expect_fallback_to_10({"step-20"});
}

TEST_F(CheckpointTest, FlippedBitInATensorIsCaughtByItsChecksum) {
  two_checkpoints();
  const auto f = state_file(20);
  flip_bit(f, data_offset(f, "model/model.layers.0.mlp.up_proj.weight") + 37, 3);
  legacy_marker(20);  // the whole-file checksum would catch it first
  expect_fallback_to_10({"step-20", "model.layers.0.mlp.up_proj.weight", "checksum mismatch"});
}

TEST_F(CheckpointTest, FlippedBitInOptimizerStateIsCaught) {
  two_checkpoints();
  const auto f = state_file(20);
  flip_bit(f, data_offset(f, "optim/v/lm_head.weight") + 4, 0);
  legacy_marker(20);  // the whole-file checksum would catch it first
  expect_fallback_to_10({"optim/v", "lm_head.weight", "checksum mismatch"});
}

TEST_F(CheckpointTest, FlippedBitInTheJobTextIsCaught) {
  two_checkpoints();
  const auto f = state_file(20);
  flip_bit(f, data_offset(f, "meta/job_toml") + 2, 1);
  legacy_marker(20);  // the whole-file checksum would catch it first
  expect_fallback_to_10({"job_toml", "checksum mismatch"});
}

TEST_F(CheckpointTest, MissingMarkerFallsBack) {
  two_checkpoints();
  fs::remove(dir / "step-20" / "COMPLETE");
  expect_fallback_to_10({"step-20", "no COMPLETE marker"});
}

TEST_F(CheckpointTest, LeftoversOfAKilledSaveAreIgnoredAndCleanedUp) {
  ToyRun run = two_checkpoints();
  // A save killed before its rename (a .tmp dir with half a file), and a step dir with no marker.
  fs::create_directories(dir / ".tmp-step-30-99999");
  std::ofstream(dir / ".tmp-step-30-99999" / "state.h5") << "half a file";
  fs::create_directories(dir / "step-40");
  std::ofstream(dir / "step-40" / "state.h5") << "garbage";
  std::ofstream(dir / ".latest.tmp-99999") << "step-40\n";

  auto c = load_latest(d());
  ASSERT_TRUE(c);
  EXPECT_EQ(c->state.step, 20);  // `latest` is intact: no fallback needed, nothing to warn about
  EXPECT_TRUE(c->warnings.empty());

  // Without `latest`, the step dir without a marker is tried, refused with a warning, and skipped.
  fs::remove(dir / "latest");
  c = load_latest(d());
  ASSERT_TRUE(c);
  EXPECT_EQ(c->state.step, 20);
  ASSERT_EQ(c->warnings.size(), 1u);
  EXPECT_NE(c->warnings[0].find("step-40"), std::string::npos);

  // The next save removes the debris (and the marker-less step-40, newer than the step saved).
  for (int i = 0; i < 10; ++i) run.train_step();
  TrainCheckpointStore(d(), 3).save(run.contents());
  EXPECT_FALSE(fs::exists(dir / ".tmp-step-30-99999"));
  EXPECT_FALSE(fs::exists(dir / ".latest.tmp-99999"));
  EXPECT_FALSE(fs::exists(dir / "step-40"));
  EXPECT_EQ(TrainCheckpointStore(d()).complete_steps(), (std::vector<int64_t>{10, 20, 30}));
}

TEST_F(CheckpointTest, LatestPointingAtADamagedOrMissingCheckpoint) {
  two_checkpoints();
  // `latest` names step-20, whose file is damaged: fall back.
  flip_bit(state_file(20), data_offset(state_file(20), "model/lm_head.weight"), 7);
  expect_fallback_to_10({"step-20"});
  // `latest` names a checkpoint that is not there.
  std::ofstream(dir / "latest") << "step-99\n";
  fs::remove_all(dir / "step-20");
  auto c = load_latest(d());
  ASSERT_TRUE(c);
  EXPECT_EQ(c->state.step, 10);
  EXPECT_NE(c->warnings.at(0).find("step-99, which does not exist"), std::string::npos);
  // `latest` holds garbage.
  std::ofstream(dir / "latest") << "\x01\x02garbage";
  c = load_latest(d());
  ASSERT_TRUE(c);
  EXPECT_EQ(c->state.step, 10);
  EXPECT_NE(c->warnings.at(0).find("`latest` is damaged"), std::string::npos);
}

TEST_F(CheckpointTest, NoUsableCheckpointIsAnErrorListingEach) {
  two_checkpoints();
  fs::resize_file(state_file(20), 100);
  fs::remove(dir / "step-10" / "COMPLETE");
  try {
    load_latest(d());
    FAIL() << "accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("no usable checkpoint"), std::string::npos) << m;
    EXPECT_NE(m.find("step-20"), std::string::npos) << m;
    EXPECT_NE(m.find("step-10"), std::string::npos) << m;
  }
}

TEST_F(CheckpointTest, SavingAStepAgainReplacesIt) {
  ToyRun run = two_checkpoints();
  CheckpointContents c = run.contents();
  c.state.tokens_seen = 777;
  TrainCheckpointStore(d()).save(c);
  const auto back = load_latest(d());
  ASSERT_TRUE(back);
  EXPECT_EQ(back->state.tokens_seen, 777);
  EXPECT_EQ(TrainCheckpointStore(d()).complete_steps(), (std::vector<int64_t>{10, 20}));
}

TEST_F(CheckpointTest, ResumingFromAnOlderCheckpointDropsTheAbandonedNewerOnes) {
  ToyRun run = two_checkpoints();
  fs::remove(dir / "step-20" / "COMPLETE");  // damaged: the run resumes from step 10
  const auto c = load_latest(d());
  ASSERT_TRUE(c);
  ToyRun resumed;
  resumed.restore(*c);
  resumed.train_step();
  TrainCheckpointStore(d()).save(resumed.contents());  // step 11
  EXPECT_FALSE(fs::exists(dir / "step-20"));
  EXPECT_EQ(TrainCheckpointStore(d()).complete_steps(), (std::vector<int64_t>{10, 11}));
}

TEST_F(CheckpointTest, BadContentsAreRefusedAndLeaveNothingBehind) {
  ToyRun run = two_checkpoints();
  CheckpointContents c = run.contents();
  c.state.step = 30;
  std::vector<float> short_data(3);
  c.model.push_back({"bad.weight", {2, 2}, short_data});
  EXPECT_THROW(TrainCheckpointStore(d()).save(c), Error);
  c.model.pop_back();
  c.model.push_back({"a/b", {3}, short_data});
  EXPECT_THROW(TrainCheckpointStore(d()).save(c), Error);
  c.model.pop_back();
  c.model.push_back(c.model.front());  // a duplicate name
  EXPECT_THROW(TrainCheckpointStore(d()).save(c), Error);
  EXPECT_FALSE(fs::exists(dir / "step-30"));
  for (const auto& e : fs::directory_iterator(dir)) EXPECT_FALSE(e.path().filename().string().starts_with(".tmp"));
  EXPECT_EQ(load_latest(d())->state.step, 20);
}

namespace {
// The byte ranges of every dataset's values in a checkpoint file (contiguous layout): the rest of
// the file is HDF5's metadata (superblock, object headers, B-trees, heaps) and free space.
std::vector<std::pair<uint64_t, uint64_t>> data_ranges(const fs::path& file, const ToyModel& m) {
  std::vector<std::string> names{"meta/rng_state", "meta/job_toml"};
  for (const auto& n : m.names)
    for (const char* g : {"model/", "optim/m/", "optim/v/"}) names.push_back(g + n);
  std::vector<std::pair<uint64_t, uint64_t>> r;
  h5::File f(h5::check_id(H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "open"));
  for (const auto& n : names) {
    h5::Dataset ds(h5::check_id(H5Dopen2(f, n.c_str(), H5P_DEFAULT), "open dataset"));
    r.emplace_back(H5Dget_offset(ds), H5Dget_offset(ds) + H5Dget_storage_size(ds));
  }
  return r;
}
}  // namespace

TEST_F(CheckpointTest, MarkerRecordsEachFilesSizeAndChecksum) {
  two_checkpoints();
  std::ifstream in(dir / "step-20" / "COMPLETE");
  std::stringstream text;
  text << in.rdbuf();
  const std::string want = fmt::format("state.h5 {} xxh64 {:016x}\n", fs::file_size(state_file(20)),
                                       digest_file(state_file(20).string()).xxh64);
  EXPECT_EQ(text.str(), "fusellm-checkpoint\nstep 20\n" + want);
}

TEST_F(CheckpointTest, RandomBitFlipsAnywhereFallBackBeforeHdf5OpensTheFile) {
  // A flipped bit in HDF5's own metadata made libhdf5 crash (segfault or abort) on resume and
  // export. Every flip, in the metadata or in the values, must now be refused with a warning that
  // names the file, and the load must fall back to step 10. The loads run in this process, so a
  // crash fails the test.
  two_checkpoints();
  const fs::path f = state_file(20);
  const fs::path pristine = dir / "pristine.h5";
  fs::copy_file(f, pristine);
  const auto data = data_ranges(f, ToyModel(7));
  const uint64_t size = fs::file_size(f);
  auto in_data = [&](uint64_t pos) {
    for (const auto& [b, e] : data)
      if (pos >= b && pos < e) return true;
    return false;
  };
  std::vector<uint64_t> meta_pos, data_pos;
  for (uint64_t i = 0; i < size; ++i) (in_data(i) ? data_pos : meta_pos).push_back(i);
  ASSERT_GT(meta_pos.size(), 1000u);  // the small toy file is mostly metadata
  ASSERT_GT(data_pos.size(), 1000u);

  std::mt19937_64 rng(20240917);
  const int kMetaTrials = 150, kDataTrials = 50;
  for (int trial = 0; trial < kMetaTrials + kDataTrials; ++trial) {
    const auto& pool = trial < kMetaTrials ? meta_pos : data_pos;
    const uint64_t pos = pool[rng() % pool.size()];
    const int bit = int(rng() % 8);
    fs::copy_file(pristine, f, fs::copy_options::overwrite_existing);
    flip_bit(f, pos, bit);
    SCOPED_TRACE(fmt::format("trial {}: bit {} of byte {} ({})", trial, bit, pos, trial < kMetaTrials ? "metadata" : "data"));
    std::optional<TrainCheckpoint> c;
    ASSERT_NO_THROW(c = TrainCheckpointStore(d()).load_latest());
    ASSERT_TRUE(c.has_value());
    ASSERT_EQ(c->state.step, 10);
    ASSERT_FALSE(c->warnings.empty());
    EXPECT_NE(c->warnings[0].find(f.string()), std::string::npos) << c->warnings[0];
    EXPECT_NE(c->warnings[0].find("fails its checksum"), std::string::npos) << c->warnings[0];
    // The same file asked for directly (as `export --checkpoint step-20` does) is refused.
    const std::string e = fusellm::testing::error_of([&] { TrainCheckpointStore::load((dir / "step-20").string()); });
    EXPECT_NE(e.find("fails its checksum"), std::string::npos) << e;
  }
}

TEST_F(CheckpointTest, LegacyMarkerWithoutChecksumStillLoads) {
  // Checkpoints written before markers held checksums: the size is checked, and a log line says
  // that the file is not verified before HDF5 opens it.
  two_checkpoints();
  std::ofstream(dir / "step-20" / "COMPLETE") << "fusellm-checkpoint\nstep 20\nstate.h5 " << fs::file_size(state_file(20))
                                              << "\n";
  const auto c = TrainCheckpointStore(d()).load_latest();
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->state.step, 20);
  EXPECT_TRUE(c->warnings.empty());
  EXPECT_NE(log.str().find("records no checksum"), std::string::npos) << log.str();
  // ... and a legacy marker whose size disagrees is still refused.
  std::ofstream(dir / "step-20" / "COMPLETE") << "fusellm-checkpoint\nstep 20\nstate.h5 12\n";
  expect_fallback_to_10({"step-20", "truncated"});
}

TEST_F(CheckpointTest, DamagedChecksumLineInTheMarkerFallsBack) {
  two_checkpoints();
  std::ofstream(dir / "step-20" / "COMPLETE") << "fusellm-checkpoint\nstep 20\nstate.h5 " << fs::file_size(state_file(20))
                                              << " xxh64 zz\n";
  expect_fallback_to_10({"step-20", "damaged COMPLETE marker"});
}

TEST_F(CheckpointTest, NonFiniteTensorsAreNeverSaved) {
  ToyRun run = two_checkpoints();
  for (int i = 0; i < 10; ++i) run.train_step();
  run.model.params[2][5] = std::numeric_limits<float>::infinity();
  std::string e = fusellm::testing::error_of([&] { TrainCheckpointStore(d()).save(run.contents()); });
  EXPECT_NE(e.find("model.layers.0.mlp.up_proj.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("not finite"), std::string::npos) << e;
  run.model.params[2][5] = 0.f;
  std::vector<float> v = run.opt.find("lm_head.weight")->v;
  v[3] = std::nanf("");
  run.opt.set_state("lm_head.weight", run.opt.find("lm_head.weight")->m, v);
  e = fusellm::testing::error_of([&] { TrainCheckpointStore(d()).save(run.contents()); });
  EXPECT_NE(e.find("optim/v"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(dir / "step-30"));
  EXPECT_EQ(load_latest(d())->state.step, 20);
}

TEST(RngText, RoundTripAndErrors) {
  std::mt19937_64 a(99);
  a.discard(1000);
  std::mt19937_64 b;
  rng_from_text(b, rng_to_text(a));
  EXPECT_EQ(a, b);
  EXPECT_EQ(a(), b());
  EXPECT_THROW(rng_from_text(b, "not a state"), Error);
}
