#include "fusellm/dist/rows_receiver.hpp"

#include "fusellm/core/error.hpp"
#include "fusellm/dist/credit.hpp"
#include "fusellm/dist/rows_message.hpp"

namespace fusellm::dist {

RowsReceiver::RowsReceiver(const Topology& topo, Transport& world, int source, std::string source_name, int64_t k,
                           Timeline* timeline)
    : topo_(topo), world_(world), source_(source), name_(std::move(source_name)), k_(k), timeline_(timeline) {}

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
