#include "fusellm/dist/job_end.hpp"

#include <array>
#include <cstring>
#include <memory>

#include "fusellm/core/error.hpp"

namespace fusellm::dist {

namespace {

constexpr int kStudent0 = 0;  // topology.hpp: students first

std::array<int64_t, 2> encode(const JobEnd& e) { return {e.step, e.stopped ? 1 : 0}; }

JobEnd decode(std::span<const std::byte> m, const std::string& sender) {
  std::array<int64_t, 2> v{};
  if (m.size() != sizeof v) fail("an end message from {} has {} bytes, expected {}", sender, m.size(), sizeof v);
  std::memcpy(v.data(), m.data(), sizeof v);
  return {v[0], v[1] != 0};
}

}  // namespace

void announce_end(JobTransport& world, const Topology& topo, const JobEnd& end) {
  const std::array<int64_t, 2> m = encode(end);
  std::vector<std::unique_ptr<Request>> sends;
  for (int r = topo.student_ranks(); r < world.size(); ++r)
    sends.push_back(world.isend_values<int64_t>(r, Tag::end, m));
  for (auto& s : sends) s->wait();
}

JobEnd wait_for_end(JobTransport& world) {
  const auto timeout = world.timeout();
  world.set_timeout(std::chrono::milliseconds(0));  // for ever: see the header
  std::vector<std::byte> m = world.recv(kStudent0, Tag::end);
  world.set_timeout(timeout);
  return decode(m, world.describe(kStudent0));
}

void watch_for_end(JobTransport& world) {
  world.set_interrupt([&world] {
    JobTransport& w = world;  // not the closure's: the closure ends below
    std::optional<std::vector<std::byte>> m = w.try_recv(kStudent0, Tag::end);
    if (!m) return;
    const JobEnd end = decode(*m, w.describe(kStudent0));
    w.set_interrupt({});  // once, so the waits of the unwinding and the drain run undisturbed; destroys this closure
    throw JobEnded(end);
  });
}

}  // namespace fusellm::dist
