#pragma once
// The trainer's side of a checkpoint (ckpt/checkpoint_store.hpp): what a run saves after a step
// and what it restores when it resumes, the one place the training loop meets the checkpoint
// format. A checkpoint holds the model's tensors by name, AdamW's moments and step count, and the
// TrainState: the step and tokens seen, the sampler's position (epoch, sequences consumed, the
// generator's state at the epoch's start), the schedule, the data it was written for and the job.
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "fusellm/train/train_checkpoint.hpp"
#include "fusellm/job/job_config.hpp"
#include "fusellm/model/trainable_model.hpp"
#include "fusellm/optim/adamw.hpp"
#include "fusellm/optim/lr_schedule.hpp"
#include "fusellm/job/sampler.hpp"

namespace fusellm {

// Where a run stands, besides the sampler and the optimizer.
struct RunPosition {
  int64_t step = 0;         // optimizer steps completed
  int64_t tokens_seen = 0;  // target tokens trained on
};

struct Resumed {
  std::string path;  // the checkpoint's step directory
  RunPosition position;
};

// With [checkpoint].resume, the newest usable checkpoint of the store restored into the model,
// AdamW and the sampler; nullopt when there is none (a fresh start). Refuses a checkpoint of
// another model or of other training data; warns when its schedule or job differ from `sched`
// and `job` (the run continues with these).
std::optional<Resumed> resume_latest(const TrainCheckpointStore& store, const JobConfig& job, const LrSchedule& sched,
                                     model::TrainableModel& model, AdamW& adamw, Sampler& sampler);

// The parts of resume_latest and save_checkpoint that a ZeRO-1 run (sharded_checkpoint.hpp)
// shares with one process:
// The weights by name into a flat buffer laid out by `table`; Error naming the checkpoint and the
// tensor that is missing or of another shape.
void load_weights(const TrainCheckpoint& ck, const ParamTable& table, std::span<float> params);
// Refuses a checkpoint of other training data (its sampler position would mean nothing).
void check_same_data(const TrainCheckpoint& ck, const Sampler& sampler);
// After the weights and the optimizer: warns of another schedule or job, restores the sampler,
// logs the resume; returns where the run stands.
Resumed restore_position(const TrainCheckpoint& ck, const JobConfig& job, const LrSchedule& sched, Sampler& sampler);
// What a checkpoint of step at.step records besides tensors (optim_steps: AdamW's step count).
TrainState train_state(const JobConfig& job, const LrSchedule& sched, const Sampler& sampler, const RunPosition& at,
                       int64_t optim_steps);

// Saves step `at.step` (atomically, `latest` pointed at it; see TrainCheckpointStore::save) and returns
// its directory.
std::string save_checkpoint(const TrainCheckpointStore& store, const JobConfig& job, const LrSchedule& sched,
                            const model::TrainableModel& model, const AdamW& adamw, const Sampler& sampler,
                            const RunPosition& at);

}  // namespace fusellm
