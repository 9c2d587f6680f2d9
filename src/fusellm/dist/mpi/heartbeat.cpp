#include "fusellm/dist/mpi/heartbeat.hpp"

#include <pthread.h>

#include <cstdio>
#include <exception>

#include "fusellm/core/error.hpp"
#include "fusellm/dist/mpi/mpi_check.hpp"
#include "fusellm/dist/mpi/mpi_session.hpp"
#include "fusellm/dist/poll.hpp"

namespace fusellm::dist::mpi {
namespace {

// The beats' own communicator holds nothing else, so one tag serves.
constexpr int kBeatTag = 1;
// Longest sleep between two looks at the communicator: the detection's resolution.
constexpr std::chrono::milliseconds kPoll{100};

double seconds(Heartbeat::Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

Heartbeat::Heartbeat(const RankStatus& status, std::chrono::milliseconds interval, std::chrono::milliseconds dead_after)
    : status_(status), interval_(interval), dead_after_(dead_after) {
  FUSELLM_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm_));
  FUSELLM_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  FUSELLM_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  FUSELLM_MPI_CHECK(MPI_Comm_size(comm_, &size_));
  if (rank_ == 0)
    for (int r = 1; r < size_; ++r) watched_.push_back(r);
  else
    watched_.push_back(0);
  awake_ = Clock::now();
  heard_.assign(size_t(size_), awake_);
  sent_.assign(size_t(size_), 0);
  received_.assign(size_t(size_), 0);
  out_ = std::make_unique<int64_t[]>(watched_.size());
  sends_.assign(watched_.size(), MPI_REQUEST_NULL);
  if (size_ > 1) thread_ = std::thread([this] { run(); });
}

Heartbeat::~Heartbeat() {
  stop_thread();
  if (comm_ == MPI_COMM_NULL) return;
  // Not stopped: the rank leaves with an error (MPI_Abort follows). Let go of the beats in
  // flight; MPI may still read their buffer, so it is leaked (a few bytes, with the process).
  bool in_flight = false;
  for (MPI_Request& r : sends_)
    if (r != MPI_REQUEST_NULL) {
      MPI_Request_free(&r);
      in_flight = true;
    }
  if (in_flight) (void)out_.release();
  MPI_Comm_free(&comm_);
}

void Heartbeat::stop_thread() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Heartbeat::run() {
  pthread_setname_np(pthread_self(), "heartbeat");  // as top -H and /proc/<pid>/task/*/comm show it
  try {
    auto next_beat = Clock::now();
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      lock.unlock();
      if (Clock::now() >= next_beat) {
        beat();
        next_beat += interval_;
      }
      listen();
      watch();
      lock.lock();
      wake_.wait_for(lock, std::min<Clock::duration>(kPoll, next_beat - Clock::now()), [&] { return stopping_; });
    }
  } catch (const std::exception& e) {
    end_job(fmt::format("heartbeat: {}", e.what()));
  }
}

// One beat to every watched peer, carrying this rank's step. A beat still in flight (the peer
// has not taken the last one: it is stopped, or slow) is not doubled.
void Heartbeat::beat() {
  for (size_t i = 0; i < watched_.size(); ++i) {
    if (sends_[i] != MPI_REQUEST_NULL) {
      int done = 0;
      FUSELLM_MPI_CHECK(MPI_Test(&sends_[i], &done, MPI_STATUS_IGNORE));
      if (!done) continue;
    }
    out_[i] = RankStatus::step();
    FUSELLM_MPI_CHECK(MPI_Isend(&out_[i], 1, MPI_INT64_T, watched_[i], kBeatTag, comm_, &sends_[i]));
    ++sent_[size_t(watched_[i])];
  }
}

// Every beat that has arrived.
void Heartbeat::listen() {
  for (;;) {
    int flag = 0;
    MPI_Status st;
    FUSELLM_MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, kBeatTag, comm_, &flag, &st));
    if (!flag) return;
    int64_t step = 0;
    FUSELLM_MPI_CHECK(MPI_Recv(&step, 1, MPI_INT64_T, st.MPI_SOURCE, kBeatTag, comm_, MPI_STATUS_IGNORE));
    heard_[size_t(st.MPI_SOURCE)] = Clock::now();
    ++received_[size_t(st.MPI_SOURCE)];
  }
}

void Heartbeat::watch() {
  const auto now = Clock::now();
  // This thread itself did not run for a long while: the process was stopped (SIGSTOP, a
  // debugger) or starved, so its peers' silence is its own. Do not blame them: start their clocks
  // again (the peers may have ended the job meanwhile; the launcher then ends this rank too).
  if (now - awake_ > dead_after_ / 2) {
    std::fprintf(stderr, "fusellm: warning: %s: the heartbeat did not run for %.1f s (this process was stopped or "
                 "starved)\n", status_.me().c_str(), seconds(now - awake_));
    for (auto& t : heard_) t = now;
  }
  awake_ = now;
  for (const int p : watched_)
    if (now - heard_[size_t(p)] > dead_after_)
      end_job(fmt::format("{} sent no heartbeat for {:.1f} s: it died or stopped answering", status_.who(p),
                          seconds(now - heard_[size_t(p)])));
}

void Heartbeat::end_job(const std::string& why) const {
  std::fprintf(stderr, "fusellm: error: %s: %s; ending the job\n", status_.me().c_str(), why.c_str());
  std::fflush(stderr);
  MpiSession::abort(1);
}

void Heartbeat::stop() {
  if (comm_ == MPI_COMM_NULL) return;
  stop_thread();
  // How many beats each rank sent to each: every rank then receives exactly what was sent to it,
  // so no message is left on the communicator when it is freed.
  std::vector<int64_t> expected(size_t(size_), 0);
  MPI_Request all = MPI_REQUEST_NULL;
  FUSELLM_MPI_CHECK(MPI_Ialltoall(sent_.data(), 1, MPI_INT64_T, expected.data(), 1, MPI_INT64_T, comm_, &all));
  auto test = [](MPI_Request& r) {
    int done = 0;
    FUSELLM_MPI_CHECK(MPI_Test(&r, &done, MPI_STATUS_IGNORE));
    return done != 0;
  };
  if (!poll_until([&] { return test(all); }, dead_after_))
    fail("{}: heartbeat: stop: the other ranks did not stop within {:.0f} s", status_.me(), seconds(dead_after_));
  auto drained = [&] {
    listen();
    for (int r = 0; r < size_; ++r)
      if (received_[size_t(r)] < expected[size_t(r)]) return false;
    for (MPI_Request& s : sends_)
      if (!test(s)) return false;
    return true;
  };
  if (!poll_until(drained, dead_after_))
    fail("{}: heartbeat: stop: beats still in flight after {:.0f} s", status_.me(), seconds(dead_after_));
  FUSELLM_MPI_CHECK(MPI_Comm_free(&comm_));
}

}  // namespace fusellm::dist::mpi
