#pragma once
// The trainer's checkpoints: what a resumed run needs to continue bit for bit (the target's
// weights, AdamW's moments, the sampler's position, the RNG, the schedule, the job), put into the
// checkpoint store's StateDict and taken back (ckpt/checkpoint_store.hpp holds the files and
// knows no trainer). One file, state.h5:
//
//   group "model"      the target's parameters by HF name
//   groups "optim/m", "optim/v"   AdamW's exp_avg and exp_avg_sq by the same names, shaped as the
//                      parameter (optim/optim_state.hpp)
//   texts rng_state (rng_to_text), job_toml (JobConfig::to_toml())
//   values step, tokens_seen, sampler_epoch, sampler_position, optim_steps, schedule_* (six,
//                      optim_state.hpp), then data_sequences, data_fingerprint when recorded
//
// This is, value for value and in the same order, what checkpoints held before the store was
// reshaped, so those load unchanged (tests/fixtures/ckpt_v1).
//
// A ZeRO-1 checkpoint of R student ranks (sharded_checkpoint.hpp) has the same state.h5 with
// empty optim/m and optim/v groups and three more values, optim_shards (R), optim_total (floats
// in the flat buffer) and save_id; AdamW's moments are in the files optim-<r>-of-<R>.h5
// (optim_shard.hpp). Both kinds load here; restore_optimizer() and moments() read either.
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "fusellm/ckpt/checkpoint_store.hpp"
#include "fusellm/core/param_table.hpp"
#include "fusellm/core/state_dict.hpp"
#include "fusellm/job/sampler.hpp"  // rng_to_text, rng_from_text
#include "fusellm/optim/adamw.hpp"
#include "fusellm/optim/lr_schedule.hpp"
#include "fusellm/train/optim_shard.hpp"

namespace fusellm {

// Everything besides tensors that a resumed run needs to continue bit for bit.
struct TrainState {
  int64_t step = 0;              // optimizer steps completed
  int64_t tokens_seen = 0;       // target tokens trained on
  int64_t sampler_epoch = 0;     // the sampler's position: epoch ...
  int64_t sampler_position = 0;  // ... and micro-batches of it consumed
  int64_t optim_steps = 0;       // AdamW's step count (bias correction), normally == step
  std::string rng_state;         // rng_to_text(): std::mt19937_64 state
  LrSchedule schedule;           // kind, base lr, warmup and total steps, floor
  std::string job_toml;          // the job that wrote it (JobConfig::to_toml())
  // The training data the sampler position refers to: packed sequences per epoch and an XXH64
  // of the segments' lengths and [corpus].max_len (trainer.cpp). 0 = not recorded (checkpoints
  // of earlier versions); a resume on other data is refused, as its position would mean nothing.
  int64_t data_sequences = 0;
  uint64_t data_fingerprint = 0;
  bool operator==(const TrainState&) const = default;
};

struct CheckpointContents {
  std::vector<TensorRef> model;    // by HF name
  std::vector<TensorRef> optim_m;  // AdamW exp_avg by the same names
  std::vector<TensorRef> optim_v;  // AdamW exp_avg_sq
  TrainState state;
  // A ZeRO-1 checkpoint's state.h5: the moments are in optim_shards shard files (optim_m and
  // optim_v stay empty). 0: a single-process checkpoint, written exactly as before.
  int optim_shards = 0;
  int64_t optim_total = 0;
  uint64_t save_id = 0;

  // Adds AdamW's moments (and step count), shaped as the model tensor of the same name when
  // there is one (add the model first), else 1-D. References the optimizer's memory.
  void add_optimizer(const AdamW& opt);
  // What the store writes (references these vectors: keep them alive while it is used).
  StateDictRef state_dict() const;
};

struct TrainCheckpoint {
  std::string path;  // the step-<N> directory it was read from
  TrainState state;
  std::vector<NamedTensor> model, optim_m, optim_v;  // in the order they were saved
  std::vector<std::string> warnings;  // what was wrong with newer checkpoints that were skipped
  // A ZeRO-1 checkpoint (see above): its number of shard files and its save's id; the shard files
  // that were read (all for CheckpointStore::load, a rank's for a filtered load), in rank order.
  int optim_shards = 0;
  int64_t optim_total = 0;
  uint64_t save_id = 0;
  std::vector<OptimShard> shards;

  // From what the store loaded; Error naming the checkpoint when a part is missing, naming the
  // file when a shard file is missing, of another save, or cut otherwise than state.h5 says.
  static TrainCheckpoint from(LoadedCheckpoint&& c);
  const Tensor* find_model(const std::string& name) const;
  // The layout of `model`: its tensors in the order saved (the trainer's ParamTable).
  ParamTable model_table() const;
  // Sets AdamW's moments and step count from optim_m / optim_v / state.optim_steps, or from the
  // shard files (all of them read) of a ZeRO-1 checkpoint.
  void restore_optimizer(AdamW& opt) const;
  // AdamW's moments of [begin, end) of a flat buffer laid out by `table`, from either kind: by
  // tensor name from optim_m / optim_v, or from the shard files that overlap the range (a
  // reshard when they are cut elsewhere). Zero before any step; Error naming the checkpoint.
  void moments(const ParamTable& table, int64_t begin, int64_t end, std::span<float> m, std::span<float> v) const;
};

// A CheckpointStore holding the trainer's checkpoints (the same directory layout and guarantees).
class TrainCheckpointStore {
 public:
  explicit TrainCheckpointStore(std::string dir, int64_t keep = 3) : store_(std::move(dir), keep) {}
  const std::string& dir() const { return store_.dir(); }
  std::string save(const CheckpointContents& c) const { return store_.save(c.state_dict()); }
  // The newest usable checkpoint; one that lacks a part of the trainer's state counts as damaged.
  std::optional<TrainCheckpoint> load_latest() const;
  static TrainCheckpoint load(const std::string& step_dir) { return TrainCheckpoint::from(CheckpointStore::load(step_dir)); }
  std::vector<int64_t> complete_steps() const { return store_.complete_steps(); }
  // The store itself, for writers of several files (sharded_checkpoint.hpp).
  const CheckpointStore& store() const { return store_; }

 private:
  CheckpointStore store_;
};

inline std::optional<TrainCheckpoint> load_latest(const std::string& dir) { return TrainCheckpointStore(dir).load_latest(); }

}  // namespace fusellm
