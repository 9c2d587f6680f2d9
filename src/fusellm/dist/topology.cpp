#include "fusellm/dist/topology.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "fusellm/core/error.hpp"

namespace fusellm::dist {
namespace {

// "teacher_ranks = [2, 1] for sources "a", "b""
std::string teacher_ranks_text(const JobConfig& job) {
  std::vector<std::string> names;
  for (const auto& s : job.sources) names.push_back('"' + s.name + '"');
  return fmt::format("teacher_ranks = [{}] for sources {}", fmt::join(job.topology.teacher_ranks, ", "),
                     names.empty() ? std::string("(none)") : fmt::format("{}", fmt::join(names, ", ")));
}

// Refused on every rank: the job's layout does not fit the ranks mpirun started.
void check_world_size(const JobConfig& job, int world_size) {
  const int64_t need = job.world_size();
  if (world_size == need) return;
  std::string where = job.where("topology", "teacher_ranks");
  if (const std::string w = job.where("topology", "student_ranks"); w != where) where += " and " + w;
  fail("{}: the job needs sum(teacher_ranks) + student_ranks = {} MPI ranks ({}, student_ranks = {}; see {}), "
       "but was started on {}: run it with `mpirun -np {} fusellm ...`, change [topology], or run one process "
       "without mpirun (every role in turn)",
       job.file, need, teacher_ranks_text(job), job.topology.student_ranks, where, world_size, need);
}

void check_layout(const JobConfig& job) {
  const auto& tr = job.topology.teacher_ranks;
  if (job.topology.student_ranks < 1)
    fail("{}: [topology].student_ranks must be at least 1, found {}", job.where("topology", "student_ranks"),
         job.topology.student_ranks);
  if (tr.size() != job.sources.size())
    fail("{}: [topology].teacher_ranks has {} entries but the job has {} [[source]] (one per source, in order)",
         job.where("topology", "teacher_ranks"), tr.size(), job.sources.size());
  for (size_t j = 0; j < tr.size(); ++j) {
    const int64_t rep = job.sources[j].replicas;
    if (rep < 1 || tr[j] < 1 || tr[j] % rep != 0)
      fail("{}: source \"{}\" has {} replicas (source[{}].replicas, {}), which do not divide its {} teacher ranks "
           "([topology].teacher_ranks[{}]): a replica spans teacher_ranks / replicas ranks",
           job.file, job.sources[j].name, rep, j, job.where("source", "replicas", j), tr[j], j);
  }
}

}  // namespace

Topology Topology::of(const JobConfig& job, int world_size) {
  check_layout(job);
  check_world_size(job, world_size);
  Topology t;
  t.students_ = int(job.topology.student_ranks);
  t.device_ = std::string(device_name(job.train.device));
  for (int s = 0; s < t.students_; ++s) t.roles_.push_back({RankRole::Role::student, -1, 0, 0, s});
  for (size_t j = 0; j < job.sources.size(); ++j) {
    const int ranks = int(job.topology.teacher_ranks[j]), reps = int(job.sources[j].replicas);
    t.names_.push_back(job.sources[j].name);
    t.first_.push_back(int(t.roles_.size()));
    t.replicas_.push_back(reps);
    t.per_replica_.push_back(ranks / reps);
    for (int g = 0; g < ranks; ++g)
      t.roles_.push_back({RankRole::Role::teacher, int(j), g / (ranks / reps), g % (ranks / reps), g});
  }
  return t;
}

const RankRole& Topology::role(int world_rank) const {
  if (world_rank < 0 || world_rank >= world_size())
    fail("topology: world rank {} is not in the job's {} ranks", world_rank, world_size());
  return roles_[size_t(world_rank)];
}

void Topology::check_source(int source) const {
  if (source < 0 || source >= sources()) fail("topology: source {} is not one of the job's {} sources", source, sources());
}

int Topology::teacher_rank(int source, int replica, int stage) const {
  check_source(source);
  const size_t j = size_t(source);
  if (replica < 0 || replica >= replicas_[j] || stage < 0 || stage >= per_replica_[j])
    fail("topology: source \"{}\" has {} replicas of {} ranks; no replica {} stage {}", names_[j], replicas_[j],
         per_replica_[j], replica, stage);
  return first_[j] + replica * per_replica_[j] + stage;
}

int Topology::group_color(int world_rank) const {
  const RankRole& r = role(world_rank);
  return r.role == RankRole::Role::student ? 0 : 1 + r.source;
}

std::unique_ptr<Transport> Topology::split(Transport& world) const {
  if (world.size() != world_size())
    fail("topology: the world transport has {} ranks, the topology {}", world.size(), world_size());
  const RankRole& me = role(world.rank());
  auto group = world.split(group_color(world.rank()), me.rank_in_group);
  if (group->rank() != me.rank_in_group)
    fail("topology: {} got group rank {} from split, expected {}", world.describe(world.rank()), group->rank(),
         me.rank_in_group);
  return group;
}

int Topology::owner_student(int64_t micro_batch) const {
  if (micro_batch < 0) fail("topology: micro-batch id {} is negative", micro_batch);
  return int(micro_batch % students_);
}

int Topology::serving_replica(int source, int64_t micro_batch) const {
  check_source(source);
  if (micro_batch < 0) fail("topology: micro-batch id {} is negative", micro_batch);
  return int(micro_batch % replicas_[size_t(source)]);
}

std::string Topology::role_name(int world_rank) const {
  const RankRole& x = role(world_rank);
  if (x.role == RankRole::Role::student) return fmt::format("student {}", x.rank_in_group);
  return fmt::format("teacher of source '{}' replica {} stage {}", names_[size_t(x.source)], x.replica, x.stage);
}

std::string Topology::rank_map(const Transport& world) const {
  return rank_map([&world](int r) { return world.describe(r); });
}

std::string Topology::rank_map(const std::function<std::string(int)>& name) const {
  std::string out = fmt::format("rank map: {} ranks, {} students, {} teacher groups\n", world_size(), students_, sources());
  for (int r = 0; r < world_size(); ++r) {
    const RankRole& x = roles_[size_t(r)];
    if (x.role == RankRole::Role::student)
      out += fmt::format("  {}  student {} of {}  device {}\n", name(r), x.rank_in_group, students_, device_);
    else
      out += fmt::format("  {}  teacher  source \"{}\" replica {} stage {}  group rank {}  device {}\n",
                         name(r), names_[size_t(x.source)], x.replica, x.stage, x.rank_in_group, device_);
  }
  return out;
}

void Topology::print_rank_map(const Transport& world) const {
  if (world.rank() != 0) return;
  std::string map = rank_map(world);
  map.pop_back();  // the logger ends the line
  spdlog::info("{}", map);
}

}  // namespace fusellm::dist
