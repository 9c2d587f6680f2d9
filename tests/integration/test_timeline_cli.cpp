// `fusellm timeline --dir D`: the summary of a job's per-rank timelines (dist/timeline_summary.hpp)
// as a user runs it, on hand-written rank files in the documented format (dist/timeline.hpp): the
// tables, --json, and the errors for a directory without a timeline and a malformed line.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "run_fusellm.hpp"

namespace fusellm {
namespace {

namespace fs = std::filesystem;
using fusellm::testing::run_fusellm;

class TimelineCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("fusellm_timeline_cli_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "timeline");
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(int rank, const std::string& text) const {
    std::ofstream(dir_ / "timeline" / ("rank-" + std::to_string(rank) + ".jsonl")) << text;
  }
  // One teacher (forward 3 s, send 1 s) and one student (waits 1 s for rows, computes 2 s).
  void write_job() const {
    write(0, R"({"rank":0,"role":"teacher","step":0,"phase":"teacher_forward","start":0,"end":3,"bytes":0}
{"rank":0,"role":"teacher","step":0,"phase":"send","start":3,"end":4,"bytes":4096}
)");
    write(1, R"({"rank":1,"role":"student","step":0,"phase":"wait_rows","start":0,"end":1,"bytes":0}
{"rank":1,"role":"student","step":0,"phase":"recv","start":3,"end":4,"bytes":4096}
{"rank":1,"role":"student","step":0,"phase":"student_compute","start":4,"end":6,"bytes":0}
)");
  }
  fs::path dir_;
};

TEST_F(TimelineCli, PrintsPerRoleAndPerRank) {
  write_job();
  const auto r = run_fusellm("timeline --dir " + dir_.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("2 ranks, 6.000 s from the job start to the last event"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("teacher    teacher_forward         1      3.000   3000.000   75.0%"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("student    wait_rows               1      1.000   1000.000   16.7%"), std::string::npos) << r.out;
  // rank 1: 6 s, compute 2 s (33.3 %), wait 1 s (16.7 %), recv 1 s (16.7 %), 4096 bytes received.
  EXPECT_NE(r.out.find("1      student       6.000       1    33.3%   16.7%   16.7%    0.0%              0           4096"),
            std::string::npos)
      << r.out;
}

TEST_F(TimelineCli, Json) {
  write_job();
  const auto r = run_fusellm("timeline --json --dir " + dir_.string());
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["ranks"].size(), 2u);
  EXPECT_EQ(j["ranks"][0]["bytes_sent"], 4096);
  EXPECT_DOUBLE_EQ(j["ranks"][0]["compute"].get<double>(), 0.75);
  EXPECT_DOUBLE_EQ(j["wall"].get<double>(), 6.0);
}

TEST_F(TimelineCli, ErrorsNameTheDirectoryAndTheLine) {
  fs::remove_all(dir_ / "timeline");
  auto r = run_fusellm("timeline --dir " + dir_.string());
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("fusellm: error: no timeline in " + dir_.string()), std::string::npos) << r.out;
  fs::create_directories(dir_ / "timeline");
  write(0, "{\"rank\":0,\"role\":\"teacher\",\"step\":0,\"phase\":\"send\",\"start\":0,\"end\":1}\n");
  r = run_fusellm("timeline --dir " + dir_.string());
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("rank-0.jsonl:1: not a timeline event"), std::string::npos) << r.out;
  EXPECT_EQ(run_fusellm("timeline").code, 2);  // --dir is required: a usage error
}

}  // namespace
}  // namespace fusellm
