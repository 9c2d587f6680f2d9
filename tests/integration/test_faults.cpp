// Faults of the MPI job (issue 12, "What it must show"), on the shipped tiny job under mpirun:
//
//   kill -9 a teacher rank, and in another run a student rank, at a random step (a seeded
//   std::mt19937 draw; the seed and the step are printed, FUSELLM_FAULT_SEED=<n> replays one):
//   the job exits non-zero within 60 s with every rank gone, and the same command run again
//   resumes from the newest checkpoint and ends with the weights of an uninterrupted run, bit for
//   bit (the tiny job is reproducible, and resuming restores the whole state);
//
//   kill -STOP a teacher rank: the process is alive, so mpirun sees nothing wrong; the heartbeat
//   (src/fusellm/dist/mpi/heartbeat.hpp) with [comm].dead_after_seconds = 6 ends the job, and its
//   error line names the silent rank; with the heartbeat's limit far away, a wait for the stopped
//   rank passes [comm].timeout_seconds and ends it instead.
//
// A killed rank is noticed first by mpirun, which watches its children (the test prints which
// mechanism ended each run). The runs are slowed (FUSELLM_TEST_STUDENT_DELAY_MS) so that a step
// is long enough to aim at; checkpoints every 2 steps give the restart something to resume.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "export_weights.hpp"
#include "rank_processes.hpp"
#include "run_mpi.hpp"

namespace fusellm {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using testing::BackgroundRun;

const std::string kRepo = FUSELLM_SOURCE_DIR;
const std::string kJob = kRepo + "/jobs/tiny.toml";
constexpr int kSteps = 20;  // tiny.toml's
constexpr double kGoneWithin = 60;  // seconds: issue 12's bound from the fault to every rank gone
const std::string kEnv = "FUSELLM_TEST_STUDENT_DELAY_MS=100";

bool demo_present() { return fs::exists(kRepo + "/examples/demo/neox/model.safetensors"); }

std::string dir_of(const std::string& name) { return testing::run_dir("fusellm_faults", name); }

// The mpirun command of a run named `name`: its own output directory (which also finds its
// processes), checkpoints every 2 steps.
std::string command(const std::string& name, int ranks, const std::string& extra = "") {
  const std::string args = fmt::format("train --job {} --set job.output_dir={} --set checkpoint.interval=2 -q {}", kJob,
                                       dir_of(name), extra);
  return testing::mpi_command({{ranks, args}}, 180, kEnv);
}

uint32_t fault_seed() {
  if (const char* s = std::getenv("FUSELLM_FAULT_SEED")) return uint32_t(std::strtoul(s, nullptr, 10));
  return std::random_device{}();
}

// Steps student 0 has logged (tiny.toml logs every step to metrics.jsonl).
int steps_logged(const std::string& name) {
  std::ifstream f(dir_of(name) + "/metrics.jsonl");
  int n = 0;
  for (std::string line; std::getline(f, line);) n += line.find("\"step\"") != std::string::npos;
  return n;
}

std::map<std::string, Tensor> weights(const std::string& name) { return testing::export_weights(dir_of(name) + "/export"); }

// Tensors whose bits differ (empty: the same weights, bit for bit).
std::vector<std::string> differing(const std::map<std::string, Tensor>& a, const std::map<std::string, Tensor>& b) {
  std::vector<std::string> out;
  for (const auto& [n, tb] : b) {
    const auto it = a.find(n);
    if (it == a.end() || it->second.size() != tb.size() ||
        std::memcmp(it->second.data(), tb.data(), size_t(tb.size()) * sizeof(float)) != 0)
      out.push_back(n);
  }
  if (a.size() != b.size()) out.push_back("(tensor count)");
  return out;
}

// Which mechanism ended a run, read from its output.
std::string ended_by(const std::string& out) {
  if (out.find("sent no heartbeat") != std::string::npos) return "the heartbeat (a rank named the silent one)";
  if (out.find("mpirun noticed that process rank") != std::string::npos) return "mpirun (it saw its child die)";
  if (out.find("TransportTimeout") != std::string::npos || out.find("not done after") != std::string::npos)
    return "a transport timeout";
  return "unknown (see the output)";
}

// What a fault did: the run's exit code and how long after the fault the run and every one of
// its processes were gone.
struct Aftermath {
  std::optional<int> code;
  double exit_s = 0, gone_s = 0;
  std::string out;
};

// Runs `name` until student 0 has logged `step` steps, sends `sig` to world rank `rank`, and
// times the end.
Aftermath hurt(const std::string& name, int ranks, int rank, int step, int sig, const std::string& extra = "") {
  BackgroundRun run(command(name, ranks, extra), dir_of(name) + ".log", dir_of(name));
  const auto start = Clock::now();
  while (steps_logged(name) < step && !run.code() && Clock::now() - start < std::chrono::seconds(150))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  Aftermath a;
  const auto pid = testing::rank_process(dir_of(name), rank);
  if (run.code() || !pid) {
    a.out = "the run ended, or rank " + std::to_string(rank) + " was not found, before step " + std::to_string(step) +
            ":\n" + run.output();
    return a;
  }
  ::kill(*pid, sig);
  const auto hurt_at = Clock::now();
  a.code = run.wait(std::chrono::seconds(120));
  a.exit_s = std::chrono::duration<double>(Clock::now() - hurt_at).count();
  while (!testing::processes_with(dir_of(name)).empty() && Clock::now() - hurt_at < std::chrono::seconds(120))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  a.gone_s = std::chrono::duration<double>(Clock::now() - hurt_at).count();
  a.out = run.output();
  std::printf("%s: signal %d to rank %d (pid %d) at step %d: mpirun exited %d after %.1f s, every process gone after "
              "%.1f s; ended by %s\n",
              name.c_str(), sig, rank, int(*pid), step, a.code.value_or(-999), a.exit_s, a.gone_s,
              ended_by(a.out).c_str());
  return a;
}

void expect_ended_within_bound(const Aftermath& a) {
  ASSERT_TRUE(a.code.has_value()) << a.out;
  EXPECT_NE(*a.code, 0) << a.out;
  EXPECT_LE(a.exit_s, kGoneWithin) << a.out;
  EXPECT_LE(a.gone_s, kGoneWithin) << a.out;
}

// kill -9 of world rank `rank` at a random step, then the same command again: it resumes and
// ends with `reference`'s weights.
void kill_and_restart(const std::string& name, int ranks, int rank, std::mt19937& rng,
                      const std::map<std::string, Tensor>& reference, const std::string& extra = "") {
  const int step = std::uniform_int_distribution<int>(3, kSteps - 6)(rng);
  const Aftermath a = hurt(name, ranks, rank, step, SIGKILL, extra);
  expect_ended_within_bound(a);
  const auto again = testing::run_shell(command(name, ranks, extra));
  ASSERT_EQ(again.code, 0) << again.out;
  EXPECT_NE(again.out.find("train: resumed from"), std::string::npos) << again.out;
  EXPECT_NE(again.out.find(fmt::format("-> {} of {}", kSteps, kSteps)), std::string::npos) << again.out;
  const auto diff = differing(weights(name), reference);
  EXPECT_TRUE(diff.empty()) << name << ": " << diff.size() << " tensors differ from the uninterrupted run's, first "
                            << diff.front();
}

// One test: the uninterrupted run is made once and compared with each restarted one.
TEST(Faults, KilledTeacherOrStudentEndsTheJobAndTheRestartReachesTheSameWeights) {
  ASSERT_TRUE(demo_present()) << "the demo checkpoints (examples/demo) are missing";
  const uint32_t seed = fault_seed();
  std::printf("fault seed %u (FUSELLM_FAULT_SEED=%u replays it)\n", seed, seed);
  std::mt19937 rng(seed);
  const auto whole = testing::run_shell(command("uninterrupted", 3));
  ASSERT_EQ(whole.code, 0) << whole.out;
  const auto reference = weights("uninterrupted");
  const int teacher = std::uniform_int_distribution<int>(1, 2)(rng);  // llama's or neox's
  kill_and_restart("teacher_killed", 3, teacher, rng, reference);
  kill_and_restart("student_killed", 3, 0, rng, reference);
  // Two students (-np 4; tiny.toml's two micro-batches per step give one process's weights, bit
  // for bit: test_online_job.cpp): the second student killed.
  kill_and_restart("second_student_killed", 4, 1, rng, reference, "--set topology.student_ranks=2");
  // The same under ZeRO-2, whose students wait on each other point to point in every backward
  // pass (dist/sharded_gradients.hpp): the restart resumes it to the same bits too.
  kill_and_restart("second_student_killed_zero2", 4, 1, rng, reference,
                   "--set topology.student_ranks=2 --set topology.zero_stage=2");
}

// kill -STOP of a teacher rank (drawn, as the step) of a run with `extra` settings: alive to
// mpirun, silent to its peers. Returns what followed and the rank stopped.
std::pair<Aftermath, int> stop_a_teacher(const std::string& name, const std::string& extra) {
  const uint32_t seed = fault_seed();
  std::printf("fault seed %u (FUSELLM_FAULT_SEED=%u replays it)\n", seed, seed);
  std::mt19937 rng(seed);
  const int step = std::uniform_int_distribution<int>(2, kSteps - 8)(rng);
  const int teacher = std::uniform_int_distribution<int>(1, 2)(rng);
  return {hurt(name, 3, teacher, step, SIGSTOP, extra), teacher};
}

TEST(Faults, StoppedTeacherIsNamedByTheHeartbeatAndTheJobEnds) {
  ASSERT_TRUE(demo_present()) << "the demo checkpoints (examples/demo) are missing";
  const auto [a, teacher] =
      stop_a_teacher("teacher_stopped", "--set comm.heartbeat_seconds=1 --set comm.dead_after_seconds=6");
  expect_ended_within_bound(a);
  // Rank 0 watches every rank; the stopped one's last beat came at most 1 s before the stop.
  const std::string source = teacher == 1 ? "llama" : "neox";
  EXPECT_NE(a.out.find("fusellm: error: rank 0 (student 0, host "), std::string::npos) << a.out;
  EXPECT_NE(a.out.find(fmt::format("rank {} (teacher of source '{}' replica 0 stage 0, host ", teacher, source)),
            std::string::npos)
      << a.out;
  EXPECT_NE(a.out.find("sent no heartbeat for "), std::string::npos) << a.out;
  EXPECT_NE(a.out.find("it died or stopped answering; ending the job"), std::string::npos) << a.out;
  EXPECT_GE(a.exit_s, 4.0) << "ended before [comm].dead_after_seconds could pass\n" << a.out;
}

// The same stop with the heartbeat out of the way (dead_after_seconds far away): a rank's wait
// for the stopped one passes [comm].timeout_seconds and ends the job, naming itself and the peer.
TEST(Faults, StoppedTeacherEndsTheJobAtTheTransportTimeout) {
  ASSERT_TRUE(demo_present()) << "the demo checkpoints (examples/demo) are missing";
  const auto [a, teacher] =
      stop_a_teacher("teacher_stopped_timeout", "--set comm.timeout_seconds=8 --set comm.dead_after_seconds=300");
  expect_ended_within_bound(a);
  EXPECT_NE(a.out.find("fusellm: error: rank "), std::string::npos) << a.out;
  EXPECT_NE(a.out.find("not done after 8.0 s (the transport's timeout)"), std::string::npos) << a.out;
  EXPECT_EQ(a.out.find("sent no heartbeat"), std::string::npos) << a.out;
  EXPECT_GE(a.exit_s, 7.0) << "ended before [comm].timeout_seconds could pass\n" << a.out;
}

}  // namespace
}  // namespace fusellm
