#pragma once
// The summary of a job's per-rank timelines (timeline.hpp), what `fusellm timeline --dir D`
// prints: per role and phase, how often, how long and how many bytes; per rank, the shares of its
// wall time spent computing, waiting and communicating, which is where the overlap of teachers and
// students shows (a student that waits for rows a large share of its time has teachers too slow
// for it; a teacher that waits for credits, students too slow).
//
// A rank's wall time is from the start of its first event to the end of its last. A role's share
// of a phase is the phase's total over the role's ranks divided by the sum of their wall times.
// Phases may nest, so shares need not add up to one.
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "fusellm/dist/timeline.hpp"

namespace fusellm::dist {

struct TimelineEvent {
  int rank = 0;
  std::string role;
  int64_t step = 0;
  Phase phase = Phase::send;
  double start = 0, end = 0;  // seconds since the job start
  int64_t bytes = 0;
};

struct PhaseSummary {
  std::string role;
  Phase phase = Phase::send;
  int64_t count = 0;
  double total = 0;  // seconds
  double mean = 0;   // seconds per event
  double share = 0;  // of the role's wall time
  int64_t bytes = 0;
};

struct RankSummary {
  int rank = 0;
  std::string role;
  double wall = 0;  // seconds, first start to last end
  int64_t steps = 0;  // distinct steps seen
  // shares of wall: teacher_forward + student_compute; wait_credit + wait_rows;
  // send + recv + reduce; checkpoint
  double compute = 0, wait = 0, comm = 0, checkpoint = 0;
  int64_t bytes_sent = 0, bytes_received = 0;
};

struct TimelineSummary {
  std::vector<PhaseSummary> phases;  // by role, then phase order; phases never seen left out
  std::vector<RankSummary> ranks;    // by rank
  double wall = 0;                   // the job's: last end of any rank (seconds since the start)
};

// Every event of <output_dir>/timeline/rank-*.jsonl (fusellm::Error naming the file and line at a
// malformed line; a torn last line, a rank killed mid-write, is skipped with a warning).
std::vector<TimelineEvent> read_timeline(const std::filesystem::path& output_dir);

TimelineSummary summarize_timeline(std::span<const TimelineEvent> events);

// The tables `fusellm timeline` prints, and the same as one JSON object.
std::string format_timeline_summary(const TimelineSummary& s);
std::string timeline_summary_json(const TimelineSummary& s);

}  // namespace fusellm::dist
