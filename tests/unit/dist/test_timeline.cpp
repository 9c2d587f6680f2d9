// The per-rank timeline (dist/timeline.hpp) and its summary (dist/timeline_summary.hpp): what the
// writer puts in rank-<r>.jsonl, that a disabled one writes nothing, and the summary's numbers on
// a small synthetic timeline worked out by hand.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "error_of.hpp"
#include "fusellm/dist/timeline.hpp"
#include "fusellm/dist/timeline_summary.hpp"

namespace fusellm::dist {
namespace {

namespace fs = std::filesystem;
using testing::error_of;

class TimelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("fusellm_timeline_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::vector<std::string> lines(int rank) const {
    std::ifstream in(dir_ / "timeline" / ("rank-" + std::to_string(rank) + ".jsonl"));
    std::vector<std::string> out;
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
  }
  void write(const std::string& name, const std::string& text) const {
    fs::create_directories(dir_ / "timeline");
    std::ofstream(dir_ / "timeline" / name) << text;
  }
  fs::path dir_;
};

TEST_F(TimelineTest, DisabledTimelineWritesNothing) {
  Timeline t;
  EXPECT_FALSE(t.enabled());
  {
    auto s = t.scope(Phase::send, 3);
    s.bytes = 10;
  }
  t.record(Phase::recv, 1, 0, 1, 5);
  t.flush();
  EXPECT_FALSE(fs::exists(dir_));
}

TEST_F(TimelineTest, ScopesAndRecordsBecomeJsonLines) {
  const auto start = Timeline::Clock::now();
  {
    Timeline t(dir_, 2, "student", start);
    ASSERT_TRUE(t.enabled());
    EXPECT_EQ(t.path(), dir_ / "timeline" / "rank-2.jsonl");
    {
      auto s = t.scope(Phase::wait_rows, 7);
      s.bytes = 1234;
    }
    t.record(Phase::checkpoint, 8, 1.5, 2.25, 0);
    EXPECT_TRUE(lines(2).empty());  // buffered until a flush (or a second passes)
  }  // the destructor flushes
  const auto l = lines(2);
  ASSERT_EQ(l.size(), 2u);
  const auto a = nlohmann::json::parse(l[0]);
  EXPECT_EQ(a["rank"], 2);
  EXPECT_EQ(a["role"], "student");
  EXPECT_EQ(a["step"], 7);
  EXPECT_EQ(a["phase"], "wait_rows");
  EXPECT_EQ(a["bytes"], 1234);
  EXPECT_GE(a["start"].get<double>(), 0.0);
  EXPECT_GE(a["end"].get<double>(), a["start"].get<double>());
  EXPECT_LT(a["end"].get<double>(), 60.0);
  EXPECT_EQ(l[1], R"({"rank":2,"role":"student","step":8,"phase":"checkpoint","start":1.500000,"end":2.250000,"bytes":0})");
}

TEST_F(TimelineTest, PhaseNamesRoundTrip) {
  for (int i = 0; i < kPhases; ++i) EXPECT_EQ(phase_from_name(phase_name(Phase(i))), Phase(i));
  EXPECT_FALSE(phase_from_name("nap"));
}

// Two teachers and one student over 10 s; every number below is worked out from these events.
TEST_F(TimelineTest, SummaryOfASyntheticTimeline) {
  const auto start = Timeline::Clock::now();
  {
    Timeline t0(dir_, 0, "teacher", start), t1(dir_, 1, "teacher", start), s(dir_, 2, "student", start);
    for (int step = 0; step < 4; ++step) {
      const double b = 2.0 * step + 1;  // steps at 1, 3, 5, 7 s
      t0.record(Phase::teacher_forward, step, b, b + 1.5, 0);
      t0.record(Phase::send, step, b + 1.5, b + 1.75, 1000);
      t1.record(Phase::teacher_forward, step, b, b + 1.0, 0);
      t1.record(Phase::wait_credit, step, b + 1.0, b + 2.0, 0);
      s.record(Phase::wait_rows, step, b + 1.0, b + 1.5, 0);
      s.record(Phase::recv, step, b + 1.5, b + 1.75, 1000);
      s.record(Phase::student_compute, step, b + 1.75, b + 2.75, 0);
    }
    s.record(Phase::checkpoint, 3, 9.75, 10.0, 0);
  }
  const auto events = read_timeline(dir_);
  EXPECT_EQ(events.size(), 4u * 7 + 1);
  const auto sum = summarize_timeline(events);
  EXPECT_DOUBLE_EQ(sum.wall, 10.0);
  ASSERT_EQ(sum.ranks.size(), 3u);
  // rank 0: 1 .. 8.75 (7.75 s): forward 6 s, send 1 s, 4000 bytes sent.
  EXPECT_DOUBLE_EQ(sum.ranks[0].wall, 7.75);
  EXPECT_EQ(sum.ranks[0].steps, 4);
  EXPECT_DOUBLE_EQ(sum.ranks[0].compute, 6.0 / 7.75);
  EXPECT_DOUBLE_EQ(sum.ranks[0].comm, 1.0 / 7.75);
  EXPECT_EQ(sum.ranks[0].bytes_sent, 4000);
  // rank 1: 1 .. 9 (8 s): forward 4 s, waiting for credits 4 s.
  EXPECT_DOUBLE_EQ(sum.ranks[1].wall, 8.0);
  EXPECT_DOUBLE_EQ(sum.ranks[1].wait, 0.5);
  // rank 2: 2 .. 10 (8 s): waits for rows 2 s (25 %), receives 1 s, computes 4 s, checkpoints 0.25 s.
  EXPECT_EQ(sum.ranks[2].role, "student");
  EXPECT_DOUBLE_EQ(sum.ranks[2].wall, 8.0);
  EXPECT_DOUBLE_EQ(sum.ranks[2].wait, 0.25);
  EXPECT_DOUBLE_EQ(sum.ranks[2].comm, 0.125);
  EXPECT_DOUBLE_EQ(sum.ranks[2].compute, 0.5);
  EXPECT_DOUBLE_EQ(sum.ranks[2].checkpoint, 0.25 / 8);
  EXPECT_EQ(sum.ranks[2].bytes_received, 4000);
  // Per role and phase; teachers' wall = 7.75 + 8 s.
  auto phase = [&](const std::string& role, Phase p) {
    for (const auto& x : sum.phases)
      if (x.role == role && x.phase == p) return x;
    ADD_FAILURE() << role << " " << phase_name(p) << " missing";
    return PhaseSummary{};
  };
  const auto fwd = phase("teacher", Phase::teacher_forward);
  EXPECT_EQ(fwd.count, 8);
  EXPECT_DOUBLE_EQ(fwd.total, 10.0);
  EXPECT_DOUBLE_EQ(fwd.mean, 1.25);
  EXPECT_DOUBLE_EQ(fwd.share, 10.0 / 15.75);
  EXPECT_EQ(phase("teacher", Phase::send).bytes, 4000);
  EXPECT_DOUBLE_EQ(phase("student", Phase::wait_rows).share, 0.25);
  EXPECT_EQ(phase("student", Phase::checkpoint).count, 1);
  EXPECT_EQ(sum.phases.size(), 3u + 4u);  // phases never seen are left out
  const auto text = format_timeline_summary(sum);
  EXPECT_NE(text.find("student    wait_rows               4      2.000    500.000   25.0%              0"), std::string::npos)
      << text;
  const auto j = nlohmann::json::parse(timeline_summary_json(sum));
  EXPECT_EQ(j["ranks"][2]["wait"], 0.25);
}

TEST_F(TimelineTest, MalformedLinesAreRefusedNamingTheLine) {
  write("rank-0.jsonl", R"({"rank":0,"role":"teacher","step":0,"phase":"send","start":0,"end":1,"bytes":2})"
                        "\n{\"rank\":0}\n");
  EXPECT_NE(error_of([&] { read_timeline(dir_); }).find("rank-0.jsonl:2: not a timeline event"), std::string::npos);
  write("rank-0.jsonl", R"({"rank":0,"role":"teacher","step":0,"phase":"nap","start":0,"end":1,"bytes":2})"
                        "\n");
  EXPECT_NE(error_of([&] { read_timeline(dir_); }).find("unknown phase 'nap'"), std::string::npos);
}

TEST_F(TimelineTest, TornLastLineIsSkipped) {
  write("rank-1.jsonl", R"({"rank":1,"role":"student","step":0,"phase":"recv","start":0,"end":1,"bytes":2})"
                        "\n{\"rank\":1,\"ro");
  EXPECT_EQ(read_timeline(dir_).size(), 1u);
}

TEST_F(TimelineTest, MissingTimelineIsRefused) {
  EXPECT_NE(error_of([&] { read_timeline(dir_); }).find("no timeline in"), std::string::npos);
  fs::create_directories(dir_ / "timeline");
  EXPECT_NE(error_of([&] { read_timeline(dir_); }).find("no rank-*.jsonl files"), std::string::npos);
}

}  // namespace
}  // namespace fusellm::dist
