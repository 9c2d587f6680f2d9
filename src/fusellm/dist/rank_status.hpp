#pragma once
// Who a rank of the MPI job is and where, for the messages that end the job (issue 12: "a clean
// abort that names the rank, role, host and step"). A rank that fails, or that notices a silent
// peer (dist/mpi/heartbeat.hpp), names itself and the peer the same way:
//
//   rank 2 (teacher of source 'neox' replica 0 stage 1, host node07, step 13)
//
// The roles come from the job's [topology] (dist/topology.hpp) and the hosts from the world
// transport, so nothing is exchanged; the step is the one this rank works on now, set by the
// students' loop (train/trainer.cpp Run::step) and the teachers' (dist/teacher_server.cpp serve)
// and read by the heartbeat thread, hence one atomic for the process (a rank is a process).
#include <cstdint>
#include <string>
#include <vector>

#include "fusellm/job/job_config.hpp"

namespace fusellm::dist {

class RankStatus {
 public:
  // World rank `rank` of `hosts.size()` ranks (hosts[r]: rank r's host name). A world that does
  // not fit the job's topology has no roles ("role unknown"); run_job refuses it by name.
  RankStatus(const JobConfig& job, int rank, std::vector<std::string> hosts);

  int rank() const { return rank_; }
  int size() const { return int(hosts_.size()); }
  // "rank 2 (teacher of source 'neox' replica 0 stage 1, host node07)"
  std::string who(int r) const;
  // This rank now: who(rank()) with the step, "rank 0 (student 0, host node07, step 13)".
  std::string me() const;

  // The optimizer step this rank works on (1-based, as logged; 0 before the first).
  static void set_step(int64_t step) noexcept;
  static int64_t step() noexcept;

 private:
  int rank_ = 0;
  std::vector<std::string> hosts_;
  std::vector<std::string> roles_;
};

}  // namespace fusellm::dist
