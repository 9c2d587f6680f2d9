#include "fusellm/dist/job_transport.hpp"

#include <fmt/format.h>

#include "fusellm/core/error.hpp"
#include "fusellm/dist/poll.hpp"

namespace fusellm::dist {

namespace {

// A send of the job: its wait runs the rank's interrupt between polls. The message of a timeout
// is formatted only when one happens (a send per rows message, credit and hidden state).
class JobRequest final : public Request {
 public:
  JobRequest(const JobTransport& t, std::unique_ptr<Request> inner, int dest, Tag tag)
      : t_(t), inner_(std::move(inner)), dest_(dest), tag_(tag) {}
  bool done() override { return inner_->done(); }
  void wait() override {
    if (!poll_until([&] { return (t_.check_interrupt(), inner_->done()); }, t_.timeout()))
      throw_timeout(fmt::format("{}: send of tag {} to {}", t_.describe(t_.rank()), tag_name(tag_), t_.describe(dest_)),
                    t_.timeout());
  }

 private:
  const JobTransport& t_;
  std::unique_ptr<Request> inner_;  // its destructor waits (without the interrupt) if unfinished
  int dest_;
  Tag tag_;
};

}  // namespace

JobTransport::JobTransport(Transport& inner)
    : inner_(inner), sent_(size_t(inner.size()) * kTags, 0), received_(kTags, 0) {
  set_timeout(inner.timeout());
}

int JobTransport::slot(Tag tag) {
  const int t = int(tag);
  return t >= 1 && t < kTags ? t - 1 : kTags - 1;
}

std::unique_ptr<Request> JobTransport::isend(int dest, Tag tag, std::span<const std::byte> bytes) {
  auto req = inner_.isend(dest, tag, bytes);
  ++sent_[size_t(dest) * kTags + size_t(slot(tag))];
  return std::make_unique<JobRequest>(*this, std::move(req), dest, tag);
}

std::optional<std::vector<std::byte>> JobTransport::try_recv(int src, Tag tag) {
  auto m = inner_.try_recv(src, tag);
  if (m) ++received_[size_t(slot(tag))];
  return m;
}

std::vector<std::byte> JobTransport::recv(int src, Tag tag) {
  std::optional<std::vector<std::byte>> got;
  if (!poll_until([&] { return (check_interrupt(), (got = try_recv(src, tag)).has_value()); }, timeout()))
    throw_timeout(fmt::format("{}: recv of tag {} from {}", describe(rank()), tag_name(tag), describe(src)), timeout());
  return std::move(*got);
}

int64_t JobTransport::drain_unreceived() {
  // Exact in doubles up to 2^53 messages.
  std::vector<double> counts(sent_.begin(), sent_.end());
  inner_.all_reduce(counts);
  const size_t me = size_t(rank()) * kTags;
  int64_t dropped = 0;
  for (int s = 0; s < kTags; ++s) {
    const Tag tag = s + 1 < kTags ? Tag(s + 1) : Tag::test;
    const auto expected = int64_t(counts[me + size_t(s)]);
    // Any rank may be the sender: poll them all until the count is reached.
    const auto all_in = [&] {
      for (int src = 0; src < size() && received_[size_t(s)] < expected; ++src)
        while (received_[size_t(s)] < expected && try_recv(src, tag)) ++dropped;
      return received_[size_t(s)] >= expected;
    };
    if (!poll_until(all_in, timeout()))
      throw_timeout(fmt::format("{}: draining the job's last messages of tag {} ({} of {} received)", describe(rank()),
                                tag_name(tag), received_[size_t(s)], expected),
                    timeout());
  }
  return dropped;
}

}  // namespace fusellm::dist
