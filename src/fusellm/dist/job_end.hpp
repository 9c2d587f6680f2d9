#pragma once
// How the MPI job ends (issue 12), on every rank, whether the students finished the run or
// stopped early on a signal (core/stop_signal.hpp):
//
//   1. Student 0, once the students are done (the last checkpoint and the export written, or the
//      checkpoint of the step they stopped after), sends every teacher rank an end message
//      (Tag::end: the step, and whether they stopped early).
//   2. A teacher serves until its schedule ends, then waits for that message; or, when the
//      students stopped early, it is still serving, and the message interrupts it: watch_for_end
//      makes every wait of its JobTransport (and its loop, between micro-batches) throw JobEnded
//      once the message has arrived, so it leaves whatever it was waiting on (a credit, a hidden
//      state) at once.
//   3. Every rank then calls JobTransport::drain_unreceived: the rows sent ahead that no student
//      will consume, the credits no teacher will take, the hidden states between stages are
//      received and dropped, every send completes, and the job finalizes with nothing in flight.
//
// The teachers' wait for the end message has no time limit: the students' last checkpoint and
// export may take long, and a student that died ends the job through the heartbeat and the launcher.
#include <cstdint>
#include <exception>

#include "fusellm/dist/job_transport.hpp"
#include "fusellm/dist/topology.hpp"

namespace fusellm::dist {

struct JobEnd {
  int64_t step = 0;      // the students' last step
  bool stopped = false;  // before the run's end, on a stop signal
};

// Thrown out of a teacher's wait by watch_for_end's interrupt. Not a fusellm::Error: nothing failed,
// and no handler of errors on the way (which adds context and rethrows) must take it for one.
class JobEnded : public std::exception {
 public:
  explicit JobEnded(JobEnd end) : end_(end) {}
  const char* what() const noexcept override { return "the students ended the job"; }
  const JobEnd& end() const { return end_; }

 private:
  JobEnd end_;
};

// Student 0: the end message to every teacher rank of `topo`.
void announce_end(JobTransport& world, const Topology& topo, const JobEnd& end);
// A teacher: the end message from student 0 (blocks, without a time limit).
JobEnd wait_for_end(JobTransport& world);
// A teacher: sets `world`'s interrupt to throw JobEnded once the end message has arrived (once).
void watch_for_end(JobTransport& world);

}  // namespace fusellm::dist
