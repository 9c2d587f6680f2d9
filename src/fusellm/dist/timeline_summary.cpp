#include "fusellm/dist/timeline_summary.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "fusellm/core/error.hpp"
#include "fusellm/core/log.hpp"

namespace fusellm::dist {

namespace fs = std::filesystem;

namespace {

TimelineEvent parse_event(const std::string& line) {
  const auto j = nlohmann::json::parse(line);  // throws nlohmann's parse_error: the caller names the line
  TimelineEvent e;
  e.rank = j.at("rank").get<int>();
  e.role = j.at("role").get<std::string>();
  e.step = j.at("step").get<int64_t>();
  const auto name = j.at("phase").get<std::string>();
  const auto p = phase_from_name(name);
  if (!p) fail("unknown phase '{}'", name);
  e.phase = *p;
  e.start = j.at("start").get<double>();
  e.end = j.at("end").get<double>();
  e.bytes = j.at("bytes").get<int64_t>();
  return e;
}

void read_file(const fs::path& file, std::vector<TimelineEvent>& out) {
  std::ifstream in(file, std::ios::binary);
  if (!in) fail("cannot read {}", file.string());
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t pos = 0;
  for (int64_t line_no = 1; pos < text.size(); ++line_no) {
    const size_t nl = text.find('\n', pos);
    const bool last_torn = nl == std::string::npos;
    const std::string line = text.substr(pos, last_torn ? std::string::npos : nl - pos);
    pos = last_torn ? text.size() : nl + 1;
    if (line.empty()) continue;
    try {
      out.push_back(parse_event(line));
    } catch (const std::exception& e) {
      if (last_torn) {
        spdlog::warn("{}:{}: skipping a torn last line (the rank stopped mid-write)", file.string(), line_no);
        continue;
      }
      fail("{}:{}: not a timeline event: {}", file.string(), line_no, e.what());
    }
  }
}

bool is_compute(Phase p) { return p == Phase::teacher_forward || p == Phase::student_compute; }
bool is_wait(Phase p) { return p == Phase::wait_credit || p == Phase::wait_rows; }
bool is_comm(Phase p) { return p == Phase::send || p == Phase::recv || p == Phase::reduce; }

RankSummary summarize_rank(int rank, std::span<const TimelineEvent* const> ev) {
  RankSummary r;
  r.rank = rank;
  r.role = ev.front()->role;
  double first = ev.front()->start, last = ev.front()->end;
  std::set<int64_t> steps;
  for (const auto* e : ev) {
    first = std::min(first, e->start), last = std::max(last, e->end);
    steps.insert(e->step);
    const double d = e->end - e->start;
    (is_compute(e->phase) ? r.compute : is_wait(e->phase) ? r.wait : is_comm(e->phase) ? r.comm : r.checkpoint) += d;
    if (e->phase == Phase::send) r.bytes_sent += e->bytes;
    if (e->phase == Phase::recv) r.bytes_received += e->bytes;
  }
  r.wall = last - first;
  r.steps = int64_t(steps.size());
  const double w = r.wall > 0 ? r.wall : 1;
  r.compute /= w, r.wait /= w, r.comm /= w, r.checkpoint /= w;
  return r;
}

}  // namespace

std::vector<TimelineEvent> read_timeline(const fs::path& output_dir) {
  const fs::path dir = output_dir / "timeline";
  if (!fs::is_directory(dir))
    fail("no timeline in {}: {} does not exist (run the job with the timeline on)", output_dir.string(), dir.string());
  std::vector<fs::path> files;
  for (const auto& f : fs::directory_iterator(dir)) {
    const auto name = f.path().filename().string();
    if (name.starts_with("rank-") && name.ends_with(".jsonl")) files.push_back(f.path());
  }
  if (files.empty()) fail("no timeline in {}: no rank-*.jsonl files", dir.string());
  std::sort(files.begin(), files.end());
  std::vector<TimelineEvent> events;
  for (const auto& f : files) read_file(f, events);
  return events;
}

TimelineSummary summarize_timeline(std::span<const TimelineEvent> events) {
  TimelineSummary s;
  std::map<int, std::vector<const TimelineEvent*>> by_rank;
  for (const auto& e : events) by_rank[e.rank].push_back(&e);
  std::map<std::string, double> role_wall;
  for (const auto& [rank, ev] : by_rank) {
    s.ranks.push_back(summarize_rank(rank, ev));
    role_wall[s.ranks.back().role] += s.ranks.back().wall;
  }
  std::map<std::pair<std::string, int>, PhaseSummary> phases;
  for (const auto& e : events) {
    auto& p = phases[{e.role, int(e.phase)}];
    p.role = e.role, p.phase = e.phase;
    p.count += 1, p.total += e.end - e.start, p.bytes += e.bytes;
    s.wall = std::max(s.wall, e.end);
  }
  for (auto& [key, p] : phases) {
    p.mean = p.total / double(p.count);
    p.share = role_wall[p.role] > 0 ? p.total / role_wall[p.role] : 0;
    s.phases.push_back(p);
  }
  return s;
}

std::string format_timeline_summary(const TimelineSummary& s) {
  std::string o;
  auto out = std::back_inserter(o);
  fmt::format_to(out, "{} ranks, {:.3f} s from the job start to the last event\n\n", s.ranks.size(), s.wall);
  fmt::format_to(out, "{:<10} {:<16} {:>8} {:>10} {:>10} {:>7} {:>14}\n", "role", "phase", "count", "total s", "mean ms",
                 "share", "bytes");
  for (const auto& p : s.phases)
    fmt::format_to(out, "{:<10} {:<16} {:>8} {:>10.3f} {:>10.3f} {:>6.1f}% {:>14}\n", p.role, phase_name(p.phase), p.count,
                   p.total, p.mean * 1e3, p.share * 100, p.bytes);
  fmt::format_to(out, "\n{:<6} {:<10} {:>8} {:>7} {:>8} {:>7} {:>7} {:>7} {:>14} {:>14}\n", "rank", "role", "wall s", "steps",
                 "compute", "wait", "comm", "ckpt", "bytes sent", "bytes recv");
  for (const auto& r : s.ranks)
    fmt::format_to(out, "{:<6} {:<10} {:>8.3f} {:>7} {:>7.1f}% {:>6.1f}% {:>6.1f}% {:>6.1f}% {:>14} {:>14}\n", r.rank, r.role,
                   r.wall, r.steps, r.compute * 100, r.wait * 100, r.comm * 100, r.checkpoint * 100, r.bytes_sent,
                   r.bytes_received);
  fmt::format_to(out, "\nwait: a student waiting for rows (teachers too slow), a teacher waiting for credits (students too slow)\n");
  return o;
}

std::string timeline_summary_json(const TimelineSummary& s) {
  nlohmann::json j;
  j["wall"] = s.wall;
  j["phases"] = nlohmann::json::array();
  for (const auto& p : s.phases)
    j["phases"].push_back({{"role", p.role}, {"phase", phase_name(p.phase)}, {"count", p.count}, {"total", p.total},
                           {"mean", p.mean}, {"share", p.share}, {"bytes", p.bytes}});
  j["ranks"] = nlohmann::json::array();
  for (const auto& r : s.ranks)
    j["ranks"].push_back({{"rank", r.rank}, {"role", r.role}, {"wall", r.wall}, {"steps", r.steps}, {"compute", r.compute},
                          {"wait", r.wait}, {"comm", r.comm}, {"checkpoint", r.checkpoint}, {"bytes_sent", r.bytes_sent},
                          {"bytes_received", r.bytes_received}});
  return j.dump();
}

}  // namespace fusellm::dist
