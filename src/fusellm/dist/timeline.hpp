#pragma once
// The per-rank timeline of the MPI job (issue 11 item 8): where each rank's time goes, phase by
// phase, so that a user sees whether the students wait for rows (teachers too slow), the teachers
// wait for credits (students too slow), or the exchange itself costs. One JSON object per line in
// <output_dir>/timeline/rank-<r>.jsonl:
//
//   {"rank":1,"role":"student","step":12,"phase":"wait_rows","start":3.141593,"end":3.25,"bytes":0}
//
// start and end are seconds since the job start (steady clock; the job start is the instant the
// rank passed the start-up barrier, so ranks' times agree to within that barrier's skew); bytes
// is what the phase sent or received (0 when it moves none). Phases may nest (a recv inside a
// wait_rows), so their shares of a rank's time can add up to more than one.
//
// Events are buffered and written about once a second and at the end (flush, destructor); a
// disabled timeline (default-constructed) opens no file and its scopes read no clock.
// `fusellm timeline --dir <output_dir>` summarizes the files (timeline_summary.hpp).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace fusellm::dist {

enum class Phase { teacher_forward, wait_credit, send, recv, student_compute, wait_rows, reduce, checkpoint };
inline constexpr int kPhases = 8;

std::string_view phase_name(Phase p);                    // "wait_rows"
std::optional<Phase> phase_from_name(std::string_view s);  // nullopt when unknown

class Timeline {
 public:
  using Clock = std::chrono::steady_clock;

  // An RAII phase: from construction to destruction; set `bytes` before it ends.
  class Scope {
   public:
    int64_t bytes = 0;
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    friend class Timeline;
    Scope(Timeline* t, Phase p, int64_t step);
    Timeline* t_;  // null when the timeline is off
    Phase phase_;
    int64_t step_;
    Clock::time_point start_;
  };

  Timeline() = default;  // off
  // Writes <output_dir>/timeline/rank-<rank>.jsonl (replacing a previous run's); `role` is
  // "teacher" or "student" (any word; the summary groups by it).
  Timeline(const std::filesystem::path& output_dir, int rank, std::string role, Clock::time_point job_start);
  ~Timeline();  // flushes; a write error then is logged, not thrown
  Timeline(const Timeline&) = delete;
  Timeline& operator=(const Timeline&) = delete;

  bool enabled() const { return file_ != nullptr; }
  const std::filesystem::path& path() const { return path_; }

  // auto s = timeline.scope(Phase::send, step); ... s.bytes = n;
  [[nodiscard]] Scope scope(Phase p, int64_t step) { return Scope(enabled() ? this : nullptr, p, step); }
  // One event with its times given (seconds since the job start).
  void record(Phase p, int64_t step, double start, double end, int64_t bytes);
  double seconds(Clock::time_point t) const { return std::chrono::duration<double>(t - job_start_).count(); }
  // Writes the buffered events (fusellm::Error naming the file when the write fails).
  void flush();

 private:
  void flush_locked();

  struct FileCloser {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  std::mutex mu_;
  std::unique_ptr<std::FILE, FileCloser> file_;
  std::filesystem::path path_;
  int rank_ = 0;
  std::string role_json_;  // the role as a JSON string, quotes included
  Clock::time_point job_start_{};
  Clock::time_point last_flush_{};
  std::string buffer_;
};

}  // namespace fusellm::dist
