// A checkpoint written before the checkpoint store was reshaped (tests/fixtures/ckpt_v1, by the
// code of commit 8ba198a) resumes with this code and continues bit for bit: resuming its step-3
// checkpoint for 3 more steps gives exactly the weights and AdamW moments of its step-6 one, which
// the old code wrote by training on in the same process. So every part of the state that a resume
// needs (weights, moments and step count, sampler position, RNG, schedule) is read back as written.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "fusellm/job/job_config.hpp"
#include "fusellm/train/train_checkpoint.hpp"
#include "fusellm/train/trainer.hpp"

namespace fs = std::filesystem;
using namespace fusellm;

namespace {
const fs::path kFixture = fs::path(FUSELLM_SOURCE_DIR) / "tests" / "fixtures" / "ckpt_v1";

bool same_bits(const std::vector<NamedTensor>& a, const std::vector<NamedTensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].name != b[i].name || a[i].tensor.shape() != b[i].tensor.shape() ||
        std::memcmp(a[i].tensor.data(), b[i].tensor.data(), a[i].tensor.size() * sizeof(float)) != 0)
      return false;
  return true;
}
}  // namespace

TEST(OldCheckpoint, ResumesBitForBit) {
  const fs::path dir = fs::temp_directory_path() / ("fusellm_old_ckpt_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "checkpoint");
  fs::copy(kFixture / "checkpoint" / "step-3", dir / "checkpoint" / "step-3");
  std::ofstream(dir / "checkpoint" / "latest") << "step-3\n";
  // The fixture's job, run from the copy: only where its outputs go differs.
  JobConfig job = load_job((kFixture / "job.toml").string());
  job.job.output_dir = (dir / "run").string();
  job.checkpoint.dir = (dir / "checkpoint").string();

  TrainOptions opt;
  opt.progress = false;
  const TrainResult r = train(job, opt);
  EXPECT_EQ(r.start_step, 3);
  EXPECT_EQ(r.end_step, 6);

  const TrainCheckpoint resumed = TrainCheckpointStore::load((dir / "checkpoint" / "step-6").string());
  const TrainCheckpoint old = TrainCheckpointStore::load((kFixture / "checkpoint" / "step-6").string());
  EXPECT_TRUE(same_bits(resumed.model, old.model));
  EXPECT_TRUE(same_bits(resumed.optim_m, old.optim_m));
  EXPECT_TRUE(same_bits(resumed.optim_v, old.optim_v));
  TrainState a = resumed.state, b = old.state;
  a.job_toml = b.job_toml = "";  // the job's paths are this run's
  EXPECT_EQ(a, b);
  fs::remove_all(dir);
}
