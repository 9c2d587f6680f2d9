#pragma once
// What a training run reports (DESIGN.md section 5): every [train].log_interval steps (and at the
// run's last step) one JSON line appended to <output_dir>/metrics.jsonl (step, tokens seen, loss,
// clm, fusion, lr, grad_norm, tokens_per_s, model_tflops, epoch; MinCE's per-source win rate or
// AvgCE's mean per-source weight over the interval's sequences) and, with progress on, a human
// line on stderr; on a terminal a progress bar with the time left is redrawn after every step.
//
// model_tflops is PaLM's 6N + attention accounting (model_flops_per_token); MFU is that over the
// hardware's peak, which this CPU trainer does not know.
#include <chrono>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fusellm/job/job_config.hpp"
#include "fusellm/model/arch.hpp"
#include "fusellm/train/train_step.hpp"

namespace fusellm {

// One optimizer step as the run records it (TrainResult::steps, the dump, the metrics).
struct StepLog {
  int64_t step = 0;
  double loss = 0, clm = 0, fusion = 0, lr = 0, grad_norm = 0;
  int64_t tokens = 0;  // target tokens seen by the end of this step
};

// Model FLOPs of one trained token at sequence length T (forward + backward).
double model_flops_per_token(const model::Arch& a, int64_t T);

struct MetricsSettings {
  std::string path;                    // metrics.jsonl, appended to
  std::vector<std::string> sources;    // the K sources' names (win_rate / avg_weight keys)
  std::optional<kernels::FusionMode> fusion;  // what the run fuses with (StepSettings::fusion)
  int64_t log_interval = 1;
  int64_t total_steps = 1;             // of the schedule
  int64_t run_steps = 1;               // this run's at most (--stop-after)
  double flops_per_token = 0;
  bool progress = true;                // human lines on stderr (and the bar on a terminal)
};

class Metrics {
 public:
  explicit Metrics(MetricsSettings s);  // opens the file (Error when it cannot)
  // A step done: adds it to the interval; writes the lines when the interval is full or `last`.
  // epoch: the sampler's; done: steps of this run so far (for the time left).
  void record(const StepLog& s, const StepTerms& terms, int64_t epoch, int64_t done, bool last);
  void finish();  // ends the progress bar's line

 private:
  nlohmann::json line(const StepLog& s, int64_t epoch, double tokens_per_s) const;
  void human_line(const StepLog& s, const nlohmann::json& m, double tokens_per_s, int64_t done) const;
  void bar(const StepLog& s, int64_t done) const;
  double eta(int64_t step, int64_t done) const;

  using Clock = std::chrono::steady_clock;
  MetricsSettings set_;
  std::ofstream out_;
  bool tty_ = false;
  Clock::time_point t0_, interval_start_;
  // The interval: tokens, sequences, MinCE's wins and AvgCE's weights summed per source.
  int64_t tokens_ = 0, sequences_ = 0;
  std::vector<int64_t> wins_;
  std::vector<double> weight_sum_;
};

}  // namespace fusellm
