#pragma once
// The results of `fusellm eval` in lm-evaluation-harness's layout (evaluator.simple_evaluate's
// return value as `lm_eval --output_path` writes it, 0.4.5):
//
//   {"results": {task: {"alias": task, "acc,none": x, "acc_stderr,none": s, ...}},
//    "group_subtasks": {task: []}, "configs": {task: {...}}, "versions": {task: v},
//    "n-shot": {task: 0}, "higher_is_better": {task: {metric: bool}},
//    "n-samples": {task: {"original": n, "effective": n}}, "config": {...}, "samples": {...}}
//
// Metric keys are "metric,filter": filter "none" (no filter) for acc, acc_norm and the perplexity
// metrics, "strict-match" for the generation's exact_match. A mean's stderr is the sample
// standard deviation over sqrt(n) (metrics.mean_stderr); it is "N/A" for one document and for the
// perplexity metrics (weighted_perplexity and bits_per_byte have no stderr function in the harness).
// "samples" (with --log-samples) holds per-document details: loglikelihoods, predictions, the
// generations and extracted answers.
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "fusellm/eval/choice_task.hpp"
#include "fusellm/eval/generation_task.hpp"
#include "fusellm/eval/multiple_choice.hpp"
#include "fusellm/eval/perplexity_task.hpp"

namespace fusellm::eval {

struct Metric {
  std::string key;     // "acc,none"
  double value = 0;
  std::optional<double> stderr_value;  // nullopt: "N/A"
  bool higher_is_better = true;
};

struct TaskReport {
  std::string name;
  std::string output_type;  // "loglikelihood_rolling", "multiple_choice", "generate_until"
  int64_t samples = 0;
  std::vector<Metric> metrics;
  nlohmann::json config;          // "configs" entry
  nlohmann::json sample_details;  // list, one per document
};

// metrics.mean_stderr: sample standard deviation (n - 1) over sqrt(n); nullopt for n < 2.
std::optional<double> mean_stderr(const std::vector<double>& xs);

TaskReport perplexity_report(const PerplexityResult& r);
TaskReport choice_report(const ChoiceTask& t, const std::vector<ChoiceResult>& rs);
TaskReport generation_report(const GenerationTask& t, const std::vector<GenerationResult>& rs,
                             const std::vector<std::string>& until, int64_t max_gen_toks);

// `config`: the run's settings (model, max_length, ...); samples included when log_samples.
nlohmann::json results_json(const std::vector<TaskReport>& reports, const nlohmann::json& config, bool log_samples);

// A short table, one row per metric: task, metric, value, stderr.
std::string results_table(const std::vector<TaskReport>& reports);

}  // namespace fusellm::eval
