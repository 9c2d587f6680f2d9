#include "fusellm/train/step_dump.hpp"

#include "fusellm/core/error.hpp"

namespace fusellm {

void StepDump::on_start(const RunStart& run) {
  out_.open(path_);
  if (!out_) fail("{}: cannot open for writing", path_);
  // What a reference implementation needs besides the steps.
  const JobConfig& job = run.job;
  out_ << nlohmann::json{{"header", true}, {"target", run.target}, {"lambda", run.lambda},
                         {"beta1", job.optim.beta1}, {"beta2", job.optim.beta2}, {"eps", job.optim.eps},
                         {"weight_decay", job.optim.weight_decay}, {"clip", job.optim.clip},
                         {"start_step", run.start_step}}.dump()
       << "\n";
}

nlohmann::json& StepDump::at_step(int64_t step) {
  if (step_.is_null() || step_["step"] != step) step_ = {{"step", step}, {"sequences", nlohmann::json::array()}};
  return step_;
}

void StepDump::on_sequence(int64_t step, const PackedSequence& ps, const fusion::HostRows& targets) {
  const int64_t T = ps.tokens();
  std::vector<std::vector<int32_t>> tid(static_cast<size_t>(T));
  std::vector<std::vector<float>> tpr(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < targets.k(); ++c) {
      tid[size_t(t)].push_back(targets.ids(t, c));
      tpr[size_t(t)].push_back(targets.probs(t, c));
    }
  at_step(step)["sequences"].push_back(
      {{"ids", ps.ids}, {"gold", ps.gold}, {"doc_ids", ps.doc_ids}, {"target_ids", tid}, {"target_probs", tpr}});
}

void StepDump::on_step(const StepLog& s) {
  nlohmann::json& j = at_step(s.step);
  j["loss"] = s.loss, j["clm"] = s.clm, j["fusion"] = s.fusion, j["lr"] = s.lr, j["grad_norm"] = s.grad_norm;
  out_ << j.dump() << "\n";
  out_.flush();  // whole steps on disk while the run goes on (and when it stops with an error)
  step_ = nullptr;
}

}  // namespace fusellm
