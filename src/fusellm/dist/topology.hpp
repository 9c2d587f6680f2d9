#pragma once
// Who does what in the MPI job (DESIGN.md section 2): the role of every world rank, from the job
// file's [topology] (teacher_ranks per source, student_ranks).
//
// World ranks, in this order:
//
//   0 .. S-1                          the students (S = student_ranks), student rank = world rank;
//                                     world rank 0 is student 0, which writes the metrics and the
//                                     checkpoint metadata (the single-process run's rank 0 too)
//   then one teacher group per source, in the job's [[source]] order, each of teacher_ranks[j]
//   contiguous ranks: replica 0's ranks, then replica 1's, ...
//
// A replica of source j spans teacher_ranks[j] / replicas ranks, contiguous (its pipeline stages
// once [[source]].stages exists; until then `stage` is the rank's place in its replica).
//
// Work assignment (deterministic, the same on every rank and every restart):
//   owner student of micro-batch id:     id % student_ranks
//   replica of source j that serves it:  id % replicas[j] (round robin)
//
// A single process (no mpirun, or -np 1) does not use a Topology: it runs every role in turn.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fusellm/dist/transport.hpp"
#include "fusellm/job/job_config.hpp"

namespace fusellm::dist {

struct RankRole {
  enum class Role { student, teacher };
  Role role = Role::student;
  int source = -1;        // index of the [[source]]; -1 for students
  int replica = 0;        // teachers: the source's replica this rank belongs to; students: 0
  int stage = 0;          // teachers: place in the replica (its pipeline stage); students: 0
  int rank_in_group = 0;  // rank in the group transport (the students' or the teacher group's)
  bool operator==(const RankRole&) const = default;
};

class Topology {
 public:
  // The roles for a job started on `world_size` ranks. Every rank calls it before any work, so a
  // mistake is refused on every rank and every rank exits non-zero: Error naming the job file and
  // the [topology] fields when world_size != sum(teacher_ranks) + student_ranks (saying how many
  // ranks the job needs and which mpirun -np to use), or when a source's replicas do not divide
  // its teacher_ranks.
  static Topology of(const JobConfig& job, int world_size);

  int world_size() const { return int(roles_.size()); }
  int student_ranks() const { return students_; }
  int sources() const { return int(names_.size()); }
  const RankRole& role(int world_rank) const;
  // World rank of source j's replica r, stage s.
  int teacher_rank(int source, int replica, int stage = 0) const;
  // Ranks per replica of source j: its pipeline stages.
  int stages(int source) const { return per_replica_.at(size_t(source)); }
  int replicas(int source) const { return replicas_.at(size_t(source)); }
  // The group a world rank belongs to: 0 for the students, 1 + j for source j's teachers.
  int group_color(int world_rank) const;

  // This rank's group transport (MPI_Comm_split of `world` by group_color, ordered by
  // rank_in_group); every world rank calls it. `world` must have world_size() ranks.
  std::unique_ptr<Transport> split(Transport& world) const;

  // The student rank (= world rank) that owns micro-batch `id`: id % student_ranks.
  int owner_student(int64_t micro_batch) const;
  // The replica of source j that serves micro-batch `id`: id % replicas (round robin).
  int serving_replica(int source, int64_t micro_batch) const;

  // "student 0", "teacher of source 'neox' replica 0 stage 1": what a message about the rank
  // calls it (dist/rank_status.hpp).
  std::string role_name(int world_rank) const;

  // One line per world rank: "rank 3 (host node07)  teacher  source "llama" replica 1 stage 0
  // group rank 1  device auto"; hosts from world.describe(); a teacher's device is [train].device
  // as set (auto: the GPU of its node when one is found there), a student's the CPU.
  std::string rank_map(const Transport& world) const;
  // The same before any rank runs (`fusellm plan`): each rank named by `name(world_rank)`.
  std::string rank_map(const std::function<std::string(int)>& name) const;
  // Logs rank_map() on world rank 0 (no communication: the transport knows the hosts).
  void print_rank_map(const Transport& world) const;

 private:
  void check_source(int source) const;

  std::vector<RankRole> roles_;
  std::vector<std::string> names_;  // per source
  std::vector<int> first_;          // per source: its group's first world rank
  std::vector<int> replicas_;       // per source
  std::vector<int> per_replica_;    // per source: ranks per replica
  int students_ = 1;
  std::string device_ = "cpu";  // [train].device as set: where every rank computes (resolved on each node)
};

}  // namespace fusellm::dist
