#pragma once
// `fusellm train`: one process, or one rank of the MPI job (DESIGN.md section 2; issue 11).
//
// One process (no mpirun, or -np 1): train() with every role in turn: offline from the caches
// when [cache].dir is set, else online with the Teachers in process.
//
// The MPI job: every rank computes the Topology from [topology] (a world size that does not fit
// is refused on every rank before any work), splits the world into its group, prints the rank
// map (rank 0), cuts the job's segments and builds the sampler, then all ranks compare their
// fingerprints (dist/rank_agreement.hpp). Student ranks run train() with a DataParallel (rows over
// the transport, ZeRO-1, sharded checkpoints); teacher ranks run a TeacherServer over the same
// schedule from the position the students broadcast. Each rank keeps a timeline
// (<output_dir>/timeline/rank-<r>.jsonl; `fusellm timeline` summarizes it).
#include "fusellm/dist/transport.hpp"
#include "fusellm/train/trainer.hpp"

namespace fusellm {

struct JobRankResult {
  TrainResult train;          // a student's (the teachers' is empty)
  bool student = true;
  // The run stopped before its end on a stop signal (core/stop_signal.hpp), after a checkpoint:
  // a student's train.stopped_by, a teacher's word from the students (dist/job_end.hpp).
  bool stopped = false;
  int64_t served = 0;         // a teacher's micro-batches
  int64_t max_in_flight = 0;  // a teacher's most micro-batches in flight to one student
  int64_t resident_first = 0; // a teacher's resident bytes after its first micro-batch
  int64_t resident_end = 0;   // and after its last (every credit back)
};

// world: every rank of the job; nullptr (or one rank): one process.
JobRankResult run_job(const JobConfig& job, const TrainOptions& opt, TrainObserver* observer,
                      dist::Transport* world);

}  // namespace fusellm
