#include "fusellm/dist/rows_receiver.hpp"

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "fusellm/core/error.hpp"
#include "fusellm/dist/credit.hpp"
#include "fusellm/dist/rows_message.hpp"

namespace fusellm::dist {

namespace {

// FUSELLM_TEST_STUDENT_DELAY_MS (rows_receiver.hpp), read once.
std::chrono::milliseconds student_delay() {
  static const std::chrono::milliseconds d = [] {
    const char* v = std::getenv("FUSELLM_TEST_STUDENT_DELAY_MS");
    if (!v || !*v) return std::chrono::milliseconds(0);
    char* end = nullptr;
    const long long ms = std::strtoll(v, &end, 10);
    if (*end != '\0' || ms < 0)
      fail("FUSELLM_TEST_STUDENT_DELAY_MS='{}': expected a whole number of milliseconds (a test hook)", v);
    return std::chrono::milliseconds(ms);
  }();
  return d;
}

}  // namespace

RowsReceiver::RowsReceiver(const Topology& topo, Transport& world, int source, std::string source_name, int64_t k,
                           bool position_ce, Timeline* timeline)
    : topo_(topo), world_(world), source_(source), name_(std::move(source_name)), k_(k), position_ce_(position_ce),
      timeline_(timeline) {}

std::string RowsReceiver::describe() const {
  return fmt::format("source '{}' over the transport (student rank {})", name_, world_.rank());
}

int RowsReceiver::sender(int64_t micro_batch) const {
  const int replica = topo_.serving_replica(source_, micro_batch);
  return topo_.teacher_rank(source_, replica, topo_.stages(source_) - 1);
}

void RowsReceiver::begin_micro_batch(int64_t id, std::span<const int64_t> segments) {
  const int from = sender(id);
  Timeline& tl = timeline_ ? *timeline_ : off_;
  std::vector<std::byte> m;
  {
    auto t = tl.scope(Phase::wait_rows, id);
    m = world_.recv(from, Tag::rows);
    t.bytes = int64_t(m.size());
  }
  bytes_ += int64_t(m.size());
  RowsExpectation e;
  e.micro_batch = id;
  e.source = source_;
  e.source_name = name_;
  e.segments.assign(segments.begin(), segments.end());
  e.k = k_;
  e.position_ce = position_ce_;
  e.sender_rank = from;
  e.sender = world_.describe(from);
  ready_.clear();
  for (TeacherRows& r : decode_rows(m, e)) {
    const int64_t s = r.segment;
    ready_.emplace(s, std::move(r));
  }
  current_ = id;
}

void RowsReceiver::end_micro_batch(int64_t id) {
  if (id != current_) fail("{}: micro-batch {} ended, {} was begun", describe(), id, current_);
  ready_.clear();
  if (const auto d = student_delay(); d.count() > 0) std::this_thread::sleep_for(d);  // test hook
  std::vector<std::byte> c = credit_message(id);
  auto req = world_.isend(sender(id), Tag::credit, c);
  credits_.emplace_back(std::move(c), std::move(req));
  while (!credits_.empty() && credits_.front().second->done()) credits_.pop_front();
  current_ = -1;
}

TeacherRows RowsReceiver::rows(int64_t segment) {
  auto it = ready_.find(segment);
  if (it == ready_.end())
    fail("{}: segment {} asked for outside its micro-batch ({} is current)", describe(), segment, current_);
  return it->second;
}

}  // namespace fusellm::dist
