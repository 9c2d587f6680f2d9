#pragma once
// `fusellm train` in offline mode (DESIGN.md sections 1, 2 and 5): continual training of the target
// from the teachers' distribution caches, single process, fp32 on the CPU.
//
// The parts, as llm.c's main loop and torchtitan's trainer have them: the sampler
// (sampler.hpp: which packed sequences each step trains on, in which micro-batches), the step
// (train_step.hpp: micro-batches -> forward, fusion, fused classifier, backward), then here:
// reduce the gradients (nothing to do in one process), clip_grad_norm, lr(step) of the schedule,
// AdamW; the metrics (metrics.hpp); the checkpoints (checkpointing.hpp). The loss of a step is the
// mean of its sequences' losses.
//
// Data: the caches' segments (the same segments, in the same order, that `fusellm teach` cut),
// packed into sequences of [corpus].max_len target tokens (packer.hpp), read from the caches as
// the step needs them (segment_source.hpp: memory does not grow with the corpus). With fusion =
// "none" or lambda = 1 no cache is read: the segments are cut again here (the same Segmenter over
// every tokenizer of the job) and tokenized by the target tokenizer.
//
// A NaN or Inf loss term (or gradient norm) stops the run with an Error naming the step, the term,
// what to look at and the last good checkpoint that exists; the optimizer does not step and no
// checkpoint of that step is written, so `latest` stays the last good one. So does an update that
// makes any weight or AdamW moment Inf or NaN (lr = 1e308): AdamW checks its own output, so no
// checkpoint or export that is not finite is ever written (CheckpointStore refuses one as well).
//
// At start (before any model is loaded) the run claims its directories: [job].output_dir,
// [checkpoint].dir and the export directory must be writable, and a lock (flock on
// <output_dir>/fusellm.lock, holding the host and pid) refuses a second run on the same output
// directory at once; the checkpoint directory gets its own lock when it lies outside it.
//
// A stop signal (SIGUSR1, SIGTERM: core/stop_signal.hpp) ends the run after the step in progress:
// the students agree on it in the step's one all-reduce (so all stop after the same step, even when
// the signal reached only some of them or at different moments), write a checkpoint of that step
// and no export; TrainResult::stopped_by names the signal and `fusellm train` exits 75 (requeue).
//
// What tests and reference replays need to see inside a run (each step's data, fault injection)
// is a TrainObserver (train_observer.hpp), not an option.
//
// Needs Kokkos initialized, or TrainOptions::init_kokkos.
#include <cstdint>
#include <string>
#include <vector>

#include "fusellm/job/job_config.hpp"
#include "fusellm/train/data_parallel.hpp"
#include "fusellm/train/metrics.hpp"
#include "fusellm/train/train_observer.hpp"

namespace fusellm {

struct TrainOptions {
  int64_t max_steps = -1;    // > 0: overrides [train].max_steps (and so the schedule's length)
  int64_t stop_after = -1;   // > 0: stop (with a checkpoint) after this many steps of this run,
                             // as if interrupted; the schedule is unchanged
  int64_t limit = -1;        // >= 0: only the first `limit` segments
  bool require_complete_caches = true;
  bool progress = true;      // human lines (and a progress bar on a terminal) on stderr
  bool init_kokkos = false;
  std::string export_dir;    // non-empty: HF export of the target at the end
};

struct TrainResult {
  int64_t start_step = 0;    // steps completed before this run (resumed from)
  int64_t end_step = 0;      // steps completed now
  int64_t total_steps = 0;   // of the schedule
  int64_t sequences = 0;     // packed sequences per epoch
  int64_t segments = 0;
  int64_t segments_read = 0;   // segments read (from the caches, the teachers, or the corpus for CLM only)
  std::vector<StepLog> steps;  // this run's steps
  std::string last_checkpoint;
  // Non-empty when a stop signal ended the run before its last step (core/stop_signal.hpp): the
  // signal; the run wrote a checkpoint of its last step and no export.
  std::string stopped_by;
  std::string metrics_path;
};

// observer: called during the run (train_observer.hpp); nullptr for none. dp: a student rank of
// the MPI job (data_parallel.hpp); nullptr for one process.
TrainResult train(const JobConfig& job, const TrainOptions& opt, TrainObserver* observer = nullptr,
                  DataParallel* dp = nullptr);

// Where the target checkpoint is: [target].path, or the path of the [[source]] it inits from.
std::string target_dir(const JobConfig& job);

}  // namespace fusellm
