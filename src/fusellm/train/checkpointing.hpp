#pragma once
// The trainer's side of a checkpoint (ckpt/checkpoint_store.hpp): what a run saves after a step
// and what it restores when it resumes, the one place the training loop meets the checkpoint
// format. A checkpoint holds the model's tensors by name, AdamW's moments and step count, and the
// TrainState: the step and tokens seen, the sampler's position (epoch, sequences consumed, the
// generator's state at the epoch's start), the schedule, the data it was written for and the job.
#include <cstdint>
#include <optional>
#include <string>

#include "fusellm/train/train_checkpoint.hpp"
#include "fusellm/job/job_config.hpp"
#include "fusellm/model/llama_train.hpp"
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
                                     model::TrainableLlama& model, AdamW& adamw, Sampler& sampler);

// Saves step `at.step` (atomically, `latest` pointed at it; see TrainCheckpointStore::save) and returns
// its directory.
std::string save_checkpoint(const TrainCheckpointStore& store, const JobConfig& job, const LrSchedule& sched,
                            const model::TrainableLlama& model, const AdamW& adamw, const Sampler& sampler,
                            const RunPosition& at);

}  // namespace fusellm
