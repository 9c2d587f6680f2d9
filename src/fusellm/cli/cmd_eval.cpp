// fusellm eval --model DIR [--model DIR ...] [--perplexity CORPUS ...] [--choice FILE ...] [--generate FILE ...]:
// evaluates a model as lm-evaluation-harness 0.4.5 does (HFLM, batch size 1, fp32), on local
// files, and prints the results in the harness's JSON layout (stdout or --output) with a short
// table on stderr.
//
//   --perplexity: a corpus (JSONL of {"text": ...}, a text file, or a directory of those), scored
//     with rolling windows of max_length tokens (loglikelihood_rolling): word_perplexity,
//     byte_perplexity, bits_per_byte (and token_perplexity).
//   --choice: a multiple-choice task file in ARC, OpenBookQA, HellaSwag, BoolQ or normalized form
//     (eval/choice_task.hpp): acc and acc_norm.
//   --generate: a generation task file in BBH or normalized form (eval/generation_task.hpp):
//     greedy generation until a stop sequence, BBH's answer extraction, exact_match.
//
// The library side is src/fusellm/eval/ (one concept per file); this file is the options, the
// order of the tasks and the output.
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <spdlog/spdlog.h>

#include "fusellm/cli/commands.hpp"
#include "fusellm/cli/input.hpp"
#include "fusellm/core/error.hpp"
#include "fusellm/device/compute_backend.hpp"
#include "fusellm/eval/eval_model.hpp"
#include "fusellm/job/job_config.hpp"
#include "fusellm/model/mixture_weights.hpp"
#include "fusellm/eval/eval_results.hpp"
#include "fusellm/eval/task_file.hpp"

namespace fusellm::cli {

namespace {

struct EvalOptions {
  std::vector<std::string> model;
  std::string weights;
  std::vector<std::string> perplexity, choice, generate;
  int64_t max_length = 0;
  int64_t max_gen_toks = 256;  // HFLM.max_gen_toks
  std::vector<std::string> until;
  int64_t limit = -1;
  std::string output;
  bool log_samples = false;
  std::string device = "auto";
};

template <class Doc, class F>
auto score_docs(const std::string& task, const std::vector<Doc>& docs, int64_t limit, F&& score) {
  const size_t n = limit >= 0 ? std::min(docs.size(), size_t(limit)) : docs.size();
  std::vector<decltype(score(docs.front()))> out;
  for (size_t i = 0; i < n; ++i) {
    out.push_back(score(docs[i]));
    spdlog::debug("{}: document {}/{}", task, i + 1, n);
  }
  return out;
}

std::vector<eval::TaskReport> run_tasks(const EvalOptions& o, const eval::EvalModel& m) {
  std::vector<eval::TaskReport> reports;
  for (const std::string& path : o.perplexity) {
    spdlog::info("eval: perplexity on {}", path);
    reports.push_back(eval::perplexity_report(eval::evaluate_perplexity(m, path, o.limit)));
  }
  for (const std::string& path : o.choice) {
    spdlog::info("eval: multiple choice on {}", path);
    const eval::ChoiceTask t = eval::read_choice_task(path);
    const auto rs = score_docs(t.name, t.docs, o.limit, [&](const eval::ChoiceDoc& d) { return score_choices(m, d); });
    reports.push_back(eval::choice_report(t, rs));
  }
  const std::vector<std::string> until = o.until.empty() ? eval::bbh_until() : o.until;
  for (const std::string& path : o.generate) {
    spdlog::info("eval: generation on {}", path);
    const eval::GenerationTask t = eval::read_generation_task(path);
    const auto rs = score_docs(t.name, t.docs, o.limit, [&](const eval::GenerationDoc& d) {
      return eval::score_generation(m, d, until, o.max_gen_toks);
    });
    reports.push_back(eval::generation_report(t, rs, until, o.max_gen_toks));
  }
  return reports;
}

// Tasks are keyed by name in the results: two files of one name would overwrite each other.
void check_names(const EvalOptions& o) {
  std::set<std::string> seen;
  for (const auto* list : {&o.perplexity, &o.choice, &o.generate})
    for (const std::string& path : *list)
      if (!seen.insert(eval::task_name(path)).second)
        fail("{}: another task file has the name '{}' (the results are keyed by file name): rename one", path,
             eval::task_name(path));
}

void run_eval(const EvalOptions& o) {
  if (o.perplexity.empty() && o.choice.empty() && o.generate.empty())
    throw CLI::ValidationError("no task: give --perplexity, --choice or --generate");
  check_names(o);
  if (o.model.size() > 1 && !o.generate.empty())
    throw CLI::ValidationError("--generate evaluates one model: the ensemble (several --model) scores only");
  const std::vector<double> weights =
      as_usage_error([&] { return mixture_weights(o.weights, o.model.size(), "--weights"); });
  const Device device = device_from_name(o.device);  // one of them: --device's check
  const model::Backend& backend = device::compute_backend(device, "--device");
  const eval::EvalModel m = eval::EvalModel::load_ensemble(o.model, weights, o.max_length, backend);
  std::string model_args;
  for (size_t i = 0; i < o.model.size(); ++i) model_args += (i ? ",pretrained=" : "pretrained=") + o.model[i];
  const std::vector<eval::TaskReport> reports = run_tasks(o, m);
  const nlohmann::json config{{"model", "fusellm"},
                              {"model_args", model_args},
                              {"ensemble_weights", o.model.size() > 1 ? nlohmann::json(weights) : nlohmann::json()},
                              {"model_type", m.model->info().model_type},
                              {"max_length", m.max_length},
                              {"prefix_token_id", m.special.bos ? *m.special.bos : m.special.eos.value_or(-1)},
                              {"batch_size", 1},
                              {"device", device::describe(device, "--device")},
                              {"dtype", "float32"},
                              {"limit", o.limit >= 0 ? nlohmann::json(o.limit) : nlohmann::json()}};
  const std::string json =
      eval::results_json(reports, config, o.log_samples).dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
  if (o.output.empty()) {
    std::printf("%s\n", json.c_str());
  } else {
    std::ofstream f(o.output, std::ios::binary);
    if (!(f << json << "\n")) fail("{}: cannot write the results", o.output);
  }
  std::fprintf(stderr, "%s", eval::results_table(reports).c_str());
}

}  // namespace

void add_eval(CLI::App& app) {
  auto o = std::make_shared<EvalOptions>();
  auto* sub = app.add_subcommand("eval", "evaluate a model as lm-evaluation-harness does: perplexity, multiple choice, "
                                         "generation");
  sub->add_option("--model", o->model,
                  "Hugging Face checkpoint directory (with its tokenizer); several (one tokenizer): their ensemble, "
                  "the paper's baseline (perplexity and multiple choice)")
      ->required()
      ->allow_extra_args(false);
  sub->add_option("--weights", o->weights, "ensemble weights w1,w2,...: one per --model (default: uniform)");
  sub->add_option("--perplexity", o->perplexity,
                  "corpus: JSONL of {\"text\": ...}, a text file, or a directory (repeatable)")
      ->allow_extra_args(false);
  sub->add_option("--choice", o->choice, "multiple-choice task file (JSONL: ARC, OpenBookQA, HellaSwag, BoolQ or "
                                         "{query, choices, gold}; repeatable)")
      ->allow_extra_args(false);
  sub->add_option("--generate", o->generate, "generation task file (JSONL: BBH {input, target} or {prompt, target}; "
                                             "repeatable)")
      ->allow_extra_args(false);
  sub->add_option("--max-length", o->max_length, "tokens per window / context (default: the model's context)")
      ->check(at_least(2, "a window needs a token and one to predict"));
  sub->add_option("--max-gen-toks", o->max_gen_toks, "most new tokens per generation (default 256)")
      ->check(at_least(1, "a generation makes at least one token"));
  sub->add_option("--until", o->until, "stop sequence (repeatable; default BBH's: </s>, Q:, <|im_end|>)")
      ->allow_extra_args(false);
  sub->add_option("--limit", o->limit, "at most this many documents per task")->check(at_least(1, "0 scores nothing"));
  sub->add_option("-o,--output", o->output, "write the results JSON here (default: stdout)");
  sub->add_flag("--log-samples", o->log_samples, "add per-document details under \"samples\"");
  sub->add_option("--device", o->device, "where the models compute: auto (the GPU when one is found), cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  sub->callback([o] { run_eval(*o); });
}

}  // namespace fusellm::cli
