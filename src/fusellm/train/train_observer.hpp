#pragma once
// Hooks into a training run for what is not the run's own business: the reference tests' record of
// each step's data and losses (step_dump.hpp, `fusellm train --dump`) and the tests' fault
// injection. The run's options (TrainOptions) hold none of it: train() calls the observer it is
// given, at the points below, on the training thread. Every callback does nothing by default.
#include <cstdint>
#include <span>
#include <string>

#include "fusellm/data/packer.hpp"
#include "fusellm/fusion/kokkos_glue.hpp"
#include "fusellm/job/job_config.hpp"
#include "fusellm/train/metrics.hpp"

namespace fusellm {

// What a run trains, as it is about to take its first step (after a resume).
struct RunStart {
  const JobConfig& job;
  std::string target;       // the target checkpoint's directory (target_dir())
  double lambda = 1.0;      // the weight of the CLM term the run trains with (1: CLM only)
  int64_t start_step = 0;   // steps completed before this run
};

class TrainObserver {
 public:
  virtual ~TrainObserver() = default;
  virtual void on_start(const RunStart&) {}
  // After micro-batch `micro_batch`'s forward pass, before its loss: its logits [tokens, vocab],
  // which the observer may change (NaN injection).
  virtual void on_logits(int64_t /*step*/, size_t /*micro_batch*/, std::span<float> /*logits*/, int64_t /*vocab*/) {}
  // A packed sequence of the step and the fused targets it trains on, before its loss.
  virtual void on_sequence(int64_t /*step*/, const PackedSequence&, const fusion::HostRows& /*targets*/) {}
  // After the step's update (the loss terms are the step's means).
  virtual void on_step(const StepLog&) {}
};

}  // namespace fusellm
