#pragma once
// `fusellm train --dump FILE`: each step's packed sequences, the fused targets they trained on and
// the step's losses, as JSON lines, for a reference implementation to replay
// (tests/reference/train_reference.py; tests/integration/test_train_reference.cpp). A
// TrainObserver, so the run's options know nothing of it.
//
//   line 1:     {"header": true, "target": <target dir>, "lambda", "beta1", "beta2", "eps",
//                "weight_decay", "clip", "start_step"}
//   each step:  {"step": n, "sequences": [{"ids", "gold", "doc_ids", "target_ids" [T][k],
//                "target_probs" [T][k]}...], "loss", "clm", "fusion", "lr", "grad_norm"}
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "fusellm/train/train_observer.hpp"

namespace fusellm {

class StepDump : public TrainObserver {
 public:
  explicit StepDump(std::string path) : path_(std::move(path)) {}
  const std::string& path() const { return path_; }

  void on_start(const RunStart& run) override;  // opens the file (Error when it cannot)
  void on_sequence(int64_t step, const PackedSequence& seq, const fusion::HostRows& targets) override;
  void on_step(const StepLog& log) override;

 private:
  nlohmann::json& at_step(int64_t step);  // the step's record, begun when new

  std::string path_;
  std::ofstream out_;
  nlohmann::json step_;  // the step being recorded
};

}  // namespace fusellm
