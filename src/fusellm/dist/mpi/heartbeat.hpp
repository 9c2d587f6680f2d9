#pragma once
// The MPI job's heartbeat (issue 12, "dead ranks"): a rank that stops answering ends the job
// within [comm].dead_after_seconds, named, instead of leaving its peers to wait.
//
// Why a thread of its own: a rank's main thread can be busy for minutes without calling MPI (a
// 7B step's forward and backward, a checkpoint written to a slow file system), so silence on the
// job's own messages says nothing. The heartbeat thread answers meanwhile; what silences it is a
// process that is gone (kill -9 that the launcher has not reported yet, a node that lost power or
// network) or stopped (SIGSTOP, a debugger, a node swapping to death): mpirun sees nothing wrong
// with a stopped process, and MPI itself has no failure detector (MPI-3.1 section 8.7 leaves a
// failed process's effect undefined). torchelastic's and NCCL's watchdogs do the same with a
// store or a timer beside the training thread.
//
// Pattern: a star. Every rank beats to rank 0 every [comm].heartbeat_seconds and rank 0 beats to
// every rank, so rank 0 watches every rank and every rank watches rank 0 (2 (n - 1) messages per
// interval, not n^2). A watcher that hears nothing from a peer for dead_after_seconds prints
//
//   fusellm: error: rank 0 (student 0, host h, step 13): rank 2 (teacher of source 'neox' replica 0
//   stage 0, host h) sent no heartbeat for 30.1 s: it died or stopped answering; ending the job
//
// and calls MPI_Abort, which ends every rank through the launcher (mpirun, srun). A hung rank
// whose heartbeat thread still runs (a deadlock in the job) is caught by the transports'
// timeouts instead ([comm].timeout_seconds, dist/transport.hpp).
//
// The beats travel on a duplicate of MPI_COMM_WORLD (MPI_Comm_dup), so they never match a
// receive of the job's tags. Calling MPI from a second thread needs MPI_THREAD_MULTIPLE
// (MpiSession::thread_multiple(); without it cmd_train runs no heartbeat). The thread sleeps
// between polls (every 100 ms at most: a few MPI_Iprobe calls, microseconds of CPU).
//
// Ending: stop() is collective (every rank, after the job's last collective, e.g. a barrier that
// the heartbeat still watches): it stops the thread, receives every beat still in flight (the
// ranks exchange how many they sent) and frees the communicator, so that nothing of it is left
// when MPI_Finalize runs. The destructor of a heartbeat that was not stopped (the rank is leaving
// with an error and will call MPI_Abort) only stops the thread.
#include <mpi.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "fusellm/dist/rank_status.hpp"

namespace fusellm::dist::mpi {

class Heartbeat {
 public:
  using Clock = std::chrono::steady_clock;

  // Collective over MPI_COMM_WORLD (every rank, in the same order as its other collectives on
  // it): duplicates it and starts the thread. `status` names this rank and its peers; it must
  // outlive the heartbeat.
  Heartbeat(const RankStatus& status, std::chrono::milliseconds interval, std::chrono::milliseconds dead_after);
  ~Heartbeat();
  Heartbeat(const Heartbeat&) = delete;
  Heartbeat& operator=(const Heartbeat&) = delete;

  // Collective: stops beating and watching on every rank, drains the beats in flight, frees the
  // communicator. Error when a peer does not take part within dead_after.
  void stop();

 private:
  void run();
  void beat();
  void listen();
  void watch();
  void stop_thread();
  [[noreturn]] void end_job(const std::string& why) const;

  const RankStatus& status_;
  std::chrono::milliseconds interval_, dead_after_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  std::vector<int> watched_;             // rank 0: every other rank; the others: rank 0
  Clock::time_point awake_;               // this thread's last look
  std::vector<Clock::time_point> heard_;  // per world rank: its last beat (or the start)
  std::vector<int64_t> sent_, received_;  // per world rank: beats
  std::unique_ptr<int64_t[]> out_;        // per watched peer: the beat in flight (this rank's step)
  std::vector<MPI_Request> sends_;        // per watched peer: at most one beat in flight

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace fusellm::dist::mpi
