#pragma once
// Training checkpoints (DESIGN.md section 5), in the layout torchtitan uses: one directory per
// step, a completion marker written last, resume from the newest complete one.
//
//   <dir>/step-<N>/state.h5     HDF5 (serial, C API):
//       /model/<HF name>            fp32 tensors, shaped; attribute xxh64
//       /optim/m/<name>             AdamW exp_avg, same names; attribute xxh64
//       /optim/v/<name>             AdamW exp_avg_sq; attribute xxh64
//       /meta/rng_state             the std::mt19937_64 state as text (uint8); attribute xxh64
//       /meta/job_toml              the job file (JobConfig::to_toml()) (uint8); attribute xxh64
//       attributes of /             format, format_version, step, tokens_seen, sampler_epoch,
//                                   sampler_position, optim_steps, schedule_*, state_xxh64
//   <dir>/step-<N>/COMPLETE     the marker: written, fsync'd, after state.h5 is closed and fsync'd:
//                                 "fusellm-checkpoint\nstep <N>\nstate.h5 <bytes> xxh64 <16 hex>\n", one
//                                 line per file with its size and the XXH64 of its whole bytes
//                                 (file_checksum.hpp); markers of earlier versions have no "xxh64 <hex>"
//   <dir>/latest                "step-<N>": the newest checkpoint written completely
//
// Each dataset's checksum is XXH64 of its bytes, seeded with XXH64 of its shape, so a damaged
// shape is caught as surely as a damaged value; the root attributes have one checksum together.
//
// Atomicity: a checkpoint is written into <dir>/.tmp-step-<N>-<pid>/, fsync'd (file, marker, the
// directory), renamed to step-<N> (one rename(2)), the parent fsync'd; then `latest` is written
// to a temporary name, fsync'd and renamed over the old one. A process killed at any point leaves
// either the previous state or the new one, plus at worst a .tmp directory that loading ignores
// and the next save removes. Then all but the newest `keep` checkpoints are deleted.
//
// Loading (resume, export) verifies everything: the marker, then the size and whole-file checksum
// it records, before HDF5 opens the file (libhdf5 can crash on damaged metadata rather than fail),
// then every dataset's checksum and shape. A marker without a checksum (an older checkpoint) gets
// the size check only, and a log line says so. When the checkpoint `latest` names is damaged it warns, saying what is wrong,
// and falls back to the next older complete one; when none is usable it fails listing why each
// was refused. A directory with no checkpoint at all is a fresh start (std::nullopt).
#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "fusellm/core/tensor.hpp"
#include "fusellm/optim/adamw.hpp"
#include "fusellm/optim/lr_schedule.hpp"

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

// A tensor to save, by reference (no copy of 7B parameters). data.size() must equal numel(shape).
struct TensorRef {
  std::string name;
  Shape shape;
  std::span<const float> data;
};

struct CheckpointContents {
  std::vector<TensorRef> model;    // by HF name
  std::vector<TensorRef> optim_m;  // AdamW exp_avg by the same names
  std::vector<TensorRef> optim_v;  // AdamW exp_avg_sq
  TrainState state;

  // Adds AdamW's moments (and step count), shaped as the model tensor of the same name when
  // there is one (add the model first), else 1-D. References the optimizer's memory.
  void add_optimizer(const AdamW& opt);
};

struct NamedTensor {
  std::string name;
  Tensor tensor;
};

struct TrainCheckpoint {
  std::string path;  // the step-<N> directory it was read from
  TrainState state;
  std::vector<NamedTensor> model, optim_m, optim_v;  // in the order they were saved
  std::vector<std::string> warnings;  // what was wrong with newer checkpoints that were skipped

  const Tensor* find_model(const std::string& name) const;
  // Sets AdamW's moments and step count from optim_m / optim_v / state.optim_steps.
  void restore_optimizer(AdamW& opt) const;
};

class CheckpointStore {
 public:
  // keep: complete checkpoints kept after each save (0 = all).
  explicit CheckpointStore(std::string dir, int64_t keep = 3);

  const std::string& dir() const { return dir_; }

  // Writes step-<state.step> atomically, points `latest` at it, prunes. Returns its directory.
  // Saving a step that exists (a run resumed from an older checkpoint) replaces it.
  std::string save(const CheckpointContents& c) const;

  // The newest usable checkpoint (see above); nullopt when the directory holds none at all.
  std::optional<TrainCheckpoint> load_latest() const;

  // One checkpoint directory, fully verified; Error naming what is wrong.
  static TrainCheckpoint load(const std::string& step_dir);

  // Steps of the directories that have a completion marker, ascending (not verified).
  std::vector<int64_t> complete_steps() const;

 private:
  std::string dir_;
  int64_t keep_;
  void prune(int64_t saved_step) const;
};

inline std::optional<TrainCheckpoint> load_latest(const std::string& dir) { return CheckpointStore(dir).load_latest(); }

// The generator's full state as text (operator<<), and back; Error on text that is not one.
std::string rng_to_text(const std::mt19937_64& rng);
void rng_from_text(std::mt19937_64& rng, const std::string& text);

}  // namespace fusellm
