#include "fusellm/eval/eval_results.hpp"

#include <cmath>
#include <fmt/format.h>
#include <numeric>

namespace fusellm::eval {

using Json = nlohmann::json;

std::optional<double> mean_stderr(const std::vector<double>& xs) {
  const size_t n = xs.size();
  if (n < 2) return std::nullopt;
  const double mu = std::accumulate(xs.begin(), xs.end(), 0.0) / double(n);
  double ss = 0;
  for (double x : xs) ss += (x - mu) * (x - mu);
  return std::sqrt(ss / double(n - 1)) / std::sqrt(double(n));
}

namespace {

double mean(const std::vector<double>& xs) { return std::accumulate(xs.begin(), xs.end(), 0.0) / double(xs.size()); }

Metric mean_metric(const std::string& key, const std::vector<double>& xs) { return {key, mean(xs), mean_stderr(xs)}; }

}  // namespace

TaskReport perplexity_report(const PerplexityResult& r) {
  TaskReport t{r.name, "loglikelihood_rolling", int64_t(r.docs.size()), {}, {}, Json::array()};
  t.metrics = {{"word_perplexity,none", r.word_perplexity(), std::nullopt, false},
               {"byte_perplexity,none", r.byte_perplexity(), std::nullopt, false},
               {"bits_per_byte,none", r.bits_per_byte(), std::nullopt, false},
               {"token_perplexity,none", r.token_perplexity(), std::nullopt, false}};
  t.config = {{"task", r.name}, {"corpus", r.path}, {"output_type", t.output_type},
              {"skipped_blank_documents", r.skipped_blank}};
  for (size_t i = 0; i < r.docs.size(); ++i) {
    const PerplexityDoc& d = r.docs[i];
    t.sample_details.push_back({{"doc_id", i}, {"where", d.where}, {"loglikelihood", d.loglikelihood},
                                {"words", d.words}, {"bytes", d.bytes}, {"tokens", d.tokens}, {"windows", d.windows}});
  }
  return t;
}

TaskReport choice_report(const ChoiceTask& task, const std::vector<ChoiceResult>& rs) {
  TaskReport t{task.name, "multiple_choice", int64_t(rs.size()), {}, {}, Json::array()};
  std::vector<double> acc, acc_norm;
  for (size_t i = 0; i < rs.size(); ++i) {
    acc.push_back(rs[i].acc);
    acc_norm.push_back(rs[i].acc_norm);
    t.sample_details.push_back({{"doc_id", i}, {"where", task.docs[i].where}, {"target", task.docs[i].gold},
                                {"loglikelihoods", rs[i].loglikelihoods}, {"pred", rs[i].pred},
                                {"pred_norm", rs[i].pred_norm}, {"acc", rs[i].acc}, {"acc_norm", rs[i].acc_norm}});
  }
  t.metrics = {mean_metric("acc,none", acc), mean_metric("acc_norm,none", acc_norm)};
  t.config = {{"task", task.name}, {"task_file", task.file}, {"format", task.format},
              {"output_type", t.output_type}, {"target_delimiter", " "}, {"num_fewshot", 0}};
  return t;
}

TaskReport generation_report(const GenerationTask& task, const std::vector<GenerationResult>& rs,
                             const std::vector<std::string>& until, int64_t max_gen_toks) {
  TaskReport t{task.name, "generate_until", int64_t(rs.size()), {}, {}, Json::array()};
  std::vector<double> em;
  for (size_t i = 0; i < rs.size(); ++i) {
    em.push_back(rs[i].exact_match);
    t.sample_details.push_back({{"doc_id", i}, {"where", task.docs[i].where}, {"target", task.docs[i].target},
                                {"resps", {rs[i].generation}}, {"filtered_resps", {rs[i].answer}},
                                {"exact_match", rs[i].exact_match}});
  }
  t.metrics = {mean_metric("exact_match,strict-match", em)};
  t.config = {{"task", task.name},
              {"task_file", task.file},
              {"format", task.format},
              {"output_type", t.output_type},
              {"generation_kwargs", {{"until", until}, {"max_gen_toks", max_gen_toks}, {"do_sample", false}}},
              {"num_fewshot", 0}};
  return t;
}

Json results_json(const std::vector<TaskReport>& reports, const Json& config, bool log_samples) {
  Json out{{"results", Json::object()},    {"group_subtasks", Json::object()}, {"configs", Json::object()},
           {"versions", Json::object()},   {"n-shot", Json::object()},         {"higher_is_better", Json::object()},
           {"n-samples", Json::object()},  {"config", config}};
  for (const TaskReport& t : reports) {
    Json res{{"alias", t.name}};
    Json hib = Json::object();
    for (const Metric& m : t.metrics) {
      const size_t comma = m.key.find(',');
      const std::string name = m.key.substr(0, comma), filter = m.key.substr(comma + 1);
      res[m.key] = m.value;
      res[name + "_stderr," + filter] = m.stderr_value ? Json(*m.stderr_value) : Json("N/A");
      hib[name] = m.higher_is_better;
    }
    out["results"][t.name] = res;
    out["group_subtasks"][t.name] = Json::array();
    out["configs"][t.name] = t.config;
    out["versions"][t.name] = 1.0;
    out["n-shot"][t.name] = 0;
    out["higher_is_better"][t.name] = hib;
    out["n-samples"][t.name] = {{"original", t.samples}, {"effective", t.samples}};
    if (log_samples) out["samples"][t.name] = t.sample_details;
  }
  return out;
}

std::string results_table(const std::vector<TaskReport>& reports) {
  size_t w = 4;
  for (const TaskReport& t : reports) w = std::max(w, t.name.size());
  std::string s = fmt::format("{:<{}}  {:>5}  {:<26}  {:>12}  {:>8}\n", "task", w, "n", "metric", "value", "stderr");
  for (const TaskReport& t : reports)
    for (const Metric& m : t.metrics)
      s += fmt::format("{:<{}}  {:>5}  {:<26}  {:>12.6g}  {:>8}\n", t.name, w, t.samples, m.key, m.value,
                       m.stderr_value ? fmt::format("{:.4f}", *m.stderr_value) : "N/A");
  return s;
}

}  // namespace fusellm::eval
