#include "fusellm/dist/mpi/mpi_session.hpp"

#include <mpi.h>

#include <spdlog/spdlog.h>

#include <cstdlib>

#include "fusellm/core/error.hpp"
#include "fusellm/dist/mpi/mpi_check.hpp"

namespace fusellm::dist::mpi {
namespace {

bool has_env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0';
}

std::string_view thread_level_name(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE: return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED: return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED: return "MPI_THREAD_SERIALIZED";
    case MPI_THREAD_MULTIPLE: return "MPI_THREAD_MULTIPLE";
  }
  return "unknown";
}

}  // namespace

bool MpiSession::launched() {
  return has_env("OMPI_COMM_WORLD_SIZE") || has_env("PMIX_RANK") || has_env("PMI_RANK") ||
         (has_env("SLURM_STEP_ID") && has_env("PMI_FD"));
}

std::unique_ptr<MpiSession> MpiSession::if_launched() {
  return launched() ? std::make_unique<MpiSession>() : nullptr;
}

MpiSession::MpiSession() {
  int initialized = 0;
  FUSELLM_MPI_CHECK(MPI_Initialized(&initialized));
  int provided = MPI_THREAD_SINGLE;
  if (!initialized) {
    // Before MPI_Init_thread succeeds there is no error handler to rely on: MPI aborts on its own.
    FUSELLM_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided));
    owns_ = true;
  } else {
    FUSELLM_MPI_CHECK(MPI_Query_thread(&provided));
  }
  FUSELLM_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  if (owns_ && provided < MPI_THREAD_SERIALIZED)
    fail("MPI_Init_thread: this MPI library gives {}, fusellm needs MPI_THREAD_SERIALIZED (an MPI built with "
         "thread support)",
         thread_level_name(provided));
  thread_multiple_ = provided >= MPI_THREAD_MULTIPLE;
  if (!thread_multiple_ && world_rank() == 0)
    spdlog::warn("MPI_Init_thread: this MPI library gives {}, not MPI_THREAD_MULTIPLE: no heartbeat; a rank that "
                 "stops answering is noticed only when a wait for it passes [comm].timeout_seconds",
                 thread_level_name(provided));
}

MpiSession::~MpiSession() {
  if (!owns_) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();  // a destructor cannot throw; MPI reports its own failures
}

int MpiSession::world_rank() const {
  int r = 0;
  FUSELLM_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &r));
  return r;
}

int MpiSession::world_size() const {
  int n = 0;
  FUSELLM_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &n));
  return n;
}

void MpiSession::abort(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);  // MPI_Abort should not return; if it does, leave anyway
}

}  // namespace fusellm::dist::mpi
