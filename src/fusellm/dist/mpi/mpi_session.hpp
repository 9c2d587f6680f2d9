#pragma once
// MPI for the life of the process, only when a launcher started it. `fusellm train` without
// mpirun never touches MPI (no MPI_Init: Open MPI's singleton start would fork a helper daemon,
// and as root refuse to run), so a laptop user runs the single-process job as before.
//
// Threads: MPI_THREAD_MULTIPLE is asked for (MPI-3.1 section 12.4.3: any thread may call MPI at
// any time), because the heartbeat (heartbeat.hpp) calls MPI from its own thread while the job's
// thread is inside MPI or computing. The job itself needs only MPI_THREAD_SERIALIZED (its threads
// serialize their calls; OpenMP and Kokkos threads never call MPI): a library that gives
// SERIALIZED runs the job without the heartbeat (thread_multiple() is false), relying on the
// transports' timeouts; one that gives less is refused.
//
// Errors: MPI_COMM_WORLD's error handler becomes MPI_ERRORS_RETURN, so every failed call comes
// back as a fusellm::Error with context (mpi_check.hpp) instead of MPI aborting the job.
#include <memory>

namespace fusellm::dist::mpi {

class MpiSession {
 public:
  // True when mpirun/mpiexec or srun started this process: Open MPI's OMPI_COMM_WORLD_SIZE,
  // PMIx's PMIX_RANK (srun --mpi=pmix, Open MPI), PMI's PMI_RANK (MPICH's Hydra, srun
  // --mpi=pmi2) or a Slurm step with a PMI socket (SLURM_STEP_ID with PMI_FD).
  static bool launched();
  // A session when launched(), else nullptr (the single-process path).
  static std::unique_ptr<MpiSession> if_launched();

  // MPI_Init_thread, unless MPI is initialized already (then this session does not finalize).
  // Error when MPI cannot give MPI_THREAD_SERIALIZED.
  MpiSession();
  // MPI_Finalize when this session initialized MPI. A rank that leaves with an error should call
  // abort() instead, so that no other rank waits for it.
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  // MPI gave MPI_THREAD_MULTIPLE: a thread of its own may call MPI (the heartbeat).
  bool thread_multiple() const { return thread_multiple_; }

  int world_rank() const;
  int world_size() const;

  // MPI_Abort(MPI_COMM_WORLD, code): ends every rank of the job (mpirun reports `code`).
  [[noreturn]] static void abort(int code);

 private:
  bool owns_ = false;
  bool thread_multiple_ = false;
};

}  // namespace fusellm::dist::mpi
