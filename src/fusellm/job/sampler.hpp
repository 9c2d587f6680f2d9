#pragma once
// The job's training schedule (DESIGN.md 2.0 and 5): which packed sequences each optimizer step trains
// on, in which micro-batches, and which segments each micro-batch needs. It follows from the job
// and the segments' lengths alone, so a rank that holds no model (a teacher of the MPI job)
// computes the same step -> micro-batch -> segments schedule as the student that trains on it.
//
// Sequences: the segments' target tokens packed into sequences of [corpus].max_len (packer.hpp).
// Order: epoch e visits the sequences in a permutation drawn from one std::mt19937_64 seeded by
// [job].seed (Fisher-Yates from the back, the swap index rng() % (i + 1)); each epoch continues
// the generator. A step takes [train].global_batch sequences, cut into micro-batches of
// [train].micro_batch in order; a step may span two epochs. With [train].max_steps (or --max-steps)
// the epochs go on until the run's steps are done; without, the data ends after [train].epochs
// epochs (the last step may be short).
//
// Resumable: the position is (epoch, sequences of it consumed, the generator's state at the
// epoch's start). A checkpoint stores it (TrainState), and restore() draws the epoch's permutation
// again from that state, so the resumed run continues at the same sequence.
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "fusellm/data/packer.hpp"
#include "fusellm/job/job_config.hpp"

namespace fusellm {

struct SamplerSettings {
  int64_t max_len = 1;       // [corpus].max_len: target tokens per packed sequence
  int64_t global_batch = 1;  // [train].global_batch: sequences per optimizer step
  int64_t micro_batch = 1;   // [train].micro_batch: sequences per forward pass
  int64_t epochs = 1;        // [train].epochs
  int64_t max_steps = -1;    // > 0: the run's steps (epochs unbounded); else as many as `epochs` give
  uint64_t seed = 0;         // [job].seed

  // The job's settings; max_steps_override > 0 replaces [train].max_steps (`train --max-steps`).
  static SamplerSettings of(const JobConfig& job, int64_t max_steps_override = -1);
};

// One optimizer step's sequences (indices into the packer's plan), in micro-batches.
struct StepBatches {
  std::vector<std::vector<int64_t>> micro_batches;
  int64_t sequences() const;
  bool empty() const { return micro_batches.empty(); }
};

class Sampler {
 public:
  // segment_lengths: target tokens per segment, in segment order (SegmentSource::lengths()).
  Sampler(std::span<const int64_t> segment_lengths, const SamplerSettings& settings);

  const SamplerSettings& settings() const { return settings_; }
  const Packer& packer() const { return packer_; }
  int64_t sequences() const { return packer_.sequences(); }  // per epoch
  // The schedule's length: max_steps, else ceil(epochs x sequences / global_batch) (at least 1).
  int64_t total_steps() const;
  // What a position refers to: XXH64 of the segments' lengths seeded with max_len (never 0, which
  // a checkpoint uses for "not recorded"); a position is meaningless on data of another print.
  uint64_t data_fingerprint() const { return fingerprint_; }

  // The next step's sequences; empty when the epochs are done (never with max_steps).
  StepBatches next();
  // The segments a micro-batch's sequences are built from, each once, in the order of first use.
  std::vector<int64_t> segments(std::span<const int64_t> micro_batch) const;

  // The position, as a checkpoint stores it, and back.
  int64_t epoch() const { return epoch_; }
  int64_t position() const { return position_; }
  const std::mt19937_64& epoch_start_rng() const { return epoch_start_; }
  void restore(int64_t epoch, int64_t position, const std::mt19937_64& epoch_start_rng);

 private:
  void begin_epoch();  // draws the permutation from rng_, remembering the state it started from
  bool exhausted() const;

  SamplerSettings settings_;
  Packer packer_;
  uint64_t fingerprint_ = 1;
  std::mt19937_64 rng_, epoch_start_;
  std::vector<int64_t> perm_;
  int64_t epoch_ = 0, position_ = 0;
};

// The generator's full state as text (operator<<), and back; Error on text that is not one. What
// a checkpoint stores and the MPI job's start position carries (dist/start_position.hpp).
std::string rng_to_text(const std::mt19937_64& rng);
void rng_from_text(std::mt19937_64& rng, const std::string& text);

}  // namespace fusellm
