#pragma once
// One optimizer step's forward and backward passes (DESIGN.md section 5), the part of llm.c's main
// loop before "reduce, grad norm, update", as torchtitan's train_step:
//
//   for each micro-batch: one forward pass over its packed sequences concatenated, each its own
//     attention block with positions from 0 (what separate passes compute);
//     per sequence: the K sources' rows fused (MinCE / AvgCE over the sequence's token-weighted
//     CE, FuseLLM eq. 3-4); the fused classifier (lambda CLM + (1 - lambda) Fusion, eq. 5, mean
//     over the sequence's labelled positions) writes dL/dz into the logits, which are scaled by
//     1 / (sequences in the whole step), so the step's loss is the mean of its sequences' losses;
//   backward into zeroed gradients, added to the earlier micro-batches' (g = (g_0 + g_1) + g_2 ...,
//   as torch accumulates .grad; one micro-batch per data-parallel student then sums the same);
//
// It zeroes the gradients first and leaves the step's gradient in the model, in its backend's
// memory (a GPU's: TrainableModel::gradients_to_host brings it to the host): reducing it across
// ranks, clipping and the update are the caller's (trainer.cpp), as is anything that needs the
// step's place in the run. A rank of a data-parallel job runs it on its own micro-batches with
// step_sequences = the whole step's sequences, and sums the returned terms across ranks.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "fusellm/core/error.hpp"
#include "fusellm/data/packer.hpp"
#include "fusellm/device/device_loss.hpp"
#include "fusellm/job/job_config.hpp"
#include "fusellm/model/trainable_model.hpp"
#include "fusellm/job/sampler.hpp"

namespace fusellm {

class TrainObserver;

// Whether the job trains on the teachers' distributions at all: fusion "none" or lambda = 1 is
// plain CLM, which reads no cache.
bool fuses_teachers(const JobConfig& job);

struct StepSettings {
  std::optional<kernels::FusionMode> fusion;  // None: CLM only (no rows)
  double lambda = 1.0;                   // the CLM term's weight; 1 when fusion is None
  std::vector<std::string> sources;      // the K sources' names, in the rows' order
  int64_t vocab = 0;                     // the target's
  fusion::ScoreUnit score = fusion::ScoreUnit::kNatsPerToken;  // what MinCE / AvgCE rank by ([distill].score)

  static StepSettings of(const JobConfig& job, std::vector<std::string> sources, int64_t vocab);
};

// Micro-batch `index` of the step as packed sequences with every source's rows: built from a
// SegmentSource by the trainer, from received rows by a student of the MPI job.
using MicroBatchFetch = std::function<std::vector<PackedSequence>(size_t index, std::span<const int64_t> sequences)>;

// What fusion chose for one sequence, for the metrics: MinCE's source (-1: none), AvgCE's weights.
struct SequenceFusion {
  int32_t choice = -1;
  std::vector<float> weights;  // [K]
};

// The step's loss terms, summed over its sequences (the caller divides by `sequences`).
struct StepTerms {
  double loss = 0, clm = 0, fusion = 0;
  int64_t tokens = 0, sequences = 0;
  std::vector<SequenceFusion> fused;  // per fused sequence, in order; empty for CLM only
  // [K] per source, over `fused`: MinCE's wins and AvgCE's summed weights (tally_fusion); the
  // trainer sums them over every student of the MPI job, as it sums the losses.
  std::vector<double> wins, weights;
};

// Fills t.wins and t.weights ([K]) from t.fused.
void tally_fusion(StepTerms& t, size_t K);

// A loss term that is not finite: which term, which sequence and why (no step, no advice; the
// trainer adds what it knows about the run).
class NonFiniteLoss : public Error {
 public:
  using Error::Error;
};

// step: 1-based, for the observer. step_sequences: the step's sequences on all ranks (the
// gradient's 1 / N). NonFiniteLoss when a sequence's loss is not finite. loss_on_device: the
// loss computed where the logits are (a GPU: device/device_loss.hpp), the logits never on the
// host; not used with an observer, which reads the logits on the host.
StepTerms train_step(model::TrainableModel& model, const StepSettings& settings, int64_t step,
                     const StepBatches& batches, int64_t step_sequences, const MicroBatchFetch& fetch,
                     TrainObserver* observer = nullptr, device::DeviceLoss* loss_on_device = nullptr);

}  // namespace fusellm
