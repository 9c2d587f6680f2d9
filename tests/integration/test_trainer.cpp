// fusellm train (offline mode) end to end on the demo checkpoints (examples/demo/{llama,neox}):
// the packer's sequences, finite losses and metrics lines, resume bit for bit (6 steps straight
// against 3 + restart + 3), and the NaN guard keeping the last good checkpoint.
#include <gtest/gtest.h>
#include <unistd.h>

#include <Kokkos_Core.hpp>
#include <fcntl.h>
#include <sys/file.h>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>

#include "fusellm/core/dtype.hpp"
#include "fusellm/core/error.hpp"
#include "fusellm/device/compute_backend.hpp"
#include "fusellm/model/trainable_model.hpp"
#include "fusellm/data/corpus.hpp"
#include "fusellm/data/distribution_cache.hpp"
#include "fusellm/data/packer.hpp"
#include "fusellm/io/hf_config.hpp"
#include "fusellm/train/train_checkpoint.hpp"
#include "fusellm/teach/teach.hpp"
#include "fusellm/teach/teacher.hpp"
#include "fusellm/train/segment_source.hpp"
#include "fusellm/train/trainer.hpp"
#include "error_of.hpp"

namespace fs = std::filesystem;
using namespace fusellm;
using fusellm::testing::error_of;

namespace {
const std::string kDemo = FUSELLM_SOURCE_DIR "/examples/demo";
constexpr int64_t kSegments = 8;

bool demo_present() {
  return fs::exists(kDemo + "/llama/model.safetensors") && fs::exists(kDemo + "/neox/model.safetensors") &&
         fs::exists(kDemo + "/corpus.jsonl");
}

// One temp dir per test binary: a small corpus and both sources' caches (taught once).
struct Fixture {
  fs::path dir;
  std::string corpus;
  Fixture() {
    dir = fs::temp_directory_path() / ("fusellm_trainer_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    corpus = (dir / "corpus.jsonl").string();
    std::ofstream f(corpus, std::ios::binary);
    const auto docs = read_corpus(kDemo + "/corpus.jsonl");
    for (size_t i = 0; i < 4 && i < docs.size(); ++i)
      f << nlohmann::json{{"text", docs[i].text.substr(0, 600)}}.dump() << "\n";
  }
  ~Fixture() { fs::remove_all(dir); }
  // A job in its own run dir; `extra` goes at the end of the file (whole sections).
  std::string job(const std::string& name, const std::string& optim = "lr = 1e-3\nschedule = \"cosine\"\nwarmup_steps = 1\n",
                  const std::string& distill = "fusion = \"minCE\"\nlambda = 0.9\n") const {
    const std::string p = (dir / (name + ".toml")).string();
    std::ofstream(p) << "[job]\nname = \"t\"\nseed = 7\noutput_dir = \"" << (dir / ("run_" + name)).string() << "\"\n\n"
                     << "[[source]]\nname = \"llama\"\npath = \"" << kDemo << "/llama\"\n\n"
                     << "[[source]]\nname = \"neox\"\npath = \"" << kDemo << "/neox\"\n\n"
                     << "[target]\ninit_from = \"llama\"\n\n"
                     << "[corpus]\npath = \"" << corpus << "\"\nmax_len = 64\nmargin = 16\n\n"
                     << "[distill]\ntop_k = 5\nalignment = \"mined\"\n" << distill << "\n"
                     << "[optim]\n" << optim << "\n"
                     << "[train]\nglobal_batch = 2\nmax_steps = 6\nlog_interval = 1\n\n"
                     << "[checkpoint]\ninterval = 1\nkeep = 0\n\n"
                     << "[cache]\ndir = \"" << (dir / "cache").string() << "\"\n";
    return p;
  }
  void teach_all() {
    if (taught) return;
    const JobConfig j = load_job(job("teach"));
    for (const char* s : {"llama", "neox"}) {
      TeachOptions o;
      o.source = s;
      o.limit = kSegments;
      o.progress = false;
      teach(j, o);
    }
    taught = true;
  }
  bool taught = false;
};

Fixture& fx() {
  static Fixture f;
  return f;
}

TrainOptions quiet() {
  TrainOptions o;
  o.limit = kSegments;
  o.require_complete_caches = false;
  o.progress = false;
  return o;
}

// The tests' fault: a NaN in the first logit row of the first micro-batch of step `step` (1-based).
struct InjectNaN : TrainObserver {
  explicit InjectNaN(int64_t s) : step(s) {}
  int64_t step;
  void on_logits(int64_t s, size_t micro_batch, std::span<float> logits, int64_t vocab) override {
    if (s == step && micro_batch == 0) std::fill_n(logits.data(), vocab, std::numeric_limits<float>::quiet_NaN());
  }
};

std::vector<std::vector<float>> weights_of(const std::string& ckpt_dir) {
  // The final checkpoint's model tensors, in order.
  const auto ck = TrainCheckpointStore(ckpt_dir).load_latest();
  EXPECT_TRUE(ck.has_value());
  std::vector<std::vector<float>> w;
  if (ck)
    for (const auto& t : ck->model) w.emplace_back(t.tensor.data(), t.tensor.data() + t.tensor.size());
  return w;
}

}  // namespace

TEST(Packer, CutsSegmentsIntoFullSequencesAndWeightsCE) {
  std::vector<PackInput> in(3);
  const int64_t lens[3] = {5, 7, 2};
  for (int i = 0; i < 3; ++i) {
    in[size_t(i)].id = i;
    for (int64_t t = 0; t < lens[i]; ++t) in[size_t(i)].target_ids.push_back(int32_t(100 * i + t));
    TeacherRows r;
    r.segment = i;
    r.k = 2;
    r.target_ids = in[size_t(i)].target_ids;
    r.resize_rows(lens[i]);
    for (int64_t t = 0; t < lens[i]; ++t) r.set(t, 0, int32_t(100 * i + t), 1.f);
    r.ce = double(i + 1);
    r.ce_tokens = 3 + i;     // the source's own tokens
    r.bytes = 10 * (i + 1);  // the segment's UTF-8 bytes
    in[size_t(i)].rows.push_back(r);
  }
  const std::vector<int64_t> L{5, 7, 2};
  const Packer p(L, 6);
  ASSERT_EQ(p.sequences(), 3);  // 6 + 6 + 2
  const PackedSequence s0 = p.build(0, in, false);
  EXPECT_EQ(s0.ids, (std::vector<int32_t>{0, 1, 2, 3, 4, 100}));
  EXPECT_EQ(s0.gold, (std::vector<int32_t>{1, 2, 3, 4, 100, -1}));
  EXPECT_TRUE(s0.doc_ids.empty());
  EXPECT_DOUBLE_EQ(s0.ce[0], (5 * 1.0 + 1 * 2.0) / 6);
  // Per byte: segment 0 whole (CE sum 1 x 3 nats over 10 bytes), 1/7 of segment 1 (2 x 4 nats, 20
  // bytes): each piece its share of its segment's nats and bytes.
  EXPECT_DOUBLE_EQ(s0.nats_per_byte[0], (1.0 * 3 + 2.0 * 4 / 7) / (10 + 20.0 / 7));
  EXPECT_EQ(s0.rows[0].ids(5, 0), 100);
  const PackedSequence s1 = p.build(1, in, true);
  EXPECT_EQ(s1.ids, (std::vector<int32_t>{101, 102, 103, 104, 105, 106}));
  const PackedSequence s2 = p.build(2, in, true);
  EXPECT_EQ(s2.doc_ids, (std::vector<int32_t>{0, 0}));
  EXPECT_DOUBLE_EQ(s2.nats_per_byte[0], 3.0 * 5 / 30);  // segment 2 whole
  in[2].rows[0].bytes = 0;                              // a cache without byte counts: no per-byte score
  EXPECT_EQ(p.build(2, in, true).nats_per_byte[0], std::numeric_limits<double>::infinity());
  const PackedSequence s0m = p.build(0, in, true);
  EXPECT_EQ(s0m.doc_ids, (std::vector<int32_t>{0, 0, 0, 0, 0, 1}));
  EXPECT_EQ(s0m.gold[4], -1);  // no label across a masked boundary
}

TEST(Trainer, FiniteLossesAndMetricsLines) {
  if (!demo_present()) GTEST_SKIP() << "demo checkpoints not present";
  fx().teach_all();
  const JobConfig job = load_job(fx().job("basic"));
  const TrainResult r = train(job, quiet());
  ASSERT_EQ(r.steps.size(), 6u);
  EXPECT_EQ(r.end_step, 6);
  for (const auto& s : r.steps) {
    EXPECT_TRUE(std::isfinite(s.loss) && std::isfinite(s.clm) && std::isfinite(s.fusion)) << s.step;
    EXPECT_GT(s.fusion, 0.0);
  }
  EXPECT_EQ(r.steps[0].lr, 0.0);  // warmup: the first step runs at lr(0) = 0
  std::ifstream m(r.metrics_path);
  std::string line;
  int n = 0;
  while (std::getline(m, line)) {
    const auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["step"].get<int64_t>(), ++n);
    for (const char* k : {"tokens", "loss", "clm", "fusion", "lr", "grad_norm", "tokens_per_s", "win_rate"})
      EXPECT_TRUE(j.contains(k)) << k;
    EXPECT_NEAR(j["win_rate"]["llama"].get<double>() + j["win_rate"]["neox"].get<double>(), 1.0, 1e-12);
  }
  EXPECT_EQ(n, 6);
  // Training on the same few sequences lowers the loss.
  EXPECT_LT(r.steps.back().loss, r.steps[1].loss);
}

TEST(Trainer, ResumeIsBitIdentical) {
  if (!demo_present()) GTEST_SKIP() << "demo checkpoints not present";
  fx().teach_all();
  const JobConfig a = load_job(fx().job("straight"));
  const TrainResult ra = train(a, quiet());
  const JobConfig b = load_job(fx().job("resumed"));
  TrainOptions o = quiet();
  o.stop_after = 3;
  const TrainResult rb1 = train(b, o);
  EXPECT_EQ(rb1.end_step, 3);
  const TrainResult rb2 = train(b, quiet());
  EXPECT_EQ(rb2.start_step, 3);
  EXPECT_EQ(rb2.end_step, 6);
  ASSERT_EQ(rb2.steps.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(ra.steps[size_t(3 + i)].loss, rb2.steps[size_t(i)].loss) << i;
  const auto wa = weights_of(a.checkpoint.dir), wb = weights_of(b.checkpoint.dir);
  ASSERT_EQ(wa.size(), wb.size());
  ASSERT_FALSE(wa.empty());
  for (size_t i = 0; i < wa.size(); ++i) EXPECT_TRUE(wa[i] == wb[i]) << "tensor " << i;
  const auto ca = TrainCheckpointStore(a.checkpoint.dir).load_latest(), cb = TrainCheckpointStore(b.checkpoint.dir).load_latest();
  ASSERT_TRUE(ca && cb);
  for (size_t i = 0; i < ca->optim_m.size(); ++i) {
    EXPECT_TRUE(std::equal(ca->optim_m[i].tensor.span().begin(), ca->optim_m[i].tensor.span().end(),
                           cb->optim_m[i].tensor.span().begin()));
    EXPECT_TRUE(std::equal(ca->optim_v[i].tensor.span().begin(), ca->optim_v[i].tensor.span().end(),
                           cb->optim_v[i].tensor.span().begin()));
  }
  EXPECT_EQ(ca->state.sampler_position, cb->state.sampler_position);
  EXPECT_EQ(ca->state.tokens_seen, cb->state.tokens_seen);
}

TEST(Trainer, NonFiniteLossStopsWithTheLastGoodCheckpoint) {
  if (!demo_present()) GTEST_SKIP() << "demo checkpoints not present";
  fx().teach_all();
  const JobConfig job = load_job(fx().job("nan", "lr = 1e30\nschedule = \"constant\"\nwarmup_steps = 0\nclip = 0.0\n"));
  const std::string msg = error_of([&] { train(job, quiet()); });
  ASSERT_FALSE(msg.empty()) << "the run did not stop";
  std::printf("NaN guard: %s\n", msg.c_str());
  EXPECT_NE(msg.find("step "), std::string::npos) << msg;
  EXPECT_TRUE(msg.find("CLM") != std::string::npos || msg.find("Fusion") != std::string::npos ||
              msg.find("gradient norm") != std::string::npos)
      << msg;
  const auto steps = TrainCheckpointStore(job.checkpoint.dir).complete_steps();
  const auto ck = TrainCheckpointStore(job.checkpoint.dir).load_latest();
  ASSERT_TRUE(ck.has_value());  // loads, checksums verified
  EXPECT_TRUE(ck->warnings.empty());
  // The failing step is the one after the last checkpoint, and the checkpoint named exists.
  EXPECT_NE(msg.find(fmt::format("step {}:", ck->state.step + 1)), std::string::npos) << msg;
  EXPECT_NE(msg.find("the last good checkpoint is " + ck->path), std::string::npos) << msg;
  EXPECT_NE(msg.find("[optim].lr"), std::string::npos) << msg;  // what to look at
  for (const auto& t : ck->model)
    for (float v : t.tensor.span()) ASSERT_TRUE(std::isfinite(v)) << t.name;
}

TEST(Trainer, InjectedNaNNamesStepAndTerm) {
  if (!demo_present()) GTEST_SKIP() << "demo checkpoints not present";
  fx().teach_all();
  const JobConfig job = load_job(fx().job("inject"));
  InjectNaN nan_at(4);
  const std::string msg = error_of([&] { train(job, quiet(), &nan_at); });
  EXPECT_NE(msg.find("step 4: the CLM"), std::string::npos) << msg;
  std::printf("injected: %s\n", msg.c_str());
  EXPECT_NE(msg.find("the last good checkpoint is " + (fs::path(job.checkpoint.dir) / "step-3").string()), std::string::npos)
      << msg;
  EXPECT_NE(msg.find(job.file + ":"), std::string::npos) << msg;  // what to look at: the job's settings
  EXPECT_NE(msg.find("[optim].lr"), std::string::npos) << msg;
  const auto ck = TrainCheckpointStore(job.checkpoint.dir).load_latest();
  ASSERT_TRUE(ck.has_value());
  EXPECT_EQ(ck->state.step, 3);
  EXPECT_EQ(TrainCheckpointStore(job.checkpoint.dir).complete_steps(), (std::vector<int64_t>{1, 2, 3}));
}

TEST(Trainer, NaNAtTheFirstStepPointsAtTheStartingWeights) {
  if (!demo_present()) GTEST_SKIP() << "demo checkpoints not present";
  fx().teach_all();
  const JobConfig job = load_job(fx().job("inject1"));
  InjectNaN nan_at(1);
  const std::string msg = error_of([&] { train(job, quiet(), &nan_at); });
  EXPECT_NE(msg.find("step 1: the CLM"), std::string::npos) << msg;
  EXPECT_NE(msg.find("the weights this run started from"), std::string::npos) << msg;
  // No checkpoint exists: the old message named <dir>/latest, which was never written.
  EXPECT_EQ(msg.find("latest"), std::string::npos) << msg;
  EXPECT_NE(msg.find("wrote no checkpoint"), std::string::npos) << msg;
}

TEST(Trainer, UpdateThatOverflowsTheWeightsStopsBeforeAnythingIsWritten) {
  // lr = 1e308: the first update makes every weight Inf. The old run looked only at the next step's
  // loss: with one step it ended with exit 0, a checkpoint and an export full of Inf.
  if (!demo_present()) GTEST_SKIP() << "demo checkpoints not present";
  fx().teach_all();
  const JobConfig job = load_job(fx().job("lr308", "lr = 1e308\nschedule = \"constant\"\nwarmup_ratio = 0.0\n"));
  for (const int64_t steps : {1, 3}) {
    TrainOptions o = quiet();
    o.max_steps = steps;
    o.export_dir = (fs::path(job.job.output_dir) / "export").string();
    const std::string msg = error_of([&] { train(job, o); });
    if (msg.empty()) {
      std::ifstream m(fs::path(job.job.output_dir) / "metrics.jsonl");
      std::string all((std::istreambuf_iterator<char>(m)), std::istreambuf_iterator<char>());
      FAIL() << "the run did not stop; metrics: " << all;
    }
    std::printf("overflow: %s\n", msg.c_str());
    EXPECT_NE(msg.find("step 1: "), std::string::npos) << msg;
    EXPECT_NE(msg.find("Inf or NaN"), std::string::npos) << msg;
    EXPECT_NE(msg.find(job.file + ":" + std::to_string(job.origins.line("optim", "lr")) + ": [optim].lr"),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find("wrote no checkpoint"), std::string::npos) << msg;
    EXPECT_TRUE(TrainCheckpointStore(job.checkpoint.dir).complete_steps().empty());
    EXPECT_FALSE(fs::exists(fs::path(o.export_dir) / "model.safetensors"));
  }
}

TEST(Trainer, SecondRunOnTheSameOutputDirIsRefusedAtOnce) {
  // Two runs on one output_dir each deleted the other's temporary checkpoint files. Another run
  // holding the lock (here: a flock taken as `train` takes it) makes this one stop before any work.
  if (!demo_present()) GTEST_SKIP() << "demo checkpoints not present";
  fx().teach_all();
  const JobConfig job = load_job(fx().job("locked"));
  fs::create_directories(job.job.output_dir);
  const std::string lock = (fs::path(job.job.output_dir) / "fusellm.lock").string();
  const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  const std::string holder = "host other-node pid 4242 started 2024-01-01T00:00:00Z\n";
  ASSERT_EQ(::write(fd, holder.data(), holder.size()), ssize_t(holder.size()));
  const std::string msg = error_of([&] { train(job, quiet()); });
  EXPECT_NE(msg.find("in use by another fusellm run"), std::string::npos) << msg;
  EXPECT_NE(msg.find("host other-node pid 4242"), std::string::npos) << msg;
  EXPECT_NE(msg.find(job.job.output_dir), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(fs::path(job.job.output_dir) / "metrics.jsonl"));
  ::close(fd);  // released: the run goes ahead and writes its holder line
  TrainOptions o = quiet();
  o.max_steps = 1;
  EXPECT_EQ(error_of([&] { train(job, o); }), "");
  std::ifstream in(lock);
  std::string line;
  std::getline(in, line);
  EXPECT_NE(line.find("pid " + std::to_string(::getpid())), std::string::npos) << line;
}

TEST(Trainer, CudaWithoutAGpuIsRefusedBeforeAnyWork) {
  // [train].device = "cuda" where there is no GPU (or no CUDA in the build): refused by name, not
  // run on the CPU behind the user's back. (test_train_cuda runs it where there is one.)
  if (!demo_present()) GTEST_SKIP() << "demo checkpoints not present";
  fx().teach_all();  // so that nothing but the device can be what is refused
  JobConfig job = load_job(fx().job("student_cuda"));
  job.train.device = Device::kCuda;
  if (device::resolve(Device::kAuto, "") == Device::kCuda) GTEST_SKIP() << "a GPU is present";
  const std::string msg = error_of([&] { train(job, quiet()); });
  EXPECT_NE(msg.find("[train].device = \"cuda\""), std::string::npos) << msg;
  EXPECT_TRUE(msg.find("no CUDA device") != std::string::npos || msg.find("built without CUDA") != std::string::npos)
      << msg;
  EXPECT_FALSE(fs::exists(fs::path(job.job.output_dir) / "metrics.jsonl"));
}

TEST(Trainer, UnwritableCheckpointDirIsFoundAtStart) {
  // Found only at the first save before. The tests run as root, which passes permission bits, so
  // the directories are ones root cannot write either: under a regular file, and in /proc.
  if (!demo_present()) GTEST_SKIP() << "demo checkpoints not present";
  fx().teach_all();
  JobConfig job = load_job(fx().job("unwritable"));
  const fs::path file = fx().dir / "a_regular_file";
  std::ofstream(file) << "x";
  for (const std::string bad : {(file / "checkpoints").string(), std::string("/proc/fusellm-checkpoints"),
                                std::string("/proc")}) {
    job.checkpoint.dir = bad;
    const std::string msg = error_of([&] { train(job, quiet()); });
    EXPECT_NE(msg.find("[checkpoint].dir"), std::string::npos) << msg;
    EXPECT_NE(msg.find(bad), std::string::npos) << msg;
    EXPECT_FALSE(fs::exists(fs::path(job.job.output_dir) / "metrics.jsonl")) << "a step ran before the check: " << msg;
  }
}

TEST(Trainer, AvgCEWithDocumentMask) {
  if (!demo_present()) GTEST_SKIP() << "demo checkpoints not present";
  fx().teach_all();
  std::string p = fx().job("avg", "lr = 1e-3\nschedule = \"linear\"\nwarmup_steps = 0\n", "fusion = \"avgCE\"\nlambda = 0.5\n");
  {
    std::ifstream f(p);
    std::string s((std::istreambuf_iterator<char>(f)), {});
    s.replace(s.find("margin = 16\n"), 12, "margin = 16\ndocument_mask = true\n");
    std::ofstream(p) << s;
  }
  const JobConfig job = load_job(p);
  ASSERT_TRUE(job.corpus.document_mask);
  TrainOptions o = quiet();
  o.max_steps = 3;
  const TrainResult r = train(job, o);
  ASSERT_EQ(r.steps.size(), 3u);
  for (const auto& s : r.steps) EXPECT_TRUE(std::isfinite(s.loss) && s.fusion > 0) << s.step;
  std::ifstream m(r.metrics_path);
  std::string line;
  std::getline(m, line);
  const auto j = nlohmann::json::parse(line);
  ASSERT_TRUE(j.contains("avg_weight")) << line;
  EXPECT_NEAR(j["avg_weight"]["llama"].get<double>() + j["avg_weight"]["neox"].get<double>(), 1.0, 1e-6);
}

// [distill].score = "bpb" ranks the sources by nats per byte: AvgCE's weights differ from the
// per-token run's on the same data (the packer's per-byte score is checked above).
TEST(Trainer, PerByteScoresWeightTheSources) {
  if (!demo_present()) GTEST_SKIP() << "demo checkpoints not present";
  fx().teach_all();
  auto first_weight = [](const std::string& unit) {
    const std::string p = fx().job("score_" + unit, "lr = 1e-3\nschedule = \"linear\"\nwarmup_steps = 0\n",
                                   "fusion = \"avgCE\"\nlambda = 0.5\nscore = \"" + unit + "\"\n");
    TrainOptions o = quiet();
    o.max_steps = 1;
    const TrainResult r = train(load_job(p), o);
    EXPECT_TRUE(std::isfinite(r.steps.at(0).loss));
    std::ifstream m(r.metrics_path);
    std::string line;
    std::getline(m, line);
    return nlohmann::json::parse(line)["avg_weight"]["llama"].get<double>();
  };
  const double per_token = first_weight("ce"), per_byte = first_weight("bpb");
  EXPECT_GT(per_byte, 0.0);
  EXPECT_LT(per_byte, 1.0);
  EXPECT_GT(std::fabs(per_byte - per_token), 1e-4) << per_token << " " << per_byte;
}

// A job file of the fixture with its text edited: each {from, to} replaced once.
std::string edited_job(const std::string& name, std::vector<std::pair<std::string, std::string>> edits,
                       const std::string& distill = "fusion = \"minCE\"\nlambda = 0.9\n") {
  const std::string p = fx().job(name, "lr = 1e-3\nschedule = \"cosine\"\nwarmup_steps = 1\n", distill);
  std::ifstream f(p);
  std::string s((std::istreambuf_iterator<char>(f)), {});
  for (const auto& [from, to] : edits) {
    const size_t at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) s.replace(at, from.size(), to);
  }
  std::ofstream(p) << s;
  return p;
}

// micro_batch sequences concatenated in one forward pass compute what one pass per sequence
// (gradient accumulation) does: the same losses and weights up to summation order.
TEST(Trainer, MicroBatchEqualsOnePassPerSequence) {
  if (!demo_present()) GTEST_SKIP() << "demo checkpoints not present";
  fx().teach_all();
  for (const bool mask : {false, true}) {
    const std::string m = mask ? "margin = 16\ndocument_mask = true\n" : "margin = 16\n";
    const std::string tag = mask ? "_mask" : "";
    const JobConfig one = load_job(edited_job("mb1" + tag, {{"global_batch = 2", "global_batch = 4\nmicro_batch = 1"}, {"margin = 16\n", m}}));
    const JobConfig four = load_job(edited_job("mb4" + tag, {{"global_batch = 2", "global_batch = 4\nmicro_batch = 4"}, {"margin = 16\n", m}}));
    ASSERT_EQ(four.train.micro_batch, 4);
    TrainOptions o = quiet();
    o.max_steps = 3;
    const TrainResult a = train(one, o), b = train(four, o);
    ASSERT_EQ(a.steps.size(), 3u);
    ASSERT_EQ(b.steps.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
      // One GEMM over the concatenation against four: other block sizes, other summation order
      // (~1e-7 per op); three steps of AdamW carry it into the weights (bounded by 1e-4 below).
      EXPECT_NEAR(a.steps[i].loss, b.steps[i].loss, 1e-5 * std::abs(a.steps[i].loss)) << "mask " << mask << " step " << i;
      EXPECT_NEAR(a.steps[i].fusion, b.steps[i].fusion, 1e-5 * std::abs(a.steps[i].fusion)) << i;
      EXPECT_NEAR(a.steps[i].grad_norm, b.steps[i].grad_norm, 1e-4 * a.steps[i].grad_norm) << i;
    }
    const auto wa = weights_of(one.checkpoint.dir), wb = weights_of(four.checkpoint.dir);
    ASSERT_EQ(wa.size(), wb.size());
    for (size_t t = 0; t < wa.size(); ++t) {
      float dmax = 0, rmax = 0;
      for (size_t i = 0; i < wa[t].size(); ++i) {
        dmax = std::max(dmax, std::abs(wa[t][i] - wb[t][i]));
        rmax = std::max(rmax, std::abs(wa[t][i]));
      }
      EXPECT_LE(dmax, 1e-4f * rmax) << "tensor " << t;
    }
  }
}

// [train].recompute_every: the trainer's student runs its layers again in the backward pass
// (decoder.hpp) and ends with the same bits as keeping every activation.
TEST(Trainer, RecomputationEndsWithTheSameWeights) {
  if (!demo_present()) GTEST_SKIP() << "demo checkpoints not present";
  fx().teach_all();
  const JobConfig keep = load_job(edited_job("rc0", {}));
  const JobConfig rerun = load_job(edited_job("rc1", {{"global_batch = 2", "global_batch = 2\nrecompute_every = 1"}}));
  ASSERT_EQ(rerun.train.recompute_every, 1);
  TrainOptions o = quiet();
  o.max_steps = 3;
  const TrainResult a = train(keep, o), b = train(rerun, o);
  ASSERT_EQ(a.steps.size(), 3u);
  ASSERT_EQ(b.steps.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(a.steps[i].loss, b.steps[i].loss) << i;
    EXPECT_EQ(a.steps[i].grad_norm, b.steps[i].grad_norm) << i;
  }
  EXPECT_EQ(weights_of(keep.checkpoint.dir), weights_of(rerun.checkpoint.dir));
}

// [train].dtype = "bf16": the student's passes read its weights rounded to bf16 (the fp32 master
// the optimizer updates stays fp32: Decoder::set_weight_dtype). Ten steps follow the fp32 run's
// losses within the bf16 tolerance (METHOD.md: 1e-2 relative), are not the fp32 run's bits, and
// the master ends with values bf16 cannot hold (updates below bf16's step are kept).
TEST(Trainer, Bf16WeightsFollowTheFp32Run) {
  if (!demo_present()) GTEST_SKIP() << "demo checkpoints not present";
  fx().teach_all();
  const JobConfig f32 = load_job(edited_job("dt32", {{"max_steps = 6", "max_steps = 10"}}));
  const JobConfig bf16 =
      load_job(edited_job("dt16", {{"max_steps = 6", "max_steps = 10\ndtype = \"bf16\""}}));
  ASSERT_EQ(bf16.train.dtype, DType::BF16);
  TrainOptions o = quiet();
  o.max_steps = 10;
  const TrainResult a = train(f32, o), b = train(bf16, o);
  ASSERT_EQ(a.steps.size(), 10u);
  ASSERT_EQ(b.steps.size(), 10u);
  bool differ = false;
  double worst = 0;
  for (size_t i = 0; i < 10; ++i) {
    worst = std::max(worst, std::abs(b.steps[i].loss - a.steps[i].loss) / std::abs(a.steps[i].loss));
    EXPECT_NEAR(b.steps[i].loss, a.steps[i].loss, 1e-2 * std::abs(a.steps[i].loss)) << i;
    EXPECT_NEAR(b.steps[i].fusion, a.steps[i].fusion, 1e-2 * std::abs(a.steps[i].fusion)) << i;
    differ = differ || b.steps[i].loss != a.steps[i].loss;
  }
  EXPECT_TRUE(differ) << "the bf16 run computed the fp32 run's bits";
  std::printf("  bf16 weights vs fp32, 10 steps: worst relative loss difference %.2e\n", worst);
  int64_t not_bf16 = 0, n = 0;
  for (const auto& t : weights_of(bf16.checkpoint.dir))
    for (float w : t) not_bf16 += bf16_to_f32(f32_to_bf16(w)) != w, ++n;
  EXPECT_GT(not_bf16, n / 2);
}

// A checkpoint's sampler position means something only for the data it was written with: resuming
// on other data (here: fewer segments) is refused, naming the checkpoint, and the data is kept.
TEST(Trainer, ResumeOnOtherDataIsRefused) {
  if (!demo_present()) GTEST_SKIP() << "demo checkpoints not present";
  fx().teach_all();
  const JobConfig job = load_job(edited_job("otherdata", {}));
  TrainOptions o = quiet();
  o.stop_after = 2;
  const TrainResult first = train(job, o);
  ASSERT_EQ(first.end_step, 2);
  TrainOptions fewer = quiet();
  fewer.limit = kSegments - 3;
  const std::string msg = error_of([&] { train(job, fewer); });
  EXPECT_NE(msg.find("step-2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("other training data"), std::string::npos) << msg;
  EXPECT_EQ(TrainCheckpointStore(job.checkpoint.dir).complete_steps(), (std::vector<int64_t>{1, 2}));
  // The same data resumes.
  const TrainResult again = train(job, quiet());
  EXPECT_EQ(again.start_step, 2);
}

// The caches are read per step, not whole: one step of two sequences reads only their segments.
TEST(Trainer, CachedSegmentsAreStreamed) {
  if (!demo_present()) GTEST_SKIP() << "demo checkpoints not present";
  fx().teach_all();
  const JobConfig job = load_job(edited_job("stream", {}));
  TrainOptions o = quiet();
  o.max_steps = 1;
  const TrainResult r = train(job, o);
  ASSERT_EQ(r.segments, kSegments);
  EXPECT_GT(r.segments_read, 0);
  EXPECT_LT(r.segments_read, r.segments);
}

namespace {
// A rows source fed by a Teacher in this process, segment by segment (what the MPI job's transport
// does across ranks).
class TeacherInProcess final : public RowsSource {
 public:
  TeacherInProcess(const JobConfig& job, const std::string& source, std::shared_ptr<const JobTokenizers> toks)
      : teacher_(job, source, toks, vocab_map_path_for(job, source)),
        seg_(toks->segmenter(job)),
        stream_(CorpusReader::from_config(job.corpus), seg_) {}
  TeacherRows rows(int64_t segment) override {
    Segment g;
    while (int64_t(done_.size()) <= segment) {
      if (!stream_.next(g)) fail("no segment {}", segment);
      done_.push_back(teacher_.rows(std::span<const Segment>(&g, 1)).front());
    }
    return done_[size_t(segment)];
  }
  std::string describe() const override { return "teacher " + teacher_.source(); }

 private:
  Teacher teacher_;
  Segmenter seg_;
  SegmentStream stream_;
  std::vector<TeacherRows> done_;
};
}  // namespace

// The trainer's data path over Teachers run in process gives the packed sequences it gives over
// the caches, to the bit: online equals offline by construction (one rows type, one RowsSource).
TEST(Trainer, SequencesFromTeachersEqualSequencesFromCaches) {
  if (!demo_present()) GTEST_SKIP() << "demo checkpoints not present";
  fx().teach_all();
  const JobConfig job = load_job(fx().job("rows"));
  const int64_t V = HFConfig::load(kDemo + "/llama").get_int("vocab_size", 0);
  SegmentSource offline = SegmentSource::from_caches(job, kSegments, V);
  const auto toks = std::make_shared<const JobTokenizers>(JobTokenizers::load(job));
  std::vector<std::unique_ptr<RowsSource>> teachers;
  for (const auto& src : job.sources) teachers.push_back(std::make_unique<TeacherInProcess>(job, src.name, toks));
  SegmentSource online = SegmentSource::from_rows(offline.lengths(), offline.source_names(), std::move(teachers), V);
  const Packer packer(offline.lengths(), job.corpus.max_len);
  ASSERT_GT(packer.sequences(), 1);
  for (int64_t q = 0; q < packer.sequences(); ++q) {
    const PackedSequence a = packer.build(q, [&](int64_t i) -> const PackInput& { return offline.get(i); }, false);
    const PackedSequence b = packer.build(q, [&](int64_t i) -> const PackInput& { return online.get(i); }, false);
    EXPECT_EQ(a.ids, b.ids);
    EXPECT_EQ(a.gold, b.gold);
    EXPECT_EQ(a.ce, b.ce);
    ASSERT_EQ(a.rows.size(), 2u);
    ASSERT_EQ(b.rows.size(), 2u);
    for (size_t j = 0; j < 2; ++j)
      for (int64_t t = 0; t < a.tokens(); ++t)
        for (int64_t c = 0; c < a.rows[j].k(); ++c) {
          EXPECT_EQ(a.rows[j].ids(t, c), b.rows[j].ids(t, c)) << "sequence " << q << " source " << j;
          EXPECT_EQ(a.rows[j].probs(t, c), b.rows[j].probs(t, c)) << "sequence " << q << " source " << j;
        }
  }
}

TEST(Trainer, ClmOnlyNeedsNoCaches) {
  if (!demo_present()) GTEST_SKIP() << "demo checkpoints not present";
  std::string p = fx().job("clm", "lr = 1e-3\nschedule = \"constant\"\nwarmup_steps = 0\n", "fusion = \"none\"\nlambda = 1.0\n");
  // Point the cache at a directory that does not exist: nothing reads it.
  {
    std::ifstream f(p);
    std::string s((std::istreambuf_iterator<char>(f)), {});
    s = s.substr(0, s.find("[cache]"));
    std::ofstream(p) << s;
  }
  const JobConfig job = load_job(p);
  TrainOptions o = quiet();
  o.max_steps = 2;
  const TrainResult r = train(job, o);
  ASSERT_EQ(r.steps.size(), 2u);
  for (const auto& s : r.steps) {
    EXPECT_TRUE(std::isfinite(s.clm));
    EXPECT_EQ(s.fusion, 0.0);
    EXPECT_EQ(s.loss, s.clm);
  }
}
