#include "fusellm/dist/timeline.hpp"

#include <fmt/format.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <nlohmann/json.hpp>

#include "fusellm/core/error.hpp"
#include "fusellm/core/log.hpp"

namespace fusellm::dist {

namespace {
constexpr std::array<std::string_view, kPhases> kPhaseNames = {
    "teacher_forward", "wait_credit", "send", "recv", "student_compute", "wait_rows", "reduce", "checkpoint"};
constexpr auto kFlushEvery = std::chrono::seconds(1);
}  // namespace

std::string_view phase_name(Phase p) { return kPhaseNames[size_t(p)]; }

std::optional<Phase> phase_from_name(std::string_view s) {
  for (size_t i = 0; i < kPhaseNames.size(); ++i)
    if (kPhaseNames[i] == s) return Phase(i);
  return std::nullopt;
}

Timeline::Scope::Scope(Timeline* t, Phase p, int64_t step) : t_(t), phase_(p), step_(step) {
  if (t_) start_ = Clock::now();
}

Timeline::Scope::~Scope() {
  if (!t_) return;
  try {
    t_->record(phase_, step_, t_->seconds(start_), t_->seconds(Clock::now()), bytes);
  } catch (const std::exception& e) {  // a destructor must not throw; the timeline is advisory
    spdlog::warn("timeline {}: {}", t_->path().string(), e.what());
  }
}

Timeline::Timeline(const std::filesystem::path& output_dir, int rank, std::string role, Clock::time_point job_start)
    : path_(output_dir / "timeline" / fmt::format("rank-{}.jsonl", rank)),
      rank_(rank),
      role_json_(nlohmann::json(role).dump()),
      job_start_(job_start),
      last_flush_(Clock::now()) {
  std::error_code ec;
  std::filesystem::create_directories(path_.parent_path(), ec);
  if (ec) fail("timeline of rank {}: cannot create {}: {}", rank, path_.parent_path().string(), ec.message());
  file_.reset(std::fopen(path_.c_str(), "w"));
  if (!file_) fail("timeline of rank {}: cannot open {}: {}", rank, path_.string(), std::strerror(errno));
}

Timeline::~Timeline() {
  if (!file_) return;
  try {
    flush();
  } catch (const std::exception& e) {
    spdlog::warn("{}", e.what());
  }
}

void Timeline::record(Phase p, int64_t step, double start, double end, int64_t bytes) {
  if (!file_) return;
  std::lock_guard lock(mu_);
  fmt::format_to(std::back_inserter(buffer_),
                 "{{\"rank\":{},\"role\":{},\"step\":{},\"phase\":\"{}\",\"start\":{:.6f},\"end\":{:.6f},\"bytes\":{}}}\n",
                 rank_, role_json_, step, phase_name(p), start, end, bytes);
  if (Clock::now() - last_flush_ >= kFlushEvery) flush_locked();
}

void Timeline::flush() {
  if (!file_) return;
  std::lock_guard lock(mu_);
  flush_locked();
}

void Timeline::flush_locked() {
  last_flush_ = Clock::now();
  if (buffer_.empty()) return;
  const size_t want = buffer_.size();
  const size_t n = std::fwrite(buffer_.data(), 1, want, file_.get());
  buffer_.clear();
  if (n != want || std::fflush(file_.get()) != 0)
    fail("timeline: cannot write {}: {}", path_.string(), std::strerror(errno));
}

}  // namespace fusellm::dist
