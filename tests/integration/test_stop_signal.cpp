// Stop on a signal and requeue (issue 12, item 2; core/stop_signal.hpp): a run that receives
// SIGTERM (what Slurm sends every task on preemption) or SIGUSR1 (what the batch scripts forward
// before the time limit; mpirun forwards it to every rank) at a random step (seeded, printed)
// finishes the step in progress, writes a checkpoint of it, exits 75, and the same command then
// resumes from it and ends with the weights of an uninterrupted run, bit for bit. One process,
// and the MPI job with two students and a teacher in two pipeline stages (teachers interrupted
// mid-serve, rows and hidden states in flight drained: dist/job_end.hpp), resumed with another
// topology (one student: the reshard of issue 11; on the tiny job every topology gives the same
// bits, test_online_job.cpp). One TEST, so the uninterrupted run is made once.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <regex>

#include "run_mpi.hpp"

namespace fusellm {
namespace {

namespace fs = std::filesystem;
using testing::CmdResult;

const std::string kRepo = FUSELLM_SOURCE_DIR;
const std::string kJob = kRepo + "/jobs/tiny.toml";
constexpr int kSteps = 20;

std::string dir_of(const std::string& name) { return testing::run_dir("fusellm_stop_signal", name); }

std::string train_args(const std::string& name, const std::string& extra = "") {
  return fmt::format("train --job {} --set job.output_dir={} --max-steps {} --limit 160 -q {}", kJob, dir_of(name),
                     kSteps, extra);
}

std::string mpirun(int ranks) {
  return fmt::format("env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 mpirun "
                     "--oversubscribe -np {} -x OMP_NUM_THREADS -x FUSELLM_TEST_STUDENT_DELAY_MS ",
                     ranks);
}

// Starts `command` in the background, waits until its metrics.jsonl has step `step`, runs `signal`
// (a shell command; $pid is the command's process), and waits for it (a guard kills it after
// 240 s; its output goes nowhere, or the pipe stays open until it ends). The result's code is the command's exit status; its output, the command's.
CmdResult signal_at_step(const std::string& command, const std::string& name, int step, const std::string& signal) {
  const std::string d = dir_of(name);
  const std::string script = fmt::format(
      "{} > {}.log 2>&1 & pid=$!\n"
      "( sleep 240; kill -9 $pid ) >/dev/null 2>&1 & guard=$!\n"
      "until grep -q '\"step\":{},' {}/metrics.jsonl 2>/dev/null; do kill -0 $pid 2>/dev/null || break; sleep 0.05; done\n"
      "{}\n"
      "wait $pid; rc=$?\n"
      "pkill -P $guard; kill $guard 2>/dev/null\n"
      "cat {}.log\n"
      "exit $rc\n",
      command, d, step, d, signal, d);
  std::ofstream(d + ".sh") << script;
  return testing::run_shell("bash " + d + ".sh 2>&1");
}

// The step the run says it stopped after ("stopped: on SIGTERM after step 7, ..."), -1 if none.
int stopped_after(const std::string& out, const std::string& signal) {
  std::smatch m;
  if (!std::regex_search(out, m, std::regex("stopped: on " + signal + " after step ([0-9]+), with a checkpoint")))
    return -1;
  return std::stoi(m[1]);
}

std::string file_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

// The stopped run: exit 75, stopped after a step at or after the one the signal was sent at, and
// `latest` names the checkpoint of that very step.
void expect_stopped(const CmdResult& r, const std::string& name, const std::string& signal, int sent_at) {
  EXPECT_EQ(r.code, 75) << r.out;
  const int at = stopped_after(r.out, signal);
  EXPECT_GE(at, sent_at) << r.out;
  EXPECT_LT(at, kSteps) << r.out;
  EXPECT_EQ(file_text(dir_of(name) + "/checkpoints/latest"), fmt::format("step-{}\n", at));
  EXPECT_FALSE(fs::exists(dir_of(name) + "/export/model.safetensors")) << "a stopped run exported";
}

// The resumed run: from the stopped step, to the end, with the uninterrupted run's weights.
void expect_resumed_same(const CmdResult& r, const std::string& name, int stopped_at) {
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find(fmt::format("resumed from {}/checkpoints/step-{} (step {},", dir_of(name), stopped_at, stopped_at)),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find(fmt::format("steps: {} -> {} of {}", stopped_at, kSteps, kSteps)), std::string::npos) << r.out;
  const std::string mine = file_text(dir_of(name) + "/export/model.safetensors");
  EXPECT_FALSE(mine.empty());
  EXPECT_TRUE(mine == file_text(dir_of("uninterrupted") + "/export/model.safetensors"))
      << name << ": the resumed run's weights differ from the uninterrupted run's";
}

TEST(StopSignal, CheckpointsExitsRequeueAndResumesToTheUninterruptedWeights) {
  if (!fs::exists(kRepo + "/examples/demo/neox/model.safetensors")) GTEST_FAIL() << "examples/demo missing";
  const unsigned seed = std::random_device{}();
  std::mt19937 rng(seed);
  const int one_at = std::uniform_int_distribution<int>(2, 12)(rng), mpi_at = std::uniform_int_distribution<int>(2, 12)(rng);
  std::printf("seed %u: SIGTERM to one process at step %d, SIGUSR1 to mpirun at step %d\n", seed, one_at, mpi_at);

  const CmdResult ref = testing::run_fusellm(train_args("uninterrupted"), 240);
  ASSERT_EQ(ref.code, 0) << ref.out;

  // One process, SIGTERM (Slurm's preemption).
  const std::string one = std::string("env OMP_NUM_THREADS=1 ") + FUSELLM_BINARY + " " + train_args("one");
  CmdResult r = signal_at_step(one, "one", one_at, "kill -TERM $pid");
  expect_stopped(r, "one", "SIGTERM", one_at);
  const int one_stop = stopped_after(r.out, "SIGTERM");
  r = testing::run_shell(one + " 2>&1");
  expect_resumed_same(r, "one", one_stop);

  // The MPI job: 2 students, neox in 2 stages (-np 5); SIGUSR1 to mpirun, which forwards it to
  // every rank, as the batch script does; the students are slowed so the teachers run ahead.
  const std::string topo = "--set topology.student_ranks=2 --set source[1].stages=2";
  const std::string job5 =
      "FUSELLM_TEST_STUDENT_DELAY_MS=100 " + mpirun(5) + FUSELLM_BINARY + " " + train_args("mpi", topo);
  r = signal_at_step(job5, "mpi", mpi_at, "kill -USR1 $pid");
  expect_stopped(r, "mpi", "SIGUSR1", mpi_at);
  const int mpi_stop = stopped_after(r.out, "SIGUSR1");
  EXPECT_NE(r.out.find("the students stopped after step"), std::string::npos) << r.out;
  // Resumed by another topology: one student, one stage per source (-np 3).
  r = testing::run_shell("FUSELLM_TEST_STUDENT_DELAY_MS=0 timeout -k 5 240 " + mpirun(3) + FUSELLM_BINARY + " " +
                         train_args("mpi") + " 2>&1");
  expect_resumed_same(r, "mpi", mpi_stop);
}

}  // namespace
}  // namespace fusellm
