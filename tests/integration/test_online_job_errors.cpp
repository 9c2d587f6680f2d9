// The MPI job's refusals and its bounded memory (issue 11, "Bad input" and "Bounded memory"), on
// the shipped tiny job (jobs/tiny.toml: two sources of one rank each and one student, so 3 ranks).
//
// Every refusal is a whole run of the binary, under mpirun where the mistake is the job's layout
// or the ranks' disagreement, each with a wall-clock limit far below ctest's (run_mpi.hpp). A
// refusal must exit non-zero (mpirun's exit code: a rank that fails calls MPI_Abort, which ends
// every rank, cli/cmd_train.cpp), name the setting, the rank or the file, and come fast: well
// before its limit, so a rank that waited for a peer that had already failed would fail the
// test instead of being killed at the limit. Which ranks print before MPI_Abort ends the others
// is a race, so a test asks for the message once, not once per rank.
#include <gtest/gtest.h>

#include <filesystem>
#include <initializer_list>
#include <regex>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "run_mpi.hpp"

namespace fusellm {
namespace {

namespace fs = std::filesystem;
using testing::CmdResult;
using testing::run_fusellm;
using testing::run_mpi;
using testing::run_mpmd;

const std::string kRepo = FUSELLM_SOURCE_DIR;
const std::string kJob = kRepo + "/jobs/tiny.toml";
constexpr int kLimit = 16;        // segments: the runs only need to start (12 packed sequences)
constexpr int kTimeout = 90;      // seconds, each run's limit (timeout(1) under mpirun)
constexpr double kFast = 30;      // seconds: a refusal takes about 1 s here; a hang takes kTimeout

bool demo_present() { return fs::exists(kRepo + "/examples/demo/neox/model.safetensors"); }

std::string dir_of(const std::string& name) { return testing::run_dir("fusellm_mpi_errors", name); }

// A run of the tiny job named `name` (its own output and checkpoint directories).
std::string args(const std::string& name, int steps, const std::string& extra = "") {
  return fmt::format("train --job {} --set job.output_dir={} --max-steps {} --limit {} -q --no-export {}", kJob,
                     dir_of(name), steps, kLimit, extra);
}

// Non-zero exit, fast, and every one of `needles` in the output.
void expect_refused(const CmdResult& r, std::initializer_list<std::string> needles) {
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.code, 124) << "killed at the " << kTimeout << " s limit (a rank hung):\n" << r.out;
  EXPECT_LT(r.seconds, kFast) << "the refusal took " << r.seconds << " s:\n" << r.out;
  for (const auto& n : needles) EXPECT_NE(r.out.find(n), std::string::npos) << "no '" << n << "' in:\n" << r.out;
}

class OnlineJobErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!demo_present()) GTEST_SKIP() << "demo checkpoints not present";
  }
};

// Topology::of on every rank, before any communication: it says how many ranks the job needs and
// which mpirun -np runs it.
TEST_F(OnlineJobErrors, AWorldSizeThatDoesNotFitTheTopologyIsRefused) {
  for (const int np : {2, 4}) {
    SCOPED_TRACE(np);
    const CmdResult r = run_mpi(np, args(fmt::format("world{}", np), 2), kTimeout);
    expect_refused(r, {"fusellm: error: rank ", "jobs/tiny.toml", "needs sum(teacher_ranks) + student_ranks = 3 MPI ranks",
                       fmt::format("but was started on {}", np), "`mpirun -np 3 fusellm"});
  }
}

// A source's teacher group is exactly replicas x stages ranks (a replica is one rank per stage):
// refused when the job is read, on every rank, before MPI starts, naming the fields.
TEST_F(OnlineJobErrors, ASourceWhoseReplicasDoNotDivideItsTeacherRanksIsRefused) {
  const CmdResult r =
      run_mpi(5, args("replicas", 2, "--set source[1].replicas=2 --set topology.teacher_ranks=[1,3]"), kTimeout);
  expect_refused(r, {"--set topology.teacher_ranks=[1,3]", "[topology].teacher_ranks[1], source[1].replicas",
                     "source \"neox\" has 2 replicas", "needs replicas x stages = 2 ranks, found 3"});
  const CmdResult s =
      run_mpi(5, args("stages", 2, "--set source[1].stages=2 --set topology.teacher_ranks=[1,3]"), kTimeout);
  expect_refused(s, {"source[1].stages", "1 replicas of 2 stages", "needs replicas x stages = 2 ranks, found 3"});
}

// One rank (the neox teacher) reads another tokenizer for neox (the Llama's): the job file and
// the command line are otherwise the same. dist/rank_agreement refuses on every rank, naming
// rank 2 and what differs (its tokenizers, and so the segments they bound).
TEST_F(OnlineJobErrors, RanksThatSeeDifferentTokenizersAreRefused) {
  const std::string a = args("tokenizer", 2);
  const CmdResult r =
      run_mpmd({{2, a}, {1, a + " --set source[1].tokenizer=" + kRepo + "/examples/demo/llama"}}, kTimeout);
  expect_refused(r, {"do not see the same files", "every rank refuses"});
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(rank 2 \(host [^)]*\) has tokenizer fingerprint [0-9a-f]{16}, )"
                                                  R"(rank 0 \(host [^)]*\) has [0-9a-f]{16})")))
      << r.out;
  EXPECT_FALSE(std::regex_search(r.out, std::regex(R"(rank 1 \(host [^)]*\) has)"))) << r.out;  // it agrees
}

// check_same_job: a checkpoint written with [distill].top_k = 10 (alignment "mined") resumed
// with another top_k, alignment or teacher dtype is another job's, refused naming the field and the
// checkpoint.
// Both ways: a single-process checkpoint resumed under mpirun, a sharded (ZeRO-1) one in one
// process.
TEST_F(OnlineJobErrors, ACheckpointOfAnotherJobIsRefused) {
  const std::string ck = "--set checkpoint.interval=1 --set checkpoint.dir=";
  const std::string one = dir_of("ck_one"), np3 = dir_of("ck_np3");
  const CmdResult w1 = run_fusellm(args("ck_one", 2, ck + one), kTimeout);
  ASSERT_EQ(w1.code, 0) << w1.out;
  const CmdResult w3 = run_mpi(3, args("ck_np3", 2, ck + np3), kTimeout);
  ASSERT_EQ(w3.code, 0) << w3.out;

  const CmdResult a = run_mpi(3, args("ck_one", 3, ck + one + " --set distill.alignment=em"), kTimeout);
  expect_refused(a, {"fusellm: error: rank 0 (student 0, host ", one + "/step-2: written by another job",
                     "[distill].alignment is \"em\" now, \"mined\" in the checkpoint's job"});
  const CmdResult b = run_fusellm(args("ck_np3", 3, ck + np3 + " --set distill.top_k=5"), kTimeout);
  expect_refused(b, {np3 + "/step-2: written by another job", "[distill].top_k is 5 now, 10 in the checkpoint's job"});
  const CmdResult c = run_fusellm(args("ck_one", 3, ck + one + " --set source[1].dtype=bf16"), kTimeout);
  expect_refused(c, {one + "/step-2: written by another job", "[[source]] 'neox' dtype is bf16 now, fp32 in the "
                                                                 "checkpoint's job"});
}

// The test hook flips a byte of the second rows message the neox teacher (rank 2) encodes
// (micro-batch 1): the student checks the payload's checksum and refuses naming the sender rank,
// the source and the micro-batch; MPI_Abort ends the teachers, which wait for credits.
TEST_F(OnlineJobErrors, ACorruptedMessageIsRefusedByTheStudent) {
  const CmdResult r = run_mpi(3, args("corrupt", 3), kTimeout, "FUSELLM_TEST_CORRUPT_MESSAGE=2@2");
  expect_refused(r, {"flipped byte", "fusellm: error: rank 0 (student 0, host ", "): rows message from rank 2 (host",
                     "source 'neox'", "micro-batch 1", "checksum"});
}

// What a teacher reports at the end of its run (train/run_job.cpp).
struct TeacherReport {
  int rank = -1;
  int64_t served = 0, max_in_flight = 0;
  double mib_first = 0, mib_end = 0;
};

std::vector<TeacherReport> teacher_reports(const std::string& out) {
  static const std::regex line(
      R"(rank (\d+): teacher of source "\w+" replica \d+ stage \d+: served (\d+) micro-batches, at most (\d+) in )"
      R"(flight to one student \(\[topology\]\.prefetch = \d+\); resident memory ([\d.]+) MiB after the first, )"
      R"(([\d.]+) MiB at the end)");
  std::vector<TeacherReport> r;
  for (std::sregex_iterator it(out.begin(), out.end(), line), end; it != end; ++it)
    r.push_back({std::stoi((*it)[1]), std::stoll((*it)[2]), std::stoll((*it)[3]), std::stod((*it)[4]),
                 std::stod((*it)[5])});
  return r;
}

// A student slowed down on purpose (FUSELLM_TEST_STUDENT_DELAY_MS: 200 ms before each credit, one
// per source, so 400 ms a micro-batch, more than a teacher's forward of one here) makes both
// teachers run ahead until their credits are spent: each then has exactly `prefetch` micro-batches
// in flight at its most, never more; with prefetch 1 and 2, so the count follows the setting.
//
// Resident memory, after the first micro-batch against the end (15 micro-batches later), grows
// by less than 12 MiB. What a teacher allocates per micro-batch is its forward (one segment's
// logits alone are up to 256 positions x 8192 vocabulary x 4 bytes = 8 MiB) and the rows message
// (about 55 KB at k = 10); a teacher that kept any per-micro-batch buffer of 1 MiB or more would
// exceed the bound. The messages themselves are too small here for the resident memory to show
// them (16 x 55 KB): the in-flight count is what shows they are bounded. Measured growth on this
// machine: 0 to 3.5 MiB (the allocator's and MPI's own).
TEST_F(OnlineJobErrors, CreditsBoundWhatATeacherHoldsWhenTheStudentIsSlow) {
  for (const int prefetch : {2, 1}) {
    SCOPED_TRACE(prefetch);
    const std::string name = fmt::format("memory{}", prefetch);
    const CmdResult r = run_mpi(3, args(name, 8, fmt::format("--set topology.prefetch={}", prefetch)), 180,
                                "FUSELLM_TEST_STUDENT_DELAY_MS=200");
    ASSERT_EQ(r.code, 0) << r.out;
    const auto reports = teacher_reports(r.out);
    ASSERT_EQ(reports.size(), 2u) << r.out;
    for (const auto& t : reports) {
      SCOPED_TRACE(t.rank);
      EXPECT_EQ(t.served, 16);  // 8 steps of 2 micro-batches, one replica each
      EXPECT_EQ(t.max_in_flight, prefetch) << r.out;
      EXPECT_GT(t.mib_first, 0);
      EXPECT_LT(t.mib_end - t.mib_first, 12.0) << r.out;
    }
  }
}

}  // namespace
}  // namespace fusellm
