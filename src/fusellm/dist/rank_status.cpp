#include "fusellm/dist/rank_status.hpp"

#include <fmt/format.h>

#include <atomic>

#include "fusellm/core/error.hpp"
#include "fusellm/dist/topology.hpp"

namespace fusellm::dist {
namespace {

std::atomic<int64_t> g_step{0};

}  // namespace

RankStatus::RankStatus(const JobConfig& job, int rank, std::vector<std::string> hosts)
    : rank_(rank), hosts_(std::move(hosts)), roles_(hosts_.size(), "role unknown") {
  try {
    const Topology topo = Topology::of(job, size());
    for (int r = 0; r < size(); ++r) roles_[size_t(r)] = topo.role_name(r);
  } catch (const Error&) {
    // The world does not fit [topology]: run_job says so on every rank, naming the fields.
  }
}

std::string RankStatus::who(int r) const {
  if (r < 0 || r >= size()) return fmt::format("rank {}", r);
  return fmt::format("rank {} ({}, host {})", r, roles_[size_t(r)], hosts_[size_t(r)]);
}

std::string RankStatus::me() const {
  return fmt::format("rank {} ({}, host {}, step {})", rank_, roles_[size_t(rank_)], hosts_[size_t(rank_)], step());
}

void RankStatus::set_step(int64_t step) noexcept { g_step.store(step, std::memory_order_relaxed); }
int64_t RankStatus::step() noexcept { return g_step.load(std::memory_order_relaxed); }

}  // namespace fusellm::dist
