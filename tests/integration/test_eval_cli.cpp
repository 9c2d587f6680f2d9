// `fusellm eval` against lm-evaluation-harness 0.4.5 itself (tests/reference/gen_eval.py ran
// simple_evaluate with an HFLM, cpu, fp32, batch size 1, max_length 128, on the same demo models,
// sample task files and corpus): acc, acc_norm and exact_match equal; word_perplexity,
// byte_perplexity, bits_per_byte and every loglikelihood within 1e-4 relative; the generated
// strings and extracted answers equal. And the bad inputs the command refuses, naming the file.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "run_fusellm.hpp"

namespace fs = std::filesystem;
using fusellm::testing::run_fusellm;
using Json = nlohmann::json;

namespace {

const fs::path kRoot = FUSELLM_SOURCE_DIR;
const fs::path kFix = kRoot / "tests" / "fixtures" / "eval";
const fs::path kSamples = kRoot / "examples" / "eval";

fs::path tmp_dir() {
  const fs::path d = fs::temp_directory_path() / ("fusellm_eval_cli_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

Json run_eval(const std::string& model, const std::string& tasks, const std::string& out_name) {
  const fs::path out = tmp_dir() / out_name;
  const auto r = run_fusellm("eval --model " + (kRoot / "examples" / "demo" / model).string() +
                             " --max-length 128 --max-gen-toks 32 --log-samples -o " + out.string() + " " + tasks, 300);
  EXPECT_EQ(r.code, 0) << r.out;
  std::ifstream f(out);
  return Json::parse(f);
}

void expect_rel(double got, double want, double tol, const std::string& what) {
  EXPECT_LE(std::abs(got - want), tol * std::abs(want)) << what << ": got " << got << ", want " << want;
}

void compare_task(const Json& got, const Json& ref, const std::string& task, const std::string& ref_task) {
  SCOPED_TRACE(task);
  const Json& g = got["results"][task];
  const Json& r = ref["results"][ref_task];
  for (const auto& [key, value] : r.items()) {
    ASSERT_TRUE(g.contains(key)) << key;
    if (value.is_string()) {
      EXPECT_EQ(g[key], value) << key;  // "N/A"
    } else if (key.find("perplexity") != std::string::npos || key.find("bits_per_byte") != std::string::npos) {
      expect_rel(g[key].get<double>(), value.get<double>(), 1e-4, key);
    } else if (key.find("stderr") != std::string::npos) {
      EXPECT_NEAR(g[key].get<double>(), value.get<double>(), 1e-12) << key;
    } else {
      EXPECT_EQ(g[key].get<double>(), value.get<double>()) << key;  // acc, acc_norm, exact_match: equal
    }
  }
  EXPECT_EQ(got["n-samples"][task]["effective"], ref["n-samples"][ref_task]["effective"]);
  const Json& gs = got["samples"][task];
  const Json& rs = ref["samples"][ref_task];
  ASSERT_EQ(gs.size(), rs.size());
  for (size_t i = 0; i < rs.size(); ++i) {
    const std::string at = task + " doc " + std::to_string(i);
    if (rs[i].contains("loglikelihood")) {
      expect_rel(gs[i]["loglikelihood"], rs[i]["loglikelihood"], 1e-4, at);
    } else if (rs[i].contains("loglikelihoods")) {
      ASSERT_EQ(gs[i]["loglikelihoods"].size(), rs[i]["loglikelihoods"].size()) << at;
      for (size_t c = 0; c < rs[i]["loglikelihoods"].size(); ++c)
        expect_rel(gs[i]["loglikelihoods"][c], rs[i]["loglikelihoods"][c], 1e-4, at + " choice " + std::to_string(c));
    } else {
      EXPECT_EQ(gs[i]["resps"][0], rs[i]["generation"]) << at;
      EXPECT_EQ(gs[i]["filtered_resps"][0], rs[i]["answer"]) << at;
    }
  }
}

void compare_model(const std::string& model) {
  std::ifstream f(kFix / ("expected_" + model + ".json"));
  const Json ref = Json::parse(f);
  std::string tasks = "--perplexity " + (kFix / "corpus.jsonl").string();
  for (const char* t : {"arc_sample", "openbookqa_sample", "hellaswag_sample", "boolq_sample"})
    tasks += " --choice " + (kSamples / (std::string(t) + ".jsonl")).string();
  const std::string bbh = " --generate " + (kSamples / "bbh_sample.jsonl").string();
  const Json got = run_eval(model, tasks + bbh, model + ".json");
  EXPECT_EQ(got["config"]["prefix_token_id"], ref["prefix_token_id"]);
  for (const char* t : {"corpus", "arc_sample", "openbookqa_sample", "hellaswag_sample", "boolq_sample", "bbh_sample"})
    compare_task(got, ref, t, t);
  // The same generation task with "\n" as the only stop sequence (besides the EOS text).
  const Json nl = run_eval(model, bbh + " --until '\n'", model + "_nl.json");
  compare_task(nl, ref, "bbh_sample", "bbh_sample_nl");
}

std::string eval_error(const std::string& args) {
  const auto r = run_fusellm("eval " + args, 60);
  EXPECT_EQ(r.code, 1) << r.out;
  return r.out;
}

const std::string kLlama = "--model " + (kRoot / "examples" / "demo" / "llama").string();

}  // namespace

TEST(EvalCli, EqualsLmEvaluationHarnessOnTheDemoLlama) { compare_model("llama"); }

TEST(EvalCli, EqualsLmEvaluationHarnessOnTheDemoNeox) { compare_model("neox"); }

TEST(EvalCli, RefusesAModelDirectoryWithoutATokenizer) {
  const fs::path dir = tmp_dir() / "no_tokenizer";
  fs::create_directories(dir);
  for (const char* f : {"config.json", "model.safetensors"})
    fs::copy_file(kRoot / "examples" / "demo" / "llama" / f, dir / f, fs::copy_options::overwrite_existing);
  const std::string out = eval_error("--model " + dir.string() + " --choice " + (kSamples / "arc_sample.jsonl").string());
  EXPECT_NE(out.find(dir.string() + ": no tokenizer.json"), std::string::npos) << out;
}

TEST(EvalCli, RefusesACorpusWithNoDocument) {
  const fs::path p = tmp_dir() / "blank.jsonl";
  std::ofstream(p) << "{\"text\": \"  \"}\n{\"text\": \"\"}\n";
  const std::string out = eval_error(kLlama + " --perplexity " + p.string());
  EXPECT_NE(out.find(p.string() + ": the corpus has no document"), std::string::npos) << out;
}

TEST(EvalCli, RefusesBadTaskLinesNamingFileAndLine) {
  const fs::path missing = tmp_dir() / "missing_field.jsonl";
  std::ofstream(missing) << "{\"passage\": \"p\", \"question\": \"q\", \"label\": 1}\n{\"passage\": \"p\", \"label\": 0}\n";
  std::string out = eval_error(kLlama + " --choice " + missing.string());
  EXPECT_NE(out.find(missing.string() + ":2: field 'question' is missing (BoolQ form"), std::string::npos) << out;
  const fs::path empty = tmp_dir() / "empty_choices.jsonl";
  std::ofstream(empty) << "{\"question_stem\": \"q\", \"choices\": {\"text\": [], \"label\": []}, \"answerKey\": \"A\"}\n";
  out = eval_error(kLlama + " --choice " + empty.string());
  EXPECT_NE(out.find(empty.string() + ":1: answerKey 'A' is not one of choices.label []"), std::string::npos) << out;
  const fs::path gold = tmp_dir() / "gold.jsonl";
  std::ofstream(gold) << "{\"query\": \"q\", \"choices\": [\"a\"], \"gold\": 3}\n";
  out = eval_error(kLlama + " --choice " + gold.string());
  EXPECT_NE(out.find(gold.string() + ":1: gold index 3 is out of range"), std::string::npos) << out;
  const fs::path gen = tmp_dir() / "gen.jsonl";
  std::ofstream(gen) << "{\"input\": \"x\"}\n";
  out = eval_error(kLlama + " --generate " + gen.string());
  EXPECT_NE(out.find(gen.string() + ":1: field 'target' is missing (BBH form"), std::string::npos) << out;
}

TEST(EvalCli, WithoutATaskIsAUsageError) {
  const auto r = run_fusellm("eval " + kLlama, 60);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("no task"), std::string::npos) << r.out;
}
